use serde::Serialize;

use crate::PasswordViolation;

/// One invalid input field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's name as the API spells it.
    pub field: &'static str,
    /// A stable snake_case reason.
    pub code: &'static str,
}

impl FieldError {
    /// A field error.
    #[must_use]
    pub const fn new(field: &'static str, code: &'static str) -> Self {
        Self { field, code }
    }
}

/// Errors of the accounts crate. None of them carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// Input fields are invalid; every problem is listed.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// The password breaks the policy; every violated rule is listed (PWD-5).
    #[error("the password does not meet the password policy")]
    PasswordPolicy(Vec<PasswordViolation>),
    /// Another user already has this email (emails are unique platform-wide, case-insensitive).
    #[error("the email address is already registered")]
    EmailTaken,
    /// No such record in the actor's company (also for other companies' ids).
    #[error("not found")]
    NotFound,
    /// The actor may not do this; the text says which rule.
    #[error("{0}")]
    Forbidden(rbac::Refusal),
    /// The operation is critical and the session has not re-authenticated in the last 5 minutes
    /// (MFA-3).
    #[error("re-authenticate first: this operation needs a fresh confirmation of your password")]
    ReauthenticationRequired,
    /// The request conflicts with the current state; `code` is stable.
    #[error("{message}")]
    Conflict {
        /// Stable snake_case code.
        code: &'static str,
        /// Sentence for the detail.
        message: &'static str,
    },
    /// The user or company changed between the use case's read and its write, so what it
    /// decided on no longer holds; nothing was written. The services try again on a fresh read
    /// ([`crate::STALE_ATTEMPTS`] times in all) before they return it.
    #[error("the record changed while this request was being decided; read it again and retry")]
    Stale,
    /// The caller changed a record it read earlier, naming that read (HTTP `If-Match`), and the
    /// record has changed since; nothing was written.
    #[error("the record changed since it was read; read it again")]
    PreconditionFailed,
    /// The current password given to a password change is wrong.
    #[error("the current password is not correct")]
    CurrentPasswordInvalid,
    /// A password-reset token that is unknown, forged, used, replaced or expired, or whose user
    /// was deactivated: one answer for all, so it tells nothing.
    #[error("the password reset link is invalid or has expired; ask for a new one")]
    ResetTokenInvalid,
    /// An e-mail change code that is unknown, forged, another change's, used, replaced or
    /// expired: one answer for all.
    #[error("the e-mail change code is invalid or has expired; ask for a new one")]
    EmailChangeInvalid,
    /// Too many attempts from this address; retry after this many seconds.
    #[error("too many attempts; retry later")]
    RateLimited {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// Infrastructure failure; details stay in the source, never in responses.
    #[error("internal error in accounts")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AccountsError {
    /// Wraps an infrastructure error.
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }
}

impl From<audit::AuditError> for AccountsError {
    fn from(err: audit::AuditError) -> Self {
        Self::internal(err)
    }
}

impl From<rbac::Refusal> for AccountsError {
    /// A refusal of the step-up is [`Self::ReauthenticationRequired`]; any other, [`Self::Forbidden`].
    fn from(why: rbac::Refusal) -> Self {
        match why {
            rbac::Refusal::ReauthenticationRequired => Self::ReauthenticationRequired,
            other => Self::Forbidden(other),
        }
    }
}
