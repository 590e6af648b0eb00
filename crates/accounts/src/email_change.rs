//! A user changes their own e-mail address, which is also their login and the channel of their
//! password resets, so the change is guarded at both ends:
//!
//! - **asking** needs a fresh step-up (the password again, and the second factor when enrolled:
//!   MFA-3), and an address nobody has; the new address is e-mailed a code, and the current one
//!   a warning that names the new address;
//! - **confirming** needs the same user's session and that code, which proves the new mailbox
//!   is theirs. Only then does the address change, in one transaction that also closes an open
//!   password reset (mailed to the old address), revokes the user's other sessions and records
//!   `user.email_changed`; the old address is told.
//!
//! - **undoing** needs the code mailed to the old address with that notice, for
//!   [`EMAIL_REVERT_TTL`]: whoever moved the account knew the password and passed the step-up,
//!   so the undo puts the old address back, makes the password one nobody knows, ends every
//!   session and takes away a second factor enrolled since the move, in one transaction that records `user.email_change_reverted` (a high alert); the
//!   user then sets a password with a reset mailed to their own address again. A second change
//!   inside the window keeps the first one's: moving the account on and on does not take the
//!   undo away from the address it started at. While the window is open, the address stays
//!   reserved: nobody else can sign up with it, be created with it or move to it.
//!
//! As with password resets, no code is stored: the change is the id of its
//! `user.email_change_requested` record, and the outbox worker makes the code from it as the
//! e-mail goes out ([`crate::ResetTokenVerifier`] reads both kinds; a code only ever matches the
//! pending change whose id it carries).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use audit::{Action, AuditRecord, AuditSink, Outcome};
use kernel::{ClientNet, Clock, CompanyId, IdGenerator, RateLimiter, RequestContext, SessionId};
use kernel::{Timestamp, UserId};
use rbac::Actor;
use uuid::Uuid;

use crate::{
    AccountRepository, AccountsError, Email, FieldError, Password, PasswordHasher,
    ResetTokenVerifier, RevocationReason, SessionRevocation, User,
};

/// How long the code sent to the new address works.
pub const EMAIL_CHANGE_TTL: kernel::Duration = kernel::Duration::minutes(60);

/// A user asks for at most one change in this interval (the new address is anybody's mailbox).
pub const EMAIL_CHANGE_RESEND_INTERVAL: kernel::Duration = kernel::Duration::minutes(5);

/// How long the address a user had before a change can undo it, with the code mailed there.
/// The window's start (the move, after which a second factor counts as the mover's) is derived
/// as its end minus this: a new value would move the start of windows already open, so a
/// change of it must first store the start with the window.
pub const EMAIL_REVERT_TTL: kernel::Duration = kernel::Duration::hours(72);

/// A user's pending change of address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChange {
    /// Its id: the id of the `user.email_change_requested` record that asked for it.
    pub id: Uuid,
    /// The user's company.
    pub company_id: CompanyId,
    /// The user.
    pub user_id: UserId,
    /// The address asked for.
    pub to: Email,
    /// When its code stops working.
    pub expires_at: Timestamp,
}

/// After a change of address, the window in which the address the user had before can undo it
/// (at most one per user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRevert {
    /// Its id: the id of the `user.email_changed` record that opened it.
    pub id: Uuid,
    /// The user's company.
    pub company_id: CompanyId,
    /// The user.
    pub user_id: UserId,
    /// The address the undo restores.
    pub to: Email,
    /// When the window closes.
    pub expires_at: Timestamp,
}

/// "Take away a second factor enrolled after `enrolled_after`", done in an undo's transaction:
/// whoever moved the account held it from the move on, and may have put their own
/// authenticator on it (turning off the owner's, with the step-up they had). The store removes
/// the user's TOTP enrolment created after `enrolled_after`, pending or confirmed, and when it
/// was confirmed also the recovery codes and the user's MFA flag, writing `audit` (an
/// `mfa.disabled` record) only then. A factor from before the move is the owner's and stays.
#[derive(Debug, Clone)]
pub struct FactorRemoval {
    /// When the account was moved.
    pub enrolled_after: Timestamp,
    /// The record of a confirmed factor's removal.
    pub audit: AuditRecord,
}

