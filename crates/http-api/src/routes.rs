//! The route table: every route with the access it requires, declared in one place (RBAC-5).

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, middleware, web};
use rbac::Permission;

use crate::auth::guard;
use crate::handlers::{
    audit, company, docs, fiscal, incidents, me, mfa, ops, ownership, password_resets, sessions,
    signup, users,
};

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-up, login, health). The list is explicit and tested.
    Public,
    /// Any authenticated user, acting on its own data.
    Authenticated,
    /// Any authenticated user, with a re-authentication in the last 5 minutes (MFA-3).
    AuthenticatedStepUp,
    /// An authenticated user holding this permission.
    Permission(Permission),
    /// An authenticated user holding this permission, with a fresh re-authentication.
    PermissionStepUp(Permission),
}

impl Access {
    /// The permission the route requires, if any.
    #[must_use]
    pub const fn permission(self) -> Option<Permission> {
        match self {
            Self::Permission(p) | Self::PermissionStepUp(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the route needs the step-up window open.
    #[must_use]
    pub const fn needs_step_up(self) -> bool {
        matches!(self, Self::AuthenticatedStepUp | Self::PermissionStepUp(_))
    }

    /// How the route table documents it.
    #[must_use]
    pub fn describe(self) -> String {
        let base = match self {
            Self::Public => "public".to_owned(),
            Self::Authenticated | Self::AuthenticatedStepUp => "authenticated".to_owned(),
            Self::Permission(p) | Self::PermissionStepUp(p) => format!("`{p}`"),
        };
        if self.needs_step_up() {
            format!("{base} + step-up")
        } else {
            base
        }
    }
}

/// One registered route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecl {
    /// HTTP method.
    pub method: Method,
    /// Path pattern, as registered.
    pub path: &'static str,
    /// Required access.
    pub access: Access,
}

/// Where [`declare`] puts routes: the actix registrar, or a collector for tests and docs.
pub trait RouteSink {
    /// Adds one route.
    fn add<F, Args>(&mut self, method: Method, path: &'static str, access: Access, handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static;
}

/// Every route of the API, each with its access. The only place routes are registered.
#[rustfmt::skip]
pub fn declare<S: RouteSink>(r: &mut S) {
    use Access::{Authenticated, AuthenticatedStepUp, Permission as P, PermissionStepUp as PStepUp, Public};
    use Permission::{FiscalCredentialsManage as FiscalManage, FiscalCredentialsRead as FiscalRead, FiscalSign};
    use Permission::{AuditRead, CompanyConfigRead, CompanyConfigWrite, IncidentsManage, OwnershipTransfer, RolesAssign, UsersManage, UsersRead};
    r.add(Method::GET,    "/healthz",                                Public,               ops::healthz);
    r.add(Method::GET,    "/readyz",                                 Public,               ops::readyz);
    r.add(Method::GET,    "/metrics",                                Public,               ops::metrics);
    r.add(Method::GET,    "/openapi.json",                           Public,               docs::openapi_json);
    r.add(Method::GET,    "/docs",                                   Public,               docs::page);
    r.add(Method::GET,    "/docs/{asset}",                           Public,               docs::asset);
    r.add(Method::POST,   "/v1/signup",                              Public,               signup::signup);
    r.add(Method::POST,   "/v1/sessions",                            Public,               sessions::login);
    r.add(Method::POST,   "/v1/password-resets",                     Public,               password_resets::request);
    r.add(Method::POST,   "/v1/password-resets/confirm",             Public,               password_resets::confirm);
    r.add(Method::POST,   "/v1/email-changes/revert",                Public,               me::revert_email_change);
    r.add(Method::GET,    "/v1/sessions",                            Authenticated,        sessions::list);
    r.add(Method::DELETE, "/v1/sessions/current",                    Authenticated,        sessions::logout);
    r.add(Method::POST,   "/v1/sessions/current/reauthenticate",     Authenticated,        sessions::reauthenticate);
    r.add(Method::DELETE, "/v1/sessions/{id}",                       Authenticated,        sessions::revoke);
    r.add(Method::GET,    "/v1/me",                                  Authenticated,        me::me);
    r.add(Method::PUT,    "/v1/me/password",                         Authenticated,        me::change_password);
    r.add(Method::GET,    "/v1/me/email",                            Authenticated,        me::email_status);
    r.add(Method::POST,   "/v1/me/email",                            AuthenticatedStepUp,  me::request_email_change);
    r.add(Method::POST,   "/v1/me/email/confirm",                    Authenticated,        me::confirm_email_change);
    r.add(Method::GET,    "/v1/me/mfa",                              Authenticated,        mfa::status);
    r.add(Method::POST,   "/v1/me/mfa/totp",                         Authenticated,        mfa::begin);
    r.add(Method::POST,   "/v1/me/mfa/totp/confirm",                 Authenticated,        mfa::confirm);
    r.add(Method::DELETE, "/v1/me/mfa/totp",                         AuthenticatedStepUp,  mfa::disable);
    r.add(Method::POST,   "/v1/me/mfa/recovery-codes",               AuthenticatedStepUp,  mfa::regenerate_recovery_codes);
    r.add(Method::GET,    "/v1/users",                               P(UsersRead),         users::list);
    r.add(Method::POST,   "/v1/users",                               P(UsersManage),       users::create);
    r.add(Method::GET,    "/v1/users/{id}",                          P(UsersRead),         users::get);
    r.add(Method::PATCH,  "/v1/users/{id}",                          P(UsersManage),       users::update);
    r.add(Method::PUT,    "/v1/users/{id}/role",                     PStepUp(RolesAssign), users::change_role);
    r.add(Method::PUT,    "/v1/users/{id}/permissions",              PStepUp(RolesAssign), users::change_permissions);
    r.add(Method::POST,   "/v1/ownership-transfers",                 PStepUp(OwnershipTransfer), ownership::start);
    r.add(Method::POST,   "/v1/ownership-transfers/{id}/accept",     AuthenticatedStepUp,  ownership::accept);
    r.add(Method::POST,   "/v1/ownership-transfers/{id}/cancel",     Authenticated,        ownership::cancel);
    r.add(Method::GET,    "/v1/company",                             P(CompanyConfigRead), company::get);
    r.add(Method::PATCH,  "/v1/company",                             P(CompanyConfigWrite), company::update);
    r.add(Method::GET,    "/v1/company/changes",                     P(CompanyConfigRead), company::changes);
    r.add(Method::POST,   "/v1/fiscal/credentials",                  PStepUp(FiscalManage), fiscal::upload);
    r.add(Method::GET,    "/v1/fiscal/credentials",                  P(FiscalRead),        fiscal::list);
    r.add(Method::GET,    "/v1/fiscal/credentials/{id}",             P(FiscalRead),        fiscal::get);
    r.add(Method::DELETE, "/v1/fiscal/credentials/{id}",             PStepUp(FiscalManage), fiscal::delete);
    r.add(Method::POST,   "/v1/fiscal/credentials/{id}/signatures",  P(FiscalSign),        fiscal::sign);
    r.add(Method::GET,    "/v1/audit/events",                        P(AuditRead),         audit::events);
    r.add(Method::GET,    "/v1/audit/access-log",                    P(AuditRead),         audit::access_log);
    r.add(Method::GET,    "/v1/audit/export",                        PStepUp(AuditRead),   audit::export);
    r.add(Method::GET,    "/v1/audit/verify",                        P(AuditRead),         audit::verify);
    r.add(Method::GET,    "/v1/audit/alerts",                        P(AuditRead),         audit::alerts);
    r.add(Method::POST,   "/v1/audit/alerts/{id}/dismiss",           P(IncidentsManage),   audit::dismiss_alert);
    r.add(Method::POST,   "/v1/incidents",                           P(IncidentsManage),   incidents::open);
    r.add(Method::GET,    "/v1/incidents",                           P(IncidentsManage),   incidents::list);
    r.add(Method::GET,    "/v1/incidents/{id}",                      P(IncidentsManage),   incidents::get);
    r.add(Method::POST,   "/v1/incidents/{id}/transitions",          P(IncidentsManage),   incidents::transition);
    r.add(Method::POST,   "/v1/incidents/{id}/notes",                P(IncidentsManage),   incidents::note);
    r.add(Method::POST,   "/v1/incidents/{id}/notifications",        P(IncidentsManage),   incidents::notify);
}

/// Registers routes on an actix `ServiceConfig`, each non-public one behind the guard.
pub struct Registrar<'a> {
    cfg: &'a mut web::ServiceConfig,
}

impl std::fmt::Debug for Registrar<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registrar")
    }
}

