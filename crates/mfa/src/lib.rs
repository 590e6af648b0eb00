//! Multi-factor authentication of IncrementaCRM (MFA-1, MFA-4): TOTP per RFC 6238 — SHA-1,
//! 30-second steps, 6 digits, one step of drift either way — where a code is accepted at most
//! once (a replay within its window is refused), plus the `otpauth://` URI an authenticator app
//! scans. The HMAC itself is a port ([`Hotp`]) implemented by the crypto adapter; time comes from
//! the caller (the `Clock` port), so drift and replay are tested without sleeping. This crate
//! must never depend on a database, a web framework or a cryptographic library.
//!
//! [`MfaService`] holds the use cases: enrolment (a 160-bit secret sealed with the vault's
//! envelope under `Purpose::TotpSecret`, MFA-4), confirmation with a first code (which returns
//! ten one-time recovery codes stored only as digests), the second-factor check the sessions core
//! calls at login and re-authentication, regeneration of recovery codes, and disabling.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod model;
mod ports;
mod service;

pub use error::MfaError;
pub use model::{
    Enrolment, MfaStatus, OneTimeSecret, RECOVERY_CODE_COUNT, RecoveryCodes, SecondFactor,
    TotpEnrolment, normalize_recovery_code,
};
pub use ports::{MfaCrypto, MfaRepository};
#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockMfaCrypto, MockMfaRepository};
pub use service::{FactorUsed, MfaPorts, MfaService};

use kernel::Timestamp;

/// HOTP (RFC 4226): the `digits`-digit code of `secret` at `counter`.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Hotp: Send + Sync {
    /// The code, as a number below `10^digits`.
    fn hotp(&self, secret: &[u8], counter: u64, digits: u32) -> u32;
}

/// TOTP settings (MFA-1): the authenticator apps' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    /// Seconds per step.
    pub step_secs: u64,
    /// Digits per code.
    pub digits: u32,
    /// Steps accepted before and after the current one.
    pub skew: u64,
}

impl Default for TotpParams {
    fn default() -> Self {
        Self {
            step_secs: 30,
            digits: 6,
            skew: 1,
        }
    }
}

/// Why a code is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpError {
    /// Not a code of this secret near this time, or not `digits` digits.
    Invalid,
    /// A code of a step at or before the last one accepted: a replay (MFA-4).
    Replayed,
}

/// The step number at `now` (RFC 6238: `floor(unix time / step)`); 0 before 1970.
#[must_use]
pub fn step_at(now: Timestamp, params: TotpParams) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0) / params.step_secs.max(1)
}

/// Verifies `code` against `secret` at `now`, accepting the steps `now ± skew` that come after
/// `last_used_step`. Returns the matched step, which the caller stores as the new
/// `last_used_step` in the same transaction as the login it allows.
///
/// # Errors
/// [`TotpError::Invalid`] or [`TotpError::Replayed`].
pub fn verify(
    hotp: &dyn Hotp,
    secret: &[u8],
    code: &str,
    now: Timestamp,
    last_used_step: Option<u64>,
    params: TotpParams,
) -> Result<u64, TotpError> {
    let code = code.trim();
    if code.len() != params.digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Invalid);
    }
    let given: u32 = code.parse().map_err(|_| TotpError::Invalid)?;
    let current = step_at(now, params);
    let mut replayed = false;
    // Check every candidate step (no early exit on a match) so timing does not say which matched.
    let mut matched = None;
    for step in current.saturating_sub(params.skew)..=current.saturating_add(params.skew) {
        let expected = hotp.hotp(secret, step, params.digits);
        if constant_time_eq(expected, given) && matched.is_none() {
            if last_used_step.is_some_and(|last| step <= last) {
                replayed = true;
            } else {
                matched = Some(step);
            }
        }
    }
    match (matched, replayed) {
        (Some(step), _) => Ok(step),
        (None, true) => Err(TotpError::Replayed),
        (None, false) => Err(TotpError::Invalid),
    }
}

fn constant_time_eq(a: u32, b: u32) -> bool {
    (a ^ b) == 0
}

/// RFC 4648 base32 without padding: how authenticator apps take secrets.
#[must_use]
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits = 0_u32;
    for byte in bytes {
        buffer = (buffer << 8) | u64::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let index = usize::try_from((buffer >> bits) & 31).unwrap_or(0);
            out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
        }
    }
    if bits > 0 {
        let index = usize::try_from((buffer << (5 - bits)) & 31).unwrap_or(0);
        out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
    }
    out
}

/// Decodes RFC 4648 base32 (case-insensitive, padding and spaces ignored), as users type
/// secrets into apps; `None` on any other character.
#[must_use]
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u64 = 0;
    let mut bits = 0_u32;
    for c in text.chars().filter(|c| *c != '=' && !c.is_whitespace()) {
        let value = match c.to_ascii_uppercase() {
            u @ 'A'..='Z' => u32::from(u) - u32::from('A'),
            d @ '2'..='7' => u32::from(d) - u32::from('2') + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u64::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).unwrap_or(0));
        }
    }
    Some(out)
}

