//! Backup encryption (BAK-1): a stream format for files of any size, sealed chunk by chunk with
//! AES-256-CTR and HMAC-SHA-256 (encrypt-then-MAC) under keys derived by HKDF from the master key
//! (never the vault's keys: a different salt and label).
//!
//! Layout: header `IBK1 | version (1) | key id (u32 BE) | file id (16 random bytes)`, then chunks
//! `final flag (1) | length (u32 BE) | IV (16) | ciphertext | tag (32)`. Each tag covers the
//! header, the chunk's index, its flag, length, IV and ciphertext, so chunks cannot be reordered,
//! dropped, moved between files, or cut off (the last chunk is flagged; nothing may follow it).
//! Memory stays at one chunk whatever the file size.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{CryptoError, Keyring};

type Aes256Ctr = ctr::Ctr128BE<Aes256>;
type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 4] = b"IBK1";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 4 + 16;
const IV_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;

struct Keys {
    enc: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

fn derive(master: &[u8; 32]) -> Keys {
    let hk = Hkdf::<Sha256>::new(Some(b"incrementa/backup/v1"), master);
    let mut enc = Zeroizing::new([0_u8; 32]);
    let mut mac = Zeroizing::new([0_u8; 32]);
    // 32-byte outputs are far below HKDF's limit: expand cannot fail.
    let _ = hk.expand(b"backup/enc", enc.as_mut());
    let _ = hk.expand(b"backup/mac", mac.as_mut());
    Keys { enc, mac }
}

fn err(what: &str) -> CryptoError {
    CryptoError::Backup(what.to_owned())
}

fn io(e: &std::io::Error) -> CryptoError {
    CryptoError::Backup(format!("I/O: {}", e.kind()))
}

/// Seals and opens backup streams with the keyring's versions.
pub struct BackupCipher {
    keys: BTreeMap<u32, Keys>,
    current: u32,
}

impl std::fmt::Debug for BackupCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupCipher")
            .field("current_key_id", &self.current)
            .finish_non_exhaustive()
    }
}

fn tag(keys: &Keys, header: &[u8], index: u64, flag: u8, iv: &[u8], ct: &[u8]) -> [u8; TAG_LEN] {
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(keys.mac.as_ref()) else {
        return [0; TAG_LEN];
    };
    mac.update(header);
    mac.update(&index.to_be_bytes());
    mac.update(&[flag]);
    mac.update(&u32::try_from(ct.len()).unwrap_or(u32::MAX).to_be_bytes());
    mac.update(iv);
    mac.update(ct);
    mac.finalize().into_bytes().into()
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, CryptoError> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(&e)),
        }
    }
    Ok(n)
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), CryptoError> {
    if fill(input, buf)? == buf.len() {
        Ok(())
    } else {
        Err(err(&format!("the file is truncated ({what})")))
    }
}

impl BackupCipher {
    /// Keys for every version of `ring`; new backups use the newest.
    #[must_use]
    pub fn new(ring: &Keyring) -> Self {
        Self {
            keys: ring
                .iter()
                .map(|(id, k)| (id, derive(k.expose())))
                .collect(),
            current: ring.current_id(),
        }
    }

