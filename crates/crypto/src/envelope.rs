//! Envelope encryption (VAULT-1, VAULT-2, VAULT-7): AES-256-CTR + HMAC-SHA-256, encrypt-then-MAC,
//! keys derived per purpose by HKDF-SHA-256 from a versioned master key.
//!
//! Stored form: `ev1.` followed by base64url (no padding) of
//! `version (1 byte) | key id (u32, big endian) | IV (16 bytes) | ciphertext | tag (32 bytes)`.
//! The tag covers `version | key id | IV | len(AD) (u64, big endian) | AD | ciphertext`.

use std::collections::BTreeMap;

use aes::Aes256;
use base64::Engine as _;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use vault::{AssociatedData, Envelope, Purpose, Sealed, SecretBytes, VaultError};
use zeroize::Zeroizing;

use crate::Keyring;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;
type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "ev1.";
const VERSION: u8 = 1;
const IV_LEN: usize = 16;
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = 1 + 4 + IV_LEN;

/// Encryption and MAC keys of one (key version, purpose) pair.
struct DerivedKeys {
    enc: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

/// The [`Envelope`] implementation. Derives every (key version × purpose) key pair once, at
/// construction; the master keys themselves are not kept.
pub struct AesCtrHmacEnvelope {
    keys: BTreeMap<(u32, &'static str), DerivedKeys>,
    current: u32,
}

impl std::fmt::Debug for AesCtrHmacEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesCtrHmacEnvelope")
            .field("current_key_id", &self.current)
            .finish_non_exhaustive()
    }
}

fn derive(master: &[u8; 32], purpose: &str) -> DerivedKeys {
    let hk = Hkdf::<Sha256>::new(Some(b"incrementa/envelope/v1"), master);
    let mut enc = Zeroizing::new([0_u8; 32]);
    let mut mac = Zeroizing::new([0_u8; 32]);
    // 32-byte outputs are far below HKDF-SHA-256's limit of 8160 bytes: expand cannot fail.
    let _ = hk.expand(format!("{purpose}/enc").as_bytes(), enc.as_mut());
    let _ = hk.expand(format!("{purpose}/mac").as_bytes(), mac.as_mut());
    DerivedKeys { enc, mac }
}

fn tag(
    mac_key: &[u8; 32],
    header: &[u8],
    ad: &[u8],
    ciphertext: &[u8],
) -> Result<HmacSha256, VaultError> {
    // HMAC accepts keys of any length, so this never fails; it is still handled, not unwrapped.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(mac_key)
        .map_err(|_| VaultError::Key("HMAC key".into()))?;
    mac.update(header);
    mac.update(&(ad.len() as u64).to_be_bytes());
    mac.update(ad);
    mac.update(ciphertext);
    Ok(mac)
}

impl AesCtrHmacEnvelope {
    /// Derives the keys of every version in `keyring`.
    #[must_use]
    pub fn new(keyring: &Keyring) -> Self {
        let mut keys = BTreeMap::new();
        for (id, master) in keyring.iter() {
            for purpose in Purpose::ALL {
                keys.insert(
                    (id, purpose.as_str()),
                    derive(master.expose(), purpose.as_str()),
                );
            }
        }
        Self {
            keys,
            current: keyring.current_id(),
        }
    }

    /// The encrypt-then-MAC core of [`Envelope::seal`]: `version | key id | iv | ciphertext | tag`
    /// as bytes, before the text encoding of the stored form.
    ///
    /// # Errors
    /// `Key` when the current key version has no derived keys (cannot happen after `new`).
    pub fn seal_bytes(&self, plaintext: &[u8], ad: &AssociatedData) -> Result<Vec<u8>, VaultError> {
        let keys = self
            .keys
            .get(&(self.current, ad.purpose.as_str()))
            .ok_or_else(|| VaultError::Key(format!("no key version {}", self.current)))?;
        let mut iv = [0_u8; IV_LEN];
        OsRng.fill_bytes(&mut iv);
        let mut header = [0_u8; HEADER_LEN];
        header[0] = VERSION;
        header[1..5].copy_from_slice(&self.current.to_be_bytes());
        header[5..].copy_from_slice(&iv);
        // One pass per 64 KiB chunk while it is in cache: copy, encrypt, MAC.
        let ad_bytes = ad.to_bytes();
        let mut mac = tag(&keys.mac, &header, &ad_bytes, &[])?;
        let mut cipher = Aes256Ctr::new(keys.enc.as_ref().into(), &iv.into());
        let mut raw = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        raw.extend_from_slice(&header);
        for chunk in plaintext.chunks(64 * 1024) {
            let start = raw.len();
            raw.extend_from_slice(chunk);
            let Some(fresh) = raw.get_mut(start..) else {
                return Err(VaultError::Key("envelope buffer".into()));
            };
            cipher.apply_keystream(fresh);
            mac.update(fresh);
        }
        raw.extend_from_slice(&mac.finalize().into_bytes());
        Ok(raw)
    }

    fn decode(sealed: &Sealed) -> Option<Vec<u8>> {
        let body = sealed.as_str().strip_prefix(PREFIX)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?;
        (raw.len() >= HEADER_LEN + TAG_LEN && raw.first() == Some(&VERSION)).then_some(raw)
    }
}

