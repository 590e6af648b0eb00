//! The fiscal vault of IncrementaCRM (VAULT-1..8, ENC-1): SAT credentials — the certificate
//! (`.cer`), the private key (`.key`) and the key's password — validated on upload, stored only
//! as authenticated envelopes bound to their company, purpose and record, and used to sign
//! *inside* the vault: no API returns the key or its password.
//!
//! Cryptography and certificate parsing are ports ([`Envelope`], [`CertificateInspector`]);
//! storage is [`CredentialRepository`]. This crate must never depend on a database, a web
//! framework or a cryptographic library.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod model;
mod ports;
mod service;

pub use error::VaultError;
pub use model::{
    AssociatedData, CertificateInfo, CredentialId, CredentialKind, CredentialView,
    EXPIRED_NOTICE_DAYS, EXPIRING_SOON_DAYS, EXPIRY_NOTICE_STAGES, ExpiryCandidate,
    FiscalCredential, Purpose, Sealed, SealedCredential, SecretBytes, Signature, days_to_expiry,
    expiry_stage,
};
pub use ports::{CertificateInspector, CredentialRepository, Envelope};
pub use service::{ExpiryNotices, RewrapProgress, UploadLimits, VaultPorts, VaultService, view};

#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockCertificateInspector, MockCredentialRepository, MockEnvelope};
