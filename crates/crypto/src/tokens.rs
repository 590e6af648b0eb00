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

#[cfg(test)]
mod tests {
    use super::*;

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
