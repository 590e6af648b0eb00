//! The OpenAPI 3.1 document of API v1 (OPS-2), generated from the code.
//!
//! Handlers carry `#[utoipa::path]` (summary, body, success answers, parameters); bodies derive
//! `ToSchema`. What every route shares is added here **from the route table**
//! ([`crate::routes::declare`]), so it cannot drift from what is enforced: the bearer security
//! requirement of every non-public route, its access (`x-access`, `x-permission`, `x-step-up`),
//! the further rules of the authorization matrix, and the problem+json answers the guard, the
//! extractors and the infrastructure can give (401, 403, 400, 404, 413, 415, 429, 500, 503).
//! A test fails when a declared route is missing from the document, or the document has one the
//! table does not.

use std::sync::OnceLock;

use actix_web::http::Method;
use serde::Serialize;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::{Modify, OpenApi, PartialSchema as _, ToSchema};

use crate::handlers::{
    audit, company, docs, fiscal, incidents, me, mfa, ops, ownership, password_resets, sessions,
    signup, users,
};
use crate::routes::{Access, RouteDecl};

/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "session_token";

/// RFC 9457 problem details: the body of every error answer (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "https://incrementacrm.com/problems/unauthenticated",
    "title": "Authentication required",
    "status": 401,
    "detail": "send a valid session token as Authorization: Bearer <token>",
    "code": "unauthenticated",
    "request_id": "0b5e4d3c-2f6a-4f7e-9a51-4b1d2c3e4f50"
}))]
pub(crate) struct Problem {
    /// A URI naming the problem type: `https://incrementacrm.com/problems/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short human summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, for a human. Never carries secrets.
    pub detail: String,
    /// A stable machine-readable code (`validation_failed`, `forbidden`, ...): branch on this.
    pub code: String,
    /// The request's id, also in the `X-Request-Id` header and on every log line of the request.
    pub request_id: String,
    /// `validation_failed`: each invalid field with a stable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
    /// `password_policy`: every rule the password breaks (`too_short`, `breached`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<String>>,
    /// `invalid_transition`: the incident's status now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<String>,
}

/// One invalid field of a `validation_failed` problem.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FieldProblem {
    /// The field as the API spells it.
    pub field: String,
    /// A stable snake_case reason.
    pub code: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "IncrementaCRM security core API",
        description = "Accounts, roles and permissions, sessions, multi-factor authentication, the \
                       SAT fiscal credential vault, the tamper-evident audit log and incident \
                       handling of IncrementaCRM. Every error is `application/problem+json` with a \
                       stable `code` and the request's `request_id`. Authenticate with \
                       `POST /v1/sessions`, then send `Authorization: Bearer <token>`. Routes marked \
                       step-up also need `POST /v1/sessions/current/reauthenticate` in the last 5 \
                       minutes.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        ops::healthz, ops::readyz, ops::metrics,
        docs::openapi_json, docs::page, docs::asset,
        signup::signup,
        password_resets::request, password_resets::confirm,
        sessions::login, sessions::list, sessions::logout, sessions::reauthenticate, sessions::revoke,
        me::me, me::change_password, me::email_status, me::request_email_change, me::confirm_email_change,
        me::revert_email_change,
        mfa::status, mfa::begin, mfa::confirm, mfa::disable, mfa::regenerate_recovery_codes,
        users::list, users::create, users::get, users::update, users::change_role,
        users::change_permissions,
        ownership::start, ownership::accept, ownership::cancel,
        company::get, company::update, company::changes,
        fiscal::upload, fiscal::list, fiscal::get, fiscal::delete, fiscal::sign,
        audit::events, audit::access_log, audit::export, audit::verify, audit::alerts,
        audit::dismiss_alert,
        incidents::open, incidents::list, incidents::get, incidents::transition, incidents::note,
        incidents::notify,
    ),
    components(schemas(Problem, FieldProblem)),
    modifiers(&FromRouteTable),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this documentation."),
        (name = "accounts", description = "Sign-up, the caller's account and password."),
        (name = "sessions", description = "Login, logout, session listing and step-up re-authentication."),
        (name = "mfa", description = "TOTP multi-factor authentication and recovery codes."),
        (name = "users", description = "Users of the company, their roles and permissions."),
        (name = "ownership", description = "Transfer of the company's ownership."),
        (name = "company", description = "The company's configuration and its change history."),
        (name = "fiscal", description = "The vault of SAT fiscal credentials (CSD and e.firma) and signing."),
        (name = "audit", description = "The tamper-evident audit log, its verification, export and alerts."),
        (name = "incidents", description = "Security incidents, their timeline and notifications."),
    ),
)]
struct ApiDoc;