/// Storage of pending address changes (at most one per user) and of undo windows.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EmailChangeRepository: Send + Sync {
    /// Makes `change` its user's pending change and writes `audit`, in one transaction, unless
    /// the user has one that expires after `keep_if_expires_after` (asked for too recently):
    /// then nothing is written and the answer is `false`.
    ///
    /// # Errors
    /// MUST return [`AccountsError::NotFound`] when the user is not in `change.company_id`.
    async fn open_email_change(
        &self,
        change: &EmailChange,
        keep_if_expires_after: Timestamp,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, AccountsError>;

    /// The user's pending change (expired or not).
    async fn email_change(
        &self,
        company: CompanyId,
        user: UserId,
    ) -> Result<Option<EmailChange>, AccountsError>;

    /// Completes the change `id`: in one transaction, and only if it is still `user`'s pending
    /// change and unexpired at `revoke.at`, sets the user's address to `user.email` (and
    /// `updated_at`; nothing else of `user` is stored back), closes the
    /// change and any open password reset, opens `revert` as the user's undo window when given
    /// (`None` leaves the window there alone), revokes the user's sessions but `revoke.keep`
    /// and writes `audit`. Returns the revoked session ids.
    ///
    /// # Errors
    /// MUST return [`AccountsError::EmailChangeInvalid`] when the change is no longer pending
    /// (used, replaced or expired) and [`AccountsError::EmailTaken`] when another user has the
    /// address by now, or another user's undo window open at `revoke.at` would restore it;
    /// either way nothing changes.
    async fn complete_email_change(
        &self,
        id: Uuid,
        user: &User,
        revert: Option<EmailRevert>,
        revoke: SessionRevocation,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, AccountsError>;

    /// Whether another user's undo window, open at `at`, would restore `email` (the address
    /// stays reserved for that user until it closes).
    async fn address_reserved(
        &self,
        email: &Email,
        except: UserId,
        at: Timestamp,
    ) -> Result<bool, AccountsError>;

    /// The user's undo window (closed or not).
    async fn email_revert_of(
        &self,
        company: CompanyId,
        user: UserId,
    ) -> Result<Option<EmailRevert>, AccountsError>;

    /// The user whose undo window is `id`, with that window (closed or not).
    async fn email_revert(&self, id: Uuid) -> Result<Option<(User, EmailRevert)>, AccountsError>;

    /// Undoes through the window `id`: in one transaction, and only if it is still `user`'s
    /// window and open at `revoke.at`, stores `user`'s address, password hash,
    /// `password_change_required` and `updated_at` (nothing else), closes the window, any pending change and any open password
    /// reset, removes a second factor as `factor` says, revokes every session of the user and
    /// writes `audit`. Returns the revoked session ids.
    ///
    /// # Errors
    /// MUST return [`AccountsError::EmailChangeInvalid`] when the window is closed (used,
    /// replaced or expired) and [`AccountsError::EmailTaken`] when another user has the address
    /// by now; either way nothing changes.
    async fn complete_email_revert(
        &self,
        id: Uuid,
        user: &User,
        revoke: SessionRevocation,
        factor: FactorRemoval,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, AccountsError>;
}

/// The ports an [`EmailChangeService`] uses.
#[derive(Clone)]
pub struct EmailChangePorts {
    /// Users.
    pub users: Arc<dyn AccountRepository>,
    /// Pending changes.
    pub changes: Arc<dyn EmailChangeRepository>,
    /// Reads codes.
    pub tokens: Arc<dyn ResetTokenVerifier>,
    /// Hashes the password nobody knows that an undo leaves.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Records denials.
    pub audit: Arc<dyn AuditSink>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Record ids.
    pub ids: Arc<dyn IdGenerator>,
}

impl fmt::Debug for EmailChangePorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailChangePorts").finish_non_exhaustive()
    }
}

