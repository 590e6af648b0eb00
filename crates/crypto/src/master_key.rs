use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Where the keyring came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `INCREMENTA_MASTER_KEY`.
    Environment,
    /// `INCREMENTA_MASTER_KEY_FILE`, or an existing key file in the data directory.
    File(PathBuf),
    /// Created just now in the data directory (embedded default).
    Generated(PathBuf),
}

impl KeySource {
    /// The file behind the keyring, when there is one (rotation and retirement edit it).
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Environment => None,
            Self::File(p) | Self::Generated(p) => Some(p),
        }
    }
}

/// One 256-bit master key. Never in the database, never in `Debug`, zeroized on drop.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// Parses a key written as base64 (standard or URL-safe) or hex of exactly 32 bytes.
    ///
    /// # Errors
    /// [`CryptoError::Key`] naming the expected format, never echoing the input.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let decoded = Zeroizing::new(
            hex::decode(text)
                .ok()
                .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
                .or_else(|| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(text)
                        .ok()
                })
                .ok_or_else(|| CryptoError::Key("expected 32 bytes as base64 or hex".into()))?,
        );
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Key(format!("expected 32 bytes, found {}", decoded.len())))?;
        Ok(Self(Zeroizing::new(bytes)))
    }

    /// A fresh random key.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0_u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    /// The key bytes, for key derivation only.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.as_ref()))
    }
}

/// The versions of the master key (VAULT-7). New values are sealed under the highest id; older
/// ids stay readable until retired.
///
/// Text form (key file or `INCREMENTA_MASTER_KEY`): one `ID:KEY` per line (or separated by
/// commas), KEY in base64 or hex; a single bare KEY is version 1. `#` starts a comment.
#[derive(Default)]
pub struct Keyring {
    keys: BTreeMap<u32, MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Parses the text form.
    ///
    /// # Errors
    /// An empty keyring, a malformed line (named by number, never echoed), a duplicate id.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let mut ring = Self::default();
        // Comments run to the end of their line; then entries are separated by commas too.
        let entries: Vec<&str> = text
            .lines()
            .map(|line| line.split_once('#').map_or(line, |(before, _)| before))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect();
        for (n, entry) in entries.iter().enumerate() {
            let (id, key) = match entry.split_once(':') {
                Some((id, key)) => {
                    let id: u32 = id.trim().parse().map_err(|_| {
                        CryptoError::Key(format!("entry {}: the key id is not a number", n + 1))
                    })?;
                    (id, key)
                }
                None if entries.len() == 1 => (1, *entry),
                None => {
                    return Err(CryptoError::Key(format!(
                        "entry {}: expected ID:KEY",
                        n + 1
                    )));
                }
            };
            if id == 0 {
                return Err(CryptoError::Key(format!(
                    "entry {}: key ids start at 1",
                    n + 1
                )));
            }
            let key = MasterKey::parse(key)
                .map_err(|e| CryptoError::Key(format!("entry {}: {e}", n + 1)))?;
            if ring.keys.insert(id, key).is_some() {
                return Err(CryptoError::Key(format!("key id {id} appears twice")));
            }
        }
        if ring.keys.is_empty() {
            return Err(CryptoError::Key("no key found".into()));
        }
        Ok(ring)
    }

    /// Adds a version.
    pub fn insert(&mut self, id: u32, key: MasterKey) {
        self.keys.insert(id, key);
    }

    /// The newest version (0 for an empty ring).
    #[must_use]
    pub fn current_id(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(0)
    }

    /// The newest key.
    #[must_use]
    pub fn current(&self) -> Option<&MasterKey> {
        self.keys.values().next_back()
    }

    /// Every version, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &MasterKey)> {
        self.keys.iter().map(|(id, k)| (*id, k))
    }

    /// A 32-byte key derived by HKDF-SHA-256 (`salt`, `info`) from every version: how each
    /// purpose (the audit chain's MAC, reset tokens) gets keys of its own that never sit in the
    /// database.
    #[must_use]
    pub(crate) fn derived(&self, salt: &[u8], info: &[u8]) -> BTreeMap<u32, Zeroizing<[u8; 32]>> {
        self.iter()
            .map(|(id, master)| {
                let mut key = Zeroizing::new([0_u8; 32]);
                // 32 bytes is within HKDF-SHA-256's output limit: expand cannot fail.
                let _ = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), master.expose())
                    .expand(info, key.as_mut());
                (id, key)
            })
            .collect()
    }

    /// The version ids.
    #[must_use]
    pub fn ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// Adds a new random version after the newest and returns its id.
    pub fn rotate(&mut self) -> u32 {
        let id = self.current_id().saturating_add(1);
        self.keys.insert(id, MasterKey::generate());
        id
    }

    /// Removes version `id` (the caller checked that nothing uses it).
    ///
    /// # Errors
    /// Unknown id, or the newest key.
    pub fn retire(&mut self, id: u32) -> Result<(), CryptoError> {
        if id == self.current_id() {
            return Err(CryptoError::Key(format!(
                "key {id} is the newest key; rotate first"
            )));
        }
        self.keys
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| CryptoError::Key(format!("no key with id {id}")))
    }

    fn to_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::from(
            "# IncrementaCRM master keys: ID:KEY, newest last. Keep this file secret and backed up.\n",
        ));
        for (id, key) in &self.keys {
            out.push_str(&format!("{id}:{}\n", key.to_base64().as_str()));
        }
        out
    }

    /// Writes the keyring to `path` atomically (temporary file with mode 0600, fsync, rename).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, path: &Path) -> Result<(), CryptoError> {
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|source| io_err(&tmp, source))?;
        file.write_all(self.to_text().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io_err(&tmp, source))?;
        fs::rename(&tmp, path).map_err(|source| io_err(path, source))
    }

    /// Resolves the keyring as OPS-1 and ENC-1 say: `INCREMENTA_MASTER_KEY` first, then
    /// `INCREMENTA_MASTER_KEY_FILE`, else `data_dir/master.key`, created with mode 0600 if missing.
    ///
    /// # Errors
    /// An unreadable, malformed or group/world-accessible default key file; a key file that cannot
    /// be created.
    pub fn resolve(
        env_key: Option<&SecretString>,
        env_file: Option<&Path>,
        data_dir: &Path,
    ) -> Result<(Self, KeySource), CryptoError> {
        if let Some(key) = env_key {
            return Ok((Self::parse(key.expose_secret())?, KeySource::Environment));
        }
        if let Some(path) = env_file {
            return Ok((read_key_file(path)?, KeySource::File(path.to_owned())));
        }
        let path = data_dir.join("master.key");
        if path.exists() {
            let mode = fs::metadata(&path)
                .map_err(|source| io_err(&path, source))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(CryptoError::Key(format!(
                    "{} is accessible to other users (mode {:o}); run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                )));
            }
            return Ok((read_key_file(&path)?, KeySource::File(path)));
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        }
        let mut ring = Self::default();
        ring.insert(1, MasterKey::generate());
        // create_new: never overwrite a key file another process created meanwhile.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| io_err(&path, source))?;
        file.write_all(ring.to_text().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io_err(&path, source))?;
        Ok((ring, KeySource::Generated(path)))
    }
}

fn read_key_file(path: &Path) -> Result<Keyring, CryptoError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| io_err(path, source))?);
    Keyring::parse(&text)
}