/// Adds to each operation what its route-table entry implies.
struct FromRouteTable;

impl Modify for FromRouteTable {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The opaque token of `POST /v1/sessions` (shown once; the server keeps \
                         only its hash).",
                    ))
                    .build(),
            ),
        );
        for route in crate::routes::table() {
            let Some(item) = doc.paths.paths.get_mut(route.path) else {
                continue;
            };
            if let Some(op) = operation_mut(item, &route.method) {
                decorate(op, &route);
            }
        }
    }
}

fn operation_mut<'a>(item: &'a mut PathItem, method: &Method) -> Option<&'a mut Operation> {
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        _ => None,
    }
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("Problem"))))
                .build(),
        )
        .build()
}

fn with_retry_after(response: Response) -> Response {
    let mut response = response;
    response.headers.insert(
        "Retry-After".to_owned(),
        HeaderBuilder::new()
            .schema(u64::schema())
            .description(Some("Seconds to wait before trying again."))
            .build(),
    );
    response
}

/// Adds an answer; when the status is already documented, its description gains this one's.
fn add_response(op: &mut Operation, status: &str, response: Response) {
    match op.responses.responses.get_mut(status) {
        Some(RefOr::T(existing)) => {
            if !existing.description.contains(&response.description) {
                existing.description.push(' ');
                existing.description.push_str(&response.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            op.responses
                .responses
                .insert(status.to_owned(), RefOr::T(response));
        }
    }
}

/// The problems a route's use case can answer beyond those every route of its kind shares.
fn route_problems(method: &Method, path: &str) -> &'static [(&'static str, &'static str)] {
    const VALIDATION: (&str, &str) = (
        "422",
        "`validation_failed`: fields are invalid; `errors` lists each with a reason.",
    );
    const POLICY: (&str, &str) = (
        "422",
        "`password_policy`: the password breaks the policy; `violations` lists every rule.",
    );
    const EMAIL_TAKEN: (&str, &str) = ("409", "`email_taken`: another account uses this email.");
    const MALFORMED_QUERY: (&str, &str) = (
        "400",
        "`malformed_request`: a query parameter is not valid.",
    );
    const CHANGED_MEANWHILE: (&str, &str) = (
        "409",
        "`concurrent_change`: the record kept changing while the request was decided on it (it \
         is decided again on a fresh read a few times first); nothing was written: read it \
         again and retry.",
    );
    const STALE_READ: (&str, &str) = (
        "412",
        "`precondition_failed`: the record changed since the read whose `ETag` `If-Match` \
         names; nothing changed.",
    );
    const BAD_IF_MATCH: (&str, &str) = (
        "400",
        "`malformed_request` also for an `If-Match` that is not `*` or quoted entity tags.",
    );
    const READING: (&str, &str) = (
        "429",
        "`rate_limited` also while another request verifies (or exports) the company's log: one \
         of each at a time.",
    );
    match (method.as_str(), path) {
        ("POST", "/v1/signup") | ("POST", "/v1/users") => &[VALIDATION, POLICY, EMAIL_TAKEN],
        ("POST", "/v1/password-resets") => &[(
            "422",
            "`validation_failed`: `email` is not an e-mail address (nothing says whether an \
             address is registered).",
        )],
        ("POST", "/v1/password-resets/confirm") => &[
            (
                "400",
                "`reset_token_invalid`: the code is wrong, used, replaced by a newer request or \
                 expired, or the user was deactivated; ask for a new one.",
            ),
            POLICY,
        ],
        ("POST", "/v1/sessions") => &[(
            "401",
            "`invalid_credentials`: wrong email or password; `mfa_required`: send `totp_code` or \
             `recovery_code`; `mfa_invalid`: the code is wrong, expired or used.",
        )],
        ("POST", "/v1/sessions/current/reauthenticate") => &[
            (
                "403",
                "`reauthentication_failed`: the password (or code) is not correct; the session \
                 stays valid.",
            ),
            (
                "401",
                "`mfa_required` / `mfa_invalid`: the TOTP code is missing or wrong.",
            ),
        ],
        ("PUT", "/v1/me/password") => &[
            (
                "422",
                "`current_password_invalid`: `current_password` does not match.",
            ),
            (
                "422",
                "`validation_failed` with `new_password` `same_as_current`: the new password is \
                 the current one (nothing changes, no session is revoked).",
            ),
            POLICY,
            VALIDATION,
            CHANGED_MEANWHILE,
        ],
        ("POST", "/v1/me/email") => &[
            (
                "422",
                "`validation_failed` with `new_email` `invalid` (not an address) or \
                 `same_as_current`.",
            ),
            EMAIL_TAKEN,
            (
                "429",
                "`rate_limited`: a change was asked for in the last 5 minutes.",
            ),
        ],
        ("POST", "/v1/me/email/confirm") => &[
            (
                "400",
                "`email_change_invalid`: the code is wrong, used, replaced by a newer request or \
                 expired, or not the caller's; ask for a new one.",
            ),
            (
                "409",
                "`email_taken`: another account took the address meanwhile.",
            ),
        ],
        ("POST", "/v1/email-changes/revert") => &[
            (
                "400",
                "`email_change_invalid`: the code is wrong, used or expired, or a later undo or \
                 change of the same account replaced it.",
            ),
            (
                "409",
                "`email_taken`: another account has the old address by now; nothing changed \
                 (the company's administrator or the platform's operator takes it from here).",
            ),
            (
                "429",
                "`rate_limited`: too many wrong codes from this client address.",
            ),
        ],
        ("POST", "/v1/me/mfa/totp") => &[(
            "409",
            "`mfa_already_enabled`: turn MFA off (with step-up) first.",
        )],
        ("POST", "/v1/me/mfa/totp/confirm") => &[
            (
                "409",
                "`mfa_not_pending`: start with `POST /v1/me/mfa/totp`.",
            ),
            (
                "422",
                "`mfa_invalid`: the code is wrong, expired or already used.",
            ),
        ],
        ("DELETE", "/v1/me/mfa/totp") | ("POST", "/v1/me/mfa/recovery-codes") => {
            &[("409", "`mfa_not_enabled`: enrol first.")]
        }
        ("PATCH", "/v1/users/{id}")
        | ("PUT", "/v1/users/{id}/role" | "/v1/users/{id}/permissions") => {
            &[VALIDATION, CHANGED_MEANWHILE, STALE_READ, BAD_IF_MATCH]
        }
        ("PATCH", "/v1/company") => &[VALIDATION, STALE_READ, BAD_IF_MATCH],
        (
            "POST",
            "/v1/incidents" | "/v1/incidents/{id}/notes" | "/v1/incidents/{id}/notifications",
        ) => &[VALIDATION],
        ("POST", "/v1/ownership-transfers") => &[
            VALIDATION,
            ("409", "`user_inactive`: the receiving user is deactivated."),
            (
                "404",
                "`not_found`: `to_user_id` is not a user of this company.",
            ),
        ],
        ("POST", "/v1/ownership-transfers/{id}/accept" | "/v1/ownership-transfers/{id}/cancel") => {
            &[(
                "409",
                "`transfer_not_pending`: already completed or cancelled; `transfer_expired`: not \
             accepted in time; `user_inactive`.",
            )]
        }
        ("POST", "/v1/incidents/{id}/transitions") => &[
            VALIDATION,
            (
                "409",
                "`invalid_transition`: not allowed from the current status (`current_status`).",
            ),
        ],
        ("GET", "/v1/audit/verify") => &[READING],
        ("POST", "/v1/audit/alerts/{id}/dismiss") => &[
            (
                "409",
                "`alert_not_open`: dismissed already, or an incident was opened from it \
                 (`current_status`).",
            ),
            (
                "422",
                "`validation_failed`: `reason` is over 500 characters or holds control \
                 characters.",
            ),
        ],
        ("GET", "/v1/audit/export") => &[MALFORMED_QUERY, READING],
        ("POST", "/v1/fiscal/credentials") => &[
            (
                "422",
                "The credential is refused: `certificate_invalid`, `private_key_invalid`, \
                 `private_key_password_invalid`, `certificate_key_mismatch`, \
                 `certificate_expired`, `certificate_not_yet_valid`, `rfc_mismatch` or \
                 `certificate_untrusted` (not signed by a CA of \
                 `INCREMENTA_VAULT_TRUSTED_ISSUERS`, when set, while that CA was valid).",
            ),
            (
                "409",
                "`credential_exists`: this certificate is already in the vault; \
                 `credential_limit_reached`: the company stores 100 credentials already.",
            ),
        ],
        ("POST", "/v1/fiscal/credentials/{id}/signatures") => &[(
            "422",
            "`certificate_expired` / `certificate_not_yet_valid`: the certificate is not in force.",
        )],
        (
            "GET",
            "/v1/audit/events"
            | "/v1/audit/access-log"
            | "/v1/audit/alerts"
            | "/v1/company/changes"
            | "/v1/incidents"
            | "/v1/users",
        ) => &[MALFORMED_QUERY],
        _ => &[],
    }
}

fn decorate(op: &mut Operation, route: &RouteDecl) {
    let access = route.access;
    let mut ext = ExtensionsBuilder::new().add("x-access", access.describe());
    if let Some(p) = access.permission() {
        ext = ext.add("x-permission", p.as_str());
    }
    if access.needs_step_up() {
        ext = ext.add("x-step-up", true);
    }
    let ext = ext.build();
    match &mut op.extensions {
        Some(existing) => existing.merge(ext),
        None => op.extensions = Some(ext),
    }

    let mut description = op.description.take().unwrap_or_default();
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&format!("**Access:** {}.", access.describe()));
    let rules = crate::routes::further_rules(&route.method, route.path);
    if !rules.is_empty() {
        description.push_str(&format!(" {rules}."));
    }
    op.description = Some(description);

    if access == Access::Public {
        op.security = None;
    } else {
        op.security = Some(vec![SecurityRequirement::new(
            BEARER,
            std::iter::empty::<String>(),
        )]);
        add_response(
            op,
            "401",
            problem(
                "`unauthenticated`: no token, or one unknown, revoked, expired or idle too long.",
            ),
        );
        add_response(
            op,
            "403",
            problem(if access.needs_step_up() {
                "`forbidden`: the caller lacks the permission or a further rule refuses; \
                 `reauthentication_required`: no re-authentication in the last 5 minutes; \
                 `mfa_enrolment_required`: an Owner or Admin must enrol in MFA first; \
                 `password_change_required`: the operator reset the caller's password, \
                 which must be changed first."
            } else {
                "`forbidden`: the caller lacks the permission or a further rule refuses; \
                 `mfa_enrolment_required`: an Owner or Admin must enrol in MFA first; \
                 `password_change_required`: the operator reset the caller's password, \
                 which must be changed first."
            }),
        );
    }
    let takes_body = matches!(route.method, Method::POST | Method::PUT | Method::PATCH);
    if takes_body {
        add_response(
            op,
            "400",
            problem("`malformed_request`: the body is not the JSON this route reads."),
        );
        add_response(
            op,
            "408",
            problem(
                "`request_timeout`: the body did not arrive within the server's body timeout \
                 (15 s by default); the connection is closed.",
            ),
        );
        add_response(
            op,
            "413",
            problem("`payload_too_large`: the body is over this route's limit."),
        );
        add_response(
            op,
            "415",
            problem("`unsupported_media_type`: send `Content-Type: application/json`."),
        );
    }
    if route.path.contains('{') {
        add_response(
            op,
            "404",
            problem(
                "`not_found`: no such resource in the caller's company (an id that does not \
                 parse cannot exist either).",
            ),
        );
    }
    // Every route: the client may have too many requests in flight (`crate::in_flight`).
    add_response(
        op,
        "429",
        with_retry_after(problem(
            if takes_body || route.method == Method::DELETE || access != Access::Public {
                "`rate_limited`: too many requests from this client at once (64 by default; \
                 4 that check or set a password), too many attempts from this client or for \
                 this account, or too many unknown tokens from this client."
            } else {
                "`rate_limited`: too many requests from this client at once (64 by default)."
            },
        )),
    );
    for (status, description) in route_problems(&route.method, route.path) {
        let response = problem(description);
        add_response(op, status, response);
    }
    add_response(
        op,
        "500",
        problem("`internal`: an unexpected failure, logged with the request id."),
    );
    add_response(
        op,
        "503",
        with_retry_after(problem(
            "`unavailable`: the database cannot be reached; retry after the given seconds.",
        )),
    );
}

