/// Errors of the sessions crate. None carries a secret or says whether an email exists.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Wrong email or password, unknown email, or a deactivated user: one answer for all.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many attempts; try again after this many seconds.
    #[error("too many attempts; retry later")]
    RateLimited {
        /// Seconds until a new attempt may succeed.
        retry_after_secs: u64,
    },
    /// No token, an unknown, revoked or expired token, or a deactivated user.
    #[error("authentication required")]
    Unauthenticated,
    /// The password given to re-authenticate is wrong (the session stays valid).
    #[error("the password is not correct")]
    ReauthenticationFailed,
    /// The user has MFA (or must send a code) and sent none (MFA-1).
    #[error("a second factor is required")]
    MfaRequired,
    /// The TOTP or recovery code is wrong, expired or already used (MFA-1, MFA-4).
    #[error("the second factor is not valid")]
    MfaInvalid,
    /// The actor's session is restricted (a password the operator handed over must be changed
    /// first, or MFA enrolled: `password_change_required`, `mfa_enrolment_required`) and this
    /// is not one of the few things it may do (see [`rbac::Actor::restriction`]).
    #[error("{0}")]
    Forbidden(rbac::Refusal),
    /// No such session among the actor's own.
    #[error("not found")]
    NotFound,
    /// Infrastructure failure; details stay in the source.
    #[error("internal error in sessions")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SessionError {
    /// Wraps an infrastructure error.
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }
}

impl From<accounts::AccountsError> for SessionError {
    fn from(err: accounts::AccountsError) -> Self {
        Self::internal(err)
    }
}

impl From<audit::AuditError> for SessionError {
    fn from(err: audit::AuditError) -> Self {
        Self::internal(err)
    }
}
