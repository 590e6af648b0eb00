//! Password-reset tokens: the reset's id and a MAC of it under a key derived by HKDF from a
//! master key version, so a token is never stored: the outbox worker makes it as the e-mail goes
//! out, and the accounts core checks it when it comes back.
//!
//! Layout, base64url without padding (48 characters): key version (4 bytes, big-endian) ‖ reset
//! id (16) ‖ HMAC-SHA-256(key version ‖ reset id), first 16 bytes. 128 bits of MAC: a forgery
//! is out of reach, and the reset's expiry and single use bound what a token is worth.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::Keyring;

/// Bytes of MAC a token carries.
const TAG: usize = 16;
/// Bytes of a decoded token.
const LEN: usize = 4 + 16 + TAG;

/// Makes and checks password-reset tokens with the keys of a keyring (every version checks;
/// the current one makes). Implements [`accounts::ResetTokenVerifier`] and
/// [`notify::ResetTokenMinter`].
pub struct ResetTokens {
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
    current: u32,
}

impl std::fmt::Debug for ResetTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetTokens")
            .field("current_key_id", &self.current)
            .finish_non_exhaustive()
    }
}

impl ResetTokens {
    /// Derives the reset-token key of every version in `keyring`.
    #[must_use]
    pub fn new(keyring: &Keyring) -> Self {
        Self {
            keys: keyring.derived(b"incrementa/password-reset/v1", b"password-reset-token"),
            current: keyring.current_id(),
        }
    }

    fn mac(&self, key_id: u32, reset: Uuid) -> Option<Hmac<Sha256>> {
        let key = self.keys.get(&key_id)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).ok()?;
        mac.update(&key_id.to_be_bytes());
        mac.update(reset.as_bytes());
        Some(mac)
    }
}

impl notify::ResetTokenMinter for ResetTokens {
    fn mint(&self, reset: Uuid) -> Option<Zeroizing<String>> {
        let tag = self.mac(self.current, reset)?.finalize().into_bytes();
        let mut bytes = Zeroizing::new([0_u8; LEN]);
        let (version, rest) = bytes.split_at_mut(4);
        let (id, mac) = rest.split_at_mut(16);
        version.copy_from_slice(&self.current.to_be_bytes());
        id.copy_from_slice(reset.as_bytes());
        mac.copy_from_slice(tag.get(..TAG)?);
        Some(Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
        ))
    }
}

impl accounts::ResetTokenVerifier for ResetTokens {
    fn reset_id(&self, token: &str) -> Option<Uuid> {
        // A real token is 48 characters; anything much longer is not decoded at all.
        if token.len() > 64 {
            return None;
        }
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.trim())
                .ok()?,
        );
        let bytes: &[u8; LEN] = bytes.as_slice().try_into().ok()?;
        let (version, rest) = bytes.split_at(4);
        let (id, tag) = rest.split_at(16);
        let key_id = u32::from_be_bytes(version.try_into().ok()?);
        let reset = Uuid::from_slice(id).ok()?;
        // `verify_truncated_left` compares in constant time.
        self.mac(key_id, reset)?
            .verify_truncated_left(tag)
            .ok()
            .map(|()| reset)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use accounts::ResetTokenVerifier as _;
    use notify::ResetTokenMinter as _;

    use super::*;
    use crate::MasterKey;

    fn ring(versions: &[(u32, &str)]) -> Keyring {
        let mut ring = Keyring::default();
        for (id, hex) in versions {
            ring.insert(*id, MasterKey::parse(&hex.repeat(32)).unwrap());
        }
        ring
    }

    #[test]
    fn a_token_names_its_reset_and_nothing_else_checks() {
        let tokens = ResetTokens::new(&ring(&[(1, "01")]));
        let reset = Uuid::from_u128(0x1234);
        let token = tokens.mint(reset).unwrap();
        assert_eq!(token.len(), 48);
        assert_eq!(tokens.reset_id(&token), Some(reset));
        assert_eq!(
            tokens.mint(reset).unwrap(),
            token,
            "the same reset, the same token"
        );
        assert_ne!(tokens.mint(Uuid::from_u128(0x1235)).unwrap(), token);
        // Any changed character, a cut or a longer token, and garbage, are refused.
        for i in 0..token.len() {
            let mut forged = token.as_bytes().to_vec();
            forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            assert_eq!(tokens.reset_id(&forged), None, "character {i}");
        }
        assert_eq!(tokens.reset_id(&token[..47]), None);
        assert_eq!(tokens.reset_id(&format!("{}AA", token.as_str())), None);
        assert_eq!(tokens.reset_id(""), None);
        assert_eq!(tokens.reset_id("not base64 at all!"), None);
        assert_eq!(tokens.reset_id(&"A".repeat(10_000)), None);
    }

    /// A known answer, computed apart from this crate (Python's standard library): a token
    /// mailed before an upgrade must still work after it.
    #[test]
    fn the_token_layout_and_key_derivation_are_pinned() {
        let tokens = ResetTokens::new(&ring(&[(1, "01")]));
        let token = tokens.mint(Uuid::from_u128(0x1234)).unwrap();
        assert_eq!(
            token.as_str(),
            "AAAAAQAAAAAAAAAAAAAAAAAAEjRP8ISX_rKFANgYrlR2RZ1D"
        );
    }

    #[test]
    fn another_master_key_makes_other_tokens_and_old_versions_still_check() {
        let first = ResetTokens::new(&ring(&[(1, "01")]));
        let other = ResetTokens::new(&ring(&[(1, "02")]));
        let reset = Uuid::from_u128(7);
        let token = first.mint(reset).unwrap();
        assert_eq!(
            other.reset_id(&token),
            None,
            "a key of another installation"
        );
        // After a rotation, a token made before it still works until its reset expires, and new
        // ones are made with the new version.
        let rotated = ResetTokens::new(&ring(&[(1, "01"), (2, "03")]));
        assert_eq!(rotated.reset_id(&token), Some(reset));
        let newer = rotated.mint(reset).unwrap();
        assert_ne!(newer, token);
        assert_eq!(rotated.reset_id(&newer), Some(reset));
        assert_eq!(first.reset_id(&newer), None, "version 2 is unknown there");
    }

    #[test]
    fn debug_shows_no_key() {
        let text = format!("{:?}", ResetTokens::new(&ring(&[(1, "ab")])));
        assert!(!text.contains("171") && !text.contains("ab"), "{text}");
    }
}