/// The TOTP code of `secret` at `at`, zero-padded: what an authenticator app shows.
#[must_use]
pub fn code_at(hotp: &dyn Hotp, secret: &[u8], at: Timestamp, params: TotpParams) -> String {
    let code = hotp.hotp(secret, step_at(at, params), params.digits);
    format!("{code:0width$}", width = params.digits as usize)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `otpauth://totp/...` URI of MFA-1, with the issuer in the label and as a parameter, as
/// Google Authenticator's key URI format asks.
///
/// ```
/// use mfa::{TotpParams, base32, base32_decode, otpauth_uri};
///
/// let secret = b"12345678901234567890"; // RFC 6238's test secret
/// assert_eq!(base32(secret), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
/// assert_eq!(base32_decode("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap(), secret);
/// let uri = otpauth_uri("IncrementaCRM", "ana@example.com", secret, TotpParams::default());
/// assert!(uri.starts_with("otpauth://totp/IncrementaCRM:ana%40example.com?"));
/// assert!(uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
/// ```
#[must_use]
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8], params: TotpParams) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={}&period={}",
        percent_encode(issuer),
        percent_encode(account),
        base32(secret),
        percent_encode(issuer),
        params.digits,
        params.step_secs
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A stand-in HMAC: the code is the step number, so the window logic is easy to read.
    fn counting() -> MockHotp {
        let mut h = MockHotp::new();
        h.expect_hotp()
            .returning(|_, counter, digits| u32::try_from(counter % 10_u64.pow(digits)).unwrap());
        h
    }

    fn at(secs: i64) -> Timestamp {
        chrono::Utc.timestamp_opt(secs, 0).unwrap()
    }

    fn code(step: u64) -> String {
        format!("{:06}", step % 1_000_000)
    }

    #[test]
    fn the_current_step_and_one_step_of_drift_each_way_are_accepted() {
        let h = counting();
        let p = TotpParams::default();
        let now = at(1_790_000_015); // step 59_666_667
        let step = step_at(now, p);
        assert_eq!(step, 59_666_667);
        for s in [step - 1, step, step + 1] {
            assert_eq!(verify(&h, b"k", &code(s), now, None, p), Ok(s));
        }
        for s in [step - 2, step + 2] {
            assert_eq!(
                verify(&h, b"k", &code(s), now, None, p),
                Err(TotpError::Invalid)
            );
        }
    }

    #[test]
    fn a_code_is_accepted_at_most_once() {
        let h = counting();
        let p = TotpParams::default();
        let now = at(1_790_000_015);
        let step = verify(&h, b"k", &code(59_666_667), now, None, p).unwrap();
        assert_eq!(
            verify(&h, b"k", &code(59_666_667), now, Some(step), p),
            Err(TotpError::Replayed)
        );
        // An earlier code of the window is a replay too once a later one was used.
        assert_eq!(
            verify(&h, b"k", &code(59_666_666), now, Some(step), p),
            Err(TotpError::Replayed)
        );
        // The next step's code is still good.
        assert_eq!(
            verify(&h, b"k", &code(59_666_668), now, Some(step), p),
            Ok(59_666_668)
        );
    }

    #[test]
    fn malformed_codes_are_invalid_without_computing_anything() {
        let mut h = MockHotp::new();
        h.expect_hotp().times(0);
        for bad in ["", "12345", "1234567", "12a456", "12 456", "-12345"] {
            assert_eq!(
                verify(&h, b"k", bad, at(0), None, TotpParams::default()),
                Err(TotpError::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn base32_follows_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn base32_decoding_inverts_encoding_and_refuses_other_characters() {
        for input in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "12345678901234567890",
        ] {
            assert_eq!(
                base32_decode(&base32(input.as_bytes())).as_deref(),
                Some(input.as_bytes())
            );
        }
        assert_eq!(
            base32_decode("mzxw 6ytb oi==").as_deref(),
            Some(&b"foobar"[..])
        );
        assert_eq!(base32_decode("MZXW1"), None);
        assert_eq!(base32_decode("MZ-XW"), None);
    }

    #[test]
    fn codes_are_zero_padded_to_their_digits() {
        let mut h = MockHotp::new();
        h.expect_hotp().returning(|_, _, _| 42);
        assert_eq!(code_at(&h, b"k", at(0), TotpParams::default()), "000042");
    }

    #[test]
    fn otpauth_uris_carry_issuer_account_and_secret() {
        let uri = otpauth_uri(
            "IncrementaCRM",
            "ana.lópez@example.com",
            b"12345678901234567890",
            TotpParams::default(),
        );
        assert_eq!(
            uri,
            "otpauth://totp/IncrementaCRM:ana.l%C3%B3pez%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=IncrementaCRM&algorithm=SHA1&digits=6&period=30"
        );
    }
}
