//! RFC 9457 problem details: the one place where core errors become HTTP statuses.

use std::fmt;

use accounts::AccountsError;
use actix_web::error::{PathError, PayloadError, QueryPayloadError};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Map, Value, json};
use sessions::SessionError;

/// An error answer: status, stable `code`, human `title`/`detail`, and extra members.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// A problem with no extra members.
    #[must_use]
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// Adds a member to the body.
    #[must_use]
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// 401 for a missing, unknown, revoked or expired session.
    #[must_use]
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            "send a valid session token as Authorization: Bearer <token>",
        )
    }

    /// 403 for an authenticated actor without the permission.
    #[must_use]
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 403 for a critical operation without a fresh re-authentication (MFA-3).
    #[must_use]
    pub fn reauthentication_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "reauthentication_required",
            "Re-authentication required",
            "call POST /v1/sessions/current/reauthenticate, then retry within 5 minutes",
        )
    }

    /// 403 for a session that must enrol MFA before anything else (MFA-2).
    #[must_use]
    pub fn mfa_enrolment_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "mfa_enrolment_required",
            "MFA enrolment required",
            "your company requires MFA for your role: enrol with POST /v1/me/mfa/totp and confirm it",
        )
    }

    /// 403 for a session whose user must change a password the operator handed over.
    #[must_use]
    pub fn password_change_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "password_change_required",
            "Password change required",
            "your password was reset by the platform's operator: change it with PUT /v1/me/password",
        )
    }

    /// 403 for `why`: the restrictions of a session (`rbac::Actor::restriction`) and a closed
    /// step-up window get their own problems, which tell the client what to do; a missing
    /// permission or a use case's rule is `forbidden` with its reason as the detail.
    #[must_use]
    pub fn refusal(why: rbac::Refusal) -> Self {
        match why {
            rbac::Refusal::PasswordChangeRequired => Self::password_change_required(),
            rbac::Refusal::MfaEnrolmentRequired => Self::mfa_enrolment_required(),
            rbac::Refusal::ReauthenticationRequired => Self::reauthentication_required(),
            rbac::Refusal::MissingPermission | rbac::Refusal::Rule(_) => {
                Self::forbidden(why.reason())
            }
        }
    }

    /// 404, also for another company's ids.
    #[must_use]
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "no such resource",
        )
    }

    /// 500 that says nothing about the cause (which is logged).
    #[must_use]
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
            "the request could not be completed",
        )
    }

    /// 503 when a dependency is down.
    #[must_use]
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            format!("retry after {retry_after} seconds"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// The stable code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        self.code
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!(
                "https://incrementacrm.com/problems/{}",
                self.code.replace('_', "-")
            )),
        );
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.insert("code".into(), json!(self.code));
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.body(Value::Object(body).to_string())
    }
}

