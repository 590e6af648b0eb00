//! Self-service password reset: a user who forgot the password asks for an e-mail, and the token
//! in it sets a new one.
//!
//! **No secret is kept at rest.** The reset is the id of its `user.password_reset_requested`
//! audit record, stored on the user with its expiry; the e-mail the record causes is queued with
//! a placeholder, and the token (`id` and a MAC of it under a key derived from the master key) is
//! made by the outbox worker as it hands the message over, then dropped. Reading the database
//! (or a backup of it) gives no working token. Asking never says whether the address is
//! registered; a new request within [`RESET_RESEND_INTERVAL`] of the last one sends nothing
//! (a mailbox cannot be flooded), and requests and failed confirmations are limited per client
//! network. The token works once, for [`RESET_TTL`]; using it revokes every session of the user,
//! and a user with MFA still needs their second factor to log in.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use audit::{Action, AuditRecord, Outcome};
use kernel::{ClientNet, Clock, CompanyId, IdGenerator, RateLimiter, RequestContext, Timestamp};
use kernel::{SessionId, UserId};
use uuid::Uuid;

use crate::{
    AccountRepository, AccountsError, Email, Password, PasswordHasher, PasswordPolicy,
    RevocationReason, SessionRevocation, User,
};

/// How long a reset token works: 30 minutes from the request.
pub const RESET_TTL: kernel::Duration = kernel::Duration::minutes(30);

/// A request this soon after the user's last one sends no new e-mail (the open reset stays).
pub const RESET_RESEND_INTERVAL: kernel::Duration = kernel::Duration::minutes(5);

/// A user's open password reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordReset {
    /// Its id: the id of the `user.password_reset_requested` record that asked for it.
    pub id: Uuid,
    /// The user's company.
    pub company_id: CompanyId,
    /// The user.
    pub user_id: UserId,
    /// When its token stops working.
    pub expires_at: Timestamp,
}

/// Storage of open password resets (at most one per user).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordResetRepository: Send + Sync {
    /// Makes `reset` its user's open reset and writes `audit`, in one transaction, unless the
    /// user already has one that expires after `keep_if_expires_after` (asked for too
    /// recently): then nothing is written and the answer is `false`.
    ///
    /// # Errors
    /// MUST return [`AccountsError::NotFound`] when the user is not in `reset.company_id`.
    async fn open_reset(
        &self,
        reset: &PasswordReset,
        keep_if_expires_after: Timestamp,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, AccountsError>;

    /// The user whose open reset is `id`, with that reset (expired or not).
    async fn reset(&self, id: Uuid) -> Result<Option<(User, PasswordReset)>, AccountsError>;

    /// Completes the reset `id`: in one transaction, and only if it is still `user`'s open reset,
    /// unexpired at `revoke.at`, and the user still active, stores `user`'s password hash, its
    /// `password_change_required` and `updated_at` (nothing else: a role or a rename committed
    /// since `user` was read stays), closes the reset, revokes the user's sessions and writes
    /// `audit`. Returns the revoked session ids.
    ///
    /// # Errors
    /// MUST return [`AccountsError::ResetTokenInvalid`] and change nothing when the reset is no
    /// longer open (used, replaced or expired) or the user was deactivated meanwhile.
    async fn complete_reset(
        &self,
        id: Uuid,
        user: &User,
        revoke: SessionRevocation,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, AccountsError>;
}

/// Reads a reset token: the reset's id when the token is well formed and its MAC checks out
/// (compared in constant time), `None` otherwise. The crypto adapter implements it; the outbox
/// worker makes the tokens with the same key.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ResetTokenVerifier: Send + Sync {
    /// The reset a token is for.
    fn reset_id(&self, token: &str) -> Option<Uuid>;
}

/// What `POST /v1/password-resets/confirm` carries.
pub struct ResetConfirmation {
    /// The token from the e-mail.
    pub token: secrecy::SecretString,
    /// The new password.
    pub new_password: Password,
    /// Its confirmation.
    pub new_password_confirmation: Password,
}

impl fmt::Debug for ResetConfirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResetConfirmation").finish_non_exhaustive()
    }
}

/// A reset request past its limit and form check ([`PasswordResetService::accept`]), not yet
/// looked up.
pub struct AcceptedReset {
    service: PasswordResetService,
    email: Email,
    ctx: RequestContext,
}

impl fmt::Debug for AcceptedReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptedReset").finish_non_exhaustive()
    }
}

