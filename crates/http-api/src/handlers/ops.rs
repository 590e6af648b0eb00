use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret as _;

use crate::dto::StatusDto;
use crate::{ApiError, ApiState};

#[utoipa::path(
    get, path = "/healthz", tag = "operations", operation_id = "healthz",
    summary = "Liveness",
    description = "200 while the process runs; it does not touch the database.",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`.", body = StatusDto)),
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(StatusDto { status: "ok" })
}

#[utoipa::path(
    get, path = "/readyz", tag = "operations", operation_id = "readyz",
    summary = "Readiness",
    description = "200 when the database answers and its schema is current; 503 otherwise, so a \
                   load balancer stops sending traffic.",
    responses((status = 200, description = "Ready: `{\"status\": \"ready\"}`.", body = StatusDto)),
)]
pub(crate) async fn readyz(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    match state.readiness.check().await {
        Ok(()) => Ok(HttpResponse::Ok().json(StatusDto { status: "ready" })),
        Err(why) => {
            tracing::warn!(reason = %why, "not ready");
            Err(ApiError::unavailable(
                "the database is unreachable or its schema is not current",
            ))
        }
    }
}

/// No route took the request: 405 with `Allow` when the path exists with other methods
/// (RFC 9110 §15.5.6), otherwise 404.
pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError as _;
    let methods = crate::routes::methods_for(req.path());
    if methods.is_empty() {
        return ApiError::not_found().error_response();
    }
    let allow = methods
        .iter()
        .map(actix_web::http::Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut res = ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!("this path answers {allow}"),
    )
    .error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        res.headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    res
}

/// `GET /metrics` (OPS-3). With `INCREMENTA_METRICS_TOKEN` set the scraper sends it as a bearer
/// token; without it only loopback clients are answered, so a server exposed by mistake does not
/// publish its traffic figures.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "Requests by route and status, latency histograms, login outcomes, active \
                   sessions, throttled logins, audit appends, vault operations, outbox backlog, \
                   password hashing, session cache hits and misses. \
                   Served to loopback clients, or to any client sending \
                   `Authorization: Bearer <INCREMENTA_METRICS_TOKEN>` when that is set.",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4.",
         content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 403, description = "`forbidden`: not loopback and no valid metrics token.",
         content_type = "application/problem+json", body = crate::openapi::Problem),
    ),
)]
pub(crate) async fn metrics(
    state: web::Data<ApiState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let allowed = match &state.metrics_token {
        Some(token) => req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| {
                constant_time_eq(given.as_bytes(), token.expose_secret().as_bytes())
            }),
        None => req.peer_addr().is_some_and(|a| a.ip().is_loopback()),
    };
    if !allowed {
        return Err(ApiError::forbidden(
            "metrics are served to loopback clients or with INCREMENTA_METRICS_TOKEN",
        ));
    }
    let mut text = state.metrics.render();
    for (name, help, value) in state.gauges.read().await {
        // Prometheus' naming convention: only counters end in `_total`.
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
