use accounts::Password;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use kernel::SessionId;
use mfa::SecondFactor;
use secrecy::ExposeSecret;
use serde_json::json;
use sessions::MfaNotice;

use crate::dto::{Items, LoginBody, NewSessionDto, SessionDto};
use crate::{ApiError, ApiState, Auth, ClientContext};

pub(crate) async fn login(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: web::Json<LoginBody>,
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
    let mut answer = serde_json::Map::new();
    answer.insert("token".into(), json!(outcome.token.expose()));
    answer.insert(
        "session".into(),
        json!(NewSessionDto::from(&outcome.session)),
    );
    answer.insert(
        "revoked_session_ids".into(),
        json!(
            outcome
                .revoked_session_ids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ),
    );
    // MFA-2: tell an Owner or Admin without MFA what the company's policy asks of it.
    match outcome.mfa_notice {
        Some(MfaNotice::EnrolBy(until)) => {
            answer.insert("mfa_enrolment_due".into(), json!(crate::dto::ts(until)));
        }
        Some(MfaNotice::EnrolmentRequired) => {
            answer.insert("mfa_enrolment_required".into(), json!(true));
        }
        None => {}
    }
    if let Some(mfa::FactorUsed::RecoveryCode { remaining }) = outcome.factor {
        answer.insert("recovery_codes_remaining".into(), json!(remaining));
    }
    Ok(HttpResponse::Created().json(answer))
}

pub(crate) async fn list(state: web::Data<ApiState>, auth: Auth) -> Result<HttpResponse, ApiError> {
    let views = state.sessions.list(auth.actor()).await?;
    Ok(HttpResponse::Ok().json(Items {
        items: views.iter().map(SessionDto::from).collect(),
    }))
}

pub(crate) async fn logout(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    state.sessions.logout(auth.actor(), &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

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

pub(crate) async fn reauthenticate(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: web::Json<crate::dto::ReauthenticateBody>,
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
    Ok(HttpResponse::Ok().json(json!({ "reauthenticated_until": crate::dto::ts(until) })))
}
