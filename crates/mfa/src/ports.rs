use async_trait::async_trait;
use audit::AuditRecord;
use kernel::{CompanyId, Timestamp, UserId};
use vault::Sealed;
use zeroize::Zeroizing;

use crate::{MfaError, TotpEnrolment};

/// Storage of enrolments and recovery codes. Every method that changes state writes its audit
/// record in the same transaction, and the ones that decide a race are single conditional
/// statements (compare-and-set), so concurrent requests cannot both win.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MfaRepository: Send + Sync {
    /// The user's enrolment, pending or confirmed.
    async fn enrolment(
        &self,
        company: CompanyId,
        user: UserId,
    ) -> Result<Option<TotpEnrolment>, MfaError>;

    /// Stores a pending enrolment, replacing an earlier pending one. `false` (and nothing
    /// written) when a confirmed enrolment exists.
    async fn save_pending(
        &self,
        enrolment: &TotpEnrolment,
        audit: AuditRecord,
    ) -> Result<bool, MfaError>;

    /// Confirms the pending enrolment whose sealed secret is `secret` (not one that replaced it
    /// meanwhile): sets `confirmed_at` and `last_used_step`, replaces the recovery codes with
    /// `code_digests`, sets the user's `mfa_enabled`, and records `audit`. `false` when no such
    /// pending enrolment exists.
    #[allow(clippy::too_many_arguments)]
    async fn confirm(
        &self,
        company: CompanyId,
        user: UserId,
        secret: &Sealed,
        step: u64,
        at: Timestamp,
        code_digests: &[String],
        audit: AuditRecord,
    ) -> Result<bool, MfaError>;

    /// Records `step` as used if it is later than the last used one (compare-and-set);
    /// `false` means another request used this step or a later one first: a replay.
    async fn use_step(&self, company: CompanyId, user: UserId, step: u64)
    -> Result<bool, MfaError>;

    /// Marks the unused recovery code with this digest as used and records `audit`; `false`
    /// when there is none (unknown or already spent).
    async fn use_recovery_code(
        &self,
        company: CompanyId,
        user: UserId,
        digest: &str,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<bool, MfaError>;

    /// Unused recovery codes left.
    async fn recovery_codes_remaining(
        &self,
        company: CompanyId,
        user: UserId,
    ) -> Result<u32, MfaError>;

    /// Replaces every recovery code of a confirmed enrolment; `false` when MFA is not enabled.
    async fn replace_recovery_codes(
        &self,
        company: CompanyId,
        user: UserId,
        code_digests: &[String],
        audit: AuditRecord,
    ) -> Result<bool, MfaError>;

    /// Deletes the enrolment (pending or confirmed) and the recovery codes, clears the user's
    /// `mfa_enabled`, and records `audit`; `false` when there was no confirmed enrolment.
    async fn disable(
        &self,
        company: CompanyId,
        user: UserId,
        audit: AuditRecord,
    ) -> Result<bool, MfaError>;

    /// Up to `limit` enrolments whose secret is sealed under another key than `key_id`.
    async fn sealed_not_under(
        &self,
        key_id: u32,
        limit: u32,
    ) -> Result<Vec<TotpEnrolment>, MfaError>;

    /// Replaces the sealed secret if it is still `old`; `false` when it changed meanwhile.
    async fn replace_secret(
        &self,
        company: CompanyId,
        user: UserId,
        old: &Sealed,
        new: &Sealed,
        key_id: u32,
    ) -> Result<bool, MfaError>;

    /// Enrolments sealed under `key_id`.
    async fn count_under(&self, key_id: u32) -> Result<u64, MfaError>;
}

/// Randomness and digests for MFA (the crypto adapter: OS randomness, SHA-256).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait MfaCrypto: Send + Sync {
    /// `len` bytes from a cryptographically secure generator.
    fn random_bytes(&self, len: usize) -> Zeroizing<Vec<u8>>;
    /// The stored digest of a normalized recovery code.
    fn digest(&self, code: &str) -> String;
}
