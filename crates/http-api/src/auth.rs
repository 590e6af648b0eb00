//! Request ids, client context, and the authentication + permission guard of every protected route.

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use kernel::RequestContext;
use rbac::{Actor, Refusal, Scope, authorize};
use sessions::Authenticated;

use crate::routes::Access;
use crate::{ApiError, ApiState};

/// The request id of this request: the client's `X-Request-Id` when it is short and plain,
/// otherwise a fresh one. Echoed in the response header.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

fn acceptable_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| s.to_owned())
}

pub(crate) async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(acceptable_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    // Every log line written while serving this request carries its id (OPS-3). The path has
    // no query string: nothing secret travels there.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let started = std::time::Instant::now();
    let res = tracing::Instrument::instrument(next.call(req), span.clone())
        .await?
        .map_into_boxed_body();
    // At debug: one line per request costs a fifth of the throughput of the lightest routes
    // (measured); operators who want access logs set `INCREMENTA_LOG=info,http_api=debug`.
    span.in_scope(|| {
        tracing::debug!(
            status = res.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "request served"
        );
    });
    let mut res = with_request_id_in_problem(res, &id).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}

/// Largest problem body rewritten to carry the request id (problem bodies are a few hundred
/// bytes; anything larger is passed through untouched).
const MAX_PROBLEM_BODY: usize = 64 * 1024;

/// Adds `request_id` to a problem+json body, so a client can quote it and an operator find the
/// matching log lines. Other responses pass through unchanged.
async fn with_request_id_in_problem(
    res: ServiceResponse<BoxBody>,
    id: &str,
) -> ServiceResponse<BoxBody> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    if !is_problem {
        return res;
    }
    let (req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    // Problem bodies are small and already in memory; one that cannot be read is dropped.
    let Ok(Ok(bytes)) = actix_web::body::to_bytes_limited(body, MAX_PROBLEM_BODY).await else {
        return ServiceResponse::new(req, head.set_body(BoxBody::new(())));
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert(
                "request_id".into(),
                serde_json::Value::String(id.to_owned()),
            );
            serde_json::Value::Object(map).to_string().into_bytes()
        }
        _ => bytes.to_vec(),
    };
    let mut res = head.set_body(BoxBody::new(body));
    res.headers_mut().remove(header::CONTENT_LENGTH);
    ServiceResponse::new(req, res)
}

fn context_of(req: &HttpRequest) -> RequestContext {
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    RequestContext::new(client_ip(req), ua, id)
}

/// The client's address: the peer's, or the one a configured trusted proxy forwarded
/// (X-Forwarded-For counts only when the peer is such a proxy).
pub(crate) fn client_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    match req.app_data::<web::Data<ApiState>>() {
        Some(state) => state.trusted_proxies.client_ip(
            peer,
            req.headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok()),
        ),
        None => peer,
    }
}

/// Extractor: the request's client address, user agent and request id.
#[derive(Debug, Clone)]
pub struct ClientContext(pub RequestContext);

impl FromRequest for ClientContext {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self(context_of(req))))
    }
}

/// Extractor: the authenticated actor, put there by the route's guard. A handler on a route
/// without a guard gets 401: the check fails closed.
#[derive(Debug, Clone)]
pub struct Auth(pub Authenticated);

impl Auth {
    /// The acting user.
    #[must_use]
    pub const fn actor(&self) -> &Actor {
        &self.0.actor
    }
}

impl FromRequest for Auth {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Authenticated>()
                .cloned()
                .map(Self)
                .ok_or_else(|| ApiError::unauthenticated().into()),
        )
    }
}

/// The routes a session restricted to MFA enrolment (MFA-2) may call: enrol, see itself and its
/// sessions, log out. Everything else answers 403 `mfa_enrolment_required`.
pub const OPEN_DURING_MFA_ENROLMENT: &[(&str, &str)] = &[
    ("GET", "/v1/me"),
    ("GET", "/v1/me/mfa"),
    ("POST", "/v1/me/mfa/totp"),
    ("POST", "/v1/me/mfa/totp/confirm"),
    ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions/current"),
];

fn open_during_mfa_enrolment(method: &actix_web::http::Method, path: &str) -> bool {
    OPEN_DURING_MFA_ENROLMENT
        .iter()
        .any(|(m, p)| *m == method.as_str() && *p == path)
}

/// The routes a session whose password was handed over by the operator may call until the user
/// changes it: change it, see itself and its sessions, log out. Everything else answers 403
/// `password_change_required`.
pub const OPEN_DURING_PASSWORD_CHANGE: &[(&str, &str)] = &[
    ("GET", "/v1/me"),
    ("PUT", "/v1/me/password"),
    ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions/current"),
];

fn open_during_password_change(method: &actix_web::http::Method, path: &str) -> bool {
    OPEN_DURING_PASSWORD_CHANGE
        .iter()
        .any(|(m, p)| *m == method.as_str() && *p == path)
}

