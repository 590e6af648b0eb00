//! actix-web adapter of IncrementaCRM: the REST API v1 of `API.md`.
//!
//! It knows HTTP and nothing else: handlers parse requests into core calls and map core errors to
//! RFC 9457 `application/problem+json` ([`ApiError`]), the only place in the workspace that knows
//! status codes. **Architecture invariant:** every route is registered through [`routes::declare`]
//! with its [`Access`] beside it; authentication and the permission check run as a guard on the
//! route before its handler, and a handler that needs the actor can only get it from that guard
//! (fail closed: no guard, no actor, 401).
#![forbid(unsafe_code)]

mod auth;
pub mod cors;
mod deadline;
mod dto;
mod error;
mod handlers;
pub mod in_flight;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod qr;
pub mod routes;

use std::sync::Arc;

use accounts::{AccountService, EmailChangeService, OwnershipService, PasswordResetService};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, middleware, web};
use async_trait::async_trait;
use sessions::SessionService;

pub use auth::{Auth, ClientContext, OPEN_DURING_MFA_ENROLMENT, OPEN_DURING_PASSWORD_CHANGE};
pub use error::ApiError;
pub use routes::{Access, RouteDecl};

/// Largest JSON body accepted (API.md: 64 KiB).
pub const JSON_LIMIT: usize = 64 * 1024;
/// Largest uploaded file (API.md: 64 KiB per file).
pub const UPLOAD_FILE_LIMIT: usize = 64 * 1024;
/// Largest upload request (API.md: 256 KiB per request).
pub const UPLOAD_REQUEST_LIMIT: usize = 256 * 1024;

/// Whether the service can take traffic (`/readyz`).
#[async_trait]
pub trait Readiness: Send + Sync {
    /// `Ok(())` when the database answers and its schema is current; otherwise why not.
    async fn check(&self) -> Result<(), String>;
}

/// What the handlers need.
#[derive(Clone)]
pub struct ApiState {
    /// Account use cases.
    pub accounts: AccountService,
    /// Session use cases.
    pub sessions: SessionService,
    /// Ownership transfers.
    pub ownership: OwnershipService,
    /// Self-service password resets.
    pub password_resets: PasswordResetService,
    /// Self-service changes of e-mail address.
    pub email_changes: EmailChangeService,
    /// The fiscal vault.
    pub vault: vault::VaultService,
    /// Multi-factor authentication.
    pub mfa: mfa::MfaService,
    /// Security incidents.
    pub incidents: incidents::IncidentService,
    /// The audit log.
    pub audit: audit::AuditService,
    /// Readiness probe.
    pub readiness: Arc<dyn Readiness>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: proxy::TrustedProxies,
    /// Request counters (OPS-3).
    pub metrics: Arc<metrics::Metrics>,
    /// Values read from the database when `/metrics` is scraped.
    pub gauges: Arc<dyn metrics::Gauges>,
    /// Bearer token for `/metrics`; `None`: loopback clients only.
    pub metrics_token: Option<secrecy::SecretString>,
    /// Browser origins allowed to call the API (empty: CORS off).
    pub cors: cors::AllowedOrigins,
    /// How long a client may take to send a request's body, from its head on: then 408 and the
    /// connection closes ([`DEFAULT_BODY_TIMEOUT_SECS`] unless configured).
    pub body_timeout: std::time::Duration,
    /// Requests in flight per client network, and their cap ([`in_flight::DEFAULT_IN_FLIGHT_PER_IP`]
    /// unless configured; 0: off): past it, 429 before anything else runs.
    pub in_flight: Arc<in_flight::InFlight>,
    /// Requests in flight per client network that hash a password
    /// ([`routes::hashes_password`]), and their cap ([`in_flight::DEFAULT_HASHING_PER_IP`]
    /// unless configured; 0: off): past it, 429.
    pub hashing: Arc<in_flight::InFlight>,
}

/// [`ApiState::body_timeout`] by default, in seconds: 256 KiB (the largest body, an upload) in
/// 15 s is 17 KiB/s, slower than any client the API serves.
pub const DEFAULT_BODY_TIMEOUT_SECS: u32 = 15;

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// The whole application: routes, body limits, error mapping, security headers, request ids.
pub fn app(
    state: ApiState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        .app_data(error::path_config())
        .app_data(error::query_config())
        .app_data(web::PayloadConfig::new(JSON_LIMIT))
        .configure(|cfg| routes::declare(&mut routes::Registrar::new(cfg)))
        .default_service(web::to(handlers::ops::not_found))
        .wrap(middleware::from_fn(deadline::limit_body_time))
        .wrap(middleware::from_fn(in_flight::limit_in_flight))
        .wrap(
            middleware::DefaultHeaders::new()
                .add(("Cache-Control", "no-store"))
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Referrer-Policy", "no-referrer"))
                .add((
                    "Content-Security-Policy",
                    "default-src 'none'; frame-ancestors 'none'",
                )),
        )
        .wrap(middleware::from_fn(cors::cors))
        .wrap(middleware::from_fn(metrics::track))
        .wrap(middleware::from_fn(auth::request_id))
}
