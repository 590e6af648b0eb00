use accounts::Password;
use actix_web::{HttpResponse, web};
use kernel::SessionId;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::dto::{Items, LoginBody, NewSessionDto, SessionDto};
use crate::{ApiError, ApiState, Auth, ClientContext};

pub(crate) async fn login(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let password = Password::new(body.password.expose_secret());
    let outcome = state.sessions.login(&body.email, &password, &ctx.0).await?;
    Ok(HttpResponse::Created().json(json!({
        "token": outcome.token.expose(),
        "session": NewSessionDto::from(&outcome.session),
        "revoked_session_ids": outcome.revoked_session_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
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
    let password = Password::new(body.into_inner().password.expose_secret());
    let until = state
        .sessions
        .reauthenticate(auth.actor(), &password, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "reauthenticated_until": crate::dto::ts(until) })))
}
