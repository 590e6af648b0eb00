//! Ports of the vault.

use async_trait::async_trait;
use audit::AuditRecord;
use kernel::{CompanyId, Timestamp};

use crate::{
    AssociatedData, CertificateInfo, CredentialId, ExpiryCandidate, FiscalCredential, Sealed,
    SealedCredential, SecretBytes, VaultError,
};

/// Authenticated envelope encryption (VAULT-1, VAULT-2, VAULT-7): AES-256-CTR with a fresh IV
/// and an HMAC-SHA-256 tag over version, key id, IV, associated data and ciphertext, keys
/// derived per purpose from a versioned master key.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Envelope: Send + Sync {
    /// Seals `plaintext` under the newest key version, bound to `ad`.
    ///
    /// # Errors
    /// `Internal` only (randomness or key derivation failed).
    fn seal(&self, plaintext: &[u8], ad: &AssociatedData) -> Result<Sealed, VaultError>;

    /// Opens `sealed` if, and only if, it is intact, bound to exactly `ad`, and its key version
    /// is known.
    ///
    /// # Errors
    /// MUST return [`VaultError::Tampered`] for any other input, in constant time with respect to
    /// the tag comparison.
    fn open(&self, sealed: &Sealed, ad: &AssociatedData) -> Result<SecretBytes, VaultError>;

    /// The key version new values are sealed under.
    fn current_key_id(&self) -> u32;

    /// The key version of a sealed value, without opening it.
    fn key_id_of(&self, sealed: &Sealed) -> Option<u32>;
}

/// Reads SAT certificates and keys (x509 + PKCS#8 in the adapter).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait CertificateInspector: Send + Sync {
    /// Parses a certificate (DER, PEM, or PEM body without header) and extracts VAULT-4's facts.
    ///
    /// # Errors
    /// [`VaultError::CertificateInvalid`].
    fn inspect(&self, certificate: &[u8]) -> Result<CertificateInfo, VaultError>;

    /// Decrypts the PKCS#8 key with `password` and checks it is the certificate's key.
    ///
    /// # Errors
    /// `PrivateKeyInvalid`, `PrivateKeyPasswordInvalid`, `CertificateKeyMismatch`,
    /// `CertificateInvalid`.
    fn check_key(
        &self,
        certificate: &[u8],
        private_key: &[u8],
        password: &[u8],
    ) -> Result<(), VaultError>;

    /// Signs `data` with SHA256withRSA (PKCS#1 v1.5) and returns the base64 signature. The
    /// decrypted key exists only inside this call.
    ///
    /// # Errors
    /// As [`Self::check_key`] for the key.
    fn sign(&self, private_key: &[u8], password: &[u8], data: &[u8]) -> Result<String, VaultError>;
}

/// Storage of credentials.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CredentialRepository: Send + Sync {
    /// Stores a credential with its upload audit record, in one transaction, unless the
    /// company already stores `max` credentials.
    ///
    /// # Errors
    /// MUST return [`VaultError::Duplicate`] when the company already stores a certificate with
    /// the same number, and [`VaultError::LimitReached`] when it stores `max` credentials,
    /// counted in the transaction so that concurrent uploads cannot pass the bound together.
    async fn insert(
        &self,
        credential: &SealedCredential,
        max: u64,
        audit: Vec<AuditRecord>,
    ) -> Result<(), VaultError>;

    /// The company's credentials, newest first.
    async fn list(&self, company: CompanyId) -> Result<Vec<FiscalCredential>, VaultError>;

    /// How many credentials the company stores.
    async fn count(&self, company: CompanyId) -> Result<u64, VaultError>;

    /// One credential without its envelopes (viewing, deleting).
    async fn credential(
        &self,
        company: CompanyId,
        id: CredentialId,
    ) -> Result<Option<FiscalCredential>, VaultError>;

    /// One credential with its envelopes (signing).
    async fn sealed(
        &self,
        company: CompanyId,
        id: CredentialId,
    ) -> Result<Option<SealedCredential>, VaultError>;

    /// Deletes a credential with its audit record; `false` when there was none.
    async fn delete(
        &self,
        company: CompanyId,
        id: CredentialId,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, VaultError>;

    /// Up to `limit` credentials of every company sealed under another key than `current`,
    /// ordered by id and after `after` (for resumable re-wrapping).
    async fn sealed_not_under(
        &self,
        current: u32,
        after: Option<CredentialId>,
        limit: u64,
    ) -> Result<Vec<SealedCredential>, VaultError>;

    /// Replaces the envelopes of one credential if it is still under `old_key_id`; `false` when
    /// someone else re-wrapped or deleted it first.
    async fn replace_envelopes(
        &self,
        credential: &SealedCredential,
        old_key_id: u32,
    ) -> Result<bool, VaultError>;

    /// How many stored values still use key version `key_id`.
    async fn count_under(&self, key_id: u32) -> Result<u64, VaultError>;

    /// Records a use (a signature) of a credential.
    async fn record_use(&self, audit: AuditRecord, at: Timestamp) -> Result<(), VaultError>;

    /// Up to `limit` credentials of every company that may be due an expiry notice (VAULT-8):
    /// valid until after `expired_after` and before `expiring_before`, whose last notice (if
    /// any) was not the last stage (0). Ordered by id, after `after`.
    async fn expiry_candidates(
        &self,
        expired_after: Timestamp,
        expiring_before: Timestamp,
        after: Option<CredentialId>,
        limit: u64,
    ) -> Result<Vec<ExpiryCandidate>, VaultError>;

    /// Records that the notice of `stage` went out for a credential, with its audit record, in
    /// one transaction. Compare-and-set: `false`, and nothing stored, when the credential is
    /// gone or a notice of `stage` or a later (smaller) one was recorded first, so that of
    /// several processes running the same pass exactly one tells anybody.
    async fn record_expiry_notice(
        &self,
        company: CompanyId,
        id: CredentialId,
        stage: u16,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, VaultError>;
}