impl<'a> Registrar<'a> {
    /// Registers into `cfg`.
    pub fn new(cfg: &'a mut web::ServiceConfig) -> Self {
        Self { cfg }
    }
}

impl RouteSink for Registrar<'_> {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, access: Access, handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let limit = body_limit(&method, path);
        // The method is the resource's guard (as `ServiceConfig::route` does), so another
        // method on the same path falls through to the resource that has it. A GET route also
        // answers HEAD (RFC 9110 §9.3.2): the same handler, access check and headers; the
        // HTTP/1 encoder sends no body for a HEAD request.
        let method_guard = || {
            let exact = actix_web::guard::Method(method.clone());
            if method == Method::GET {
                actix_web::guard::Any(exact).or(actix_web::guard::Head())
            } else {
                actix_web::guard::Any(exact)
            }
        };
        let route = web::route().guard(method_guard()).to(handler);
        let route = match access {
            Access::Public => route,
            _ => route.wrap(middleware::from_fn(move |req, next| {
                guard(access, path, req, next)
            })),
        };
        self.cfg.service(
            web::resource(path)
                .guard(method_guard())
                .app_data(web::PayloadConfig::new(limit))
                .route(route),
        );
    }
}

/// The largest body `method path` accepts (413 `payload_too_large` beyond it): as little as
/// the route can need, so a client cannot make the server buffer 64 KiB for a login. The upload
/// route reads multipart with its own limits ([`crate::UPLOAD_REQUEST_LIMIT`]).
#[must_use]
pub fn body_limit(method: &Method, path: &str) -> usize {
    const SMALL: usize = 4 * 1024;
    const MEDIUM: usize = 16 * 1024;
    match (method.as_str(), path) {
        (
            "POST",
            "/v1/sessions"
            | "/v1/password-resets"
            | "/v1/password-resets/confirm"
            | "/v1/me/email"
            | "/v1/me/email/confirm"
            | "/v1/email-changes/revert"
            | "/v1/sessions/current/reauthenticate"
            | "/v1/me/mfa/totp"
            | "/v1/me/mfa/totp/confirm"
            | "/v1/me/mfa/recovery-codes"
            | "/v1/ownership-transfers"
            | "/v1/ownership-transfers/{id}/accept"
            | "/v1/ownership-transfers/{id}/cancel"
            | "/v1/incidents/{id}/transitions",
        )
        | ("PUT", "/v1/me/password" | "/v1/users/{id}/role")
        | ("DELETE", _) => SMALL,
        ("POST", "/v1/signup" | "/v1/users")
        | ("PATCH", "/v1/users/{id}" | "/v1/company")
        | ("PUT", "/v1/users/{id}/permissions") => MEDIUM,
        ("POST", "/v1/fiscal/credentials") => crate::UPLOAD_REQUEST_LIMIT,
        _ => crate::JSON_LIMIT,
    }
}

