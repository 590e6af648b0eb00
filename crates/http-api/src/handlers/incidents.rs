//! `/v1/incidents`: open, list, read, move along the workflow, add notes, notify (INC-1, INC-2).

use actix_web::{HttpResponse, web};
use incidents::{EntryKind, Incident, NewIncident};
use kernel::UserId;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::dto::{Items, ts};
use crate::{ApiError, ApiState, Auth, ClientContext};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenBody {
    kind: String,
    severity: String,
    summary: String,
    #[serde(default)]
    affected_user_ids: Vec<Uuid>,
    #[serde(default)]
    alert_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransitionBody {
    to: String,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    note: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotifyBody {
    #[serde(default)]
    message: Option<String>,
}

fn entry_json(e: &incidents::TimelineEntry) -> Value {
    let mut v = json!({
        "id": e.id,
        "at": ts(e.at),
        "actor_id": e.actor_id.to_string(),
        "kind": e.kind.as_str(),
        "note": e.note,
    });
    match &e.kind {
        EntryKind::Transition { from, to } => {
            if let Some(o) = v.as_object_mut() {
                o.insert("from".into(), json!(from.as_str()));
                o.insert("to".into(), json!(to.as_str()));
            }
        }
        EntryKind::Notified { recipients } => {
            if let Some(o) = v.as_object_mut() {
                o.insert("recipients".into(), json!(recipients));
            }
        }
        EntryKind::Created | EntryKind::Note => {}
    }
    v
}

fn incident_json(i: &Incident) -> Value {
    json!({
        "id": i.id,
        "kind": i.kind.as_str(),
        "severity": i.severity.as_str(),
        "summary": i.summary,
        "status": i.status.as_str(),
        "affected_user_ids": i.affected_user_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "alert_id": i.alert_id,
        "created_by": i.created_by.to_string(),
        "created_at": ts(i.created_at),
        "updated_at": ts(i.updated_at),
        "timeline": i.timeline.iter().map(entry_json).collect::<Vec<_>>(),
    })
}

pub(crate) async fn open(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: web::Json<OpenBody>,
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

pub(crate) async fn list(state: web::Data<ApiState>, auth: Auth) -> Result<HttpResponse, ApiError> {
    let all = state.incidents.list(auth.actor()).await?;
    Ok(HttpResponse::Ok().json(Items {
        items: all.iter().map(incident_json).collect::<Vec<_>>(),
    }))
}

pub(crate) async fn get(
    state: web::Data<ApiState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let incident = state.incidents.get(auth.actor(), id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(incident_json(&incident)))
}

pub(crate) async fn transition(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: web::Json<TransitionBody>,
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

pub(crate) async fn note(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: web::Json<NoteBody>,
) -> Result<HttpResponse, ApiError> {
    let incident = state
        .incidents
        .add_note(auth.actor(), id.into_inner(), &body.note, &ctx.0)
        .await?;
    Ok(HttpResponse::Created().json(incident_json(&incident)))
}

pub(crate) async fn notify(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    use futures_util::StreamExt as _;
    // Read the optional body ourselves, so that too large is a problem+json like everywhere.
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "malformed_request",
                "Malformed request",
                "the body could not be read",
            )
        })?;
        if body.len() + chunk.len() > crate::JSON_LIMIT {
            return Err(crate::error::too_large());
        }
        body.extend_from_slice(&chunk);
    }
    // The body is optional: empty means "send the summary".
    let body: NotifyBody = if body.iter().all(u8::is_ascii_whitespace) {
        NotifyBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "malformed_request",
                "Malformed request",
                "the body must be a JSON object with an optional string \"message\"",
            )
        })?
    };
    let queued = state
        .incidents
        .notify(
            auth.actor(),
            id.into_inner(),
            body.message.as_deref(),
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Accepted().json(json!({ "queued": queued })))
}
