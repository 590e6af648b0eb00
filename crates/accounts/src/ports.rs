//! Ports of the accounts core: what it needs from storage and from a password hasher.

use async_trait::async_trait;
use audit::AuditRecord;
use std::sync::Arc;

use kernel::{CompanyId, IdGenerator, SessionId, Timestamp, UserId};
use uuid::Uuid;

use crate::{AccountsError, Company, ConfigChange, Email, Password, PasswordHash, User};

/// Why a session ended before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// Its user logged out.
    Logout,
    /// Its user revoked it from the session list.
    UserRevoked,
    /// A newer login went over the session cap (SES-1).
    SessionLimit,
    /// Its user was deactivated (ACC-1).
    UserDeactivated,
    /// Its user changed the password (PWD-6).
    PasswordChanged,
    /// Its user changed their e-mail address (the other sessions end).
    EmailChanged,
    /// The address the user had before a change undid it (every session ends).
    EmailChangeReverted,
}

impl RevocationReason {
    /// The stable name stored with the session and in audit details.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::UserRevoked => "user_revoked",
            Self::SessionLimit => "session_limit",
            Self::UserDeactivated => "user_deactivated",
            Self::PasswordChanged => "password_changed",
            Self::EmailChanged => "email_changed",
            Self::EmailChangeReverted => "email_change_reverted",
        }
    }
}

/// "Revoke every live session of this user (but `keep`)", done in the same transaction as the
/// change that causes it; each revoked session gets a `session.revoked` audit record made from
/// `audit_template`, with an id from `ids` (how many sessions go is known only inside the
/// store's transaction, so the store asks the caller's id port for each).
#[derive(Clone)]
pub struct SessionRevocation {
    /// When.
    pub at: Timestamp,
    /// Why.
    pub reason: RevocationReason,
    /// A session to leave alone (the one changing its own password).
    pub keep: Option<SessionId>,
    /// Actor, company, context and outcome for the per-session audit records.
    pub audit_template: AuditRecord,
    /// Where the per-session audit records' ids come from: the caller's id port.
    pub ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for SessionRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRevocation")
            .field("at", &self.at)
            .field("reason", &self.reason)
            .field("keep", &self.keep)
            .field("audit_template", &self.audit_template)
            .finish_non_exhaustive()
    }
}

impl SessionRevocation {
    /// The audit record for one revoked session, with a fresh id from [`Self::ids`].
    #[must_use]
    pub fn record_for(&self, session: SessionId) -> AuditRecord {
        let mut record = self
            .audit_template
            .clone()
            .target("session", session)
            .details(serde_json::json!({ "reason": self.reason.as_str() }));
        record.id = self.ids.new_id();
        record
    }
}