/// The e-mail change use cases. Cheap to clone; share it.
#[derive(Clone)]
pub struct EmailChangeService {
    ports: EmailChangePorts,
    per_ip: Arc<RateLimiter<ClientNet>>,
}

impl fmt::Debug for EmailChangeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailChangeService").finish_non_exhaustive()
    }
}

impl EmailChangeService {
    /// Wires the use cases; `per_ip` limits failed undos per client network (the undo is the
    /// one use case without a session; the password resets' limiter may be shared).
    #[must_use]
    pub const fn new(ports: EmailChangePorts, per_ip: Arc<RateLimiter<ClientNet>>) -> Self {
        Self { ports, per_ip }
    }

    /// A successful `action` of `actor` at `now`, with the record id `id`.
    fn record(
        id: Uuid,
        action: Action,
        now: Timestamp,
        actor: &Actor,
        ctx: &RequestContext,
    ) -> AuditRecord {
        AuditRecord::new(id, now, action, Outcome::Success, ctx)
            .company(actor.company_id)
            .by(actor)
    }

    /// Refuses, recording the denial, an actor whose session may only change its password or
    /// enrol MFA, or (when `step_up`) whose step-up window is closed
    /// ([`Actor::self_service_refusal`]).
    async fn refuse(
        &self,
        actor: &Actor,
        attempted: Action,
        step_up: bool,
        now: Timestamp,
        ctx: &RequestContext,
    ) -> Result<(), AccountsError> {
        let Some(why) = actor.self_service_refusal(now, step_up) else {
            return Ok(());
        };
        let denial = AuditRecord::denied(
            self.ports.ids.new_id(),
            now,
            ctx,
            actor,
            attempted.as_str(),
            why.reason(),
        );
        self.ports.audit.record(denial).await?;
        Err(why.into())
    }

    /// The actor's pending change, while its code works (`None` otherwise), so a client can
    /// show that a code is on its way to the new address after a reload. The code itself is
    /// never available.
    ///
    /// # Errors
    /// `Forbidden` (a restricted session, recorded), `Internal`.
    pub async fn pending(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
    ) -> Result<Option<EmailChange>, AccountsError> {
        let now = self.ports.clock.now();
        self.refuse(actor, Action::USER_EMAIL_CHANGE_REQUESTED, false, now, ctx)
            .await?;
        Ok(self
            .ports
            .changes
            .email_change(actor.company_id, actor.user_id)
            .await?
            .filter(|c| c.expires_at > now))
    }

    /// Asks to change the actor's address to `new_email`: needs a fresh step-up; the address
    /// must be well formed, not the current one and nobody's. Opens the change and queues the
    /// code for the new address and a warning for the current one, with the
    /// `user.email_change_requested` record, in one transaction. Returns the pending change.
    ///
    /// # Errors
    /// `Forbidden` (a restricted session, recorded), `ReauthenticationRequired` (recorded),
    /// `Validation` (`new_email`: `invalid` or
    /// `same_as_current`), `EmailTaken`, `RateLimited` (asked within
    /// [`EMAIL_CHANGE_RESEND_INTERVAL`]), `NotFound`, `Internal`.
    pub async fn request(
        &self,
        actor: &Actor,
        new_email: &str,
        ctx: &RequestContext,
    ) -> Result<EmailChange, AccountsError> {
        let now = self.ports.clock.now();
        self.refuse(actor, Action::USER_EMAIL_CHANGE_REQUESTED, true, now, ctx)
            .await?;
        let to = Email::parse(new_email).map_err(|_| {
            AccountsError::Validation(vec![FieldError::new("new_email", "invalid")])
        })?;
        let user = self
            .ports
            .users
            .user(actor.company_id, actor.user_id)
            .await?
            .ok_or(AccountsError::NotFound)?;
        if user.email == to {
            return Err(AccountsError::Validation(vec![FieldError::new(
                "new_email",
                "same_as_current",
            )]));
        }
        // Someone's address, or one a move just vacated and its undo may bring back: taken
        // either way (the store refuses both again at completion).
        if self.ports.users.user_by_email(&to).await?.is_some()
            || self
                .ports
                .changes
                .address_reserved(&to, user.id, now)
                .await?
        {
            return Err(AccountsError::EmailTaken);
        }
        let id = self.ports.ids.new_id();
        let change = EmailChange {
            id,
            company_id: user.company_id,
            user_id: user.id,
            to,
            expires_at: now + EMAIL_CHANGE_TTL,
        };
        // The record's id is the change's: the code mailed for it is made for this change only.
        let record = Self::record(id, Action::USER_EMAIL_CHANGE_REQUESTED, now, actor, ctx)
            .target("user", actor.user_id)
            .details(serde_json::json!({
                "to": change.to.as_str(),
                "expires_at": change.expires_at.to_rfc3339(),
            }));
        let keep_if_expires_after = change.expires_at - EMAIL_CHANGE_RESEND_INTERVAL;
        if self
            .ports
            .changes
            .open_email_change(&change, keep_if_expires_after, vec![record])
            .await?
        {
            return Ok(change);
        }
        // Asked too recently: say when the next request is taken.
        let pending = self
            .ports
            .changes
            .email_change(actor.company_id, actor.user_id)
            .await?;
        let wait = pending.map_or(EMAIL_CHANGE_RESEND_INTERVAL, |p| {
            p.expires_at - keep_if_expires_after
        });
        Err(AccountsError::RateLimited {
            retry_after_secs: u64::try_from(wait.num_seconds())
                .unwrap_or(0)
                .saturating_add(1),
        })
    }