impl ApiError {
    /// An infrastructure failure: 503 `unavailable` with `Retry-After` when the database could not
    /// be reached ([`kernel::Unavailable`] in the cause chain), otherwise 500. Logged either way.
    fn from_internal(err: &(dyn std::error::Error + 'static)) -> Self {
        if kernel::is_unavailable(err) {
            // Expected during an outage, once per request: a warning, not an error.
            tracing::warn!(error = %cause_chain(err), "database unavailable");
            let mut e = Self::unavailable("the database is unreachable; retry shortly");
            e.retry_after = Some(1);
            e
        } else {
            log_internal(err);
            Self::internal()
        }
    }
}

/// Logs an internal error with its whole cause chain (never secrets: errors carry none).
fn log_internal(err: &(dyn std::error::Error + 'static)) {
    tracing::error!(error = %cause_chain(err), "internal error");
}

/// `err: cause: cause…`, for the log.
fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

impl From<AccountsError> for ApiError {
    fn from(err: AccountsError) -> Self {
        match err {
            AccountsError::Validation(errors) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Invalid fields",
                "one or more fields are invalid",
            )
            .with("errors", json!(errors)),
            AccountsError::PasswordPolicy(violations) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "password_policy",
                "Password does not meet the policy",
                "the password breaks one or more rules; all are listed in violations",
            )
            .with("violations", json!(violations)),
            AccountsError::EmailTaken => Self::new(
                StatusCode::CONFLICT,
                "email_taken",
                "Email already registered",
                "another account uses this email address",
            ),
            AccountsError::NotFound => Self::not_found(),
            AccountsError::Forbidden(why) => Self::refusal(why),
            AccountsError::CurrentPasswordInvalid => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "current_password_invalid",
                "Current password is wrong",
                "current_password does not match",
            ),
            AccountsError::ResetTokenInvalid => Self::new(
                StatusCode::BAD_REQUEST,
                "reset_token_invalid",
                "Invalid or expired reset code",
                "the password reset code is invalid, used or expired; ask for a new one",
            ),
            AccountsError::EmailChangeInvalid => Self::new(
                StatusCode::BAD_REQUEST,
                "email_change_invalid",
                "Invalid or expired e-mail change code",
                "the code is wrong, used, replaced by a newer request or expired; ask for a new one",
            ),
            AccountsError::RateLimited { retry_after_secs } => Self::rate_limited(retry_after_secs),
            AccountsError::ReauthenticationRequired => Self::reauthentication_required(),
            AccountsError::Conflict { code, message } => {
                Self::new(StatusCode::CONFLICT, code, "Conflict", message)
            }
            AccountsError::Stale => Self::new(
                StatusCode::CONFLICT,
                "concurrent_change",
                "Changed meanwhile",
                "the record kept changing while this request was decided on it; nothing was \
                 written: read it again and retry",
            ),
            AccountsError::PreconditionFailed => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "Changed since read",
                "the record changed since the ETag sent in If-Match was read; nothing was \
                 written: read it again and retry",
            ),
            AccountsError::Internal(_) => Self::from_internal(&err),
        }
    }
}

impl From<vault::VaultError> for ApiError {
    fn from(err: vault::VaultError) -> Self {
        use vault::VaultError as V;
        if let Some(code) = err.upload_code() {
            return Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "Credential rejected",
                err.to_string(),
            );
        }
        match err {
            V::TooLarge { what, max } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                format!("{what} may be up to {max} bytes"),
            ),
            V::Duplicate => Self::new(
                StatusCode::CONFLICT,
                "credential_exists",
                "Credential already stored",
                "this certificate is already in the vault",
            ),
            V::LimitReached { max } => Self::new(
                StatusCode::CONFLICT,
                "credential_limit_reached",
                "Credential limit reached",
                format!(
                    "the company stores {max} credentials, the most it may: delete expired or \
                     unused ones first"
                ),
            ),
            V::NotFound => Self::not_found(),
            V::Forbidden(why) => Self::refusal(why),
            V::ReauthenticationRequired => Self::reauthentication_required(),
            V::Tampered => {
                // Integrity failure of stored data: an operator must look at this.
                tracing::error!(
                    alert = "vault_integrity",
                    "an envelope failed authentication"
                );
                Self::internal()
            }
            _ => Self::from_internal(&err),
        }
    }
}

/// 413 for an upload over its bounds.
pub(crate) fn too_large_upload() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Payload too large",
        format!(
            "files may be up to {} bytes each and {} bytes in all",
            crate::UPLOAD_FILE_LIMIT,
            crate::UPLOAD_REQUEST_LIMIT
        ),
    )
}

