//! Audit routes (AUD-4, AUD-6): query with cursor pagination, access log, verification, and a
//! streamed export whose memory stays flat whatever the log's size.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use audit::{AuditFilter, ChainedRecord};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::dto::{Page, ts};
use crate::openapi::schemas;
use crate::{ApiError, ApiState, Auth, ClientContext};

/// The filters of `GET /v1/audit/events`, `/access-log` and `/export`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FilterParams {
    /// Only records of this user.
    #[param(value_type = Option<uuid::Uuid>)]
    actor_id: Option<kernel::UserId>,
    /// Only this action, e.g. `session.login`.
    action: Option<String>,
    /// `success`, `failure` or `denied`.
    outcome: Option<String>,
    /// Records at or after this time.
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Records before this time.
    to: Option<chrono::DateTime<chrono::Utc>>,
}

/// Paging of `GET /v1/audit/events` and `/access-log` (the export streams everything: it has
/// no paging parameters).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// The format of `GET /v1/audit/export`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportParams {
    /// `ndjson` (default) or `csv`.
    format: Option<String>,
}

impl FilterParams {
    /// The filter; `outcome` must be one of the three.
    fn filter(&self, access_only: bool) -> Result<AuditFilter, ApiError> {
        if let Some(o) = &self.outcome
            && !matches!(o.as_str(), "success" | "failure" | "denied")
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "Malformed request",
                "outcome is success, failure or denied",
            ));
        }
        Ok(AuditFilter {
            actor_id: self.actor_id,
            actions: self.action.iter().cloned().collect(),
            access_only,
            outcome: self.outcome.clone(),
            from: self.from,
            to: self.to,
        })
    }
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditItem {
    #[schema(format = Uuid)]
    id: String,
    /// Position in the company's chain.
    seq: i64,
    #[schema(format = DateTime)]
    at: String,
    /// Who acted (`null`: nobody authenticated, e.g. a failed login).
    #[schema(format = Uuid)]
    actor_id: Option<String>,
    /// What happened, e.g. `session.login`.
    action: String,
    /// What it happened to.
    target: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    #[schema(schema_with = schemas::outcome)]
    outcome: String,
    request_id: Option<String>,
    /// Further facts of the action (never secrets).
    #[schema(value_type = Object, nullable)]
    details: serde_json::Value,
}

fn item(r: &ChainedRecord) -> AuditItem {
    AuditItem {
        id: r.id.to_string(),
        seq: r.seq,
        at: ts(r.at),
        actor_id: r.actor_id.map(|a| a.to_string()),
        action: r.action.clone(),
        target: r.target.clone(),
        ip: r.ip.clone(),
        user_agent: r.user_agent.clone(),
        outcome: r.outcome.clone(),
        request_id: r.request_id.clone(),
        details: serde_json::from_str::<serde_json::Value>(&r.details)
            .unwrap_or(serde_json::Value::Null),
    }
}

/// The result of checking the company's audit chain.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VerifyDto {
    /// Every record checked out.
    ok: bool,
    /// Records checked.
    checked: u64,
    /// The first record that does not fit (edited, inserted, out of order, or after a gap).
    #[schema(format = Uuid)]
    first_broken_id: Option<String>,
    /// Why, in a few words.
    reason: Option<String>,
}

/// An alert raised by the audit review.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertDto {
    #[schema(format = Uuid)]
    id: String,
    #[schema(format = DateTime)]
    at: String,
    /// The rule that fired.
    rule: String,
    #[schema(schema_with = schemas::alert_severity)]
    severity: String,
    summary: String,
    /// What it is about (an email, an address, a user).
    subject: String,
    /// `open`, `incident` (an incident was opened from it) or `dismissed`.
    #[schema(schema_with = schemas::alert_status)]
    status: String,
    /// The audit record that triggered it.
    #[schema(format = Uuid)]
    record_id: String,
}

