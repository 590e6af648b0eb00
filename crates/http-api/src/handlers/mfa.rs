//! `/v1/me/mfa/*`: TOTP enrolment, confirmation, disabling and recovery codes (MFA-1, MFA-3).

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::dto::ConfirmMfaBody;
use crate::{ApiError, ApiState, Auth, ClientContext};

fn codes_json(codes: &mfa::RecoveryCodes) -> serde_json::Value {
    json!({ "recovery_codes": codes.0.iter().map(mfa::OneTimeSecret::expose).collect::<Vec<_>>() })
}

pub(crate) async fn begin(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let enrolment = state.mfa.begin(&auth.0.user, &ctx.0).await?;
    let Some(image) = crate::qr::png(enrolment.otpauth_uri.expose()) else {
        tracing::error!("QR code generation failed");
        return Err(ApiError::internal());
    };
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(json!({
            "secret": enrolment.secret.expose(),
            "otpauth_uri": enrolment.otpauth_uri.expose(),
            "qr_png_base64": base64::engine::general_purpose::STANDARD.encode(image),
        })))
}

pub(crate) async fn confirm(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: web::Json<ConfirmMfaBody>,
) -> Result<HttpResponse, ApiError> {
    let codes = state
        .mfa
        .confirm(&auth.0.user, body.code.expose_secret(), &ctx.0)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(codes_json(&codes)))
}

pub(crate) async fn disable(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    state.mfa.disable(&auth.0.user, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(crate) async fn regenerate_recovery_codes(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let codes = state
        .mfa
        .regenerate_recovery_codes(&auth.0.user, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(codes_json(&codes)))
}

pub(crate) async fn status(
    state: web::Data<ApiState>,
    auth: Auth,
) -> Result<HttpResponse, ApiError> {
    let status = state.mfa.status(&auth.0.user).await?;
    Ok(HttpResponse::Ok().json(json!({
        "enabled": status.enabled,
        "pending": status.pending,
        "recovery_codes_remaining": status.recovery_codes_remaining,
    })))
}
