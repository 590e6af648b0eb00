use std::fmt;

use kernel::{CompanyId, Timestamp, UserId};
use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Plaintext secret bytes (a key file, a password): zeroized on drop, never in `Debug`.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of the bytes.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }
    /// The bytes, for the one call that needs them.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// What an encrypted value is for; part of its associated data and of its key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A SAT certificate (`.cer`).
    Certificate,
    /// A SAT private key (`.key`, still PKCS#8-encrypted with its password).
    PrivateKey,
    /// The private key's password.
    KeyPassword,
    /// A TOTP secret (MFA).
    TotpSecret,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Self; 4] = [
        Self::Certificate,
        Self::PrivateKey,
        Self::KeyPassword,
        Self::TotpSecret,
    ];

    /// The stable name, bound into the associated data and the key derivation.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Certificate => "fiscal.certificate",
            Self::PrivateKey => "fiscal.private_key",
            Self::KeyPassword => "fiscal.key_password",
            Self::TotpSecret => "mfa.totp_secret",
        }
    }
}

/// What an envelope is bound to (VAULT-1): its company, its purpose and its record. An envelope
/// copied to another row, purpose or company fails to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssociatedData {
    /// Tenant.
    pub company: CompanyId,
    /// Purpose.
    pub purpose: Purpose,
    /// Record id.
    pub record: Uuid,
}

impl AssociatedData {
    /// The canonical bytes: fixed layout, so no two bindings share a byte string.
    ///
    /// ```
    /// use kernel::CompanyId;
    /// use vault::{AssociatedData, Purpose, SecretBytes};
    ///
    /// let company = CompanyId::from_uuid(uuid::Uuid::from_u128(1));
    /// let record = uuid::Uuid::from_u128(2);
    /// let key = AssociatedData { company, purpose: Purpose::PrivateKey, record };
    /// let password = AssociatedData { purpose: Purpose::KeyPassword, ..key };
    /// // Same company and record, another purpose: another binding, so an envelope of one
    /// // cannot be opened as the other.
    /// assert_ne!(key.to_bytes(), password.to_bytes());
    /// assert_eq!(key.to_bytes().len(), 16 + 16 + 1 + "fiscal.private_key".len());
    /// // Secrets never print.
    /// assert_eq!(format!("{:?}", SecretBytes::new(b"12345678a".to_vec())), "SecretBytes(9 bytes)");
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let purpose = self.purpose.as_str().as_bytes();
        let mut out = Vec::with_capacity(16 + 16 + 1 + purpose.len());
        out.extend_from_slice(self.company.as_uuid().as_bytes());
        out.extend_from_slice(self.record.as_bytes());
        out.push(u8::try_from(purpose.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(purpose);
        out
    }
}

/// An encrypted value in its stored text form (VAULT-2), e.g. `ev1.<base64url>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(String);

impl Sealed {
    /// Wraps stored text.
    #[must_use]
    pub fn new(text: String) -> Self {
        Self(text)
    }
    /// The stored text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} chars)", self.0.len())
    }
}

/// CSD (certificado de sello digital, for sealing invoices) or FIEL (e.firma).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// Seal certificate.
    Csd,
    /// e.firma.
    Fiel,
}

impl CredentialKind {
    /// `csd` or `fiel`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Csd => "csd",
            Self::Fiel => "fiel",
        }
    }
    /// Parses `csd` or `fiel`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csd" => Some(Self::Csd),
            "fiel" => Some(Self::Fiel),
            _ => None,
        }
    }
}

impl CredentialKind {
    /// The name SAT and its users give it: `CSD` or `e.firma`.
    #[must_use]
    pub const fn display_name(self) -> &'static str {
        match self {
            Self::Csd => "CSD",
            Self::Fiel => "e.firma",
        }
    }
}

/// Whole days to expiry under which a credential is "expiring soon" (VAULT-8).
pub const EXPIRING_SOON_DAYS: u16 = 30;

/// The stages at which those who manage a company's credentials are told that one expires
/// (VAULT-8): when fewer than 30, 7 and 1 whole days are left, and once it has expired (0).
pub const EXPIRY_NOTICE_STAGES: [u16; 4] = [EXPIRING_SOON_DAYS, 7, 1, 0];

/// Whole days from `now` to `valid_to`, rounded down (negative once expired: -1 on the day
/// after).
#[must_use]
pub fn days_to_expiry(valid_to: Timestamp, now: Timestamp) -> i64 {
    (valid_to - now).num_seconds().div_euclid(86_400)
}

/// How long after its expiry a credential still gets its "expired" notice (stage 0): one that
/// expired longer ago (say, before this version was installed) gets none.
pub const EXPIRED_NOTICE_DAYS: i64 = 30;