async fn page(
    state: &ApiState,
    auth: &Auth,
    ctx: &ClientContext,
    q: &FilterParams,
    paging: &PageParams,
    access_only: bool,
) -> Result<HttpResponse, ApiError> {
    let filter = q.filter(access_only)?;
    let page = state
        .audit
        .query(
            auth.actor(),
            &filter,
            paging.cursor,
            crate::dto::page_size(paging.limit, audit::MAX_PAGE)?,
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.iter().map(item).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[utoipa::path(
    get, path = "/v1/audit/events", tag = "audit", operation_id = "audit_events",
    summary = "Audit records, newest first",
    params(FilterParams, PageParams),
    responses((status = 200, description = "A page of records.", body = Page<AuditItem>)),
)]
pub(crate) async fn events(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<FilterParams>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    page(&state, &auth, &ctx, &q, &paging, false).await
}

#[utoipa::path(
    get, path = "/v1/audit/access-log", tag = "audit", operation_id = "audit_access_log",
    summary = "Logins, logouts and session events, newest first",
    params(FilterParams, PageParams),
    responses((status = 200, description = "A page of records.", body = Page<AuditItem>)),
)]
pub(crate) async fn access_log(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<FilterParams>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    page(&state, &auth, &ctx, &q, &paging, true).await
}

#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "audit", operation_id = "audit_verify",
    summary = "Verify the company's audit chain",
    description = "Recomputes every record's MAC and link; any edit, insertion, removal or \
                   reordering is reported with the first record that does not fit.",
    responses((status = 200, description = "The result (`ok: false` is still 200).", body = VerifyDto)),
)]
pub(crate) async fn verify(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let report = state.audit.verify_company(auth.actor(), &ctx.0).await?;
    Ok(HttpResponse::Ok().json(VerifyDto {
        ok: report.ok,
        checked: report.checked,
        first_broken_id: report.first_broken_id.map(|id| id.to_string()),
        reason: report.reason,
    }))
}

/// CSV field: quoted, quotes doubled; a leading `=`, `+`, `-` or `@` is prefixed with `'` so a
/// spreadsheet does not run it as a formula.
fn csv_field(value: &str) -> String {
    let safe = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", safe.replace('"', "\"\""))
}

