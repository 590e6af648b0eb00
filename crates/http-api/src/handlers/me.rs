use accounts::Password;
use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;

use crate::dto::{ChangePasswordBody, MeDto};
use crate::error::Body;
use crate::{ApiError, ApiState, Auth, ClientContext};

#[utoipa::path(
    get, path = "/v1/me", tag = "accounts", operation_id = "me",
    summary = "The caller",
    responses((status = 200, description = "The caller's account and effective permissions.", body = MeDto)),
)]
pub(crate) async fn me(auth: Auth) -> HttpResponse {
    let user = &auth.0.user;
    HttpResponse::Ok().json(MeDto {
        id: user.id.to_string(),
        email: user.email.as_str().to_owned(),
        name: user.name.as_str().to_owned(),
        role: user.role.as_str(),
        company_id: user.company_id.to_string(),
        active: user.active,
        mfa_enabled: user.mfa_enabled,
        permissions: auth.actor().permissions.names(),
        password_change_required: user.password_change_required,
    })
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
