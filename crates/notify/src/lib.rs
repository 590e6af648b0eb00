//! User notifications of IncrementaCRM (INC-2 and the security notices users expect).
//!
//! **Every notice derives from an audit record or an alert**, and the storage adapter writes the
//! outbox message in the same transaction as that record: a notice is never lost when the action
//! happened, and never sent for an action that rolled back. [`notices_for_record`] and
//! [`notice_for_alert`] decide who is told what; [`render`] words it (Spanish, no secrets ever:
//! the inputs carry none); [`OutboxWorker`] delivers due messages through the [`Mailer`] port with
//! retries and exponential backoff, recording every attempt. Delivery is at least once: a message
//! is marked delivered only after the mailer accepted it, and a claim is a lease, so a server
//! stopped mid-delivery leaves the message to be retried. This crate must never depend on a
//! database, a web framework or a mail library.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod outbox;
mod templates;

pub use outbox::{
    DeliveryReport, Mailer, NotifyError, OutboxMessage, OutboxPurge, OutboxStore, OutboxWorker,
    ResetTokenMinter, RetryPolicy,
};
#[cfg(any(test, feature = "mocks"))]
pub use outbox::{MockMailer, MockOutboxStore, MockResetTokenMinter};
pub use templates::{RESET_LINK_PLACEHOLDER, RESET_TOKEN_PLACEHOLDER, Rendered, render};

/// The template name of password-reset messages: the outbox worker fills their placeholder
/// with a token (and their link placeholder with a link to the reset page).
pub const PASSWORD_RESET_TEMPLATE: &str = "password_reset";

/// The template name of the code sent to a new e-mail address: the outbox worker fills its
/// placeholder with a token, as for password resets.
pub const EMAIL_CHANGE_CODE_TEMPLATE: &str = "email_change_code";

/// The template name of the notice of a completed change that carries the code undoing it
/// (sent to the old address): the outbox worker fills its placeholder with a token, as for
/// password resets.
pub const EMAIL_CHANGE_UNDO_TEMPLATE: &str = "email_changed_undo";

use audit::{Action, Alert, AuditRecord, Outcome};
use kernel::{CompanyId, Timestamp, UserId};
use uuid::Uuid;

/// Longest free text an incident notification carries.
pub const MAX_MESSAGE_CHARS: usize = 2_000;

/// What a notice says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// The user's password was changed.
    PasswordChanged,
    /// MFA was turned on.
    MfaEnabled,
    /// MFA was turned off.
    MfaDisabled,
    /// New recovery codes replaced the old ones.
    RecoveryCodesRegenerated,
    /// The account was deactivated.
    AccountDeactivated,
    /// An Owner or Admin logged in from an IP address never seen for them.
    NewIpLogin {
        /// The address.
        ip: String,
    },
    /// The user asked for a password-reset e-mail. The reset's id is the notice's cause (the
    /// `user.password_reset_requested` record's id); the stored body holds
    /// [`RESET_TOKEN_PLACEHOLDER`], which the outbox worker replaces with the token as it hands
    /// the message over, so the token is never stored.
    PasswordReset {
        /// When the token stops working.
        expires_at: Timestamp,
    },
    /// The user asked to change their address to `to`: sent **to `to`**, with the code that
    /// confirms it. The change's id is the notice's cause (the `user.email_change_requested`
    /// record's id); the stored body holds [`RESET_TOKEN_PLACEHOLDER`], filled at delivery.
    EmailChangeCode {
        /// When the code stops working.
        expires_at: Timestamp,
    },
    /// The same request, told to the current address: someone (the user, or whoever holds
    /// their session and password) is moving the account to `to`.
    EmailChangeRequested {
        /// The address asked for.
        to: String,
    },
    /// The address changed to `to`: sent to the **old** address. With `revert_until`, it
    /// carries the code that undoes the change until then (the `user.email_changed` record's
    /// id is the notice's cause and the undo window's id; the stored body holds
    /// [`RESET_TOKEN_PLACEHOLDER`], filled at delivery).
    EmailChanged {
        /// The new address.
        to: String,
        /// When the undo window closes; `None` when an earlier change's window stays open.
        revert_until: Option<Timestamp>,
    },
    /// The change to `from` was undone from the address the account is back at: sent there.
    EmailChangeReverted {
        /// The address undone.
        from: String,
    },
    /// The same undo, told to the address undone: the account left it.
    EmailChangeUndone {
        /// The address the account is back at.
        to: String,
    },
    /// A security incident affects the user.
    Incident {
        /// The incident's summary as its handler wrote it, or their message.
        message: String,
    },
    /// Someone stored or deleted a SAT credential of the user's company; the user is another
    /// of those who manage them.
    CredentialChanged {
        /// `true`: stored; `false`: deleted.
        uploaded: bool,
        /// `CSD` or `e.firma`.
        kind: String,
        /// The taxpayer's RFC on the certificate.
        rfc: String,
        /// The certificate's number.
        certificate_number: String,
        /// The name of the user who did it.
        by: String,
    },
    /// A SAT credential of the user's company expires soon or has expired (VAULT-8); the user
    /// is one who can replace it.
    CredentialExpiring {
        /// `CSD` or `e.firma`.
        kind: String,
        /// The taxpayer's RFC on the certificate.
        rfc: String,
        /// The certificate's number (public: it travels in every sealed invoice).
        certificate_number: String,
        /// When it stops being valid.
        valid_to: Timestamp,
        /// Whole days left (negative once expired).
        days_to_expiry: i64,
        /// `true` once it has expired.
        expired: bool,
    },
}