fn io_err(path: &Path, source: std::io::Error) -> CryptoError {
    CryptoError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = Keyring::resolve(None, None, dir.path()).unwrap();
        let path = dir.path().join("master.key");
        assert_eq!(source, KeySource::Generated(path.clone()));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (second, source) = Keyring::resolve(None, None, dir.path()).unwrap();
        assert_eq!(source, KeySource::File(path));
        assert_eq!(
            first.current().unwrap().expose(),
            second.current().unwrap().expose()
        );
        assert_eq!(second.current_id(), 1);
    }

    #[test]
    fn a_world_readable_default_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Keyring::resolve(None, None, dir.path()).unwrap();
        let path = dir.path().join("master.key");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keyring::resolve(None, None, dir.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn environment_wins_and_bad_keys_are_explained_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let env = SecretString::from("00".repeat(32));
        let (ring, source) = Keyring::resolve(Some(&env), None, dir.path()).unwrap();
        assert_eq!(source, KeySource::Environment);
        assert_eq!(ring.current().unwrap().expose(), &[0_u8; 32]);
        assert!(!dir.path().join("master.key").exists());
        let err = MasterKey::parse("c2hvcnQ=").unwrap_err().to_string();
        assert!(
            err.contains("expected 32 bytes") && !err.contains("c2hvcnQ"),
            "{err}"
        );
        assert!(!format!("{ring:?}").contains("00"));
    }

    #[test]
    fn several_versions_rotate_retire_and_survive_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("1:{}\n2:{}\n", "11".repeat(32), "22".repeat(32));
        let mut ring = Keyring::parse(&text).unwrap();
        assert_eq!(ring.current_id(), 2);
        assert_eq!(ring.rotate(), 3);
        assert!(ring.retire(3).is_err(), "the newest key cannot go");
        ring.retire(1).unwrap();
        assert!(ring.retire(1).is_err());
        let path = dir.path().join("master.key");
        ring.save(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = Keyring::parse(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.ids(), vec![2, 3]);
        assert_eq!(
            Keyring::parse(&format!("1:{},2:{}", "11".repeat(32), "22".repeat(32)))
                .unwrap()
                .ids(),
            vec![1, 2]
        );
        for bad in [
            "",
            "# only a comment",
            "x:abc",
            "0:".to_owned().as_str(),
            &format!("1:{k}\n1:{k}", k = "11".repeat(32)),
            &format!("{k}\n{k}", k = "11".repeat(32)),
        ] {
            assert!(Keyring::parse(bad).is_err(), "{bad:?}");
        }
    }
}