fn csv_line(r: &ChainedRecord) -> String {
    let cols = [
        r.id.to_string(),
        r.seq.to_string(),
        ts(r.at),
        r.actor_id.map(|a| a.to_string()).unwrap_or_default(),
        r.action.clone(),
        r.target.clone().unwrap_or_default(),
        r.ip.clone().unwrap_or_default(),
        r.user_agent.clone().unwrap_or_default(),
        r.outcome.clone(),
        r.request_id.clone().unwrap_or_default(),
        r.details.clone(),
    ];
    let mut line = cols
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Rows per database round trip while streaming an export.
const EXPORT_BATCH: u64 = 500;

/// Where a streaming export is: the CSV header still to send, and while pages remain, the next
/// page's cursor with the company's export pass.
struct Export {
    header: Option<&'static str>,
    next: Option<(Option<i64>, audit::ExportPass)>,
}

#[utoipa::path(
    get, path = "/v1/audit/export", tag = "audit", operation_id = "audit_export",
    summary = "Export audit records",
    description = "Streams every matching record as NDJSON (one `AuditItem` per line) or CSV \
                   (formula-safe). The export itself is audited. One export per company at a \
                   time: another one meanwhile gets 429 with `Retry-After`.",
    params(FilterParams, ExportParams),
    responses((status = 200, description = "The records.",
               content((String = "application/x-ndjson"), (String = "text/csv")))),
)]
pub(crate) async fn export(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<FilterParams>,
    export: web::Query<ExportParams>,
) -> Result<HttpResponse, ApiError> {
    let format = export.format.clone().unwrap_or_else(|| "ndjson".into());
    let (content_type, header) = match format.as_str() {
        "ndjson" => ("application/x-ndjson", None),
        "csv" => (
            "text/csv; charset=utf-8",
            Some("id,seq,at,actor_id,action,target,ip,user_agent,outcome,request_id,details\r\n"),
        ),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "Malformed request",
                "format is ndjson or csv",
            ));
        }
    };
    let filter = q.filter(false)?;
    let pass = state
        .audit
        .start_export(auth.actor(), &format, &filter, &ctx.0)
        .await?;
    let company = auth.actor().company_id;
    let audit = state.audit.clone();
    let csv = header.is_some();
    // One batch per poll: memory holds one page, never the whole log. The pass goes with the
    // last page (or the failure), before the response ends, so a client may start its next
    // export as soon as it has read this one; a client that goes away drops it with the stream.
    let start = Export {
        header,
        next: Some((None, pass)),
    };
    let stream = futures_util::stream::unfold(start, move |state| {
        let audit = audit.clone();
        let filter = filter.clone();
        async move {
            let Export { header, next } = state;
            if let Some(h) = header {
                return Some((
                    Ok::<_, actix_web::Error>(Bytes::from_static(h.as_bytes())),
                    Export { header: None, next },
                ));
            }
            let (cursor, pass) = next?;
            let (chunk, next) = match audit
                .export_page(&pass, &filter, cursor, EXPORT_BATCH)
                .await
            {
                Ok(page) => {
                    let mut chunk = String::new();
                    for r in &page.items {
                        if csv {
                            chunk.push_str(&csv_line(r));
                        } else if let Ok(line) = serde_json::to_string(&item(r)) {
                            // A struct of strings and JSON values always serializes.
                            chunk.push_str(&line);
                            chunk.push('\n');
                        }
                    }
                    let next = page.next_cursor.map(|c| (Some(c), pass));
                    (Ok(Bytes::from(chunk)), next)
                }
                Err(audit::AuditError::ExportSuperseded) => {
                    tracing::warn!(
                        company = %company,
                        "audit export idle too long, replaced by a newer one: ending it"
                    );
                    (
                        Err(actix_web::error::ErrorConflict("export superseded")),
                        None,
                    )
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed mid-stream");
                    let err = actix_web::error::ErrorInternalServerError("export interrupted");
                    (Err(err), None)
                }
            };
            Some((chunk, Export { header: None, next }))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"audit.{format}\""),
        ))
        .streaming(stream))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertsQuery {
    /// Only alerts with this status: `open` (not handled yet), `incident` (an incident was
    /// opened from it) or `dismissed`.
    #[param(schema_with = schemas::alert_status)]
    status: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 200 (default 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// Why triage dismissed the alert. The body may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DismissBody {
    /// Up to 500 characters, kept in the `audit.alert_dismissed` record.
    #[serde(default)]
    reason: Option<String>,
}

fn alert_dto(a: &audit::Alert) -> AlertDto {
    AlertDto {
        id: a.id.to_string(),
        at: ts(a.at),
        rule: a.rule.clone(),
        severity: a.severity.clone(),
        summary: a.summary.clone(),
        subject: a.subject.clone(),
        status: a.status.clone(),
        record_id: a.record_id.to_string(),
    }
}

#[utoipa::path(
    get, path = "/v1/audit/alerts", tag = "audit", operation_id = "audit_alerts",
    summary = "Alerts of the audit review",
    params(AlertsQuery),
    responses((status = 200, description = "A page of the company's alerts, newest first.",
               body = Page<AlertDto>)),
)]
pub(crate) async fn alerts(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    let AlertsQuery {
        status,
        cursor,
        limit,
    } = q.into_inner();
    if let Some(s) = &status
        && ![
            audit::Alert::OPEN,
            audit::Alert::INCIDENT,
            audit::Alert::DISMISSED,
        ]
        .contains(&s.as_str())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "Malformed request",
            "status is open, incident or dismissed",
        ));
    }
    let after = crate::dto::time_cursor(cursor.as_deref())?;
    let limit = crate::dto::list_limit(limit, audit::MAX_PAGE)?;
    let page = state
        .audit
        .alerts(auth.actor(), status, after, limit, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.iter().map(alert_dto).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[utoipa::path(
    post, path = "/v1/audit/alerts/{id}/dismiss", tag = "audit", operation_id = "dismiss_alert",
    summary = "Dismiss an alert",
    description = "Triage: the open alert needs no incident. Its status becomes `dismissed` and \
                   the decision is audited (`audit.alert_dismissed`, with the reason). An alert \
                   raised by the caller's own activity is for another Owner or Admin to judge \
                   (403). To handle an alert instead, open an incident with its `alert_id`.",
    params(("id" = uuid::Uuid, Path, description = "Alert id.")),
    request_body(content = Option<DismissBody>, description = "Optional; may be empty."),
    responses((status = 200, description = "The alert, now dismissed.", body = AlertDto)),
)]
pub(crate) async fn dismiss_alert(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: DismissBody = super::optional_json(
        payload,
        "the body must be a JSON object with an optional string \"reason\"",
    )
    .await?;
    let alert = state
        .audit
        .dismiss_alert(
            auth.actor(),
            id.into_inner(),
            body.reason.as_deref(),
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Ok().json(alert_dto(&alert)))
}
