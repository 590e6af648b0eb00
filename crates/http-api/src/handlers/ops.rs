use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{ApiError, ApiState};

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    match state.readiness.check().await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Err(why) => {
            tracing::warn!(reason = %why, "not ready");
            Err(ApiError::unavailable(
                "the database is unreachable or its schema is not current",
            ))
        }
    }
}

pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}