    /// Encrypts `input` into `output`; returns the bytes written.
    ///
    /// # Errors
    /// [`CryptoError::Backup`] on I/O failure or an empty keyring.
    pub fn seal(&self, mut input: impl Read, mut output: impl Write) -> Result<u64, CryptoError> {
        let keys = self
            .keys
            .get(&self.current)
            .ok_or_else(|| err("no master key"))?;
        let mut header = [0_u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = VERSION;
        header[5..9].copy_from_slice(&self.current.to_be_bytes());
        OsRng.fill_bytes(&mut header[9..]);
        output.write_all(&header).map_err(|e| io(&e))?;
        let mut written = HEADER_LEN as u64;
        let mut buf = Zeroizing::new(vec![0_u8; CHUNK]);
        let mut next = Zeroizing::new(vec![0_u8; CHUNK]);
        let mut len = fill(&mut input, &mut buf)?;
        for index in 0_u64.. {
            // Look ahead one chunk, so the last one is flagged as final.
            let next_len = if len == CHUNK {
                fill(&mut input, &mut next)?
            } else {
                0
            };
            let flag = u8::from(next_len == 0);
            let mut iv = [0_u8; IV_LEN];
            OsRng.fill_bytes(&mut iv);
            let ct = buf.get_mut(..len).unwrap_or_default();
            Aes256Ctr::new(keys.enc.as_ref().into(), (&iv).into()).apply_keystream(ct);
            let t = tag(keys, &header, index, flag, &iv, ct);
            output.write_all(&[flag]).map_err(|e| io(&e))?;
            output
                .write_all(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes())
                .map_err(|e| io(&e))?;
            output.write_all(&iv).map_err(|e| io(&e))?;
            output.write_all(ct).map_err(|e| io(&e))?;
            output.write_all(&t).map_err(|e| io(&e))?;
            written += (1 + 4 + IV_LEN + len + TAG_LEN) as u64;
            if flag == 1 {
                break;
            }
            std::mem::swap(&mut buf, &mut next);
            len = next_len;
        }
        output.flush().map_err(|e| io(&e))?;
        Ok(written)
    }

    /// Decrypts `input` into `output`, checking every chunk before writing it; returns the
    /// plaintext bytes. Nothing unauthenticated is ever written.
    ///
    /// # Errors
    /// [`CryptoError::Backup`] naming the problem: not a backup, unknown key version (a wrong
    /// or retired key), a tampered chunk, truncation, or data after the end.
    pub fn open(&self, mut input: impl Read, mut output: impl Write) -> Result<u64, CryptoError> {
        let mut header = [0_u8; HEADER_LEN];
        read_exact(&mut input, &mut header, "header")?;
        if &header[..4] != MAGIC || header[4] != VERSION {
            return Err(err("not an IncrementaCRM backup (bad header)"));
        }
        let key_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let keys = self.keys.get(&key_id).ok_or_else(|| {
            err(&format!(
                "sealed with master key {key_id}, which this keyring does not have"
            ))
        })?;
        let mut plain = 0_u64;
        let mut buf = Zeroizing::new(vec![0_u8; CHUNK]);
        for index in 0_u64.. {
            let mut head = [0_u8; 1 + 4 + IV_LEN];
            read_exact(&mut input, &mut head, "chunk header")?;
            let flag = head[0];
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if flag > 1 || len > CHUNK || (flag == 0 && len != CHUNK) {
                return Err(err(&format!("chunk {index} is malformed")));
            }
            let iv = &head[5..];
            let ct = buf.get_mut(..len).unwrap_or_default();
            read_exact(&mut input, ct, "chunk")?;
            let mut given = [0_u8; TAG_LEN];
            read_exact(&mut input, &mut given, "chunk tag")?;
            let expected = tag(keys, &header, index, flag, iv, ct);
            let diff = expected
                .iter()
                .zip(given.iter())
                .fold(0_u8, |a, (x, y)| a | (x ^ y));
            if diff != 0 {
                return Err(err(&format!(
                    "chunk {index} failed authentication: the file was altered or the key is wrong"
                )));
            }
            let mut iv16 = [0_u8; IV_LEN];
            iv16.copy_from_slice(iv);
            Aes256Ctr::new(keys.enc.as_ref().into(), (&iv16).into()).apply_keystream(ct);
            output.write_all(ct).map_err(|e| io(&e))?;
            plain += len as u64;
            if flag == 1 {
                break;
            }
        }
        let mut extra = [0_u8; 1];
        if fill(&mut input, &mut extra)? != 0 {
            return Err(err("data follows the final chunk"));
        }
        output.flush().map_err(|e| io(&e))?;
        Ok(plain)
    }

    /// A MAC of a manifest under the newest backup key, hex, so a manifest cannot be edited.
    #[must_use]
    pub fn manifest_mac(&self, key_id: u32, manifest: &[u8]) -> Option<String> {
        let keys = self.keys.get(&key_id)?;
        let mut mac = <HmacSha256 as Mac>::new_from_slice(keys.mac.as_ref()).ok()?;
        mac.update(b"manifest");
        mac.update(manifest);
        Some(hex::encode(mac.finalize().into_bytes()))
    }

    /// The key version new backups use.
    #[must_use]
    pub const fn current_key_id(&self) -> u32 {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;

    fn ring(byte: &str) -> Keyring {
        let mut r = Keyring::default();
        r.insert(1, MasterKey::parse(&byte.repeat(32)).unwrap());
        r
    }

    fn seal(c: &BackupCipher, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        c.seal(data, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_at_every_size_around_chunk_boundaries() {
        let c = BackupCipher::new(&ring("11"));
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&c, &data);
            let mut back = Vec::new();
            assert_eq!(c.open(sealed.as_slice(), &mut back).unwrap(), size as u64);
            assert_eq!(back, data, "{size}");
        }
    }

    #[test]
    fn a_flipped_byte_a_cut_an_extension_or_another_key_fail_without_output() {
        let c = BackupCipher::new(&ring("11"));
        let data = vec![7_u8; 2 * CHUNK + 10];
        let sealed = seal(&c, &data);
        for pos in [
            0,
            5,
            HEADER_LEN + 3,
            HEADER_LEN + 30,
            sealed.len() / 2,
            sealed.len() - 1,
        ] {
            let mut bad = sealed.clone();
            bad[pos] ^= 1;
            assert!(
                c.open(bad.as_slice(), &mut Vec::new()).is_err(),
                "flip at {pos}"
            );
        }
        // Cut at a chunk boundary: the last chunk is missing, which the final flag reveals.
        let first_chunk_end = HEADER_LEN + 1 + 4 + IV_LEN + CHUNK + TAG_LEN;
        for cut in [10, first_chunk_end, sealed.len() - 1] {
            let e = c.open(&sealed[..cut], &mut Vec::new()).unwrap_err();
            assert!(e.to_string().contains("truncated"), "{cut}: {e}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(
            c.open(longer.as_slice(), &mut Vec::new())
                .unwrap_err()
                .to_string()
                .contains("follows")
        );
        // Same key id, other key: authentication fails.
        let other = BackupCipher::new(&ring("22"));
        assert!(
            other
                .open(sealed.as_slice(), &mut Vec::new())
                .unwrap_err()
                .to_string()
                .contains("authentication")
        );
        // Unknown key id.
        let mut r = Keyring::default();
        r.insert(9, MasterKey::parse(&"11".repeat(32)).unwrap());
        assert!(
            BackupCipher::new(&r)
                .open(sealed.as_slice(), &mut Vec::new())
                .unwrap_err()
                .to_string()
                .contains("master key 1")
        );
    }

    #[test]
    fn manifests_are_bound_to_the_key() {
        let c = BackupCipher::new(&ring("11"));
        let m = c.manifest_mac(1, b"{}").unwrap();
        assert_ne!(Some(m.clone()), c.manifest_mac(1, b"{ }"));
        assert_ne!(
            Some(m),
            BackupCipher::new(&ring("22")).manifest_mac(1, b"{}")
        );
        assert!(c.manifest_mac(2, b"{}").is_none());
    }
}