/// Whether a request to this route computes a password hash (Argon2id, tens of milliseconds of
/// a core): a login, a re-authentication, a sign-up, a new user, a password change, a reset's
/// new password, and an e-mail change's undo (which locks the account with an unknown
/// password). Such requests are also counted against the per-client cap
/// [`crate::ApiState::hashing`]. Every one is a fixed path, so the request's own path is
/// enough.
#[must_use]
pub fn hashes_password(method: &Method, path: &str) -> bool {
    match *method {
        Method::POST => matches!(
            path,
            "/v1/sessions"
                | "/v1/sessions/current/reauthenticate"
                | "/v1/signup"
                | "/v1/users"
                | "/v1/password-resets/confirm"
                | "/v1/email-changes/revert"
        ),
        Method::PUT => path == "/v1/me/password",
        _ => false,
    }
}

/// Collects the table without serving it (tests, generated documentation).
#[derive(Debug, Default)]
pub struct Collector(pub Vec<RouteDecl>);

impl RouteSink for Collector {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, access: Access, _handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.0.push(RouteDecl {
            method,
            path,
            access,
        });
    }
}

/// The route table.
#[must_use]
pub fn table() -> Vec<RouteDecl> {
    let mut c = Collector::default();
    declare(&mut c);
    c.0
}

