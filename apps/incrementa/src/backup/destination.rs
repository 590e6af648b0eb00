//! Where backups go (BAK-1): a local directory or an S3-compatible bucket, both through the
//! `object_store` crate, so writing, listing, pruning and fetching are one code path.
//!
//! A backup is two objects, `<name>.ibk` then `<name>.manifest.json`; the manifest is written
//! last, so a listed backup (one with a manifest) is always complete. Uploads stream from the
//! sealed file in parts (memory stays flat); an object appears only once complete, on the local
//! filesystem (a staged file renamed into place, then synced) as on S3 (a multipart upload).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use object_store::ClientConfigKey;
use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;
use object_store::aws::AmazonS3ConfigKey;
use object_store::path::Path as ObjectPath;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Progress;

/// Bytes read from the sealed file per write while uploading.
const UPLOAD_CHUNK: usize = 1024 * 1024;

/// An opened destination: its store and the key prefix of its backups.
type Opened = (Arc<dyn ObjectStore>, ObjectPath);

/// One backup destination.
#[derive(Debug, Clone)]
pub struct Destination {
    /// What the operator wrote, for messages and audit records (never holds a credential).
    label: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// A directory on this machine, created when first written.
    Local(PathBuf),
    /// An S3-compatible bucket and a key prefix.
    Remote {
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
    },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

impl Destination {
    /// A local directory.
    #[must_use]
    pub fn local(dir: &Path) -> Self {
        Self {
            label: dir.display().to_string(),
            kind: Kind::Local(dir.to_owned()),
        }
    }

