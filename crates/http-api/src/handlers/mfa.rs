//! `/v1/me/mfa/*`: TOTP enrolment, confirmation, disabling and recovery codes (MFA-1, MFA-3).

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use secrecy::ExposeSecret;

use crate::dto::{ConfirmMfaBody, MfaStatusDto, RecoveryCodesDto, TotpEnrolmentDto};
use crate::error::Body;
use crate::{ApiError, ApiState, Auth, ClientContext};

fn codes_dto(codes: &mfa::RecoveryCodes) -> RecoveryCodesDto {
    RecoveryCodesDto {
        recovery_codes: codes.0.iter().map(|c| c.expose().to_owned()).collect(),
    }
}

#[utoipa::path(
    post, path = "/v1/me/mfa/totp", tag = "mfa", operation_id = "begin_totp",
    summary = "Start a TOTP enrolment",
    description = "A new secret, its `otpauth://` URI and a QR code, shown once. MFA is on after \
                   `POST /v1/me/mfa/totp/confirm` with the first code.",
    responses((status = 201, description = "Enrolment started.", body = TotpEnrolmentDto)),
)]
pub(crate) async fn begin(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let enrolment = state.mfa.begin(auth.actor(), &auth.0.user, &ctx.0).await?;
    let Some(image) = crate::qr::png(enrolment.otpauth_uri.expose()) else {
        tracing::error!("QR code generation failed");
        return Err(ApiError::internal());
    };
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(TotpEnrolmentDto {
            secret: enrolment.secret.expose().to_owned(),
            otpauth_uri: enrolment.otpauth_uri.expose().to_owned(),
            qr_png_base64: base64::engine::general_purpose::STANDARD.encode(image),
        }))
}

#[utoipa::path(
    post, path = "/v1/me/mfa/totp/confirm", tag = "mfa", operation_id = "confirm_totp",
    summary = "Confirm the TOTP enrolment",
    description = "The first code from the app turns MFA on and returns the recovery codes, once.",
    request_body = ConfirmMfaBody,
    responses((status = 200, description = "MFA is on; keep these codes safe.", body = RecoveryCodesDto)),
)]
pub(crate) async fn confirm(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: Body<ConfirmMfaBody>,
) -> Result<HttpResponse, ApiError> {
    let codes = state
        .mfa
        .confirm(
            auth.actor(),
            &auth.0.user,
            body.code.expose_secret(),
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(codes_dto(&codes)))
}

#[utoipa::path(
    delete, path = "/v1/me/mfa/totp", tag = "mfa", operation_id = "disable_totp",
    summary = "Turn MFA off",
    responses((status = 204, description = "MFA is off; the recovery codes are void.")),
)]
pub(crate) async fn disable(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    state
        .mfa
        .disable(auth.actor(), &auth.0.user, &ctx.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post, path = "/v1/me/mfa/recovery-codes", tag = "mfa", operation_id = "regenerate_recovery_codes",
    summary = "New recovery codes",
    description = "Replaces every recovery code; the old ones stop working.",
    responses((status = 200, description = "The new codes, shown once.", body = RecoveryCodesDto)),
)]
pub(crate) async fn regenerate_recovery_codes(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let codes = state
        .mfa
        .regenerate_recovery_codes(auth.actor(), &auth.0.user, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(codes_dto(&codes)))
}

#[utoipa::path(
    get, path = "/v1/me/mfa", tag = "mfa", operation_id = "mfa_status",
    summary = "The caller's MFA state",
    responses((status = 200, description = "MFA state.", body = MfaStatusDto)),
)]
pub(crate) async fn status(
    state: web::Data<ApiState>,
    auth: Auth,
) -> Result<HttpResponse, ApiError> {
    let status = state.mfa.status(&auth.0.user).await?;
    Ok(HttpResponse::Ok().json(MfaStatusDto {
        enabled: status.enabled,
        pending: status.pending,
        recovery_codes_remaining: status.recovery_codes_remaining,
    }))
}
