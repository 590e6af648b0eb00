//! Ports of the sessions core.

use accounts::{Company, Email, SessionRevocation, User};
use async_trait::async_trait;
use audit::AuditRecord;
use kernel::{CompanyId, SessionId, Timestamp, UserId};

use crate::{
    AuthRecord, NewSession, Session, SessionError, SessionToken, ThrottlePolicy, ThrottleState,
    TokenHash,
};

/// Makes and hashes session tokens (256-bit random, SES-3).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenIssuer: Send + Sync {
    /// A fresh token and its stored hash.
    fn issue(&self) -> (SessionToken, TokenHash);
    /// The hash of a presented token.
    fn hash(&self, token: &str) -> TokenHash;
}

/// A counter the storage adapter advances after every committed write that may change a session
/// or its user, so the session cache knows when what it holds may have changed (see
/// [`SessionConfig::cache_ttl`]).
///
/// Implementations MUST advance it *after* the write's commit returns and before the writing
/// call returns, for every write that may change what [`SessionStore::find_by_token`] returns,
/// and when unsure; they MAY leave it for writes that cannot (audit records, the login
/// throttle). Reading it is on every authenticated request's path, so it must be cheap (an
/// atomic load).
///
/// [`SessionConfig::cache_ttl`]: crate::SessionConfig::cache_ttl
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ChangeEpoch: Send + Sync {
    /// The current value, read before a session is loaded.
    fn current(&self) -> u64;

    /// Whether a write that may change `user` or one of its sessions, or a write the adapter
    /// cannot attribute to users, advanced the epoch past `since` (a value of
    /// [`Self::current`]). Adapters that track writes per user answer `false` for a write that
    /// touched only other users, so one user's login does not empty every cached session; it
    /// MUST be `true` whenever in doubt. By default: any write at all.
    fn changed_since(&self, _user: kernel::UserId, since: u64) -> bool {
        self.current() != since
    }
}

/// A [`ChangeEpoch`] that never changes: for a [`SessionConfig`] whose cache is off, or for
/// stores that cannot tell (then keep the cache off).
///
/// [`SessionConfig`]: crate::SessionConfig
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEpoch;

impl ChangeEpoch for NoEpoch {
    fn current(&self) -> u64 {
        0
    }
}

/// Storage of sessions.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The session cap as one atomic operation (SES-1, SES-2): serialize on the user (a row lock
    /// or an immediate transaction), insert `session` with the next per-user sequence number,
    /// revoke the oldest sessions active at `now` (given `idle`) so that at most `cap` remain,
    /// write `login_audit` and one record per revoked session from `revocation`, and commit.
    /// Returns the revoked ids, oldest first. Any number of concurrent calls, from any number of
    /// processes, MUST leave at most `cap` active sessions: the newest ones.
    async fn create_capped(
        &self,
        session: &NewSession,
        cap: u16,
        idle: chrono::Duration,
        login_audit: AuditRecord,
        revocation: SessionRevocation,
    ) -> Result<(Session, Vec<SessionId>), SessionError>;

    /// The session with this token hash and its user, whatever their state.
    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<AuthRecord>, SessionError>;

    /// Records an explicit re-authentication of the session at `at`, with its audit record.
    async fn mark_reauthenticated(
        &self,
        id: SessionId,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<(), SessionError>;

    /// Sets `last_seen_at`.
    async fn touch(&self, id: SessionId, at: Timestamp) -> Result<(), SessionError>;

    /// The user's sessions active at `now`, newest first.
    async fn list_active(
        &self,
        company: CompanyId,
        user: UserId,
        now: Timestamp,
        idle: chrono::Duration,
    ) -> Result<Vec<Session>, SessionError>;

    /// Deletes every session that ended before `ended_before`: revoked before it, expired before
    /// it, or idle since before it (last seen more than `idle` before it). Live sessions and
    /// those that ended later stay. Returns how many were deleted. Idempotent; safe to run from
    /// several processes at once.
    async fn purge_ended(
        &self,
        ended_before: Timestamp,
        idle: chrono::Duration,
    ) -> Result<u64, SessionError>;

    /// Revokes one session of the user if it is still live, writing `revocation`'s audit record
    /// in the same transaction. Returns `false` when there is no such live session of that user
    /// in that company.
    async fn revoke(
        &self,
        company: CompanyId,
        user: UserId,
        id: SessionId,
        revocation: SessionRevocation,
    ) -> Result<bool, SessionError>;
}

/// What a login reads before it checks the password.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoginSubject {
    /// The throttle state of the login's key.
    pub throttle: ThrottleState,
    /// The user with the email, if any.
    pub user: Option<User>,
    /// That user's company, if there is a user and the company exists.
    pub company: Option<Company>,
}

/// A login's reads in one round trip: the throttle state of `key`, the user with `email` and
/// that user's company. Optional for a [`SessionService`](crate::SessionService): without it the
/// service asks [`LoginThrottle`] and the account repository one by one. Implementations MUST
/// answer exactly what those three reads would (same throttle state, same user, same company).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait LoginReads: Send + Sync {
    /// The three reads, together.
    async fn login_reads(&self, key: &str, email: &Email) -> Result<LoginSubject, SessionError>;
}

/// Per-account login throttle state, stored where every server process sees it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// The current state of `key`.
    async fn state(&self, key: &str) -> Result<ThrottleState, SessionError>;
    /// Applies [`ThrottlePolicy::after_failure`] to `key` atomically (concurrent failures all
    /// count) and returns the new state.
    async fn record_failure(
        &self,
        key: &str,
        now: Timestamp,
        policy: ThrottlePolicy,
    ) -> Result<ThrottleState, SessionError>;
    /// Deletes the state of every key last failed before `before` and not locked at `now`: old
    /// failures (often for emails that never existed) must not accumulate. Returns how many.
    async fn purge_stale(&self, before: Timestamp, now: Timestamp) -> Result<u64, SessionError>;
    /// Forgets `key` after a successful login.
    async fn reset(&self, key: &str) -> Result<(), SessionError>;
}