impl From<audit::AuditError> for ApiError {
    fn from(err: audit::AuditError) -> Self {
        match err {
            audit::AuditError::Forbidden => Self::forbidden("requires the audit.read permission"),
            audit::AuditError::ReauthenticationRequired => Self::reauthentication_required(),
            audit::AuditError::Busy { retry_after_secs } => Self::rate_limited(retry_after_secs),
            audit::AuditError::NotFound => Self::not_found(),
            audit::AuditError::ExportSuperseded => Self::new(
                StatusCode::CONFLICT,
                "export_superseded",
                "Export superseded",
                "the export read nothing for too long and another export took its place: \
                 start a new one",
            ),
            audit::AuditError::OwnAlert => Self::forbidden(
                "this alert was raised by your own activity: another Owner or Admin must \
                 dismiss it (or open an incident from it)",
            ),
            audit::AuditError::AlertNotOpen { status } => Self::new(
                StatusCode::CONFLICT,
                "alert_not_open",
                "Alert not open",
                format!("the alert is {status}: only an open alert can be dismissed"),
            )
            .with("current_status", json!(status)),
            audit::AuditError::Invalid { field, code } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Invalid fields",
                "one or more fields are invalid",
            )
            .with("errors", json!([{ "field": field, "code": code }])),
            audit::AuditError::Internal(_) => Self::from_internal(&err),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
                "wrong email or password",
            ),
            SessionError::RateLimited { retry_after_secs } => Self::rate_limited(retry_after_secs),
            SessionError::Unauthenticated => Self::unauthenticated(),
            SessionError::ReauthenticationFailed => Self::new(
                StatusCode::FORBIDDEN,
                "reauthentication_failed",
                "Re-authentication failed",
                "the password is not correct; the session is still valid",
            ),
            SessionError::MfaRequired => Self::new(
                StatusCode::UNAUTHORIZED,
                "mfa_required",
                "Second factor required",
                "send totp_code (or recovery_code when logging in)",
            ),
            SessionError::MfaInvalid => Self::new(
                StatusCode::UNAUTHORIZED,
                "mfa_invalid",
                "Invalid second factor",
                "the code is wrong, expired or already used",
            ),
            SessionError::Forbidden(why) => Self::refusal(why),
            SessionError::NotFound => Self::not_found(),
            SessionError::Internal(_) => Self::from_internal(&err),
        }
    }
}

impl From<mfa::MfaError> for ApiError {
    fn from(err: mfa::MfaError) -> Self {
        use mfa::MfaError;
        match err {
            MfaError::AlreadyEnabled => Self::new(
                StatusCode::CONFLICT,
                "mfa_already_enabled",
                "MFA already enabled",
                "disable MFA (with step-up) before enrolling another device",
            ),
            MfaError::NotPending => Self::new(
                StatusCode::CONFLICT,
                "mfa_not_pending",
                "No enrolment pending",
                "start with POST /v1/me/mfa/totp",
            ),
            MfaError::NotEnabled => Self::new(
                StatusCode::CONFLICT,
                "mfa_not_enabled",
                "MFA not enabled",
                "enrol with POST /v1/me/mfa/totp first",
            ),
            MfaError::InvalidCode | MfaError::Replayed => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "mfa_invalid",
                "Invalid code",
                "the code is wrong, expired or already used",
            ),
            MfaError::ReauthenticationRequired => Self::reauthentication_required(),
            MfaError::Forbidden(why) => Self::refusal(why),
            MfaError::Internal(_) => Self::from_internal(&err),
        }
    }
}

impl From<incidents::IncidentError> for ApiError {
    fn from(err: incidents::IncidentError) -> Self {
        use incidents::IncidentError;
        match err {
            IncidentError::Validation(errors) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Invalid fields",
                "one or more fields are invalid",
            )
            .with("errors", json!(errors)),
            IncidentError::NotFound => Self::not_found(),
            IncidentError::InvalidTransition { from, to } => Self::new(
                StatusCode::CONFLICT,
                "invalid_transition",
                "Invalid transition",
                format!("an incident that is {from} cannot move to {to}"),
            )
            .with("current_status", json!(from.as_str())),
            IncidentError::Forbidden => Self::forbidden("requires the incidents.manage permission"),
            IncidentError::Internal(_) => Self::from_internal(&err),
        }
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Unsupported media type",
        "send the body as application/json",
    )
}

/// 408 for a body that did not arrive within the server's body timeout ([`crate::deadline`]).
pub(crate) fn request_timeout() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "Request timeout",
        "the request body did not arrive in time; send it again at once",
    )
}

/// 429 for a client that already has as many `what` (requests, password checks) in flight as
/// it may ([`crate::in_flight`]); a second later some of them will have ended.
pub(crate) fn too_many_at_once(what: &str) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
        format!("too many {what} from this address at once; retry after 1 seconds"),
    );
    e.retry_after = Some(1);
    e
}