    /// Confirms the actor's pending change with the code sent to the new address: the code
    /// must name the actor's pending change, unexpired. Sets the address, closes any open
    /// password reset, revokes the actor's other sessions and records `user.email_changed`
    /// (`from`, `to`; the old address is told), in one transaction. Returns the user.
    ///
    /// # Errors
    /// `Forbidden` (a restricted session, recorded), `EmailChangeInvalid` (unknown, forged,
    /// another change's, used, replaced or expired code), `EmailTaken` (someone took the
    /// address meanwhile), `NotFound`, `Internal`.
    pub async fn confirm(
        &self,
        actor: &Actor,
        token: &secrecy::SecretString,
        ctx: &RequestContext,
    ) -> Result<User, AccountsError> {
        use secrecy::ExposeSecret as _;
        let now = self.ports.clock.now();
        self.refuse(actor, Action::USER_EMAIL_CHANGED, false, now, ctx)
            .await?;
        let token = token.expose_secret();
        let named = crate::reset::named_by(self.ports.tokens.as_ref(), token);
        let Some(id) = named else {
            return Err(AccountsError::EmailChangeInvalid);
        };
        let change = self
            .ports
            .changes
            .email_change(actor.company_id, actor.user_id)
            .await?
            .filter(|c| c.id == id && c.expires_at > now)
            .ok_or(AccountsError::EmailChangeInvalid)?;
        let mut updated = self
            .ports
            .users
            .user(actor.company_id, actor.user_id)
            .await?
            .ok_or(AccountsError::NotFound)?;
        let from = std::mem::replace(&mut updated.email, change.to.clone());
        updated.updated_at = now;
        // The record's id opens the undo window for the old address, unless a window of an
        // earlier change is still open: that one keeps the address the moves started from.
        let id = self.ports.ids.new_id();
        let open_window = self
            .ports
            .changes
            .email_revert_of(actor.company_id, actor.user_id)
            .await?
            .is_some_and(|w| w.expires_at > now);
        let revert = (!open_window).then(|| EmailRevert {
            id,
            company_id: updated.company_id,
            user_id: updated.id,
            to: from.clone(),
            expires_at: now + EMAIL_REVERT_TTL,
        });
        let mut details = serde_json::json!({
            "from": from.as_str(),
            "to": updated.email.as_str(),
            "change": change.id,
            "role": updated.role.as_str(),
        });
        if let (Some(window), Some(map)) = (&revert, details.as_object_mut()) {
            map.insert(
                "revert_until".to_owned(),
                window.expires_at.to_rfc3339().into(),
            );
        }
        let audit = vec![
            Self::record(id, Action::USER_EMAIL_CHANGED, now, actor, ctx)
                .target("user", actor.user_id)
                .details(details),
        ];
        let revoke = SessionRevocation {
            at: now,
            reason: RevocationReason::EmailChanged,
            keep: Some(actor.session_id),
            audit_template: Self::record(
                self.ports.ids.new_id(),
                Action::SESSION_REVOKED,
                now,
                actor,
                ctx,
            ),
            ids: self.ports.ids.clone(),
        };
        self.ports
            .changes
            .complete_email_change(change.id, &updated, revert, revoke, audit)
            .await?;
        Ok(updated)
    }

