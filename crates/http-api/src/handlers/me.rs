use accounts::Password;
use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;

use crate::dto::{
    ChangePasswordBody, EmailChangeBody, EmailChangeConfirmBody, EmailStatusDto, MeDto,
    PendingEmailChangeDto,
};
use crate::error::Body;
use crate::{ApiError, ApiState, Auth, ClientContext};

#[utoipa::path(
    get, path = "/v1/me", tag = "accounts", operation_id = "me",
    summary = "The caller",
    responses((status = 200, description = "The caller's account and effective permissions.", body = MeDto)),
)]
pub(crate) async fn me(auth: Auth) -> HttpResponse {
    HttpResponse::Ok().json(me_dto(&auth.0.user, &auth))
}

/// What `GET /v1/me` says of `user`, the caller.
fn me_dto(user: &accounts::User, auth: &Auth) -> MeDto {
    MeDto {
        id: user.id.to_string(),
        email: user.email.as_str().to_owned(),
        name: user.name.as_str().to_owned(),
        role: user.role.as_str(),
        company_id: user.company_id.to_string(),
        active: user.active,
        mfa_enabled: user.mfa_enabled,
        permissions: auth.actor().permissions.names(),
        password_change_required: user.password_change_required,
    }
}

#[utoipa::path(
    put, path = "/v1/me/password", tag = "accounts", operation_id = "change_password",
    summary = "Change the caller's password",
    description = "Needs the current password; the new one must meet the policy. The \
                   caller's other sessions are closed.",
    request_body = ChangePasswordBody,
    responses((status = 204, description = "Changed.")),
)]
pub(crate) async fn change_password(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: Body<ChangePasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    state
        .accounts
        .change_password(
            auth.actor(),
            &Password::new(body.current_password.expose_secret()),
            &Password::new(body.new_password.expose_secret()),
            &Password::new(body.new_password_confirmation.expose_secret()),
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get, path = "/v1/me/email", tag = "accounts", operation_id = "email_status",
    summary = "The caller's address and a pending change of it",
    description = "The address in use and, while its code works, the address a change is waiting \
                   for (so a client can ask for the code after a reload). The code is never \
                   shown.",
    responses((status = 200, description = "The address and the pending change, if any.", body = EmailStatusDto)),
)]
pub(crate) async fn email_status(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let pending = state.email_changes.pending(auth.actor(), &ctx.0).await?;
    Ok(HttpResponse::Ok().json(EmailStatusDto {
        email: auth.0.user.email.as_str().to_owned(),
        expires_at: pending.as_ref().map(|c| c.expires_at.to_rfc3339()),
        pending_email: pending.map(|c| c.to.as_str().to_owned()),
    }))
}

#[utoipa::path(
    post, path = "/v1/me/email", tag = "accounts", operation_id = "request_email_change",
    summary = "Ask to change the caller's e-mail address",
    description = "Step-up. The new address (also the login and where password resets go) must \
                   not belong to any account. It is e-mailed a code that confirms the change with \
                   `POST /v1/me/email/confirm` within 60 minutes, from a session of the same user; \
                   the current address is warned. Nothing changes until then. One request per 5 \
                   minutes.",
    request_body = EmailChangeBody,
    responses((status = 202, description = "The code is on its way to the new address.", body = PendingEmailChangeDto)),
)]
pub(crate) async fn request_email_change(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: Body<EmailChangeBody>,
) -> Result<HttpResponse, ApiError> {
    let change = state
        .email_changes
        .request(auth.actor(), &body.into_inner().new_email, &ctx.0)
        .await?;
    Ok(HttpResponse::Accepted().json(PendingEmailChangeDto {
        pending_email: change.to.as_str().to_owned(),
        expires_at: change.expires_at.to_rfc3339(),
    }))
}

#[utoipa::path(
    post, path = "/v1/me/email/confirm", tag = "accounts", operation_id = "confirm_email_change",
    summary = "Confirm the new e-mail address with its code",
    description = "The code (`token`) sent to the new address, from a session of the user who \
                   asked. The address changes at once; an open password reset (sent to the old \
                   address) is cancelled, the caller's other sessions are closed, and the old \
                   address is told.",
    request_body = EmailChangeConfirmBody,
    responses((status = 200, description = "The caller, with the new address.", body = MeDto)),
)]
pub(crate) async fn confirm_email_change(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: Body<EmailChangeConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .email_changes
        .confirm(auth.actor(), &body.into_inner().token, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(me_dto(&user, &auth)))
}

#[utoipa::path(
    post, path = "/v1/email-changes/revert", tag = "accounts",
    operation_id = "revert_email_change",
    summary = "Undo a change of e-mail address from the old address",
    description = "No session: the code (`token`) is the one in the notice the **old** address \
                   got when the account moved to another one, and it works once, for 72 hours. \
                   Whoever moved the account knew its password, so the account goes back to the \
                   old address, the password stops working and every session ends; an open \
                   password reset or pending change is cancelled, both addresses are told and \
                   the company gets a high alert (`email_change_reverted`). Then ask for a \
                   password reset (`POST /v1/password-resets`): it goes to the old address \
                   again. A second factor enrolled since the move is removed (one from before \
                   stays). A second change within the window keeps the \
                   first one's code: the undo goes back to where the moves started. Failed \
                   attempts are limited per client address.",
    request_body = EmailChangeConfirmBody,
    responses((status = 204, description = "The account is back at the old address; set a password with a reset.")),
)]
pub(crate) async fn revert_email_change(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: Body<EmailChangeConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    state
        .email_changes
        .revert(&body.into_inner().token, &ctx.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
