/// Errors of the MFA use cases. None carries a secret or a code.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// TOTP is already enrolled and confirmed; disable it first to enrol another device.
    #[error("MFA is already enabled")]
    AlreadyEnabled,
    /// Confirmation without a pending enrolment (never started, or replaced meanwhile).
    #[error("no MFA enrolment is pending")]
    NotPending,
    /// The operation needs MFA enrolled.
    #[error("MFA is not enabled")]
    NotEnabled,
    /// The code is wrong, malformed, outside the drift window, or an unknown or spent
    /// recovery code.
    #[error("the code is not valid")]
    InvalidCode,
    /// A valid TOTP code of a step already used (MFA-4): refused and recorded.
    #[error("the code was already used")]
    Replayed,
    /// Turning MFA off or replacing the recovery codes needs a fresh step-up (MFA-3); the
    /// denial was recorded.
    #[error("re-authentication required")]
    ReauthenticationRequired,
    /// Not the caller's own unrestricted session (another user's account, or a session that
    /// may only change its password or enrol); the denial was recorded.
    #[error("forbidden: {0}")]
    Forbidden(rbac::Refusal),
    /// Infrastructure failure (storage, envelope); details stay in the source.
    #[error("internal error in mfa")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl MfaError {
    /// Wraps an infrastructure error.
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }
}

impl From<audit::AuditError> for MfaError {
    fn from(err: audit::AuditError) -> Self {
        Self::internal(err)
    }
}

impl From<vault::VaultError> for MfaError {
    fn from(err: vault::VaultError) -> Self {
        Self::internal(err)
    }
}

impl From<rbac::Refusal> for MfaError {
    /// A refusal of the step-up is [`Self::ReauthenticationRequired`]; any other, [`Self::Forbidden`].
    fn from(why: rbac::Refusal) -> Self {
        match why {
            rbac::Refusal::ReauthenticationRequired => Self::ReauthenticationRequired,
            other => Self::Forbidden(other),
        }
    }
}
