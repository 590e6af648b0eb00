//! Audit routes (AUD-4, AUD-6): query with cursor pagination, access log, verification, and a
//! streamed export whose memory stays flat whatever the log's size.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use audit::{AuditFilter, ChainedRecord};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::dto::ts;
use crate::{ApiError, ApiState, Auth, ClientContext};

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    actor_id: Option<kernel::UserId>,
    action: Option<String>,
    outcome: Option<String>,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    cursor: Option<i64>,
    limit: Option<u64>,
    format: Option<String>,
}

impl AuditQuery {
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

fn item(r: &ChainedRecord) -> serde_json::Value {
    json!({
        "id": r.id.to_string(),
        "seq": r.seq,
        "at": ts(r.at),
        "actor_id": r.actor_id.map(|a| a.to_string()),
        "action": r.action,
        "target": r.target,
        "ip": r.ip,
        "user_agent": r.user_agent,
        "outcome": r.outcome,
        "request_id": r.request_id,
        "details": serde_json::from_str::<serde_json::Value>(&r.details).unwrap_or(serde_json::Value::Null),
    })
}

async fn page(
    state: &ApiState,
    auth: &Auth,
    ctx: &ClientContext,
    q: &AuditQuery,
    access_only: bool,
) -> Result<HttpResponse, ApiError> {
    let filter = q.filter(access_only)?;
    let page = state
        .audit
        .query(
            auth.actor(),
            &filter,
            q.cursor,
            q.limit.unwrap_or(50),
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "items": page.items.iter().map(item).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor.map(|c| c.to_string()),
    })))
}

pub(crate) async fn events(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    page(&state, &auth, &ctx, &q, false).await
}

pub(crate) async fn access_log(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    page(&state, &auth, &ctx, &q, true).await
}

pub(crate) async fn verify(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let report = state.audit.verify_company(auth.actor(), &ctx.0).await?;
    Ok(HttpResponse::Ok().json(json!({
        "ok": report.ok,
        "checked": report.checked,
        "first_broken_id": report.first_broken_id.map(|id| id.to_string()),
        "reason": report.reason,
    })))
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

pub(crate) async fn export(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let format = q.format.clone().unwrap_or_else(|| "ndjson".into());
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
    state
        .audit
        .start_export(auth.actor(), &format, &filter, &ctx.0)
        .await?;
    let company = auth.actor().company_id;
    let audit = state.audit.clone();
    let csv = header.is_some();
    // One batch per poll: memory holds one page, never the whole log.
    let stream = futures_util::stream::unfold((Some(None), header), move |(cursor, header)| {
        let audit = audit.clone();
        let filter = filter.clone();
        async move {
            if let Some(h) = header {
                return Some((
                    Ok::<_, actix_web::Error>(Bytes::from_static(h.as_bytes())),
                    (cursor, None),
                ));
            }
            let cursor = cursor?;
            match audit.page(company, &filter, cursor, EXPORT_BATCH).await {
                Ok(page) => {
                    let mut chunk = String::new();
                    for r in &page.items {
                        if csv {
                            chunk.push_str(&csv_line(r));
                        } else {
                            chunk.push_str(&item(r).to_string());
                            chunk.push('\n');
                        }
                    }
                    let next = page.next_cursor.map(Some);
                    Some((Ok(Bytes::from(chunk)), (next, None)))
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed mid-stream");
                    Some((
                        Err(actix_web::error::ErrorInternalServerError(
                            "export interrupted",
                        )),
                        (None, None),
                    ))
                }
            }
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

#[derive(Debug, Deserialize)]
pub(crate) struct AlertsQuery {
    status: Option<String>,
}

pub(crate) async fn alerts(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    let alerts = state
        .audit
        .alerts(auth.actor(), q.into_inner().status, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "items": alerts.iter().map(|a| json!({
            "id": a.id.to_string(),
            "at": ts(a.at),
            "rule": a.rule,
            "severity": a.severity,
            "summary": a.summary,
            "subject": a.subject,
            "status": a.status,
            "record_id": a.record_id.to_string(),
        })).collect::<Vec<_>>(),
    })))
}
