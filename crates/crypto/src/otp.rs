//! HOTP (RFC 4226) with HMAC-SHA-1, for the TOTP codes of authenticator apps (MFA-1).

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The [`mfa::Hotp`] implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct HmacSha1Otp;

impl mfa::Hotp for HmacSha1Otp {
    fn hotp(&self, secret: &[u8], counter: u64, digits: u32) -> u32 {
        let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret) else {
            // HMAC takes keys of any length; unreachable, and no code matches 10^digits.
            return u32::MAX;
        };
        mac.update(&counter.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        // Dynamic truncation (RFC 4226 section 5.3).
        let offset = usize::from(digest.last().copied().unwrap_or(0) & 0x0f);
        let word = digest
            .get(offset..offset + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes)
            & 0x7fff_ffff;
        word % 10_u32.pow(digits.min(9))
    }
}

/// MFA randomness (the OS generator) and recovery-code digests (SHA-256, hex). Recovery codes
/// carry 80 random bits, so a plain digest already puts them beyond offline guessing.
#[derive(Debug, Clone, Copy, Default)]
pub struct MfaRandom;

impl mfa::MfaCrypto for MfaRandom {
    fn random_bytes(&self, len: usize) -> zeroize::Zeroizing<Vec<u8>> {
        use rand_core::RngCore as _;
        let mut bytes = zeroize::Zeroizing::new(vec![0_u8; len]);
        rand_core::OsRng.fill_bytes(&mut bytes);
        bytes
    }

    fn digest(&self, code: &str) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(code.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mfa::Hotp as _;

    const SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_4226_appendix_d() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(
                HmacSha1Otp.hotp(SECRET, counter as u64, 6),
                *code,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn rfc_6238_appendix_b_sha1() {
        // (unix time, 8-digit TOTP) for SHA-1.
        let vectors = [
            (59_u64, 94_287_082),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ];
        for (time, code) in vectors {
            assert_eq!(HmacSha1Otp.hotp(SECRET, time / 30, 8), code, "T={time}");
            // Six digits are the last six of eight.
            assert_eq!(
                HmacSha1Otp.hotp(SECRET, time / 30, 6),
                code % 1_000_000,
                "T={time}"
            );
        }
    }

    #[test]
    fn totp_verification_end_to_end_with_the_real_hmac() {
        use chrono::TimeZone;
        let now = chrono::Utc.timestamp_opt(1_111_111_111, 0).unwrap();
        let params = mfa::TotpParams::default();
        let step = mfa::verify(&HmacSha1Otp, SECRET, "050471", now, None, params).unwrap();
        assert_eq!(
            mfa::verify(&HmacSha1Otp, SECRET, "050471", now, Some(step), params),
            Err(mfa::TotpError::Replayed)
        );
        assert_eq!(
            mfa::verify(&HmacSha1Otp, SECRET, "050472", now, None, params),
            Err(mfa::TotpError::Invalid)
        );
    }
}
