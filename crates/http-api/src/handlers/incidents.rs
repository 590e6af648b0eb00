//! `/v1/incidents`: open, list, read, move along the workflow, add notes, notify (INC-1, INC-2).

use actix_web::{HttpResponse, web};
use incidents::{EntryKind, Incident, NewIncident};
use kernel::UserId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::dto::{Page, ts};
use crate::error::Body;
use crate::openapi::schemas;
use crate::{ApiError, ApiState, Auth, ClientContext};

/// A new incident.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenBody {
    #[schema(schema_with = schemas::incident_kind)]
    kind: String,
    #[schema(schema_with = schemas::incident_severity)]
    severity: String,
    summary: String,
    /// Users whose data or access is concerned (they can be notified).
    #[serde(default)]
    affected_user_ids: Vec<Uuid>,
    /// The audit alert that started it, if any.
    #[serde(default)]
    alert_id: Option<Uuid>,
}

/// A move to another status, with an optional note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransitionBody {
    #[schema(schema_with = schemas::incident_status)]
    to: String,
    #[serde(default)]
    note: Option<String>,
}

/// A note for the timeline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    note: String,
}

/// The notice to send; without `message` the incident's summary is sent. The body may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotifyBody {
    #[serde(default)]
    message: Option<String>,
}

/// One entry of an incident's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntryDto {
    #[schema(value_type = uuid::Uuid)]
    id: Uuid,
    #[schema(format = DateTime)]
    at: String,
    #[schema(format = Uuid)]
    actor_id: String,
    #[schema(schema_with = schemas::entry_kind)]
    kind: &'static str,
    note: Option<String>,
    /// `transition`: the status before.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schemas::incident_status)]
    from: Option<&'static str>,
    /// `transition`: the status after.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schemas::incident_status)]
    to: Option<&'static str>,
    /// `notified`: how many users were notified.
    #[serde(skip_serializing_if = "Option::is_none")]
    recipients: Option<u32>,
}

/// A security incident with its whole timeline.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IncidentDto {
    #[schema(value_type = uuid::Uuid)]
    id: Uuid,
    #[schema(schema_with = schemas::incident_kind)]
    kind: &'static str,
    #[schema(schema_with = schemas::incident_severity)]
    severity: &'static str,
    summary: String,
    #[schema(schema_with = schemas::incident_status)]
    status: &'static str,
    #[schema(schema_with = schemas::uuid_list)]
    affected_user_ids: Vec<String>,
    #[schema(value_type = Option<uuid::Uuid>)]
    alert_id: Option<Uuid>,
    #[schema(format = Uuid)]
    created_by: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    timeline: Vec<EntryDto>,
}

/// Notices queued for delivery.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueuedDto {
    /// How many notices were queued (one per affected user).
    queued: usize,
}

fn entry_json(e: &incidents::TimelineEntry) -> EntryDto {
    let (from, to, recipients) = match &e.kind {
        EntryKind::Transition { from, to } => (Some(from.as_str()), Some(to.as_str()), None),
        EntryKind::Notified { recipients } => (None, None, Some(*recipients)),
        EntryKind::Created | EntryKind::Note => (None, None, None),
    };
    EntryDto {
        id: e.id,
        at: ts(e.at),
        actor_id: e.actor_id.to_string(),
        kind: e.kind.as_str(),
        note: e.note.clone(),
        from,
        to,
        recipients,
    }
}

fn incident_json(i: &Incident) -> IncidentDto {
    IncidentDto {
        id: i.id,
        kind: i.kind.as_str(),
        severity: i.severity.as_str(),
        summary: i.summary.clone(),
        status: i.status.as_str(),
        affected_user_ids: i
            .affected_user_ids
            .iter()
            .map(ToString::to_string)
            .collect(),
        alert_id: i.alert_id,
        created_by: i.created_by.to_string(),
        created_at: ts(i.created_at),
        updated_at: ts(i.updated_at),
        timeline: i.timeline.iter().map(entry_json).collect(),
    }
}