/// The expiry stage a credential valid until `valid_to` has reached at `now`: `Some(0)` once
/// expired, `Some(1)`, `Some(7)` or `Some(30)` when fewer whole days than that are left, `None`
/// while 30 or more are.
///
/// ```
/// let now = kernel::Timestamp::from_timestamp(1_800_000_000, 0).unwrap();
/// let day = chrono::Duration::days(1);
/// assert_eq!(vault::expiry_stage(now + day * 31, now), None);
/// assert_eq!(vault::expiry_stage(now + day * 29, now), Some(30));
/// assert_eq!(vault::expiry_stage(now + day * 6, now), Some(7));
/// assert_eq!(vault::expiry_stage(now + chrono::Duration::hours(5), now), Some(1));
/// assert_eq!(vault::expiry_stage(now, now), Some(0));
/// ```
#[must_use]
pub fn expiry_stage(valid_to: Timestamp, now: Timestamp) -> Option<u16> {
    if valid_to <= now {
        return Some(0);
    }
    let days = days_to_expiry(valid_to, now);
    EXPIRY_NOTICE_STAGES
        .iter()
        .rev()
        .copied()
        .find(|&stage| stage > 0 && days < i64::from(stage))
}

/// A credential that may be due an expiry notice, with the stage last noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryCandidate {
    /// The credential.
    pub credential: FiscalCredential,
    /// The stage of the last notice sent for it (`None`: none yet).
    pub noticed: Option<u16>,
}

/// What a certificate says (VAULT-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The taxpayer's RFC (the part of 2.5.4.45 before the first space).
    pub rfc: String,
    /// The legal representative's RFC, for legal entities.
    pub representative_rfc: Option<String>,
    /// The CURP (2.5.4.5), when present.
    pub curp: Option<String>,
    /// The legal name.
    pub legal_name: String,
    /// The 20-digit NoCertificado (the serial's bytes as ASCII digits).
    pub certificate_number: String,
    /// The issuer, as a readable name.
    pub issuer: String,
    /// Not before.
    pub valid_from: Timestamp,
    /// Not after.
    pub valid_to: Timestamp,
    /// CSD or FIEL.
    pub kind: CredentialKind,
}

/// The id of a stored credential.
pub type CredentialId = Uuid;

/// A stored credential's clear metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiscalCredential {
    /// Id.
    pub id: CredentialId,
    /// Tenant.
    pub company_id: CompanyId,
    /// Certificate facts.
    pub info: CertificateInfo,
    /// Who uploaded it.
    pub created_by: UserId,
    /// When.
    pub created_at: Timestamp,
}

/// A credential with its three envelopes, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCredential {
    /// Metadata.
    pub credential: FiscalCredential,
    /// The certificate.
    pub certificate: Sealed,
    /// The private key file.
    pub private_key: Sealed,
    /// The key's password.
    pub password: Sealed,
    /// The master key version all three are sealed under.
    pub key_id: u32,
}

/// A credential as the API shows it: metadata plus expiry (VAULT-8). Never key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialView {
    /// The credential.
    pub credential: FiscalCredential,
    /// Whole days until `valid_to` (negative once expired).
    pub days_to_expiry: i64,
    /// Valid, and expiring within 30 days.
    pub expiring_soon: bool,
}

/// A signature made inside the vault (VAULT-6).
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    /// Base64 of the PKCS#1 v1.5 SHA-256 signature.
    pub signature_base64: String,
    /// `RSA-SHA256`.
    pub algorithm: &'static str,
    /// The NoCertificado of the signing certificate.
    pub certificate_number: String,
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature")
            .field("certificate_number", &self.certificate_number)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associated_data_differs_for_every_binding() {
        let c1 = CompanyId::from_uuid(Uuid::from_u128(1));
        let c2 = CompanyId::from_uuid(Uuid::from_u128(2));
        let r1 = Uuid::from_u128(10);
        let r2 = Uuid::from_u128(11);
        let base = AssociatedData {
            company: c1,
            purpose: Purpose::PrivateKey,
            record: r1,
        };
        let others = [
            AssociatedData {
                company: c2,
                ..base
            },
            AssociatedData { record: r2, ..base },
            AssociatedData {
                purpose: Purpose::KeyPassword,
                ..base
            },
        ];
        for other in others {
            assert_ne!(base.to_bytes(), other.to_bytes(), "{other:?}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        assert_eq!(
            format!("{:?}", SecretBytes::new(b"12345678a".to_vec())),
            "SecretBytes(9 bytes)"
        );
        assert!(!format!("{:?}", Sealed::new("ev1.abc".into())).contains("abc"));
    }
}