pub(crate) fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Payload too large",
        format!("the body is larger than {} bytes", crate::JSON_LIMIT),
    )
}

/// A JSON request body that must be an object: `web::Json` alone would also build a struct from
/// an array (`[null, null]` fills the first two fields in order), which no client means and
/// which could clear fields of a PATCH. The body must be sent as JSON (else 415) and fit the
/// route's `PayloadConfig` limit (`routes::body_limit`, else 413); it is then checked for
/// syntax, checked to be an object and read straight into `T` (else 400).
///
/// Straight, not through a `serde_json::Value`: a `Value` copies every string of the body (a
/// password, a TOTP secret) into heap strings that are freed without being wiped. Here the body
/// is checked for syntax without copying its strings, read into `T` (whose secret fields are
/// zeroizing types), and the buffer is wiped. A field given twice is refused, not settled by
/// "the last one wins", so no two readers of one body can disagree on what it said. Not ours to
/// wipe: the chunks actix-web reads from the socket, and serde_json's scratch buffer for a
/// string written with escapes.
#[derive(Debug)]
pub(crate) struct Body<T>(pub T);

impl<T> Body<T> {
    pub(crate) fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Body<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        if !is_json(req) {
            return Box::pin(futures_util::future::ready(Err(
                unsupported_media_type().into()
            )));
        }
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes
                .await
                .map_err(|e| match e.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => too_large(),
                    _ => malformed("the body could not be read"),
                })?;
            let parsed = parse_object(&bytes);
            drop(wipe(bytes));
            parsed.map(Body).map_err(Into::into)
        })
    }
}

/// The request says its body is JSON (`application/json` or a `+json` type), as `web::Json`
/// requires.
fn is_json(req: &HttpRequest) -> bool {
    use actix_web::HttpMessage as _;
    matches!(req.mime_type(), Ok(Some(m))
        if m.subtype().as_str() == "json" || m.suffix().is_some_and(|s| s.as_str() == "json"))
}

/// `body` read into `T`: malformed JSON first (with its position), then anything but an
/// object, then fields of the wrong type, missing or given twice.
fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| malformed(describe_json_error(&e)))?;
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(malformed("the body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| malformed(describe_json_error(&e)))
}

/// Overwrites the body with zeros when this is its only handle (the extractor's own buffer),
/// and hands back the wiped buffer; `None` when another handle shares it.
fn wipe(bytes: web::Bytes) -> Option<bytes::BytesMut> {
    let mut buf = bytes.try_into_mut().ok()?;
    zeroize::Zeroize::zeroize(buf.as_mut());
    Some(buf)
}

pub(crate) fn malformed(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_request",
        "Malformed request",
        detail,
    )
}

fn missing_field(e: &serde_json::Error) -> Option<String> {
    let msg = e.to_string();
    match msg
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
    {
        Some((field, _)) if field.len() <= 64 => Some(format!("missing field `{field}`")),
        _ => None,
    }
}

/// Says where JSON went wrong and what was expected, never echoing input values (serde's
/// "invalid type" messages quote them, and a value may be a password).
fn describe_json_error(e: &serde_json::Error) -> String {
    let place = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        serde_json::error::Category::Data => missing_field(e)
            .unwrap_or_else(|| format!("a field has the wrong type or value at {place}")),
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("malformed JSON at {place}")
        }
        serde_json::error::Category::Io => "the body could not be read".to_owned(),
    }
}

pub(crate) fn path_config() -> web::PathConfig {
    // An id that does not parse cannot exist: the same 404 as an unknown id.
    web::PathConfig::default().error_handler(|_err: PathError, _req| ApiError::not_found().into())
}