impl AcceptedReset {
    /// Looks the address up and, for an active user who has not asked within
    /// [`RESET_RESEND_INTERVAL`], opens a reset and queues its e-mail, with its audit record, in
    /// one transaction. Unknown and deactivated addresses get nothing, and the outcome is the
    /// same `Ok(())` for all.
    ///
    /// # Errors
    /// `Internal` (nothing was written).
    pub async fn send(self) -> Result<(), AccountsError> {
        self.service.open_for(&self.email, &self.ctx).await
    }
}

/// Longest token (or e-mail change code) read: a real one is 48 characters.
const MAX_TOKEN_CHARS: usize = 128;

/// The record `token` names, if it is a genuine token of `tokens`; one far longer than a real
/// one is not even decoded.
pub(crate) fn named_by(tokens: &dyn ResetTokenVerifier, token: &str) -> Option<Uuid> {
    (token.len() <= MAX_TOKEN_CHARS)
        .then(|| tokens.reset_id(token))
        .flatten()
}

/// `RateLimited` (with the seconds to wait) when the client network of `ctx` is over `per_ip`.
pub(crate) fn network_limited(
    per_ip: &RateLimiter<ClientNet>,
    ctx: &RequestContext,
    now: Timestamp,
) -> Result<(), AccountsError> {
    if let Some(ip) = ctx.ip
        && let Some(wait) = per_ip.retry_after(&ClientNet::from(ip), now)
    {
        return Err(AccountsError::RateLimited {
            retry_after_secs: u64::try_from(wait.num_seconds())
                .unwrap_or(0)
                .saturating_add(1),
        });
    }
    Ok(())
}

/// Counts an attempt of the client network of `ctx` against `per_ip`.
pub(crate) fn count_network(per_ip: &RateLimiter<ClientNet>, ctx: &RequestContext, now: Timestamp) {
    if let Some(ip) = ctx.ip {
        per_ip.hit(&ClientNet::from(ip), now);
    }
}

/// The ports a [`PasswordResetService`] uses.
#[derive(Clone)]
pub struct ResetPorts {
    /// Users.
    pub users: Arc<dyn AccountRepository>,
    /// Open resets.
    pub resets: Arc<dyn PasswordResetRepository>,
    /// Reads tokens.
    pub tokens: Arc<dyn ResetTokenVerifier>,
    /// Hashes the new password.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Record ids.
    pub ids: Arc<dyn IdGenerator>,
}

impl fmt::Debug for ResetPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResetPorts").finish_non_exhaustive()
    }
}

/// The password-reset use cases. Cheap to clone; share it.
#[derive(Clone)]
pub struct PasswordResetService {
    ports: ResetPorts,
    policy: PasswordPolicy,
    per_ip: Arc<RateLimiter<ClientNet>>,
}

impl fmt::Debug for PasswordResetService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordResetService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl PasswordResetService {
    /// Wires the use cases; `per_ip` limits requests and failed confirmations per client
    /// network (one limiter for both).
    #[must_use]
    pub fn new(
        ports: ResetPorts,
        policy: PasswordPolicy,
        per_ip: Arc<RateLimiter<ClientNet>>,
    ) -> Self {
        Self {
            ports,
            policy,
            per_ip,
        }
    }

    fn limited(&self, ctx: &RequestContext, now: Timestamp) -> Result<(), AccountsError> {
        network_limited(&self.per_ip, ctx, now)
    }

    fn count(&self, ctx: &RequestContext, now: Timestamp) {
        count_network(&self.per_ip, ctx, now);
    }

    /// Asks for a reset e-mail: [`Self::accept`], then [`AcceptedReset::send`].
    ///
    /// # Errors
    /// `RateLimited`, `Validation`, `Internal`.
    pub async fn request(&self, email: &str, ctx: &RequestContext) -> Result<(), AccountsError> {
        self.accept(email, ctx)?.send().await
    }

    /// The part of a request that does not depend on who the address belongs to: the client
    /// network's limit (every request counts) and the address's form (a malformed one is a
    /// validation error, which says nothing about who is registered). What it returns looks the
    /// user up and opens the reset; an adapter may run that after answering, so that the answer
    /// takes the same time for registered and unknown addresses.
    ///
    /// # Errors
    /// `RateLimited`, `Validation`.
    pub fn accept(
        &self,
        email: &str,
        ctx: &RequestContext,
    ) -> Result<AcceptedReset, AccountsError> {
        let now = self.ports.clock.now();
        self.limited(ctx, now)?;
        self.count(ctx, now);
        let email = Email::parse(email).map_err(|e| AccountsError::Validation(vec![e]))?;
        Ok(AcceptedReset {
            service: self.clone(),
            email,
            ctx: ctx.clone(),
        })
    }

