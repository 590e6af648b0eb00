//! The audit chain's MAC (AUD-4): HMAC-SHA-256 with a key derived by HKDF from each master key
//! version, so the key never sits in the database.

use std::collections::BTreeMap;

use audit::ChainMac;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Keyring;

/// [`ChainMac`] over a keyring.
pub struct HmacChain {
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
    current: u32,
}

impl std::fmt::Debug for HmacChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacChain")
            .field("current_key_id", &self.current)
            .finish_non_exhaustive()
    }
}

impl HmacChain {
    /// Derives the chain key of every version in `keyring`.
    #[must_use]
    pub fn new(keyring: &Keyring) -> Self {
        Self {
            keys: keyring.derived(b"incrementa/audit-chain/v1", b"audit-chain-mac"),
            current: keyring.current_id(),
        }
    }
}

impl ChainMac for HmacChain {
    fn current_key_id(&self) -> u32 {
        self.current
    }

    fn mac(&self, key_id: u32, previous: &[u8; 32], record: &[u8]) -> Option<[u8; 32]> {
        let key = self.keys.get(&key_id)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).ok()?;
        mac.update(previous);
        mac.update(record);
        Some(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;

    /// A known answer, computed apart from this crate (HKDF-SHA-256 and HMAC-SHA-256 in Python's
    /// standard library): the chain key's derivation must never change, or every stored chain
    /// stops verifying.
    #[test]
    fn the_chain_key_derivation_is_pinned() {
        let mut ring = Keyring::default();
        ring.insert(1, MasterKey::parse(&"01".repeat(32)).unwrap());
        let mac = HmacChain::new(&ring).mac(1, &[0; 32], b"record").unwrap();
        assert_eq!(
            hex::encode(mac),
            "85870f993ca4faab48826e830fa66b8b8f12c8115566ec1d04d56d95ddfb95a6"
        );
    }

    #[test]
    fn macs_depend_on_key_previous_and_record() {
        let mut ring = Keyring::default();
        ring.insert(1, MasterKey::parse(&"01".repeat(32)).unwrap());
        ring.insert(2, MasterKey::parse(&"02".repeat(32)).unwrap());
        let chain = HmacChain::new(&ring);
        assert_eq!(chain.current_key_id(), 2);
        let m = chain.mac(1, &[0; 32], b"record").unwrap();
        assert_eq!(chain.mac(1, &[0; 32], b"record"), Some(m));
        assert_ne!(chain.mac(2, &[0; 32], b"record"), Some(m));
        assert_ne!(chain.mac(1, &[1; 32], b"record"), Some(m));
        assert_ne!(chain.mac(1, &[0; 32], b"recorD"), Some(m));
        assert_eq!(chain.mac(3, &[0; 32], b"record"), None);
    }
}