    /// Reads a destination: a directory path, `file:///path`, or `s3://bucket[/prefix]`
    /// (also `s3a://`). For S3, credentials, region and endpoint come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for
    /// S3-compatible services, `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint); a URL that
    /// carries a user name or password is refused so that no secret sits in configuration
    /// that is printed and audited. Nothing is contacted here.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("a backup destination cannot be empty".into());
        }
        if !spec.contains("://") {
            return Ok(Self::local(Path::new(spec)));
        }
        let url = url::Url::parse(spec).map_err(|e| format!("not a valid URL ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials do not belong in the destination URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    .into(),
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("a destination URL takes no query or fragment".into());
        }
        match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| "a file:// destination needs an absolute path".to_owned())?;
                Ok(Self::local(&dir))
            }
            "s3" | "s3a" => {
                let bucket = url.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err("an s3:// destination needs a bucket: s3://bucket/prefix".into());
                }
                let prefix = ObjectPath::from_url_path(url.path())
                    .map_err(|e| format!("invalid key prefix: {e}"))?;
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(spec)
                    // Bounded patience: a destination that is down fails within minutes and
                    // the other destination still gets the backup.
                    .with_retry(object_store::RetryConfig {
                        backoff: object_store::BackoffConfig::default(),
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(120),
                    })
                    // Set key by key: replacing the client options would drop the ones read
                    // from the environment (AWS_ALLOW_HTTP among them).
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        "10 seconds",
                    )
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                        "5 minutes",
                    )
                    .build()
                    .map_err(|e| format!("cannot use {spec}: {e}"))?;
                Ok(Self {
                    label: format!("s3://{bucket}/{prefix}")
                        .trim_end_matches('/')
                        .to_owned(),
                    kind: Kind::Remote {
                        store: Arc::new(store),
                        prefix,
                    },
                })
            }
            other => Err(format!(
                "unsupported destination scheme {other:?}: use a directory, file:///path or s3://bucket/prefix"
            )),
        }
    }

    /// The local directory, if this destination is one.
    #[must_use]
    pub fn local_dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Local(dir) => Some(dir),
            Kind::Remote { .. } => None,
        }
    }

    /// The object store and prefix; a local directory is created first when `create`.
    fn open(&self, create: bool) -> Result<Option<Opened>, String> {
        match &self.kind {
            Kind::Remote { store, prefix } => Ok(Some((store.clone(), prefix.clone()))),
            Kind::Local(dir) => {
                if create {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                } else if !dir.is_dir() {
                    return Ok(None);
                }
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
                Ok(Some((Arc::new(store), ObjectPath::default())))
            }
        }
    }

    /// Uploads the sealed file then the manifest under `name`.
    ///
    /// # Errors
    /// Why it failed; an interrupted upload leaves no listed backup behind.
    pub async fn put(
        &self,
        name: &str,
        sealed: &Path,
        manifest: &[u8],
        progress: &Progress,
    ) -> Result<(), String> {
        let (store, prefix) = self
            .open(true)?
            .ok_or_else(|| format!("cannot create {self}"))?;
        let ibk = prefix.clone().join(format!("{name}.ibk"));
        let total = tokio::fs::metadata(sealed)
            .await
            .map_err(|e| format!("cannot read {}: {e}", sealed.display()))?
            .len();
        let mut file = tokio::fs::File::open(sealed)
            .await
            .map_err(|e| format!("cannot read {}: {e}", sealed.display()))?;
        let mut upload = object_store::buffered::BufWriter::new(store.clone(), ibk.clone());
        let mut buf = vec![0_u8; UPLOAD_CHUNK];
        let mut sent = super::ByteProgress::new(format!("writing to {self}"), total, progress);
        let copied: Result<(), String> = async {
            loop {
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", sealed.display()))?;
                if n == 0 {
                    sent.advance(0, true);
                    break;
                }
                upload
                    .write_all(buf.get(..n).unwrap_or_default())
                    .await
                    .map_err(|e| format!("cannot write to {self}: {}", super::error_chain(&e)))?;
                sent.advance(n as u64, false);
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            // Nothing of a failed upload stays behind (S3 keeps unfinished parts otherwise).
            let _ = upload.abort().await;
            return Err(e);
        }
        // Completes the upload; a failure here leaves nothing to abort.
        upload
            .shutdown()
            .await
            .map_err(|e| format!("cannot write to {self}: {}", super::error_chain(&e)))?;
        store
            .put(
                &prefix.clone().join(format!("{name}.manifest.json")),
                manifest.to_vec().into(),
            )
            .await
            .map_err(|e| format!("cannot write to {self}: {}", super::error_chain(&e)))?;
        if let Kind::Local(dir) = &self.kind {
            sync_local(dir, name)?;
        }
        progress.say(|| format!("written to {self}"));
        Ok(())
    }

    /// Backup names (without extension) in this destination, oldest first.
    ///
    /// # Errors
    /// The destination cannot be listed.
    pub async fn list(&self) -> Result<Vec<String>, String> {
        let Some((store, prefix)) = self.open(false)? else {
            return Ok(Vec::new());
        };
        let listing = store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| format!("cannot list {self}: {}", super::error_chain(&e)))?;
        let mut names: Vec<String> = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename())
            .filter_map(|n| n.strip_suffix(".manifest.json"))
            .filter(|n| n.starts_with("incrementa-"))
            .map(str::to_owned)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Keeps the newest `keep` backups (names sort by time); deletes the rest.
    ///
    /// # Errors
    /// The destination cannot be listed or an old backup cannot be deleted.
    pub async fn prune(&self, keep: usize) -> Result<(), String> {
        let names = self.list().await?;
        let Some((store, prefix)) = self.open(false)? else {
            return Ok(());
        };
        let excess = names.len().saturating_sub(keep.max(1));
        for old in names.iter().take(excess) {
            // The manifest first: a backup without one is no longer listed.
            for file in [format!("{old}.manifest.json"), format!("{old}.ibk")] {
                match store.delete(&prefix.clone().join(file)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(format!(
                            "cannot delete {old} from {self}: {}",
                            super::error_chain(&e)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies backup `name` (both objects) into `dir`; returns the local `.ibk` path.
    ///
    /// # Errors
    /// The backup is missing or cannot be read.
    pub async fn fetch(&self, name: &str, dir: &Path) -> Result<PathBuf, String> {
        let (store, prefix) = self
            .open(false)?
            .ok_or_else(|| format!("{self} does not exist"))?;
        for file in [format!("{name}.manifest.json"), format!("{name}.ibk")] {
            let target = dir.join(&file);
            let object = store
                .get(&prefix.clone().join(file.as_str()))
                .await
                .map_err(|e| match e {
                    object_store::Error::NotFound { .. } => format!("{self} has no {file}"),
                    e => format!("cannot read {file} from {self}: {}", super::error_chain(&e)),
                })?;
            let mut out = tokio::fs::File::create(&target)
                .await
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            let mut stream = object.into_stream();
            while let Some(bytes) = stream.try_next().await.map_err(|e| {
                format!("cannot read {file} from {self}: {}", super::error_chain(&e))
            })? {
                out.write_all(&bytes)
                    .await
                    .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            }
            out.flush()
                .await
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        }
        Ok(dir.join(format!("{name}.ibk")))
    }
}

/// Makes a local backup durable: both files and the directory entry.
fn sync_local(dir: &Path, name: &str) -> Result<(), String> {
    for file in [format!("{name}.ibk"), format!("{name}.manifest.json")] {
        let path = dir.join(file);
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
    }
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    Ok(())
}

/// Splits a backup reference into its destination and name: a local `.ibk` path, or a URL
/// ending in `/<name>.ibk`.
///
/// # Errors
/// Not a backup file reference.
pub fn locate(reference: &str) -> Result<(Destination, String), String> {
    let reference = reference.trim();
    let not_a_backup = || format!("{reference} is not a backup file (name.ibk)");
    let (parent, file) = match reference.rsplit_once('/') {
        Some((p, f)) => (if p.is_empty() { "/" } else { p }, f),
        None => (".", reference),
    };
    // "s3://name.ibk" has no bucket: its parent would be the bare scheme.
    if reference.contains("://") && !parent.contains("://") {
        return Err(not_a_backup());
    }
    let name = file
        .strip_suffix(".ibk")
        .filter(|n| !n.is_empty())
        .ok_or_else(not_a_backup)?;
    Ok((Destination::parse(parent)?, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_directories_file_urls_or_s3_urls() {
        assert_eq!(
            Destination::parse("/var/backups").unwrap().local_dir(),
            Some(Path::new("/var/backups"))
        );
        assert_eq!(
            Destination::parse("file:///mnt/share/b")
                .unwrap()
                .local_dir(),
            Some(Path::new("/mnt/share/b"))
        );
        let s3 = Destination::parse("s3://bucket/daily/incrementa").unwrap();
        assert!(s3.local_dir().is_none());
        assert_eq!(s3.to_string(), "s3://bucket/daily/incrementa");
        assert_eq!(
            Destination::parse("s3://bucket").unwrap().to_string(),
            "s3://bucket"
        );
    }

    #[test]
    fn bad_destinations_are_refused_with_the_reason() {
        for (spec, why) in [
            ("", "empty"),
            ("s3://key:secret@bucket/x", "credentials"),
            ("s3://user@bucket/x", "credentials"),
            ("s3:///x", "bucket"),
            ("ftp://host/x", "unsupported destination scheme"),
            ("s3://bucket/x?acl=public", "no query"),
            ("file://relative", "absolute path"),
        ] {
            let err = Destination::parse(spec).unwrap_err();
            assert!(err.contains(why), "{spec}: {err}");
            assert!(!err.contains("secret"), "{spec}: {err}");
        }
    }

    #[test]
    fn a_backup_reference_names_its_destination_and_backup() {
        let (d, n) = locate("/b/incrementa-20261121T010000.000Z.ibk").unwrap();
        assert_eq!(
            (d.local_dir(), n.as_str()),
            (Some(Path::new("/b")), "incrementa-20261121T010000.000Z")
        );
        let (d, n) = locate("s3://bucket/p/incrementa-x.ibk").unwrap();
        assert_eq!(
            (d.to_string(), n.as_str()),
            ("s3://bucket/p".to_owned(), "incrementa-x")
        );
        let (d, n) = locate("incrementa-x.ibk").unwrap();
        assert_eq!(
            (d.local_dir(), n.as_str()),
            (Some(Path::new(".")), "incrementa-x")
        );
        assert!(
            locate("/b/notes.txt")
                .unwrap_err()
                .contains("not a backup file")
        );
        assert!(locate("s3://incrementa-x.ibk").is_err());
    }

    #[tokio::test]
    async fn a_local_destination_writes_lists_prunes_and_fetches() {
        let root = tempfile::tempdir().unwrap();
        let dest = Destination::local(&root.path().join("b"));
        assert!(
            dest.list().await.unwrap().is_empty(),
            "missing directory lists empty"
        );
        let sealed = root.path().join("sealed");
        std::fs::write(&sealed, vec![7_u8; 3 * UPLOAD_CHUNK + 5]).unwrap();
        for name in ["incrementa-1", "incrementa-2", "incrementa-3"] {
            dest.put(name, &sealed, b"{}", &Progress::none())
                .await
                .unwrap();
        }
        // A file without a manifest (an interrupted upload) is not a backup.
        std::fs::write(root.path().join("b/incrementa-4.ibk"), b"partial").unwrap();
        assert_eq!(
            dest.list().await.unwrap(),
            ["incrementa-1", "incrementa-2", "incrementa-3"]
        );
        dest.prune(2).await.unwrap();
        assert_eq!(dest.list().await.unwrap(), ["incrementa-2", "incrementa-3"]);
        assert!(!root.path().join("b/incrementa-1.ibk").exists());
        let out = root.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let fetched = dest.fetch("incrementa-3", &out).await.unwrap();
        assert_eq!(
            std::fs::read(fetched).unwrap(),
            std::fs::read(&sealed).unwrap()
        );
        assert!(
            dest.fetch("incrementa-9", &out)
                .await
                .unwrap_err()
                .contains("has no")
        );
    }
}