#[utoipa::path(
    post, path = "/v1/incidents", tag = "incidents", operation_id = "open_incident",
    summary = "Open an incident",
    request_body = OpenBody,
    responses((status = 201, description = "Opened (status `open`).", body = IncidentDto)),
)]
pub(crate) async fn open(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: Body<OpenBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let incident = state
        .incidents
        .open(
            auth.actor(),
            NewIncident {
                kind: body.kind,
                severity: body.severity,
                summary: body.summary,
                affected_user_ids: body
                    .affected_user_ids
                    .into_iter()
                    .map(UserId::from_uuid)
                    .collect(),
                alert_id: body.alert_id,
            },
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Created().json(incident_json(&incident)))
}

#[utoipa::path(
    get, path = "/v1/incidents", tag = "incidents", operation_id = "list_incidents",
    summary = "List the company's incidents",
    params(crate::dto::TimePageParams),
    responses((status = 200, description = "A page of incidents, newest first.",
               body = Page<IncidentDto>)),
)]
pub(crate) async fn list(
    state: web::Data<ApiState>,
    auth: Auth,
    q: web::Query<crate::dto::TimePageParams>,
) -> Result<HttpResponse, ApiError> {
    let (after, limit) = q.read(u64::from(incidents::IncidentService::MAX_PAGE))?;
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    let page = state.incidents.list(auth.actor(), after, limit).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.iter().map(incident_json).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[utoipa::path(
    get, path = "/v1/incidents/{id}", tag = "incidents", operation_id = "get_incident",
    summary = "One incident with its timeline",
    params(("id" = uuid::Uuid, Path, description = "Incident id.")),
    responses((status = 200, description = "The incident.", body = IncidentDto)),
)]
pub(crate) async fn get(
    state: web::Data<ApiState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let incident = state.incidents.get(auth.actor(), id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(incident_json(&incident)))
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/transitions", tag = "incidents",
    operation_id = "transition_incident",
    summary = "Move an incident to another status",
    description = "Allowed moves follow the incident process; any other answers 409 \
                   `invalid_transition` with the current status.",
    params(("id" = uuid::Uuid, Path, description = "Incident id.")),
    request_body = TransitionBody,
    responses((status = 200, description = "The incident after the move.", body = IncidentDto)),
)]
pub(crate) async fn transition(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: Body<TransitionBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let incident = state
        .incidents
        .transition(
            auth.actor(),
            id.into_inner(),
            &body.to,
            body.note.as_deref(),
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Ok().json(incident_json(&incident)))
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/notes", tag = "incidents", operation_id = "note_incident",
    summary = "Add a note to the timeline",
    params(("id" = uuid::Uuid, Path, description = "Incident id.")),
    request_body = NoteBody,
    responses((status = 201, description = "The incident with the note.", body = IncidentDto)),
)]
pub(crate) async fn note(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: Body<NoteBody>,
) -> Result<HttpResponse, ApiError> {
    let incident = state
        .incidents
        .add_note(auth.actor(), id.into_inner(), &body.note, &ctx.0)
        .await?;
    Ok(HttpResponse::Created().json(incident_json(&incident)))
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/notifications", tag = "incidents",
    operation_id = "notify_incident",
    summary = "Notify the affected users",
    description = "Queues one email per affected user (delivered by the outbox, retried).",
    params(("id" = uuid::Uuid, Path, description = "Incident id.")),
    request_body(content = Option<NotifyBody>, description = "Optional; may be empty."),
    responses((status = 202, description = "Queued.", body = QueuedDto)),
)]
pub(crate) async fn notify(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // The body is optional: empty means "send the summary".
    let body: NotifyBody = super::optional_json(
        payload,
        "the body must be a JSON object with an optional string \"message\"",
    )
    .await?;
    let queued = state
        .incidents
        .notify(
            auth.actor(),
            id.into_inner(),
            body.message.as_deref(),
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Accepted().json(QueuedDto { queued }))
}
