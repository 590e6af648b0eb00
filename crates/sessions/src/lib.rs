//! Login, capped sessions, login throttling and session validation of IncrementaCRM (SES-1..4,
//! OPS-4, ACC-1's "cannot log in").
//!
//! [`SessionService::login`] checks the password through the accounts core's hasher port, applies
//! the per-account throttle (stored in the database, so it holds across processes) and the per-IP
//! limit (in process), then asks the [`SessionStore`] for one atomic operation: create this session
//! and revoke the oldest beyond the cap. [`SessionService::authenticate`] turns a bearer token into
//! an [`rbac::Actor`] with permissions loaded fresh, and writes to the database at most once a
//! minute per session. Tokens are opaque and random; only their hash is stored ([`TokenIssuer`]).
//! This crate must never depend on a database, a web framework or a cryptographic library.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod error;
mod model;
mod ports;
mod service;
mod throttle;

pub use cache::CacheStats;
pub use error::SessionError;
pub use model::{
    AuthRecord, LoginOutcome, MfaNotice, NewSession, Session, SessionToken, SessionView, TokenHash,
};
pub use ports::{
    ChangeEpoch, LoginReads, LoginSubject, LoginThrottle, NoEpoch, SessionStore, TokenIssuer,
};
pub use service::{Authenticated, SessionConfig, SessionPorts, SessionService, lift_login_lock};
pub use throttle::{ThrottlePolicy, ThrottleState};

#[cfg(any(test, feature = "mocks"))]
pub use ports::{
    MockChangeEpoch, MockLoginReads, MockLoginThrottle, MockSessionStore, MockTokenIssuer,
};