    /// Opens a reset for the user with `email` and queues its e-mail, unless there is no such
    /// active user or they asked within [`RESET_RESEND_INTERVAL`].
    async fn open_for(&self, email: &Email, ctx: &RequestContext) -> Result<(), AccountsError> {
        let Some(user) = self.ports.users.user_by_email(email).await? else {
            return Ok(());
        };
        if !user.active {
            return Ok(());
        }
        let now = self.ports.clock.now();
        let id = self.ports.ids.new_id();
        let reset = PasswordReset {
            id,
            company_id: user.company_id,
            user_id: user.id,
            expires_at: now + RESET_TTL,
        };
        // The record's id is the reset's: the e-mail it causes is made for this reset only.
        let record = AuditRecord::new(
            id,
            now,
            Action::USER_PASSWORD_RESET_REQUESTED,
            Outcome::Success,
            ctx,
        )
        .company(user.company_id)
        .target("user", user.id)
        .details(serde_json::json!({ "expires_at": reset.expires_at.to_rfc3339() }));
        let keep_if_expires_after = reset.expires_at - RESET_RESEND_INTERVAL;
        self.ports
            .resets
            .open_reset(&reset, keep_if_expires_after, vec![record])
            .await?;
        Ok(())
    }

    /// Sets a new password with a reset token. The token must be the user's open reset,
    /// unexpired, and the user active; then the password policy applies, every session of the
    /// user is revoked, an operator's demand to change the password lifts, and the change is
    /// recorded (`user.password_changed`, `"by": "password_reset"`; the user is e-mailed) in
    /// the same transaction that closes the reset. A policy failure leaves the reset open.
    /// Failed attempts count against the client network's limit. Returns the user, whose login
    /// lock the caller may lift.
    ///
    /// # Errors
    /// `RateLimited`, `ResetTokenInvalid` (unknown, forged, used, replaced or expired token;
    /// deactivated user), `PasswordPolicy`, `Internal`.
    pub async fn confirm(
        &self,
        confirmation: &ResetConfirmation,
        ctx: &RequestContext,
    ) -> Result<User, AccountsError> {
        use secrecy::ExposeSecret as _;
        let now = self.ports.clock.now();
        self.limited(ctx, now)?;
        let token = confirmation.token.expose_secret();
        let found = match named_by(self.ports.tokens.as_ref(), token) {
            Some(id) => self.ports.resets.reset(id).await?,
            None => None,
        };
        let Some((user, reset)) =
            found.filter(|(user, reset)| user.active && reset.expires_at > now)
        else {
            self.count(ctx, now);
            return Err(AccountsError::ResetTokenInvalid);
        };
        let violations = self.policy.check(
            &confirmation.new_password,
            &confirmation.new_password_confirmation,
            Some(&user.email),
        );
        if !violations.is_empty() {
            return Err(AccountsError::PasswordPolicy(violations));
        }
        let mut updated = user;
        updated.password_hash = self.ports.hasher.hash(&confirmation.new_password).await?;
        updated.updated_at = now;
        updated.password_change_required = false;
        let record = |action: Action| {
            AuditRecord::new(self.ports.ids.new_id(), now, action, Outcome::Success, ctx)
                .company(updated.company_id)
        };
        let audit = vec![
            record(Action::USER_PASSWORD_CHANGED)
                .target("user", updated.id)
                .details(serde_json::json!({
                    "by": "password_reset",
                    "reset": reset.id,
                    "role": updated.role.as_str(),
                })),
        ];
        let revoke = SessionRevocation {
            at: now,
            reason: RevocationReason::PasswordChanged,
            keep: None,
            audit_template: record(Action::SESSION_REVOKED),
            ids: self.ports.ids.clone(),
        };
        match self
            .ports
            .resets
            .complete_reset(reset.id, &updated, revoke, audit)
            .await
        {
            Ok(_) => Ok(updated),
            Err(AccountsError::ResetTokenInvalid) => {
                self.count(ctx, now);
                Err(AccountsError::ResetTokenInvalid)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
