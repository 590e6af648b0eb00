//! Audit records of IncrementaCRM (AUD-1, AUD-2, AUD-8) and the [`AuditSink`] port.
//!
//! Cores build [`AuditRecord`]s from domain facts only, so a secret cannot reach one: there is no
//! constructor that takes a password, token or key. A record that describes a change travels into
//! the port that makes the change and is written in the same transaction; a record with no change
//! behind it (a failed login) goes to [`AuditSink::record`]. This crate must never depend on a
//! database, a web framework or a cryptographic library.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

mod chain;
mod log;
mod review;

#[cfg(any(test, feature = "mocks"))]
pub use chain::MockChainMac;
pub use chain::{
    ChainMac, ChainVerifier, ChainedRecord, Checkpoint, GENESIS, VerifyReport, chain_name,
};
#[cfg(any(test, feature = "mocks"))]
pub use log::MockAuditLog;
pub use log::{ACCESS_ACTIONS, AuditFilter, AuditLog, AuditService, ExportPass, MAX_PAGE, Page};
pub use review::{
    Alert, AlertPage, AlertThresholds, Context as ReviewContext, Need, evaluate, need,
};

use async_trait::async_trait;
use kernel::{CompanyId, RequestContext, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Errors of the audit crate.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The actor lacks the permission (`audit.read`; `incidents.manage` to triage alerts).
    #[error("missing permission")]
    Forbidden,
    /// Export without a fresh re-authentication (MFA-3).
    #[error("re-authentication required")]
    ReauthenticationRequired,
    /// No such alert in the actor's company.
    #[error("not found")]
    NotFound,
    /// The alert was raised by a record of the actor's own: another Owner or Admin must judge
    /// it (separation of duties).
    #[error("an alert about oneself cannot be dismissed by oneself")]
    OwnAlert,
    /// The alert is no longer open (dismissed, or taken into an incident).
    #[error("the alert is {status}, not open")]
    AlertNotOpen {
        /// Its status now.
        status: String,
    },
    /// A field breaks its rule.
    #[error("invalid {field}: {code}")]
    Invalid {
        /// The field as the API names it.
        field: &'static str,
        /// A stable reason.
        code: &'static str,
    },
    /// Another request is verifying or exporting this chain already; ask again later.
    #[error("another request is reading this chain (a verification or an export)")]
    Busy {
        /// Seconds to wait before asking again.
        retry_after_secs: u64,
    },
    /// The export read no page for [`AuditService::EXPORT_IDLE_SECS`] and another export of
    /// the company took its place: this one ends.
    #[error("the export was idle too long and another export of the company took its place")]
    ExportSuperseded,
    /// The record could not be stored; the caller must treat the action as failed.
    #[error("the audit record could not be stored")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<rbac::Refusal> for AuditError {
    /// A refusal of the step-up is [`Self::ReauthenticationRequired`]; any other, [`Self::Forbidden`].
    fn from(why: rbac::Refusal) -> Self {
        match why {
            rbac::Refusal::ReauthenticationRequired => Self::ReauthenticationRequired,
            _ => Self::Forbidden,
        }
    }
}

/// The result of the audited attempt (API.md's audit vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action happened.
    Success,
    /// The action was attempted and failed (wrong password, throttled…).
    Failure,
    /// The actor was not allowed to do it.
    Denied,
}

