use std::fmt;

use kernel::{CompanyId, Timestamp, UserId};
use vault::Sealed;
use zeroize::Zeroizing;

/// How many recovery codes a confirmation or a regeneration hands out (MFA-1).
pub const RECOVERY_CODE_COUNT: usize = 10;

/// A user's TOTP enrolment as stored: the secret only sealed (MFA-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// Tenant.
    pub company_id: CompanyId,
    /// The user (one enrolment per user).
    pub user_id: UserId,
    /// The secret, sealed with the vault envelope (`Purpose::TotpSecret`, record = user id).
    pub secret: Sealed,
    /// The master key version the secret is sealed under.
    pub key_id: u32,
    /// `None` while pending: a pending enrolment protects nothing.
    pub confirmed_at: Option<Timestamp>,
    /// The last TOTP step accepted; codes of this step or earlier are replays.
    pub last_used_step: Option<u64>,
    /// When enrolment started.
    pub created_at: Timestamp,
}

/// Text shown to the user exactly once (a TOTP secret, a URI holding it, a recovery code):
/// zeroized on drop and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeSecret(Zeroizing<String>);

impl OneTimeSecret {
    /// Wraps the text.
    #[must_use]
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The text, for the one response that carries it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTimeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeSecret(<redacted>)")
    }
}

/// A started enrolment: what the authenticator app needs.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The secret in base32, for typing in by hand.
    pub secret: OneTimeSecret,
    /// The `otpauth://` URI (holds the secret), for the QR code.
    pub otpauth_uri: OneTimeSecret,
}

/// Fresh recovery codes, shown once; only their digests are stored.
#[derive(Debug, Clone)]
pub struct RecoveryCodes(pub Vec<OneTimeSecret>);

/// What a user sends as its second factor.
#[derive(Clone)]
pub enum SecondFactor {
    /// A 6-digit TOTP code.
    Totp(Zeroizing<String>),
    /// A one-time recovery code.
    RecoveryCode(Zeroizing<String>),
}

impl SecondFactor {
    /// A TOTP code.
    #[must_use]
    pub fn totp(code: &str) -> Self {
        Self::Totp(Zeroizing::new(code.to_owned()))
    }

    /// A recovery code.
    #[must_use]
    pub fn recovery_code(code: &str) -> Self {
        Self::RecoveryCode(Zeroizing::new(code.to_owned()))
    }
}

impl fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Totp(_) => f.write_str("SecondFactor::Totp(<redacted>)"),
            Self::RecoveryCode(_) => f.write_str("SecondFactor::RecoveryCode(<redacted>)"),
        }
    }
}

/// A user's MFA state, for its profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MfaStatus {
    /// TOTP is confirmed.
    pub enabled: bool,
    /// An enrolment waits for its first code.
    pub pending: bool,
    /// Unused recovery codes left.
    pub recovery_codes_remaining: u32,
}

/// The canonical form of a recovery code: lowercase base32 letters and digits only, so
/// `ABCD-efgh ijkl-mnop` and `abcdefghijklmnop` are the same code. `None` when it cannot be
/// one (wrong length or characters), so nothing is looked up for it.
#[must_use]
pub fn normalize_recovery_code(input: &str) -> Option<Zeroizing<String>> {
    if input.len() > 64 {
        return None;
    }
    let code: String = input
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let code = Zeroizing::new(code);
    (code.len() == RECOVERY_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
    .then_some(code)
}

/// Characters in a recovery code: 16 base32 characters carry 80 random bits, beyond offline
/// guessing even against a plain digest.
pub(crate) const RECOVERY_CODE_LEN: usize = 16;