/// The document, built once.
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as JSON, serialized once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| match serde_json::to_string(document()) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document could not be serialized");
            String::from("{}")
        }
    })
}

/// Schemas of string fields that take one of a fixed set of values, named through the core's
/// own types (`as_str` of each variant, or the type's `ALL` list) so a renamed value changes the
/// document too. Alert severities and timeline entry kinds have no such type in the core.
pub(crate) mod schemas {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::{Array, KnownFormat, Object};

    fn one_of<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.into_iter().map(str::to_owned)))
            .build()
    }

    /// `owner`, `admin`, `manager`, `vendor`.
    pub(crate) fn role() -> Object {
        one_of(rbac::Role::ALL.iter().map(|r| r.as_str()))
    }

    /// A list of permission names.
    pub(crate) fn permission_list() -> Array {
        ArrayBuilder::new()
            .items(one_of(rbac::Permission::ALL.iter().map(|p| p.as_str())))
            .build()
    }

    /// A list of ids.
    pub(crate) fn uuid_list() -> Array {
        ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            )
            .build()
    }

    /// The state of an ownership transfer.
    pub(crate) fn transfer_status() -> Object {
        use accounts::TransferStatus as S;
        one_of([S::Pending, S::Completed, S::Cancelled, S::Expired].map(S::as_str))
    }

    /// `csd` or `fiel`.
    pub(crate) fn credential_kind() -> Object {
        use vault::CredentialKind as K;
        one_of([K::Csd, K::Fiel].map(K::as_str))
    }

    /// `success`, `failure` or `denied`.
    pub(crate) fn outcome() -> Object {
        use audit::Outcome as O;
        one_of([O::Success, O::Failure, O::Denied].map(O::as_str))
    }

    /// `low`, `medium`, `high`.
    pub(crate) fn alert_severity() -> Object {
        one_of(["low", "medium", "high"])
    }

    /// Where an alert is in triage.
    pub(crate) fn alert_status() -> Object {
        one_of([
            audit::Alert::OPEN,
            audit::Alert::INCIDENT,
            audit::Alert::DISMISSED,
        ])
    }

    /// What happened, for an incident.
    pub(crate) fn incident_kind() -> Object {
        one_of(incidents::IncidentKind::ALL.iter().map(|k| k.as_str()))
    }

    /// How bad an incident is.
    pub(crate) fn incident_severity() -> Object {
        one_of(incidents::Severity::ALL.iter().map(|k| k.as_str()))
    }

    /// Where an incident stands.
    pub(crate) fn incident_status() -> Object {
        one_of(incidents::Status::ALL.iter().map(|k| k.as_str()))
    }

    /// A timeline entry's kind.
    pub(crate) fn entry_kind() -> Object {
        one_of(["created", "transition", "note", "notified"])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(document()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_declared_route_is_documented_and_nothing_else_is() {
        let declared: BTreeSet<(String, String)> = crate::routes::table()
            .into_iter()
            .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
            .collect();
        let documented = documented();
        let missing: Vec<_> = declared.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&declared).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the document: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "documented routes that are not declared: {extra:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_unique_operation_ids() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                assert!(ids.insert(id.to_owned()), "operationId {id} used twice");
                assert!(
                    op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                    "{method} {path} has no summary"
                );
                assert!(
                    op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                    "{method} {path} has no tag"
                );
                let statuses: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
                assert!(
                    statuses.iter().any(|s| s.starts_with('2')),
                    "{method} {path} documents no success answer"
                );
                assert!(
                    statuses.iter().any(|s| *s == "503"),
                    "{method} {path} does not document 503"
                );
            }
        }
    }

    #[test]
    fn security_and_access_follow_the_route_table() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        for route in crate::routes::table() {
            let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
            let name = format!("{} {}", route.method, route.path);
            assert_eq!(op["x-access"], route.access.describe(), "{name}");
            if route.access == Access::Public {
                assert!(op.get("security").is_none(), "{name} is public");
                let unauthenticated = op["responses"]["401"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("`unauthenticated`"));
                assert!(!unauthenticated, "{name} is public");
            } else {
                assert_eq!(op["security"][0][BEARER], serde_json::json!([]), "{name}");
                assert!(op["responses"]["401"].is_object(), "{name}");
                assert!(op["responses"]["403"].is_object(), "{name}");
            }
            assert_eq!(
                op["x-permission"].as_str(),
                route.access.permission().map(rbac::Permission::as_str),
                "{name}"
            );
            assert_eq!(
                op["x-step-up"].as_bool().unwrap_or(false),
                route.access.needs_step_up(),
                "{name}"
            );
        }
    }

    #[test]
    fn audit_routes_document_exactly_the_parameters_they_read() {
        let doc = serde_json::to_value(document()).unwrap();
        let names = |path: &str| -> BTreeSet<String> {
            doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let filters = ["actor_id", "action", "outcome", "from", "to"];
        let with = |extra: &[&str]| -> BTreeSet<String> {
            filters
                .iter()
                .chain(extra)
                .map(|s| (*s).to_owned())
                .collect()
        };
        assert_eq!(names("/v1/audit/events"), with(&["cursor", "limit"]));
        assert_eq!(names("/v1/audit/access-log"), with(&["cursor", "limit"]));
        // The export streams everything: no paging parameters it would ignore.
        assert_eq!(names("/v1/audit/export"), with(&["format"]));
    }

    #[test]
    fn every_schema_reference_resolves() {
        let text = json();
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected reference {r}"));
            assert!(schemas.contains_key(name), "{r} does not resolve");
        }
    }

    fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap().to_owned());
                    } else {
                        collect_refs(v, out);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn secrets_in_requests_are_marked_as_passwords() {
        let doc = serde_json::to_value(document()).unwrap();
        let login = &doc["components"]["schemas"]["LoginBody"]["properties"];
        assert_eq!(login["password"]["format"], "password");
        assert_eq!(login["totp_code"]["format"], "password");
    }
}