impl Outcome {
    /// The stable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

/// An audited action, `noun.verb`. The constants are the vocabulary of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action(&'static str);

impl Action {
    /// A login attempt.
    pub const SESSION_LOGIN: Self = Self("session.login");
    /// A logout of the current session.
    pub const SESSION_LOGOUT: Self = Self("session.logout");
    /// A session revoked: by its user, by the session cap, by deactivation or password change.
    pub const SESSION_REVOKED: Self = Self("session.revoked");
    /// A company signed up.
    pub const COMPANY_CREATED: Self = Self("company.created");
    /// A user created.
    pub const USER_CREATED: Self = Self("user.created");
    /// A user activated.
    pub const USER_ACTIVATED: Self = Self("user.activated");
    /// A user deactivated.
    pub const USER_DEACTIVATED: Self = Self("user.deactivated");
    /// A user's profile (name) changed.
    pub const USER_UPDATED: Self = Self("user.updated");
    /// A user's role changed.
    pub const USER_ROLE_CHANGED: Self = Self("user.role_changed");
    /// A user's per-user permissions changed.
    pub const USER_PERMISSIONS_CHANGED: Self = Self("user.permissions_changed");
    /// An Owner started an ownership transfer.
    pub const OWNERSHIP_TRANSFER_STARTED: Self = Self("ownership.transfer_started");
    /// The receiving user accepted: the company has a new Owner.
    pub const OWNERSHIP_TRANSFER_COMPLETED: Self = Self("ownership.transfer_completed");
    /// A party cancelled a pending transfer.
    pub const OWNERSHIP_TRANSFER_CANCELLED: Self = Self("ownership.transfer_cancelled");
    /// A session re-authenticated (step-up).
    pub const SESSION_REAUTHENTICATED: Self = Self("session.reauthenticated");
    /// A SAT credential was uploaded to the vault.
    pub const FISCAL_CREDENTIAL_UPLOADED: Self = Self("fiscal.credential_uploaded");
    /// A SAT credential was used to sign.
    pub const FISCAL_CREDENTIAL_USED: Self = Self("fiscal.credential_used");
    /// A SAT credential was deleted.
    pub const FISCAL_CREDENTIAL_DELETED: Self = Self("fiscal.credential_deleted");
    /// A SAT credential is about to expire or has expired, and those who manage the company's
    /// credentials were told (VAULT-8; `details` names them and the stage: 30, 7, 1 or 0 days).
    pub const FISCAL_CREDENTIAL_EXPIRING: Self = Self("fiscal.credential_expiring");
    /// A user's password changed (or rehashed: see `details`).
    pub const USER_PASSWORD_CHANGED: Self = Self("user.password_changed");
    /// Someone asked for a password-reset e-mail for this user (`POST /v1/password-resets`);
    /// the record's id is the reset's id, and the mail it causes carries the reset's token,
    /// made at delivery and never stored.
    pub const USER_PASSWORD_RESET_REQUESTED: Self = Self("user.password_reset_requested");
    /// A user asked to change their e-mail address (`POST /v1/me/email`; `details.to` is the
    /// new address). The record's id is the change's id; the new address is mailed a code made
    /// from it at delivery, the current one a warning.
    pub const USER_EMAIL_CHANGE_REQUESTED: Self = Self("user.email_change_requested");
    /// A user's e-mail address changed (`details.from`, `details.to`); the old address is told.
    pub const USER_EMAIL_CHANGED: Self = Self("user.email_changed");
    /// The address a user had before a change undid it with the code mailed to it
    /// (`POST /v1/email-changes/revert`; `details.from` the address undone, `details.to` the one
    /// restored): the address is back, the password no longer works and every session ended.
    pub const USER_EMAIL_CHANGE_REVERTED: Self = Self("user.email_change_reverted");
    /// Reading the user list or a user (recorded only when denied).
    pub const USERS_READ: Self = Self("users.read");
    /// The company's configuration changed (details: every field, old and new).
    pub const COMPANY_CONFIG_CHANGED: Self = Self("company.config_changed");
    /// The audit log was exported.
    pub const AUDIT_EXPORTED: Self = Self("audit.exported");
    /// An alert of the review was dismissed (judged not to need an incident).
    pub const ALERT_DISMISSED: Self = Self("audit.alert_dismissed");
    /// An authorization check said no.
    pub const AUTHORIZATION_DENIED: Self = Self("authorization.denied");
    /// A user started TOTP enrolment (a pending secret was created).
    pub const MFA_ENROLMENT_STARTED: Self = Self("mfa.enrolment_started");
    /// A user confirmed TOTP enrolment: MFA is on.
    pub const MFA_ENABLED: Self = Self("mfa.enabled");
    /// A user turned MFA off.
    pub const MFA_DISABLED: Self = Self("mfa.disabled");
    /// A user replaced its recovery codes.
    pub const MFA_RECOVERY_CODES_REGENERATED: Self = Self("mfa.recovery_codes_regenerated");
    /// A recovery code was spent on a login.
    pub const MFA_RECOVERY_CODE_USED: Self = Self("mfa.recovery_code_used");
    /// A security incident was opened.
    pub const INCIDENT_CREATED: Self = Self("incident.created");
    /// An incident moved along its workflow.
    pub const INCIDENT_TRANSITIONED: Self = Self("incident.transitioned");
    /// A note was added to an incident's timeline.
    pub const INCIDENT_NOTE_ADDED: Self = Self("incident.note_added");
    /// The users affected by an incident were notified.
    pub const INCIDENT_NOTIFIED: Self = Self("incident.notified");
    /// A backup was written to a destination.
    pub const BACKUP_CREATED: Self = Self("backup.created");
    /// A backup could not be written to a destination.
    pub const BACKUP_FAILED: Self = Self("backup.failed");
    /// A new master key version was added to the vault's keyring (VAULT-7).
    pub const KEY_ROTATED: Self = Self("key.rotated");
    /// Stored secrets were re-encrypted under the newest master key (VAULT-7).
    pub const KEY_REWRAPPED: Self = Self("key.rewrapped");
    /// A master key version nothing uses any more was removed from the keyring (VAULT-7).
    pub const KEY_RETIRED: Self = Self("key.retired");