/// The methods a concrete request path answers, e.g. `["GET", "HEAD", "PATCH"]` for
/// `/v1/users/0b5e...` (every GET route answers HEAD too): a `{param}` segment matches any one
/// non-empty segment.
#[must_use]
pub fn methods_for(path: &str) -> Vec<Method> {
    let matches = |pattern: &str| {
        let mut want = pattern.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => {}
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    };
    // Asked on every unmatched request (scanners send many): the table is built once.
    static TABLE: std::sync::OnceLock<Vec<RouteDecl>> = std::sync::OnceLock::new();
    let mut methods: Vec<Method> = TABLE
        .get_or_init(table)
        .iter()
        .filter(|r| matches(r.path))
        .flat_map(|r| {
            let head = (r.method == Method::GET).then_some(Method::HEAD);
            std::iter::once(r.method.clone()).chain(head)
        })
        .collect();
    methods.dedup();
    methods
}

/// Extra rules a use case applies beyond the route's access, for the matrix's notes and the
/// OpenAPI document.
pub(crate) fn further_rules(method: &Method, path: &str) -> &'static str {
    match path {
        "/v1/users" if method == Method::POST => "no `owner`, no role above one's own",
        "/v1/users/{id}" if method == Method::PATCH => {
            "nobody acts on a higher role; the Owner cannot be deactivated"
        }
        "/v1/users/{id}/role" => {
            "Owner/Admin only; not oneself, not a higher role, no role above one's own, never `owner`"
        }
        "/v1/users/{id}/permissions" => {
            "Owner/Admin only; not oneself, not a higher role, only permissions one holds"
        }
        "/v1/ownership-transfers" => "the Owner only",
        "/v1/ownership-transfers/{id}/accept" => "the receiving user only",
        "/v1/ownership-transfers/{id}/cancel" => "either party only",
        "/v1/sessions/{id}" => "own sessions only",
        "/v1/me/mfa/totp" if method == Method::POST => {
            "the only routes (with `GET /v1/me`, `GET /v1/me/mfa`, `GET /v1/sessions` and logout) open to an Owner/Admin who must enrol (MFA-2)"
        }
        _ => "",
    }
}