pub(crate) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "Malformed request",
            format!(
                "bad query string: {}",
                err.to_string().chars().take(200).collect::<String>()
            ),
        )
        .into()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Login {
        email: String,
        password: secrecy::SecretString,
    }

    fn detail(err: &ApiError) -> String {
        err.detail.clone()
    }

    #[test]
    fn a_busy_audit_verification_is_a_429_with_retry_after() {
        let e = ApiError::from(audit::AuditError::Busy {
            retry_after_secs: 5,
        });
        assert_eq!(e.status_code(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code(), "rate_limited");
        let res = e.error_response();
        assert_eq!(res.headers().get("retry-after").unwrap(), "5");
    }

    /// A restricted session refused by a core service (linked or behind the guard) gets the
    /// problem that tells the client what to do, whichever core refused it; another reason is
    /// `forbidden` with it as the detail.
    #[test]
    fn a_restriction_refused_by_any_core_keeps_its_own_problem() {
        use rbac::Refusal;
        let refused = [
            ApiError::from(SessionError::Forbidden(Refusal::PasswordChangeRequired)),
            ApiError::from(AccountsError::Forbidden(Refusal::MfaEnrolmentRequired)),
            ApiError::from(mfa::MfaError::Forbidden(Refusal::PasswordChangeRequired)),
            ApiError::from(AccountsError::Forbidden(Refusal::Rule(
                "the owner cannot be deactivated",
            ))),
            ApiError::from(vault::VaultError::Forbidden(Refusal::MissingPermission)),
            ApiError::from(vault::VaultError::from(Refusal::ReauthenticationRequired)),
        ];
        let codes: Vec<_> = refused
            .iter()
            .map(|e| (e.status_code(), e.code()))
            .collect();
        assert_eq!(
            codes,
            [
                (StatusCode::FORBIDDEN, "password_change_required"),
                (StatusCode::FORBIDDEN, "mfa_enrolment_required"),
                (StatusCode::FORBIDDEN, "password_change_required"),
                (StatusCode::FORBIDDEN, "forbidden"),
                (StatusCode::FORBIDDEN, "forbidden"),
                (StatusCode::FORBIDDEN, "reauthentication_required"),
            ]
        );
        assert_eq!(detail(&refused[3]), "the owner cannot be deactivated");
        assert_eq!(detail(&refused[4]), "missing permission");
    }

    #[test]
    fn an_object_is_read_into_the_type() {
        let login: Login =
            parse_object(br#" {"email": "ana@example.com", "password": "hunter2"}"#).unwrap();
        assert_eq!(login.email, "ana@example.com");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&login.password),
            "hunter2"
        );
    }

    #[test]
    fn a_field_given_twice_is_refused_without_echoing_either_value() {
        let err = parse_object::<Login>(
            br#"{"email": "ana@example.com", "password": "first-secret", "password": "second-secret"}"#,
        )
        .unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.code, "malformed_request");
        let detail = detail(&err);
        assert!(detail.contains("wrong type or value"), "{detail}");
        assert!(!detail.contains("secret"), "{detail}");
    }

    #[test]
    fn syntax_errors_come_before_the_shape_and_say_where() {
        let err = parse_object::<Login>(b"[1, 2").unwrap_err();
        assert!(
            detail(&err).starts_with("malformed JSON at line 1"),
            "{}",
            detail(&err)
        );
        for body in [&b"[null, null]"[..], b"\"x\"", b"7", b"null", b"  [\"a\"]"] {
            let err = parse_object::<Login>(body).unwrap_err();
            assert_eq!(detail(&err), "the body must be a JSON object");
        }
        let err =
            parse_object::<Login>(br#"{"email": "ana@example.com", "password": 7}"#).unwrap_err();
        assert!(!detail(&err).contains("integer"), "{}", detail(&err));
        let err = parse_object::<Login>(br#"{"email": "ana@example.com"}"#).unwrap_err();
        assert_eq!(detail(&err), "missing field `password`");
    }

    #[test]
    fn the_only_handle_on_a_body_is_wiped_and_a_shared_one_is_left_alone() {
        let body = web::Bytes::from(br#"{"password":"hunter2"}"#.to_vec());
        let wiped = wipe(body).expect("the only handle");
        assert_eq!(wiped.len(), 22);
        assert!(wiped.iter().all(|b| *b == 0));

        let shared = web::Bytes::from(b"secret".to_vec());
        let other = shared.clone();
        assert!(wipe(shared).is_none());
        assert_eq!(&other[..], b"secret");
    }
}
