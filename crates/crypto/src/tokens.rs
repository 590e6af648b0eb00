use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use sessions::{SessionToken, TokenHash, TokenIssuer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// 256-bit session tokens from the operating system's generator, base64url without padding
/// (43 characters); stored as the hex SHA-256 of the token text (SES-3). A fast hash is right
/// here: the token has 256 bits of entropy, so nothing is gained by a slow one.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomTokens;

impl TokenIssuer for RandomTokens {
    fn issue(&self) -> (SessionToken, TokenHash) {
        let mut bytes = Zeroizing::new([0_u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref());
        let hash = self.hash(&token);
        (SessionToken::new(token), hash)
    }

    fn hash(&self, token: &str) -> TokenHash {
        TokenHash::new(hex::encode(Sha256::digest(token.as_bytes())))
    }
}

/// Time-ordered random ids (UUID v7): unique and kind to B-tree indexes. Ids are not secrets;
/// tokens are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl kernel::IdGenerator for RandomIds {
    fn new_id(&self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}

/// A temporary password for the operator's reset (`incrementa users reset-password`), from the
/// operating system's generator: 16 characters drawn from letters, digits and `#%+=-_`, then one
/// each of an upper-case letter, a lower-case letter, a digit and a symbol, so it meets the
/// password policy (about 110 bits). Only for handing over once; the user should change it.
#[must_use]
pub fn temporary_password() -> accounts::Password {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"#%+=-_";
    // One character of `set`, without modulo bias (bytes past the last whole multiple of the
    // set's size are drawn again).
    fn pick(set: &[u8], out: &mut Zeroizing<String>) {
        let len = set.len();
        let limit = 256 - 256 % len;
        loop {
            let mut byte = [0_u8; 1];
            OsRng.fill_bytes(&mut byte);
            let [value] = byte;
            let value = usize::from(value);
            if value < limit {
                if let Some(&c) = set.get(value % len) {
                    out.push(char::from(c));
                }
                return;
            }
        }
    }
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].concat();
    let mut text = Zeroizing::new(String::with_capacity(20));
    for _ in 0..16 {
        pick(&all, &mut text);
    }
    for set in [UPPER, LOWER, DIGIT, SYMBOL] {
        pick(set, &mut text);
    }
    accounts::Password::new(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Temporary passwords meet the default policy, are 20 characters and differ every time.
    #[test]
    fn temporary_passwords_meet_the_policy_and_never_repeat() {
        let policy = accounts::PasswordPolicy::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = temporary_password();
            assert_eq!(p.expose().chars().count(), 20);
            assert!(policy.check(&p, &p, None).is_empty(), "{}", p.expose());
            assert!(seen.insert(p.expose().to_owned()));
        }
    }

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, ha) = RandomTokens.issue();
        let (b, hb) = RandomTokens.issue();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
        assert_ne!(ha, hb);
        assert_eq!(RandomTokens.hash(a.expose()), ha);
        assert_eq!(ha.as_str().len(), 64);
        assert!(!ha.as_str().contains(a.expose()));
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
