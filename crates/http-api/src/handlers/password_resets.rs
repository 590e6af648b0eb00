use accounts::{Password, ResetConfirmation};
use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;

use crate::dto::{PasswordResetBody, PasswordResetConfirmBody};
use crate::error::Body;
use crate::{ApiError, ApiState, ClientContext};

#[utoipa::path(
    post, path = "/v1/password-resets", tag = "accounts", operation_id = "request_password_reset",
    summary = "Ask for a password-reset e-mail",
    description = "For a user who forgot the password. The answer is the same whether or not the \
                   address is registered; if it is, and the user is active, the user is e-mailed a \
                   code that sets a new password with `POST /v1/password-resets/confirm` within 30 \
                   minutes, once. A new request within 5 minutes of the last sends nothing (the \
                   first code still works). Limited per client address.",
    request_body = PasswordResetBody,
    responses((status = 202, description = "Accepted: an e-mail goes out if the address belongs to an active user.")),
)]
pub(crate) async fn request(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: Body<PasswordResetBody>,
) -> Result<HttpResponse, ApiError> {
    state
        .password_resets
        .request(&body.into_inner().email, &ctx.0)
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

#[utoipa::path(
    post, path = "/v1/password-resets/confirm", tag = "accounts",
    operation_id = "confirm_password_reset",
    summary = "Set a new password with the e-mailed code",
    description = "The code (`token`) works once, for 30 minutes, and only while it is the user's \
                   latest. The new password must meet the policy (a refused one leaves the code \
                   usable). Every session of the user is closed, a failed-login lock is lifted, \
                   and the user is e-mailed that the password changed. MFA stays: the next login \
                   still asks for the second factor. Failed attempts are limited per client \
                   address.",
    request_body = PasswordResetConfirmBody,
    responses((status = 204, description = "The password is set; log in with it.")),
)]
pub(crate) async fn confirm(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: Body<PasswordResetConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let confirmation = ResetConfirmation {
        token: body.token,
        new_password: Password::new(body.new_password.expose_secret()),
        new_password_confirmation: Password::new(body.new_password_confirmation.expose_secret()),
    };
    let user = state.password_resets.confirm(&confirmation, &ctx.0).await?;
    // The lock guarded the forgotten password against guessing; the new one is the user's.
    // The password is set either way: a failure here is logged, not answered.
    if let Err(e) = state.sessions.lift_login_lock(&user.email).await {
        tracing::error!(error = %e, user = %user.id, "could not lift the login lock after a password reset");
    }
    Ok(HttpResponse::NoContent().finish())
}