impl Template {
    /// Stable name, stored with the message.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::PasswordChanged => "password_changed",
            Self::MfaEnabled => "mfa_enabled",
            Self::MfaDisabled => "mfa_disabled",
            Self::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Self::AccountDeactivated => "account_deactivated",
            Self::NewIpLogin { .. } => "new_ip_login",
            Self::PasswordReset { .. } => PASSWORD_RESET_TEMPLATE,
            Self::EmailChangeCode { .. } => EMAIL_CHANGE_CODE_TEMPLATE,
            Self::EmailChangeRequested { .. } => "email_change_requested",
            Self::EmailChanged {
                revert_until: None, ..
            } => "email_changed",
            Self::EmailChanged {
                revert_until: Some(_),
                ..
            } => EMAIL_CHANGE_UNDO_TEMPLATE,
            Self::EmailChangeReverted { .. } => "email_change_reverted",
            Self::EmailChangeUndone { .. } => "email_change_undone",
            Self::Incident { .. } => "incident",
            Self::CredentialExpiring { .. } => "credential_expiring",
            Self::CredentialChanged { uploaded: true, .. } => "credential_uploaded",
            Self::CredentialChanged {
                uploaded: false, ..
            } => "credential_deleted",
        }
    }
}

/// One user to tell one thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Tenant.
    pub company_id: CompanyId,
    /// Recipient.
    pub user_id: UserId,
    /// What to say.
    pub template: Template,
    /// When the cause happened.
    pub at: Timestamp,
    /// The audit record or alert behind it.
    pub cause: Uuid,
    /// Where to send it instead of the user's current address: the new address for the code of
    /// an e-mail change, the old one for the notice that it changed. Set only from the audit
    /// record of the user's own change; every other notice goes to the user's address.
    pub address: Option<String>,
}

fn target_user(record: &AuditRecord) -> Option<UserId> {
    let id = record.target.as_deref()?.strip_prefix("user:")?;
    Uuid::parse_str(id).ok().map(UserId::from_uuid)
}

/// The notices an audit record causes (none for most).
#[must_use]
pub fn notices_for_record(record: &AuditRecord) -> Vec<Notice> {
    let Some(company_id) = record.company_id else {
        return Vec::new();
    };
    if record.outcome != Outcome::Success {
        return Vec::new();
    }
    let notice = |user_id: UserId, template: Template| Notice {
        company_id,
        user_id,
        template,
        at: record.at,
        cause: record.id,
        address: None,
    };
    let detail = |name: &str| record.details.get(name).and_then(|v| v.as_str());
    let to_target = |template: Template| {
        target_user(record)
            .map(|u| vec![notice(u, template)])
            .unwrap_or_default()
    };
    let action = record.action;
    if action == Action::USER_PASSWORD_CHANGED {
        // A transparent rehash on login is not a change the user made.
        if record.details.get("reason").and_then(|r| r.as_str()) == Some("hash_parameters_upgraded")
        {
            return Vec::new();
        }
        to_target(Template::PasswordChanged)
    } else if action == Action::USER_PASSWORD_RESET_REQUESTED {
        record
            .details
            .get("expires_at")
            .and_then(|e| e.as_str())
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .map(|e| {
                to_target(Template::PasswordReset {
                    expires_at: e.with_timezone(&chrono::Utc),
                })
            })
            .unwrap_or_default()
    } else if action == Action::USER_EMAIL_CHANGE_REQUESTED {
        // The code goes to the new address, the warning to the current one.
        let (Some(to), Some(expires_at)) = (
            detail("to"),
            detail("expires_at").and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok()),
        ) else {
            return Vec::new();
        };
        let Some(user) = target_user(record) else {
            return Vec::new();
        };
        let expires_at = expires_at.with_timezone(&chrono::Utc);
        vec![
            Notice {
                address: Some(to.to_owned()),
                ..notice(user, Template::EmailChangeCode { expires_at })
            },
            notice(user, Template::EmailChangeRequested { to: to.to_owned() }),
        ]
    } else if action == Action::USER_EMAIL_CHANGED {
        let (Some(from), Some(to), Some(user)) =
            (detail("from"), detail("to"), target_user(record))
        else {
            return Vec::new();
        };
        let revert_until = detail("revert_until")
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .map(|e| e.with_timezone(&chrono::Utc));
        vec![Notice {
            address: Some(from.to_owned()),
            ..notice(
                user,
                Template::EmailChanged {
                    to: to.to_owned(),
                    revert_until,
                },
            )
        }]
    } else if action == Action::USER_EMAIL_CHANGE_REVERTED {
        // Both addresses by name: the one the account is back at, and the one it left.
        let (Some(from), Some(to), Some(user)) =
            (detail("from"), detail("to"), target_user(record))
        else {
            return Vec::new();
        };
        vec![
            Notice {
                address: Some(to.to_owned()),
                ..notice(
                    user,
                    Template::EmailChangeReverted {
                        from: from.to_owned(),
                    },
                )
            },
            Notice {
                address: Some(from.to_owned()),
                ..notice(user, Template::EmailChangeUndone { to: to.to_owned() })
            },
        ]
    } else if action == Action::MFA_ENABLED {
        to_target(Template::MfaEnabled)
    } else if action == Action::MFA_DISABLED {
        to_target(Template::MfaDisabled)
    } else if action == Action::MFA_RECOVERY_CODES_REGENERATED {
        to_target(Template::RecoveryCodesRegenerated)
    } else if action == Action::USER_DEACTIVATED {
        to_target(Template::AccountDeactivated)
    } else if action == Action::FISCAL_CREDENTIAL_UPLOADED
        || action == Action::FISCAL_CREDENTIAL_DELETED
    {
        credential_changed(record, action == Action::FISCAL_CREDENTIAL_UPLOADED)
            .map(|template| {
                recipients(record)
                    .map(|user| notice(user, template.clone()))
                    .collect()
            })
            .unwrap_or_default()
    } else if action == Action::FISCAL_CREDENTIAL_EXPIRING {
        credential_expiring(record)
            .map(|template| {
                recipients(record)
                    .map(|user| notice(user, template.clone()))
                    .collect()
            })
            .unwrap_or_default()
    } else if action == Action::INCIDENT_NOTIFIED {
        let message = record
            .details
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .chars()
            .take(MAX_MESSAGE_CHARS)
            .collect::<String>();
        recipients(record)
            .map(|user| {
                notice(
                    user,
                    Template::Incident {
                        message: message.clone(),
                    },
                )
            })
            .collect()
    } else {
        Vec::new()
    }
}