impl Envelope for AesCtrHmacEnvelope {
    fn seal(&self, plaintext: &[u8], ad: &AssociatedData) -> Result<Sealed, VaultError> {
        let raw = self.seal_bytes(plaintext, ad)?;
        // Encode once into a string of the final size.
        let mut text = String::with_capacity(
            PREFIX.len() + base64::encoded_len(raw.len(), false).unwrap_or(0),
        );
        text.push_str(PREFIX);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&raw, &mut text);
        Ok(Sealed::new(text))
    }

    fn open(&self, sealed: &Sealed, ad: &AssociatedData) -> Result<SecretBytes, VaultError> {
        let raw = Self::decode(sealed).ok_or(VaultError::Tampered)?;
        let (header, rest) = raw
            .split_at_checked(HEADER_LEN)
            .ok_or(VaultError::Tampered)?;
        let (ciphertext, received) = rest
            .split_at_checked(rest.len().saturating_sub(TAG_LEN))
            .ok_or(VaultError::Tampered)?;
        let key_id = header
            .get(1..5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or(VaultError::Tampered)?;
        let iv: [u8; IV_LEN] = header
            .get(5..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(VaultError::Tampered)?;
        let keys = self
            .keys
            .get(&(key_id, ad.purpose.as_str()))
            .ok_or(VaultError::Tampered)?;
        // Constant-time comparison of the tag, before any decryption (encrypt-then-MAC).
        tag(&keys.mac, header, &ad.to_bytes(), ciphertext)?
            .verify_slice(received)
            .map_err(|_| VaultError::Tampered)?;
        let mut plain = ciphertext.to_vec();
        Aes256Ctr::new(keys.enc.as_ref().into(), &iv.into()).apply_keystream(&mut plain);
        Ok(SecretBytes::new(plain))
    }

    fn current_key_id(&self) -> u32 {
        self.current
    }

    fn key_id_of(&self, sealed: &Sealed) -> Option<u32> {
        let raw = Self::decode(sealed)?;
        raw.get(1..5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;
    use kernel::CompanyId;
    use uuid::Uuid;

    fn keyring(ids: &[u32]) -> Keyring {
        let mut k = Keyring::default();
        for id in ids {
            k.insert(*id, MasterKey::parse(&format!("{:064x}", *id)).unwrap());
        }
        k
    }

    fn ad(company: u128, purpose: Purpose, record: u128) -> AssociatedData {
        AssociatedData {
            company: CompanyId::from_uuid(Uuid::from_u128(company)),
            purpose,
            record: Uuid::from_u128(record),
        }
    }

    #[test]
    fn round_trip_and_fresh_iv_per_value() {
        let env = AesCtrHmacEnvelope::new(&keyring(&[1]));
        let a = ad(1, Purpose::PrivateKey, 9);
        let s1 = env.seal(b"the private key", &a).unwrap();
        let s2 = env.seal(b"the private key", &a).unwrap();
        assert_ne!(s1, s2, "a fresh IV per value");
        assert!(s1.as_str().starts_with("ev1."));
        assert!(!s1.as_str().contains("private"));
        assert_eq!(env.open(&s1, &a).unwrap().expose(), b"the private key");
        assert_eq!(env.key_id_of(&s1), Some(1));
        assert_eq!(
            env.open(&env.seal(b"", &a).unwrap(), &a).unwrap().expose(),
            b""
        );
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_fails() {
        let env = AesCtrHmacEnvelope::new(&keyring(&[1]));
        let a = ad(1, Purpose::KeyPassword, 9);
        let sealed = env.seal(b"12345678a", &a).unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&sealed.as_str()[4..])
            .unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut bad = raw.clone();
                bad[i] ^= 1 << bit;
                let text = format!(
                    "ev1.{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bad)
                );
                assert!(
                    matches!(env.open(&Sealed::new(text), &a), Err(VaultError::Tampered)),
                    "byte {i} bit {bit}"
                );
            }
        }
        for len in 0..raw.len() {
            let text = format!(
                "ev1.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[..len])
            );
            assert!(
                matches!(env.open(&Sealed::new(text), &a), Err(VaultError::Tampered)),
                "truncated to {len}"
            );
        }
        for junk in ["", "ev1.", "ev1.!!!", "ev2.AAAA", "plain text"] {
            assert!(
                matches!(
                    env.open(&Sealed::new(junk.into()), &a),
                    Err(VaultError::Tampered)
                ),
                "{junk}"
            );
        }
    }

    #[test]
    fn a_value_moved_to_another_company_record_or_purpose_fails() {
        let env = AesCtrHmacEnvelope::new(&keyring(&[1]));
        let sealed = env.seal(b"secret", &ad(1, Purpose::PrivateKey, 9)).unwrap();
        for wrong in [
            ad(2, Purpose::PrivateKey, 9),
            ad(1, Purpose::PrivateKey, 10),
            ad(1, Purpose::KeyPassword, 9),
            ad(1, Purpose::Certificate, 9),
        ] {
            assert!(
                matches!(env.open(&sealed, &wrong), Err(VaultError::Tampered)),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_seals_with_the_newest() {
        let a = ad(1, Purpose::Certificate, 9);
        let old = AesCtrHmacEnvelope::new(&keyring(&[1]))
            .seal(b"cert", &a)
            .unwrap();
        let rotated = AesCtrHmacEnvelope::new(&keyring(&[1, 2]));
        assert_eq!(rotated.current_key_id(), 2);
        assert_eq!(rotated.open(&old, &a).unwrap().expose(), b"cert");
        let new = rotated.seal(b"cert", &a).unwrap();
        assert_eq!(rotated.key_id_of(&new), Some(2));
        // Once key 1 is retired, its values no longer open; a different master key opens nothing.
        assert!(matches!(
            AesCtrHmacEnvelope::new(&keyring(&[2])).open(&old, &a),
            Err(VaultError::Tampered)
        ));
        assert!(matches!(
            AesCtrHmacEnvelope::new(&keyring(&[3])).open(&new, &a),
            Err(VaultError::Tampered)
        ));
    }
}