    /// The stable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// One audit event: who did what to which target, when, from where, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Unique id.
    pub id: Uuid,
    /// The tenant; `None` only for events that cannot be tied to one (a login with an unknown email).
    pub company_id: Option<CompanyId>,
    /// When.
    pub at: Timestamp,
    /// The acting user, when known.
    pub actor_id: Option<UserId>,
    /// What.
    pub action: Action,
    /// On what, as `kind:id` (e.g. `user:…`, `session:…`).
    pub target: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Where the request came from.
    pub context: RequestContext,
    /// Extra facts; never secrets (AUD-8).
    pub details: serde_json::Value,
}

impl AuditRecord {
    /// Records are built by the use case that performs the action and handed to the port that
    /// commits the change, so the change and its record commit together:
    ///
    /// ```
    /// use audit::{Action, AuditRecord, Outcome};
    /// use kernel::{CompanyId, RequestContext, UserId};
    ///
    /// let ctx = RequestContext::new(Some("203.0.113.7".parse().unwrap()), Some("curl/8"), None);
    /// let at = kernel::Timestamp::from_timestamp(1_790_000_000, 0).unwrap();
    /// let user = UserId::from_uuid(uuid::Uuid::from_u128(2));
    /// let record = AuditRecord::new(uuid::Uuid::from_u128(1), at, Action::USER_ROLE_CHANGED, Outcome::Success, &ctx)
    ///     .company(CompanyId::from_uuid(uuid::Uuid::from_u128(3)))
    ///     .actor(user)
    ///     .target("user", user)
    ///     .details(serde_json::json!({ "from": "vendor", "to": "manager" }));
    /// assert_eq!(record.action.as_str(), "user.role_changed");
    /// assert_eq!(record.target.as_deref(), Some("user:00000000-0000-0000-0000-000000000002"));
    /// ```
    ///
    /// A record with no target and empty details; refine it with the builder methods.
    #[must_use]
    pub fn new(
        id: Uuid,
        at: Timestamp,
        action: Action,
        outcome: Outcome,
        context: &RequestContext,
    ) -> Self {
        Self {
            id,
            company_id: None,
            at,
            actor_id: None,
            action,
            target: None,
            outcome,
            context: context.clone(),
            details: serde_json::Value::Null,
        }
    }

    /// An `authorization.denied` record: `actor` attempted `attempted` and was refused because of
    /// `reason` (AUD-2: failed authorizations are recorded too).
    #[must_use]
    pub fn denied(
        id: Uuid,
        at: Timestamp,
        ctx: &RequestContext,
        actor: &rbac::Actor,
        attempted: &str,
        reason: &str,
    ) -> Self {
        Self::new(id, at, Action::AUTHORIZATION_DENIED, Outcome::Denied, ctx)
            .by(actor)
            .details(serde_json::json!({ "attempted": attempted, "reason": reason }))
    }

    /// Sets the tenant.
    #[must_use]
    pub fn company(mut self, company: CompanyId) -> Self {
        self.company_id = Some(company);
        self
    }

    /// Sets the actor.
    #[must_use]
    pub fn actor(mut self, actor: UserId) -> Self {
        self.actor_id = Some(actor);
        self
    }

    /// Sets the tenant and the actor from an authenticated actor: what it did, in its company.
    #[must_use]
    pub fn by(self, actor: &rbac::Actor) -> Self {
        self.company(actor.company_id).actor(actor.user_id)
    }

    /// Sets the target, as `kind:id`.
    #[must_use]
    pub fn target(mut self, kind: &str, id: impl fmt::Display) -> Self {
        self.target = Some(format!("{kind}:{id}"));
        self
    }

    /// Sets the details.
    #[must_use]
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Where audit records without a change behind them go (e.g. a failed login).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Stores one record durably.
    ///
    /// # Errors
    /// MUST return [`AuditError::Internal`] when the record was not stored; callers fail closed.
    async fn record(&self, record: AuditRecord) -> Result<(), AuditError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field() {
        let ctx = RequestContext::new(None, Some("curl"), Some("req-1".into()));
        let company = CompanyId::from_uuid(Uuid::from_u128(1));
        let user = UserId::from_uuid(Uuid::from_u128(2));
        let at = Timestamp::default();
        let record = AuditRecord::new(
            Uuid::from_u128(3),
            at,
            Action::SESSION_LOGIN,
            Outcome::Failure,
            &ctx,
        )
        .company(company)
        .actor(user)
        .target("user", user)
        .details(serde_json::json!({"reason": "invalid_credentials"}));
        assert_eq!(record.company_id, Some(company));
        assert_eq!(record.actor_id, Some(user));
        assert_eq!(
            record.target.as_deref(),
            Some(format!("user:{user}").as_str())
        );
        assert_eq!(record.context.user_agent.as_deref(), Some("curl"));
        assert_eq!(record.action.as_str(), "session.login");
        assert_eq!(record.outcome.as_str(), "failure");
    }

    #[tokio::test]
    async fn the_mock_sink_is_usable_by_other_crates() {
        let mut sink = MockAuditSink::new();
        sink.expect_record()
            .withf(|r| r.action == Action::SESSION_LOGOUT)
            .times(1)
            .returning(|_| Ok(()));
        let ctx = RequestContext::default();
        let record = AuditRecord::new(
            Uuid::nil(),
            Timestamp::default(),
            Action::SESSION_LOGOUT,
            Outcome::Success,
            &ctx,
        );
        sink.record(record).await.unwrap();
    }
}
