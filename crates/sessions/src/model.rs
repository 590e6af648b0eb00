use std::fmt;
use std::net::IpAddr;

use accounts::User;
use kernel::{CompanyId, SessionId, Timestamp, UserId};
use secrecy::{ExposeSecret, SecretString};

/// The bearer token handed to the client once, at login. Never stored, never in `Debug`.
pub struct SessionToken(SecretString);

impl SessionToken {
    /// Wraps a freshly generated token.
    #[must_use]
    pub fn new(token: String) -> Self {
        Self(SecretString::from(token))
    }
    /// The token text, for the login response only.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(***)")
    }
}

/// The stored form of a token: a hash (hex SHA-256), so a database leak yields no usable token.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// Wraps a hash.
    #[must_use]
    pub fn new(hash: String) -> Self {
        Self(hash)
    }
    /// The hash text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(…)")
    }
}

/// A session about to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Id.
    pub id: SessionId,
    /// Tenant.
    pub company_id: CompanyId,
    /// Owner.
    pub user_id: UserId,
    /// Hash of its token.
    pub token_hash: TokenHash,
    /// Created.
    pub created_at: Timestamp,
    /// Absolute end of life.
    pub expires_at: Timestamp,
    /// Client address at login.
    pub ip: Option<IpAddr>,
    /// Client user agent at login.
    pub user_agent: Option<String>,
    /// MFA-2: the user must enrol MFA before this session may do anything else.
    pub mfa_enrolment_only: bool,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Id.
    pub id: SessionId,
    /// Tenant.
    pub company_id: CompanyId,
    /// Owner.
    pub user_id: UserId,
    /// Per-user creation order, assigned under the user's lock: the cap revokes the lowest.
    pub seq: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Last request seen (refreshed at most once per touch interval).
    pub last_seen_at: Timestamp,
    /// Absolute end of life.
    pub expires_at: Timestamp,
    /// Client address at login.
    pub ip: Option<IpAddr>,
    /// Client user agent at login.
    pub user_agent: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// Last explicit re-authentication (step-up), if any.
    pub reauthenticated_at: Option<Timestamp>,
    /// MFA-2: opened by an Owner or Admin who must enrol MFA first.
    pub mfa_enrolment_only: bool,
}

impl Session {
    /// Alive at `now`: not revoked, before its absolute expiry, and used within `idle`.
    #[must_use]
    pub fn is_active(&self, now: Timestamp, idle: chrono::Duration) -> bool {
        self.revoked_at.is_none() && now < self.expires_at && now < self.last_seen_at + idle
    }
}

/// A session with its user, as loaded to authenticate a request.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    /// The session.
    pub session: Session,
    /// Its user, with role and active flag as of now.
    pub user: User,
}

/// The result of a successful login.
#[derive(Debug)]
pub struct LoginOutcome {
    /// The bearer token: shown once.
    pub token: SessionToken,
    /// The new session.
    pub session: Session,
    /// Sessions revoked because of the cap (SES-1), oldest first.
    pub revoked_session_ids: Vec<SessionId>,
    /// What the user must do about MFA (MFA-2), if anything.
    pub mfa_notice: Option<MfaNotice>,
    /// The second factor used, if any.
    pub factor: Option<mfa::FactorUsed>,
    /// The password was handed over by the operator: the session may only change it.
    pub password_change_required: bool,
}

/// One line of `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// The session.
    pub session: Session,
    /// Whether it is the one making the request.
    pub current: bool,
}

/// MFA-2 at login: what an Owner or Admin without MFA must do under the company's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaNotice {
    /// In the grace period: enrol before this instant (a reminder; the session is normal).
    EnrolBy(Timestamp),
    /// The grace period is over: this session may only enrol MFA.
    EnrolmentRequired,
}
