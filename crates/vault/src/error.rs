/// Errors of the vault. Each upload failure has its own stable code (API.md); none carries key,
/// password or certificate bytes.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The certificate is not X.509 (DER or PEM), or not an RSA certificate.
    #[error("the certificate is not a valid X.509 certificate: {0}")]
    CertificateInvalid(&'static str),
    /// The private key is not a PKCS#8 key the vault can read.
    #[error("the private key is not a valid PKCS#8 key: {0}")]
    PrivateKeyInvalid(&'static str),
    /// The password does not decrypt the private key.
    #[error("the password does not decrypt the private key")]
    PrivateKeyPasswordInvalid,
    /// The private key does not belong to the certificate.
    #[error("the private key does not belong to the certificate")]
    CertificateKeyMismatch,
    /// The certificate's validity ended.
    #[error("the certificate expired")]
    CertificateExpired,
    /// The certificate's validity has not begun.
    #[error("the certificate is not valid yet")]
    CertificateNotYetValid,
    /// The certificate's RFC is not the company's.
    #[error("the certificate's RFC does not match the company's RFC")]
    RfcMismatch,
    /// The certificate was not issued (signed) by one of the issuers the deployment trusts
    /// (`INCREMENTA_VAULT_TRUSTED_ISSUERS`, when set).
    #[error("the certificate was not issued by a trusted issuer")]
    CertificateUntrusted,
    /// A file, the key's password or the data to sign is larger than its bound (API.md: 413).
    #[error("{what} is larger than {max} bytes")]
    TooLarge {
        /// What: "the certificate", "the private key", "the password", "the data to sign".
        what: &'static str,
        /// The bound, in bytes.
        max: usize,
    },
    /// The company already stores this certificate.
    #[error("this certificate is already stored")]
    Duplicate,
    /// The company stores as many credentials as it may.
    #[error("the company stores {max} credentials, the most it may")]
    LimitReached {
        /// The bound.
        max: u64,
    },
    /// No such credential in the actor's company.
    #[error("not found")]
    NotFound,
    /// The actor lacks the permission.
    #[error("{0}")]
    Forbidden(rbac::Refusal),
    /// A critical operation without a fresh re-authentication (MFA-3).
    #[error("re-authentication required")]
    ReauthenticationRequired,
    /// An envelope failed authentication: tampered, truncated, moved to another record or
    /// company, or sealed under a key that is gone. Never says which.
    #[error("an encrypted value could not be opened")]
    Tampered,
    /// A key version needed is unknown or cannot be retired.
    #[error("{0}")]
    Key(String),
    /// Infrastructure failure.
    #[error("internal error in the vault")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl VaultError {
    /// Wraps an infrastructure error.
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }

    /// The stable code of the 422 upload failures (API.md), or `None` for other errors.
    #[must_use]
    pub const fn upload_code(&self) -> Option<&'static str> {
        Some(match self {
            Self::CertificateInvalid(_) => "certificate_invalid",
            Self::PrivateKeyInvalid(_) => "private_key_invalid",
            Self::PrivateKeyPasswordInvalid => "private_key_password_invalid",
            Self::CertificateKeyMismatch => "certificate_key_mismatch",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateNotYetValid => "certificate_not_yet_valid",
            Self::RfcMismatch => "rfc_mismatch",
            Self::CertificateUntrusted => "certificate_untrusted",
            _ => return None,
        })
    }
}

impl From<accounts::AccountsError> for VaultError {
    fn from(e: accounts::AccountsError) -> Self {
        Self::internal(e)
    }
}

impl From<audit::AuditError> for VaultError {
    fn from(e: audit::AuditError) -> Self {
        Self::internal(e)
    }
}

impl From<rbac::Refusal> for VaultError {
    /// A refusal of the step-up is [`Self::ReauthenticationRequired`]; any other, [`Self::Forbidden`].
    fn from(why: rbac::Refusal) -> Self {
        match why {
            rbac::Refusal::ReauthenticationRequired => Self::ReauthenticationRequired,
            other => Self::Forbidden(other),
        }
    }
}