/// The authorization matrix as Markdown: every route × role by default permissions
/// (`docs/authorization-matrix.md` is generated from this; a test fails when it is stale).
#[must_use]
pub fn authorization_matrix_markdown() -> String {
    use rbac::Role;
    let mut out = String::from(
        "# Authorization matrix\n\n\
         Generated from the route table (`http_api::routes::declare`) and the role defaults; do\n\
         not edit by hand. Run `UPDATE_DOCS=1 cargo test -p http-api generated_docs` after\n\
         changing routes or permissions. ✓ = allowed with the role's default permissions,\n\
         — = 403 `forbidden`. \"step-up\" routes also answer 403 `reauthentication_required`\n\
         unless the session re-authenticated in the last 5 minutes. The API test\n\
         `authorization_matrix` calls every route with every role and checks this table.\n\n\
         | method | path | access | owner | admin | manager | vendor | further rules |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in table() {
        let mark = |role: Role| match r.access.permission() {
            Some(p) if !role.default_permissions().contains(p) => "—",
            _ => "✓",
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} |\n",
            r.method,
            r.path,
            r.access.describe(),
            mark(Role::Owner),
            mark(Role::Admin),
            mark(Role::Manager),
            mark(Role::Vendor),
            further_rules(&r.method, r.path)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes anyone may call. Adding a public route means adding it here, on purpose.
    const PUBLIC: &[(&str, &str)] = &[
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/{asset}"),
        ("POST", "/v1/signup"),
        ("POST", "/v1/sessions"),
        ("POST", "/v1/password-resets"),
        ("POST", "/v1/password-resets/confirm"),
        ("POST", "/v1/email-changes/revert"),
    ];

    /// Every route named as hashing a password exists, and nothing else (no GET, no route with
    /// an id, no near-miss path) counts as one.
    #[test]
    fn the_password_hashing_routes_are_routes_of_the_table() {
        let table = table();
        let hashing: Vec<(&str, &str)> = table
            .iter()
            .filter(|r| hashes_password(&r.method, r.path))
            .map(|r| (r.method.as_str(), r.path))
            .collect();
        assert_eq!(
            hashing,
            [
                ("POST", "/v1/signup"),
                ("POST", "/v1/sessions"),
                ("POST", "/v1/password-resets/confirm"),
                ("POST", "/v1/email-changes/revert"),
                ("POST", "/v1/sessions/current/reauthenticate"),
                ("PUT", "/v1/me/password"),
                ("POST", "/v1/users"),
            ]
        );
        assert!(!hashes_password(&Method::GET, "/v1/sessions"));
        assert!(!hashes_password(&Method::POST, "/v1/sessions/"));
        assert!(!hashes_password(&Method::POST, "/v1/password-resets"));
    }

    #[test]
    fn only_the_listed_routes_are_public_and_routes_are_unique() {
        let table = table();
        let public: Vec<(&str, &str)> = table
            .iter()
            .filter(|r| r.access == Access::Public)
            .map(|r| (r.method.as_str(), r.path))
            .collect();
        assert_eq!(public, PUBLIC);
        let mut seen = std::collections::HashSet::new();
        for r in &table {
            assert!(
                seen.insert((r.method.clone(), r.path)),
                "{} {} declared twice",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn methods_for_matches_parameters_and_nothing_else() {
        let id = "0b5e4d3c-2f6a-4f7e-9a51-4b1d2c3e4f50";
        assert_eq!(
            methods_for(&format!("/v1/users/{id}")),
            vec![Method::GET, Method::HEAD, Method::PATCH]
        );
        assert_eq!(
            methods_for("/v1/company"),
            vec![Method::GET, Method::HEAD, Method::PATCH]
        );
        assert_eq!(methods_for("/v1/sessions/current"), vec![Method::DELETE]);
        assert!(methods_for("/v1/users/").is_empty());
        assert!(methods_for("/v1/users/x/y").is_empty());
        assert!(methods_for("/v1/nothing").is_empty());
    }

    #[test]
    fn the_routes_open_during_mfa_enrolment_or_a_password_change_exist_and_need_no_permission() {
        let table = table();
        for (method, path) in crate::OPEN_DURING_MFA_ENROLMENT
            .iter()
            .chain(crate::OPEN_DURING_PASSWORD_CHANGE)
        {
            let route = table
                .iter()
                .find(|r| r.method.as_str() == *method && r.path == *path)
                .unwrap_or_else(|| panic!("{method} {path} is not a route"));
            assert_eq!(route.access, Access::Authenticated, "{method} {path}");
        }
    }

    #[test]
    fn user_management_routes_require_their_permissions() {
        let find = |m: Method, p: &str| {
            table()
                .into_iter()
                .find(|r| r.method == m && r.path == p)
                .unwrap()
                .access
        };
        assert_eq!(
            find(Method::POST, "/v1/users"),
            Access::Permission(Permission::UsersManage)
        );
        assert_eq!(
            find(Method::PATCH, "/v1/users/{id}"),
            Access::Permission(Permission::UsersManage)
        );
        assert_eq!(
            find(Method::GET, "/v1/users"),
            Access::Permission(Permission::UsersRead)
        );
    }
}