/// Storage of companies and users.
///
/// Every method that reads or writes company data takes the company id; a user of another company
/// is reported exactly like a missing one. Methods that change state take the audit records that
/// describe the change and MUST write them in the same transaction: both happen or neither does.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AccountRepository: Send + Sync {
    /// Creates a company and its Owner atomically (ACC-3).
    ///
    /// # Errors
    /// MUST return [`AccountsError::EmailTaken`] when the owner's email is already registered
    /// (case-insensitively) or reserved by another user's open undo window at the owner's
    /// `created_at` ([`crate::EmailRevert`]), and then store nothing.
    async fn create_company_with_owner(
        &self,
        company: &Company,
        owner: &User,
        audit: Vec<AuditRecord>,
    ) -> Result<(), AccountsError>;

    /// Inserts a user.
    ///
    /// # Errors
    /// MUST return [`AccountsError::EmailTaken`] for a registered email, or one reserved by
    /// another user's open undo window at the user's `created_at`.
    async fn insert_user(&self, user: &User, audit: Vec<AuditRecord>) -> Result<(), AccountsError>;

    /// A company by id.
    async fn company(&self, id: CompanyId) -> Result<Option<Company>, AccountsError>;

    /// Changes the configuration of `company` as `decide` says, deciding on the company as
    /// stored now: the store reads it inside its write transaction, locked against every other
    /// writer until the change is stored, hands it to `decide`, and stores what comes back (the
    /// new configuration, one record per changed field, the audit records) in that transaction
    /// (AUD-3). So concurrent changes take turns and each record's old value is the value it
    /// replaced. Returns the configuration as stored afterwards (unchanged when `decide` found
    /// nothing to change).
    ///
    /// # Errors
    /// MUST return [`AccountsError::NotFound`] for an unknown company, and `decide`'s error
    /// (writing nothing) when it refuses.
    async fn update_company(
        &self,
        company: CompanyId,
        decide: DecideCompanyUpdate,
    ) -> Result<Company, AccountsError>;

    /// Up to `limit` configuration changes of `company` older than the change `before`, newest
    /// first.
    async fn company_changes(
        &self,
        company: CompanyId,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<ConfigChange>, AccountsError>;

    /// A user by (normalized) email, in any company: the login lookup.
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, AccountsError>;

    /// A user of `company`.
    async fn user(&self, company: CompanyId, id: UserId) -> Result<Option<User>, AccountsError>;

    /// The users of `company`, oldest first (ties: lowest id first): only those after `after`
    /// in that order, at most `limit`.
    async fn users(
        &self,
        company: CompanyId,
        after: Option<kernel::TimeCursor>,
        limit: u64,
    ) -> Result<Vec<User>, AccountsError>;

    /// Replaces the password hash `old` of `user` with `user.password_hash` (the same password
    /// hashed again with today's parameters, at a login) and `updated_at`, writing `audit`, in
    /// one transaction, and only while `old` is still the stored hash: a password changed or
    /// reset since the login read it stays, and nothing else of the user is stored back.
    /// `false` (nothing written) when the hash had changed.
    ///
    /// # Errors
    /// `Internal`.
    async fn rehash_password(
        &self,
        user: &User,
        old: &PasswordHash,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, AccountsError>;

    /// Stores `fields` of `user` and its `updated_at` (nothing else: what another write
    /// committed to the other columns since `before` was read stays), and, when asked, revokes
    /// its sessions; returns the revoked session ids. Only if the stored user still holds what
    /// the use case decided on, read as `before` ([`UserField::unchanged_since`]): a role
    /// check made on a user who became the Owner since, or grants computed from grants another
    /// write replaced, must not land.
    ///
    /// # Errors
    /// MUST return [`AccountsError::NotFound`] when no such user exists in `user.company_id`,
    /// and [`AccountsError::Stale`] (writing nothing) when the stored user no longer holds
    /// `before`'s values.
    async fn update_user(
        &self,
        before: &User,
        user: &User,
        fields: &[UserField],
        revoke: Option<SessionRevocation>,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, AccountsError>;
}

/// A configuration change decided on the company as stored (see
/// [`AccountRepository::update_company`]).
#[derive(Debug)]
pub struct CompanyUpdate {
    /// The new configuration.
    pub company: Company,
    /// One record per changed field, with its old and new value.
    pub changes: Vec<ConfigChange>,
    /// The audit records of the change.
    pub audit: Vec<AuditRecord>,
}

/// Decides a configuration change on the company as stored now: `Ok(None)` when there is
/// nothing to change. Runs inside the store's write transaction, so it must not wait on
/// anything.
pub type DecideCompanyUpdate =
    Box<dyn FnOnce(&Company) -> Result<Option<CompanyUpdate>, AccountsError> + Send>;

/// A part of a user that a use case changes: [`AccountRepository::update_user`] stores only
/// these, so two writes to one user that read it at the same time do not undo each other (a
/// password change racing a deactivation leaves the user deactivated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserField {
    /// The name.
    Name,
    /// The role.
    Role,
    /// Active or deactivated.
    Active,
    /// The per-user grants and revokes.
    Permissions,
    /// The password hash and the operator's demand to change it.
    Password,
}

impl UserField {
    /// Every field an administrator changes: what [`crate::User::tag`] covers, and what a
    /// change made with `If-Match` checks is still as read.
    pub const ADMINISTERED: [Self; 4] = [Self::Name, Self::Role, Self::Active, Self::Permissions];

    /// `true` when `stored`, the user as stored now, still holds what a use case that read
    /// `before` and changes `fields` decided on: the role (every rule about who may change a
    /// user looks at it) and the value of each field it changes (a new value is computed from
    /// the old one: grants from grants, a password from the one the user proved to know).
    #[must_use]
    pub fn unchanged_since(before: &User, stored: &User, fields: &[Self]) -> bool {
        before.role == stored.role
            && fields.iter().all(|field| match field {
                Self::Name => before.name == stored.name,
                Self::Role => true,
                Self::Active => before.active == stored.active,
                Self::Permissions => {
                    before.grants == stored.grants && before.revokes == stored.revokes
                }
                Self::Password => {
                    before.password_hash == stored.password_hash
                        && before.password_change_required == stored.password_change_required
                }
            })
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Wrong password (or no user: see [`PasswordHasher::verify`]).
    Mismatch,
    /// Right password; `needs_rehash` when the hash was made with weaker parameters than the
    /// configured ones (PWD-3).
    Match {
        /// Upgrade the stored hash.
        needs_rehash: bool,
    },
}

/// Password hashing (PWD-3). Implementations run the work off the async executor with bounded
/// concurrency.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// Hashes a password with the configured parameters and a fresh salt.
    async fn hash(&self, password: &Password) -> Result<PasswordHash, AccountsError>;

    /// Verifies a password. With `hash == None` (unknown user) it MUST do the same work against a
    /// dummy hash and answer [`PasswordCheck::Mismatch`], so timing does not reveal which emails
    /// exist.
    async fn verify<'a>(
        &self,
        password: &Password,
        hash: Option<&'a PasswordHash>,
    ) -> Result<PasswordCheck, AccountsError>;
}