    /// Undoes a change of address with the code mailed to the address the user had before
    /// (no session needed: whoever moved the account may have ended the owner's). The window
    /// must be open; then the address goes back, the password becomes one nobody knows (the
    /// mover knew the old one), an operator's demand to change it lifts, every session of the
    /// user ends, any pending change or open reset closes, and a second factor enrolled since
    /// the move is taken away (one from before stays), recorded as
    /// `user.email_change_reverted` (and `mfa.disabled`), in one transaction. The user then
    /// asks for a password reset, which goes to the restored address. Failed attempts count
    /// against the client network's limit. Returns the user as the undo stored it (its MFA
    /// flag as it was read: the store may have turned it off).
    ///
    /// # Errors
    /// `RateLimited`, `EmailChangeInvalid` (unknown, forged, used, replaced or expired code),
    /// `EmailTaken` (someone else has the old address by now: nothing changes), `Internal`.
    pub async fn revert(
        &self,
        token: &secrecy::SecretString,
        ctx: &RequestContext,
    ) -> Result<User, AccountsError> {
        use secrecy::ExposeSecret as _;
        let now = self.ports.clock.now();
        crate::reset::network_limited(&self.per_ip, ctx, now)?;
        let token = token.expose_secret();
        let found = match crate::reset::named_by(self.ports.tokens.as_ref(), token) {
            Some(id) => self.ports.changes.email_revert(id).await?,
            None => None,
        };
        let Some((user, window)) = found.filter(|(_, w)| w.expires_at > now) else {
            crate::reset::count_network(&self.per_ip, ctx, now);
            return Err(AccountsError::EmailChangeInvalid);
        };
        let mut updated = user;
        let from = std::mem::replace(&mut updated.email, window.to.clone());
        // A password nobody knows: 244 random bits from the id port, hashed and dropped.
        let unknown = Password::new(&format!(
            "{}{}",
            self.ports.ids.new_id().simple(),
            self.ports.ids.new_id().simple()
        ));
        updated.password_hash = self.ports.hasher.hash(&unknown).await?;
        updated.password_change_required = false;
        updated.updated_at = now;
        let record = |action: Action| {
            AuditRecord::new(self.ports.ids.new_id(), now, action, Outcome::Success, ctx)
                .company(updated.company_id)
        };
        let audit = vec![
            record(Action::USER_EMAIL_CHANGE_REVERTED)
                .target("user", updated.id)
                .details(serde_json::json!({
                    "from": from.as_str(),
                    "to": updated.email.as_str(),
                    "revert": window.id,
                    "role": updated.role.as_str(),
                })),
        ];
        let revoke = SessionRevocation {
            at: now,
            reason: RevocationReason::EmailChangeReverted,
            keep: None,
            audit_template: record(Action::SESSION_REVOKED),
            ids: self.ports.ids.clone(),
        };
        // The window opened with the move.
        let factor = FactorRemoval {
            enrolled_after: window.expires_at - EMAIL_REVERT_TTL,
            audit: record(Action::MFA_DISABLED)
                .target("user", updated.id)
                .details(serde_json::json!({ "by": "email_revert", "revert": window.id })),
        };
        match self
            .ports
            .changes
            .complete_email_revert(window.id, &updated, revoke, factor, audit)
            .await
        {
            Ok(_) => Ok(updated),
            Err(AccountsError::EmailChangeInvalid) => {
                crate::reset::count_network(&self.per_ip, ctx, now);
                Err(AccountsError::EmailChangeInvalid)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
