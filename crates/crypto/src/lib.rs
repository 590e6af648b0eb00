//! Cryptographic adapter of IncrementaCRM: implements the hashing and token ports of the cores.
//!
//! - [`Argon2Hasher`]: Argon2id PHC hashes (PWD-3) with at least OWASP's parameters, run on the
//!   blocking pool behind a semaphore so logins cannot starve the async executor (OPS-4); unknown
//!   users are verified against a dummy hash so timing does not reveal which emails exist.
//! - [`RandomTokens`]: 256-bit session tokens from the OS generator, stored as SHA-256 (SES-3).
//! - [`ResetTokens`]: password-reset tokens, a MAC of the reset's id, made at delivery and never
//!   stored.
//! - [`Keyring`]: the versions of the vault master key, from the environment or a 0600 key file
//!   created on first start (ENC-1); rotation and retirement (VAULT-7).
//! - [`AesCtrHmacEnvelope`]: the vault's envelope encryption (VAULT-1, VAULT-2).
//! - [`SatInspector`]: SAT certificates and PKCS#8 keys: parsing, validation, signing (VAULT-3,
//!   VAULT-4, VAULT-6).
#![forbid(unsafe_code)]

mod audit_mac;
mod backup;
mod envelope;
mod hasher;
mod master_key;
mod otp;
mod reset_tokens;
mod sat;
mod tokens;

pub use audit_mac::HmacChain;
pub use backup::BackupCipher;
pub use envelope::AesCtrHmacEnvelope;
pub use hasher::{Argon2Hasher, HashParams, HashStats, legacy_hash};
pub use master_key::{KeySource, Keyring, MasterKey};
pub use otp::{HmacSha1Otp, MfaRandom};
pub use reset_tokens::ResetTokens;
pub use sat::{
    SatInspector, TrustedIssuer, TrustedIssuers, TrustingSatInspector, fuzz_decrypt_key,
    fuzz_inspect, verify_signature,
};
pub use tokens::{RandomIds, RandomTokens, temporary_password};

/// Errors of the crypto adapter.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Hash parameters below the allowed minimum.
    #[error("argon2 parameters below the minimum (m={min_m_kib} KiB, t={min_t}, p={min_p})")]
    WeakParameters {
        /// Minimum memory in KiB.
        min_m_kib: u32,
        /// Minimum iterations.
        min_t: u32,
        /// Minimum parallelism.
        min_p: u32,
    },
    /// The argon2 library refused the parameters or the input.
    #[error("argon2 failed: {0}")]
    Argon2(String),
    /// The blocking worker failed.
    #[error("the hashing worker stopped")]
    Worker,
    /// The key file or variable is unusable; the message says why without the key.
    #[error("master key: {0}")]
    Key(String),
    /// The trusted issuers' certificates are unusable; the message says why.
    #[error("trusted issuers: {0}")]
    Trust(String),
    /// A backup stream could not be sealed or opened; the message says why.
    #[error("backup: {0}")]
    Backup(String),
    /// Reading or writing the key file failed.
    #[error("master key file {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