/// The users a record's `details.recipients` lists (ids that do not parse are skipped).
fn recipients(record: &AuditRecord) -> impl Iterator<Item = UserId> + '_ {
    record
        .details
        .get("recipients")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().and_then(|s| Uuid::parse_str(s).ok()))
        .map(UserId::from_uuid)
}

/// Longest RFC, certificate number or name a credential notice carries.
const MAX_CREDENTIAL_FIELD: usize = 64;

/// A text field of a credential record's details, cut to [`MAX_CREDENTIAL_FIELD`].
fn detail_text(d: &serde_json::Value, key: &str) -> Option<String> {
    let value = d.get(key)?.as_str()?;
    Some(value.chars().take(MAX_CREDENTIAL_FIELD).collect())
}

/// The name of a credential's kind in a record's details, as its users say it.
fn detail_kind(d: &serde_json::Value) -> Option<&'static str> {
    match d.get("kind")?.as_str()? {
        "csd" => Some("CSD"),
        "fiel" => Some("e.firma"),
        _ => None,
    }
}

/// The template of a `fiscal.credential_uploaded` or `fiscal.credential_deleted` record
/// (`None` when its details are not what the vault writes, as in records made before the
/// vault named the recipients).
fn credential_changed(record: &AuditRecord, uploaded: bool) -> Option<Template> {
    let d = &record.details;
    Some(Template::CredentialChanged {
        uploaded,
        kind: detail_kind(d)?.to_owned(),
        rfc: detail_text(d, "rfc")?,
        certificate_number: detail_text(d, "certificate_number")?,
        by: detail_text(d, "by")?,
    })
}

/// The template of a `fiscal.credential_expiring` record, from its details (`None` when they
/// are not what the vault writes).
fn credential_expiring(record: &AuditRecord) -> Option<Template> {
    let d = &record.details;
    let text = |key: &str| detail_text(d, key);
    let kind = detail_kind(d)?;
    let valid_to = chrono::DateTime::parse_from_rfc3339(d.get("valid_to")?.as_str()?)
        .ok()?
        .with_timezone(&chrono::Utc);
    Some(Template::CredentialExpiring {
        kind: kind.to_owned(),
        rfc: text("rfc")?,
        certificate_number: text("certificate_number")?,
        valid_to,
        days_to_expiry: d.get("days_to_expiry")?.as_i64()?,
        expired: d.get("stage")?.as_u64()? == 0,
    })
}

/// The notice an alert causes: the user behind a privileged login from a new IP is told.
#[must_use]
pub fn notice_for_alert(alert: &Alert) -> Option<Notice> {
    if alert.rule != "new_ip_privileged_login" {
        return None;
    }
    let (user, ip) = alert.subject.split_once('@')?;
    Some(Notice {
        company_id: alert.company_id?,
        user_id: UserId::from_uuid(Uuid::parse_str(user).ok()?),
        template: Template::NewIpLogin { ip: ip.to_owned() },
        at: alert.at,
        cause: alert.id,
        address: None,
    })
}

#[cfg(test)]
mod tests;
