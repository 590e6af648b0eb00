use accounts::Password;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use kernel::SessionId;
use mfa::SecondFactor;
use secrecy::ExposeSecret;
use sessions::MfaNotice;

use crate::dto::{
    Items, LoginBody, LoginDto, NewSessionDto, ReauthenticateBody, ReauthenticatedDto, SessionDto,
};
use crate::error::Body;
use crate::{ApiError, ApiState, Auth, ClientContext};

#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions", operation_id = "login",
    summary = "Log in",
    description = "Checks the password (and the second factor of a user with MFA) and opens a \
                   session. The token is shown once. When the company's session limit is reached, \
                   the oldest sessions are closed and listed. Failed attempts slow down the \
                   account and the client address (429 with `Retry-After`).",
    request_body = LoginBody,
    responses((status = 201, description = "A new session.", body = LoginDto)),
)]
pub(crate) async fn login(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: Body<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let password = Password::new(body.password.expose_secret());
    let second = match (&body.totp_code, &body.recovery_code) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "Malformed request",
                "send either totp_code or recovery_code, not both",
            ));
        }
        (Some(code), None) => Some(SecondFactor::totp(code.expose_secret())),
        (None, Some(code)) => Some(SecondFactor::recovery_code(code.expose_secret())),
        (None, None) => None,
    };
    let outcome = state
        .sessions
        .login_with(&body.email, &password, second.as_ref(), &ctx.0)
        .await?;
    // MFA-2: tell an Owner or Admin without MFA what the company's policy asks of it.
    let (mfa_enrolment_due, mfa_enrolment_required) = match outcome.mfa_notice {
        Some(MfaNotice::EnrolBy(until)) => (Some(crate::dto::ts(until)), None),
        Some(MfaNotice::EnrolmentRequired) => (None, Some(true)),
        None => (None, None),
    };
    let recovery_codes_remaining = match outcome.factor {
        Some(mfa::FactorUsed::RecoveryCode { remaining }) => Some(remaining),
        _ => None,
    };
    Ok(HttpResponse::Created().json(LoginDto {
        token: outcome.token.expose().to_owned(),
        session: NewSessionDto::from(&outcome.session),
        revoked_session_ids: outcome
            .revoked_session_ids
            .iter()
            .map(ToString::to_string)
            .collect(),
        mfa_enrolment_due,
        mfa_enrolment_required,
        recovery_codes_remaining,
        password_change_required: outcome.password_change_required.then_some(true),
    }))
}

#[utoipa::path(
    get, path = "/v1/sessions", tag = "sessions", operation_id = "list_sessions",
    summary = "List the caller's open sessions",
    responses((status = 200, description = "The caller's sessions; `current` marks this one.",
               body = Items<SessionDto>)),
)]
pub(crate) async fn list(state: web::Data<ApiState>, auth: Auth) -> Result<HttpResponse, ApiError> {
    let views = state.sessions.list(auth.actor()).await?;
    Ok(HttpResponse::Ok().json(Items {
        items: views.iter().map(SessionDto::from).collect(),
    }))
}

#[utoipa::path(
    delete, path = "/v1/sessions/current", tag = "sessions", operation_id = "logout",
    summary = "Log out",
    description = "Revokes the session making the request; its token stops working at once.",
    responses((status = 204, description = "Logged out.")),
)]
pub(crate) async fn logout(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    state.sessions.logout(auth.actor(), &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    delete, path = "/v1/sessions/{id}", tag = "sessions", operation_id = "revoke_session",
    summary = "Revoke one of the caller's sessions",
    params(("id" = uuid::Uuid, Path, description = "Session id.")),
    responses((status = 204, description = "Revoked.")),
)]
pub(crate) async fn revoke(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<SessionId>,
) -> Result<HttpResponse, ApiError> {
    state
        .sessions
        .revoke(auth.actor(), id.into_inner(), &ctx.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post, path = "/v1/sessions/current/reauthenticate", tag = "sessions",
    operation_id = "reauthenticate",
    summary = "Re-authenticate (step-up)",
    description = "Confirms the password (and a TOTP code with MFA) to open the step-up window of \
                   this session for 5 minutes: sensitive routes need it.",
    request_body = ReauthenticateBody,
    responses((status = 200, description = "Step-up open until the given time.", body = ReauthenticatedDto)),
)]
pub(crate) async fn reauthenticate(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: Body<ReauthenticateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let password = Password::new(body.password.expose_secret());
    let until = state
        .sessions
        .reauthenticate_with(
            auth.actor(),
            &password,
            body.totp_code.as_ref().map(ExposeSecret::expose_secret),
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Ok().json(ReauthenticatedDto {
        reauthenticated_until: crate::dto::ts(until),
    }))
}