/// What keeps a restricted actor from `method path`, if anything: a password the operator reset
/// must be changed first (`password_change_required`), then an Owner or Admin bound by the
/// company's MFA policy must enrol (`mfa_enrolment_required`). While both apply, the password
/// change's routes stay open, so the user can change it and then enrol.
fn restriction(actor: &Actor, method: &actix_web::http::Method, path: &str) -> Option<Refusal> {
    let for_password = actor.password_change_only && open_during_password_change(method, path);
    if actor.password_change_only && !for_password {
        Some(Refusal::PasswordChangeRequired)
    } else if actor.mfa_enrolment_only && !for_password && !open_during_mfa_enrolment(method, path)
    {
        Some(Refusal::MfaEnrolmentRequired)
    } else {
        None
    }
}

fn bearer(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The guard in front of every non-public route: authenticate the bearer token, check the
/// route's permission with `rbac::authorize`, record denials, and hand the actor to the handler.
pub(crate) async fn guard(
    access: Access,
    path: &'static str,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<ApiState>>().cloned() else {
        return Ok(req.error_response(ApiError::internal()));
    };
    let Some(token) = bearer(&req) else {
        return Ok(req.error_response(ApiError::unauthenticated()));
    };
    let auth = match state
        .sessions
        .authenticate_from(token, client_ip(req.request()))
        .await
    {
        Ok(auth) => auth,
        Err(e) => return Ok(req.error_response(ApiError::from(e))),
    };
    if let Some(code) = restriction(&auth.actor, req.method(), path) {
        let ctx = context_of(req.request());
        if let Err(e) = state
            .sessions
            .record_denied(&auth.actor, path, code.reason(), path, &ctx)
            .await
        {
            return Ok(req.error_response(ApiError::from(e)));
        }
        return Ok(req.error_response(ApiError::refusal(code)));
    }
    if let Some(permission) = access.permission()
        && !authorize(&auth.actor, permission, Scope::Company).is_allowed()
    {
        let ctx = context_of(req.request());
        if let Err(e) = state
            .sessions
            .record_denied(
                &auth.actor,
                permission.as_str(),
                Refusal::MissingPermission.reason(),
                path,
                &ctx,
            )
            .await
        {
            return Ok(req.error_response(ApiError::from(e)));
        }
        return Ok(req.error_response(ApiError::forbidden(format!(
            "requires the {permission} permission"
        ))));
    }
    if access.needs_step_up() && !state.sessions.has_step_up(&auth.actor) {
        let ctx = context_of(req.request());
        if let Err(e) = state
            .sessions
            .record_denied(
                &auth.actor,
                path,
                Refusal::ReauthenticationRequired.reason(),
                path,
                &ctx,
            )
            .await
        {
            return Ok(req.error_response(ApiError::from(e)));
        }
        return Ok(req.error_response(ApiError::reauthentication_required()));
    }
    req.extensions_mut().insert(auth);
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use actix_web::http::Method;
    use kernel::{CompanyId, SessionId, UserId};
    use rbac::{Actor, Role};
    use uuid::Uuid;

    use super::*;

    fn owner() -> Actor {
        Actor::new(
            UserId::from_uuid(Uuid::from_u128(1)),
            CompanyId::from_uuid(Uuid::from_u128(2)),
            SessionId::from_uuid(Uuid::from_u128(3)),
            Role::Owner,
            Role::Owner.default_permissions(),
        )
    }

    /// Each restriction opens its own routes only; with both, the password comes first (its
    /// routes open, enrolment closed) so the user is never stuck between the two; without
    /// either nothing is held back here.
    #[test]
    fn restricted_actors_reach_only_their_way_out() {
        let put_password = (Method::PUT, "/v1/me/password");
        let enrol = (Method::POST, "/v1/me/mfa/totp");
        let users = (Method::GET, "/v1/users");
        let me = (Method::GET, "/v1/me");
        let check = |actor: &Actor, (m, p): &(Method, &str)| restriction(actor, m, p);

        let free = owner();
        for route in [&put_password, &enrol, &users, &me] {
            assert_eq!(check(&free, route), None);
        }
        let password = owner().restricted_to_password_change();
        assert_eq!(check(&password, &put_password), None);
        assert_eq!(check(&password, &me), None);
        assert_eq!(
            check(&password, &enrol),
            Some(Refusal::PasswordChangeRequired)
        );
        assert_eq!(
            check(&password, &users),
            Some(Refusal::PasswordChangeRequired)
        );

        let mfa = owner().restricted_to_mfa_enrolment();
        assert_eq!(check(&mfa, &enrol), None);
        assert_eq!(
            check(&mfa, &put_password),
            Some(Refusal::MfaEnrolmentRequired)
        );
        assert_eq!(check(&mfa, &users), Some(Refusal::MfaEnrolmentRequired));

        let both = owner()
            .restricted_to_mfa_enrolment()
            .restricted_to_password_change();
        assert_eq!(check(&both, &put_password), None);
        assert_eq!(check(&both, &me), None);
        assert_eq!(check(&both, &enrol), Some(Refusal::PasswordChangeRequired));
        assert_eq!(check(&both, &users), Some(Refusal::PasswordChangeRequired));
    }
}
