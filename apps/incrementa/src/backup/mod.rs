//! Encrypted backups (BAK-1, BAK-3): `incrementa backup create | list | verify | restore`.
//!
//! A backup is a consistent snapshot of the whole database, taken while the server runs. The
//! default, **portable** snapshot ([`store_sea::portable`]) writes every row of every table as
//! JSON Lines from one read transaction (PostgreSQL: read-only repeatable read) and restores
//! into SQLite or PostgreSQL alike — the migration path from the embedded default. The
//! **native** one is the database's own copy: SQLite `VACUUM INTO`, PostgreSQL `pg_dump` (one
//! repeatable-read snapshot); it restores only into the same kind of database. Either is
//! compressed with zstd and sealed with [`crypto::BackupCipher`] (AES-256-CTR + HMAC-SHA-256 in
//! 64 KiB chunks under a key derived from the master key), streamed end to end so memory stays
//! flat. Beside each `.ibk` file lies a manifest (format, backend, snapshot kind, schema version,
//! row counts, sizes, SHA-256 of the sealed file) whose MAC binds it to the same key. Backups go
//! to every [`Destination`] (directories and S3-compatible buckets); one failing does not stop
//! the others, and each outcome is audited (`backup.created`, `backup.failed`). Restores go only
//! into an empty database and end by verifying the audit chains.

mod destination;

pub use destination::{Destination, locate};

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit::{Action, AuditRecord, AuditSink as _, Outcome};
use kernel::{Clock as _, IdGenerator as _, RequestContext};
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::Settings;
use crate::startup;

/// The manifest beside every backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of the `.ibk` file.
    pub format: u32,
    /// The backup file's name.
    pub file: String,
    /// When the snapshot was taken (RFC 3339).
    pub created_at: String,
    /// The database it was taken from: `sqlite` or `postgres`.
    pub backend: String,
    /// `portable` (JSON Lines of every row); absent for a native snapshot (an SQLite file or a
    /// `pg_dump` script, by `backend`). Absent fields are not serialized, so manifests written
    /// before this field existed keep their MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Migrations applied in the snapshot.
    pub migrations: u32,
    /// Rows per table when the snapshot was taken.
    pub tables: BTreeMap<String, i64>,
    /// Bytes of the uncompressed snapshot.
    pub snapshot_bytes: u64,
    /// Bytes of the sealed file.
    pub sealed_bytes: u64,
    /// SHA-256 of the sealed file, hex.
    pub sha256: String,
    /// The master key version that sealed it.
    pub key_id: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct SignedManifest {
    manifest: Manifest,
    /// HMAC of the manifest's JSON under the backup key.
    mac: String,
}

/// Which snapshot `create` takes (`INCREMENTA_BACKUP_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Every row as JSON Lines; restores into SQLite or PostgreSQL.
    Portable,
    /// The database's own copy; restores into the same kind of database.
    Native,
}

impl SnapshotKind {
    /// `portable` or `native`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "portable" => Some(Self::Portable),
            "native" => Some(Self::Native),
            _ => None,
        }
    }
}

/// Where long operations report how far they are (`--progress`, or stderr being a terminal).
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<Sink>>);

type Sink = dyn Fn(&str) + Send + Sync;

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(on)"
        } else {
            "Progress(off)"
        })
    }
}

impl Progress {
    /// Reports nothing.
    #[must_use]
    pub fn none() -> Self {
        Self(None)
    }

    /// Reports to `sink`, one message per call.
    #[must_use]
    pub fn to(sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(sink)))
    }

    /// Builds the message only when someone listens.
    pub fn say(&self, message: impl FnOnce() -> String) {
        if let Some(sink) = &self.0 {
            sink(&message());
        }
    }
}

/// `1.5 MiB`.
#[must_use]
pub fn human_bytes(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // for display only
    let x = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", x / 1024.0)
    } else if n < 1024 * 1024 * 1024 {
        format!("{:.1} MiB", x / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", x / (1024.0 * 1024.0 * 1024.0))
    }
}

/// Reports a byte count every tenth of `total` and once at the end.
struct ByteProgress {
    what: String,
    total: u64,
    done: u64,
    reported: u64,
    progress: Progress,
}

impl ByteProgress {
    fn new(what: impl Into<String>, total: u64, progress: &Progress) -> Self {
        Self {
            what: what.into(),
            total,
            done: 0,
            reported: 0,
            progress: progress.clone(),
        }
    }

    /// `n` more bytes; `at_end` when the stream is finished.
    fn advance(&mut self, n: u64, at_end: bool) {
        self.done += n;
        let tenth = (self.done - self.reported) * 10 >= self.total;
        let last = at_end && self.reported != self.done;
        if self.total > 0 && (tenth || last) {
            self.reported = self.done;
            let (what, done, total) = (&self.what, self.done, self.total);
            self.progress.say(|| {
                format!(
                    "{what}: {}% of {}",
                    (done * 100 / total).min(100),
                    human_bytes(total)
                )
            });
        }
    }
}

/// A reader that reports how much of it has been read.
struct ProgressReader<R> {
    inner: R,
    bytes: ByteProgress,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.bytes.advance(k as u64, k == 0 && !buf.is_empty());
        Ok(k)
    }
}

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| io_err("cannot read", path, &e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| io_err("cannot read", path, &e))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(h.finalize()))
}

async fn row_counts(db: &DatabaseConnection) -> Result<BTreeMap<String, i64>, String> {
    let backend = db.get_database_backend();
    let list = match backend {
        DbBackend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        }
        _ => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, list.to_owned()))
        .await
        .map_err(|e| format!("cannot list tables: {e}"))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let name: String = r.try_get_by_index(0).map_err(|e| e.to_string())?;
        // Table names come from the catalog and are quoted: nothing user-supplied reaches SQL.
        let sql = format!("SELECT COUNT(*) FROM \"{}\"", name.replace('"', "\"\""));
        let n: i64 = db
            .query_one_raw(Statement::from_string(backend, sql))
            .await
            .map_err(|e| format!("cannot count {name}: {e}"))?
            .and_then(|r| r.try_get_by_index(0).ok())
            .unwrap_or(0);
        out.insert(name, n);
    }
    Ok(out)
}

/// Takes the snapshot into `path`; returns the rows per table for the manifest.
async fn snapshot(
    db: &DatabaseConnection,
    url: &str,
    kind: SnapshotKind,
    path: &Path,
    progress: &Progress,
) -> Result<BTreeMap<String, i64>, String> {
    if kind == SnapshotKind::Portable {
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| io_err("cannot write", path, &e))?;
        let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        let report = progress.clone();
        let counts = store_sea::portable::export(db, &mut out, &move |table, rows| {
            report.say(|| format!("snapshot: {table}, {rows} rows"));
        })
        .await
        .map_err(|e| format!("snapshot failed: {}", error_chain(&e)))?;
        out.into_inner()
            .sync_all()
            .await
            .map_err(|e| io_err("cannot sync", path, &e))?;
        return Ok(counts
            .into_iter()
            .map(|(t, n)| (t, i64::try_from(n).unwrap_or(i64::MAX)))
            .collect());
    }
    // Native snapshots count rows just before the copy (informational).
    let tables = row_counts(db).await?;
    progress.say(|| "snapshot: copying the database".to_owned());
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            let target = path.to_str().ok_or("the temporary path is not UTF-8")?;
            db.execute_unprepared(&format!("VACUUM INTO '{}'", target.replace('\'', "''")))
                .await
                .map_err(|e| format!("SQLite snapshot failed: {e}"))?;
        }
        _ => {
            let mut command = tokio::process::Command::new("pg_dump");
            command
                .args(["--no-owner", "--no-privileges", "--format=plain", "--file"])
                .arg(path)
                .arg("--dbname")
                .arg(url);
            // TLS as the server's own connections have it (`store_sea::connect`).
            if let Some(mode) = store_sea::default_sslmode_for_tools(url) {
                command.env("PGSSLMODE", mode);
            }
            let out = command
                .output()
                .await
                .map_err(|e| format!("cannot run pg_dump (is it installed?): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    Ok(tables)
}

/// An error and its sources, for the command line (`database error: …`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Compresses and seals `snapshot` into `sealed`; returns (snapshot bytes, sealed bytes).
fn seal_file(
    cipher: &crypto::BackupCipher,
    snapshot: &Path,
    sealed: &Path,
    progress: &Progress,
) -> Result<(u64, u64), String> {
    let input = std::fs::File::open(snapshot).map_err(|e| io_err("cannot read", snapshot, &e))?;
    let snapshot_bytes = input.metadata().map(|m| m.len()).unwrap_or(0);
    let counted = ProgressReader {
        inner: BufReader::new(input),
        bytes: ByteProgress::new("compressing and encrypting", snapshot_bytes, progress),
    };
    let compressed =
        zstd::stream::read::Encoder::new(counted, 3).map_err(|e| format!("zstd: {e}"))?;
    let output = std::fs::File::create(sealed).map_err(|e| io_err("cannot write", sealed, &e))?;
    let mut output = BufWriter::new(output);
    let written = cipher
        .seal(compressed, &mut output)
        .map_err(|e| e.to_string())?;
    output
        .into_inner()
        .map_err(|e| format!("cannot write {}: {}", sealed.display(), e.error()))?
        .sync_all()
        .map_err(|e| io_err("cannot sync", sealed, &e))?;
    Ok((snapshot_bytes, written))
}

/// Opens, decompresses and writes a sealed file into `out`; returns the plaintext bytes.
fn open_file(
    cipher: &crypto::BackupCipher,
    sealed: &Path,
    out: impl Write,
    progress: &Progress,
) -> Result<u64, String> {
    let input = std::fs::File::open(sealed).map_err(|e| io_err("cannot read", sealed, &e))?;
    let total = input.metadata().map(|m| m.len()).unwrap_or(0);
    let counted = ProgressReader {
        inner: BufReader::new(input),
        bytes: ByteProgress::new("decrypting and checking", total, progress),
    };
    let mut decoder = zstd::stream::write::Decoder::new(CountingWriter { inner: out, n: 0 })
        .map_err(|e| format!("zstd: {e}"))?;
    cipher
        .open(counted, &mut decoder)
        .map_err(|e| e.to_string())?;
    decoder
        .flush()
        .map_err(|e| format!("the compressed stream is corrupt: {e}"))?;
    let mut inner = decoder.into_inner();
    inner
        .flush()
        .map_err(|e| format!("cannot write the snapshot: {e}"))?;
    Ok(inner.n)
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The configured destinations: `<data_dir>/backups` and `INCREMENTA_BACKUP_REMOTE`.
///
/// # Errors
/// The remote destination is not valid (configuration validation catches this first).
pub fn default_destinations(settings: &Settings) -> Result<Vec<Destination>, String> {
    let mut out = vec![Destination::local(&settings.data_dir.join("backups"))];
    if let Some(second) = &settings.backup_remote {
        out.push(Destination::parse(second)?);
    }
    Ok(out)
}

/// What `create` did per destination.
#[derive(Debug)]
pub struct CreateReport {
    /// The manifest written.
    pub manifest: Manifest,
    /// Destinations written.
    pub written: Vec<String>,
    /// Destinations that failed, with why.
    pub failed: Vec<(String, String)>,
}

/// `backup create`: snapshot, compress, seal, write to every destination, prune, audit.
///
/// # Errors
/// When no destination received the backup (and when the snapshot itself fails).
pub async fn create(
    settings: &Settings,
    destinations: &[Destination],
    progress: &Progress,
) -> Result<CreateReport, String> {
    let kind = SnapshotKind::parse(&settings.backup_format)
        .ok_or("INCREMENTA_BACKUP_FORMAT must be portable or native")?;
    let (ring, _) = startup::keyring(settings).map_err(|e| e.to_string())?;
    let cipher = Arc::new(crypto::BackupCipher::new(&ring));
    let db = startup::database(settings)
        .await
        .map_err(|e| e.to_string())?;
    let store = store_sea::SeaStore::new(db.clone(), Arc::new(crypto::HmacChain::new(&ring)));
    let now = kernel::SystemClock.now();
    let name = format!("incrementa-{}", now.format("%Y%m%dT%H%M%S%.3fZ"));
    let work = tempdir_in(&settings.data_dir)?;
    let result = async {
        let raw = work.join("snapshot");
        let url = startup::database_url(settings);
        let tables = snapshot(&db, &url, kind, &raw, progress).await?;
        let sealed = work.join(format!("{name}.ibk"));
        let (snapshot_bytes, sealed_bytes) = {
            let (c, r, s, p) = (
                cipher.clone(),
                raw.clone(),
                sealed.clone(),
                progress.clone(),
            );
            tokio::task::spawn_blocking(move || seal_file(&c, &r, &s, &p))
                .await
                .map_err(|e| format!("the backup worker failed: {e}"))??
        };
        let _ = std::fs::remove_file(&raw);
        let manifest = Manifest {
            format: 1,
            file: format!("{name}.ibk"),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            backend: match db.get_database_backend() {
                DbBackend::Sqlite => "sqlite".into(),
                _ => "postgres".into(),
            },
            snapshot: (kind == SnapshotKind::Portable).then(|| "portable".to_owned()),
            migrations: u32::try_from(store_sea::migration_count()).unwrap_or(0),
            tables,
            snapshot_bytes,
            sealed_bytes,
            sha256: sha256_file(&sealed)?,
            key_id: cipher.current_key_id(),
        };
        progress.say(|| {
            format!(
                "sealed: {} of database into {}",
                human_bytes(snapshot_bytes),
                human_bytes(sealed_bytes)
            )
        });
        let json = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        let mac = cipher
            .manifest_mac(manifest.key_id, &json)
            .ok_or("no master key")?;
        let signed = serde_json::to_vec_pretty(&SignedManifest {
            manifest: manifest.clone(),
            mac,
        })
        .map_err(|e| e.to_string())?;
        let mut report = CreateReport {
            manifest,
            written: Vec::new(),
            failed: Vec::new(),
        };
        for dest in destinations {
            let result = match dest.put(&name, &sealed, &signed, progress).await {
                Ok(()) => dest.prune(settings.backup_keep).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => report.written.push(dest.to_string()),
                Err(e) => {
                    progress.say(|| format!("FAILED {dest}: {e}"));
                    report.failed.push((dest.to_string(), e));
                }
            }
        }
        Ok::<_, String>(report)
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;
    let ctx = RequestContext::default();
    let ids = crypto::RandomIds;
    for dest in &report.written {
        let record = AuditRecord::new(
            ids.new_id(),
            now,
            Action::BACKUP_CREATED,
            Outcome::Success,
            &ctx,
        )
        .target("backup", &report.manifest.file)
        .details(serde_json::json!({ "destination": dest, "bytes": report.manifest.sealed_bytes }));
        store.record(record).await.map_err(|e| e.to_string())?;
    }
    for (dest, why) in &report.failed {
        let record = AuditRecord::new(
            ids.new_id(),
            now,
            Action::BACKUP_FAILED,
            Outcome::Failure,
            &ctx,
        )
        .target("backup", &report.manifest.file)
        .details(serde_json::json!({ "destination": dest, "error": why }));
        store.record(record).await.map_err(|e| e.to_string())?;
    }
    if report.written.is_empty() {
        return Err(format!(
            "no destination received the backup: {}",
            report
                .failed
                .iter()
                .map(|(d, e)| format!("{d}: {e}"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(report)
}

fn tempdir_in(data_dir: &Path) -> Result<PathBuf, String> {
    let dir = data_dir.join(format!(".backup-work-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, &e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("cannot restrict", &dir, &e))?;
    }
    Ok(dir)
}

fn manifest_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name.strip_suffix(".ibk").unwrap_or(name);
    file.with_file_name(format!("{stem}.manifest.json"))
}

/// Makes `reference` (a local `.ibk` path or a URL) a local file, fetching it into `work` when
/// it is remote.
async fn local_copy(reference: &str, work: &Path, progress: &Progress) -> Result<PathBuf, String> {
    let (dest, name) = locate(reference)?;
    match dest.local_dir() {
        Some(dir) => Ok(dir.join(format!("{name}.ibk"))),
        None => {
            progress.say(|| format!("fetching {name} from {dest}"));
            dest.fetch(&name, work).await
        }
    }
}

/// `backup verify`: the manifest's MAC, the file's checksum, every chunk's tag, and the
/// compressed stream, without restoring anything. `reference` is a local `.ibk` path or a URL
/// (`s3://bucket/prefix/name.ibk`). Returns the manifest.
///
/// # Errors
/// A message naming the first problem.
pub async fn verify(
    settings: &Settings,
    reference: &str,
    progress: &Progress,
) -> Result<Manifest, String> {
    let (ring, _) = startup::keyring(settings).map_err(|e| e.to_string())?;
    let cipher = Arc::new(crypto::BackupCipher::new(&ring));
    let work = tempdir_in(&settings.data_dir)?;
    let result = async {
        let file = local_copy(reference, &work, progress).await?;
        let p = progress.clone();
        tokio::task::spawn_blocking(move || verify_into(&cipher, &file, std::io::sink(), &p))
            .await
            .map_err(|e| format!("the backup worker failed: {e}"))?
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn verify_into(
    cipher: &crypto::BackupCipher,
    file: &Path,
    out: impl Write,
    progress: &Progress,
) -> Result<Manifest, String> {
    let mpath = manifest_path(file);
    let text = std::fs::read(&mpath).map_err(|e| io_err("cannot read the manifest", &mpath, &e))?;
    let signed: SignedManifest =
        serde_json::from_slice(&text).map_err(|e| format!("the manifest is not valid: {e}"))?;
    let json = serde_json::to_vec(&signed.manifest).map_err(|e| e.to_string())?;
    let expected = cipher
        .manifest_mac(signed.manifest.key_id, &json)
        .ok_or_else(|| {
            format!(
                "sealed with master key {}, which this keyring does not have",
                signed.manifest.key_id
            )
        })?;
    if expected != signed.mac {
        return Err("the manifest was altered or the master key is wrong".into());
    }
    let m = signed.manifest;
    if m.format != 1 {
        return Err(format!("unknown backup format {}", m.format));
    }
    let actual = sha256_file(file)?;
    if actual != m.sha256 {
        return Err(format!(
            "checksum mismatch: the file is not the one the manifest describes (expected {}, found {actual})",
            m.sha256
        ));
    }
    let bytes = open_file(cipher, file, out, progress)?;
    if bytes != m.snapshot_bytes {
        return Err(format!(
            "the snapshot has {bytes} bytes, the manifest says {}",
            m.snapshot_bytes
        ));
    }
    Ok(m)
}

/// `backup restore`: verifies the backup, then writes it into the configured database, which
/// must be empty; finally verifies the audit chains. A portable backup restores into SQLite or
/// PostgreSQL, all rows in one transaction; a native one into the kind it was taken from.
/// Returns the number of chains verified.
///
/// # Errors
/// A message naming the problem; nothing is written to a database that is not empty, and a
/// failed portable restore leaves nothing behind.
pub async fn restore(
    settings: &Settings,
    reference: &str,
    progress: &Progress,
) -> Result<usize, String> {
    let (ring, _) = startup::keyring(settings).map_err(|e| e.to_string())?;
    let cipher = Arc::new(crypto::BackupCipher::new(&ring));
    let work = tempdir_in(&settings.data_dir)?;
    let raw = work.join("snapshot");
    let result = async {
        let file = local_copy(reference, &work, progress).await?;
        let out = std::fs::File::create(&raw).map_err(|e| io_err("cannot write", &raw, &e))?;
        let manifest = {
            let (c, p) = (cipher.clone(), progress.clone());
            tokio::task::spawn_blocking(move || verify_into(&c, &file, BufWriter::new(out), &p))
                .await
                .map_err(|e| format!("the backup worker failed: {e}"))??
        };
        let url = startup::database_url(settings);
        match (manifest.snapshot.as_deref(), manifest.backend.as_str()) {
            (Some("portable"), _) => {
                let db = store_sea::connect(&url, store_sea::PoolSettings::default())
                    .await
                    .map_err(|e| error_chain(&e))?;
                let file = tokio::fs::File::open(&raw)
                    .await
                    .map_err(|e| io_err("cannot read", &raw, &e))?;
                let mut input = tokio::io::BufReader::with_capacity(256 * 1024, file);
                let report = progress.clone();
                // The import checks the snapshot's own closing counts before it commits; the
                // snapshot is the one the manifest describes (its SHA-256 is under the MAC).
                store_sea::portable::import(&db, &mut input, &move |table, rows| {
                    report.say(|| format!("restoring: {table}, {rows} rows"));
                })
                .await
                .map_err(|e| error_chain(&e))?;
                db.close().await.map_err(|e| e.to_string())?;
            }
            (None, "sqlite") => {
                let path = url
                    .strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                    .map(|p| p.split('?').next().unwrap_or(p))
                    .ok_or("a native SQLite backup restores into a SQLite database (set DATABASE_URL to sqlite://…); portable backups restore into either")?;
                let target = PathBuf::from(path);
                if std::fs::metadata(&target).is_ok_and(|m| m.len() > 0) {
                    return Err(format!("{} exists and is not empty: restore only into an empty database", target.display()));
                }
                // Copied beside the target and renamed into place: never a half-written file.
                let part = target.with_extension("restoring");
                std::fs::copy(&raw, &part)
                    .and_then(|_| std::fs::File::open(&part)?.sync_all())
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&part);
                        io_err("cannot write", &part, &e)
                    })?;
                std::fs::rename(&part, &target).map_err(|e| io_err("cannot write", &target, &e))?;
            }
            (None, "postgres") => {
                let db = store_sea::connect(&url, store_sea::PoolSettings::default())
                    .await
                    .map_err(|e| e.to_string())?;
                if db.get_database_backend() != DbBackend::Postgres {
                    return Err("a native PostgreSQL backup restores into a PostgreSQL database; portable backups restore into either".into());
                }
                if !row_counts(&db).await?.is_empty() {
                    return Err("the target database has tables: restore only into an empty database".into());
                }
                progress.say(|| "restoring: loading the pg_dump script".to_owned());
                let mut command = tokio::process::Command::new("psql");
                command
                    .args(["--quiet", "--no-psqlrc", "--set", "ON_ERROR_STOP=1", "--single-transaction", "--file"])
                    .arg(&raw)
                    .arg(&url);
                if let Some(mode) = store_sea::default_sslmode_for_tools(&url) {
                    command.env("PGSSLMODE", mode);
                }
                let out = command
                    .output()
                    .await
                    .map_err(|e| format!("cannot run psql (is it installed?): {e}"))?;
                if !out.status.success() {
                    return Err(format!("psql failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
                }
            }
            (snapshot, backend) => {
                return Err(format!(
                    "unknown snapshot {snapshot:?} of backend {backend:?} in the manifest"
                ));
            }
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    result?;
    // BAK-3: the restored audit log must verify.
    progress.say(|| "verifying the audit chains".to_owned());
    let audit = startup::audit_for_cli(settings)
        .await
        .map_err(|e| e.to_string())?;
    let reports = audit.verify_all(None).await.map_err(|e| e.to_string())?;
    if let Some((chain, _)) = reports.iter().find(|(_, r)| !r.ok) {
        return Err(format!(
            "restored, but the audit chain {chain} does not verify"
        ));
    }
    Ok(reports.len())
}

/// The next instant the daily backup is due after `now`: today at `at` in `tz` if still ahead,
/// else tomorrow. A local time skipped by a clock change runs an hour later; a repeated one
/// runs at its first occurrence.
#[must_use]
pub fn next_run(
    now: kernel::Timestamp,
    at: chrono::NaiveTime,
    tz: chrono_tz::Tz,
) -> kernel::Timestamp {
    use chrono::TimeZone as _;
    let local_today = now.with_timezone(&tz).date_naive();
    for day in local_today.iter_days().take(3) {
        let naive = day.and_time(at);
        let candidate = tz
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&chrono::Utc));
        if let Some(t) = candidate.filter(|t| *t > now) {
            return t;
        }
    }
    now + chrono::Duration::days(1)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn the_daily_backup_runs_at_one_in_the_morning_mexico_city_time() {
        let tz: chrono_tz::Tz = "America/Mexico_City".parse().unwrap();
        let one = chrono::NaiveTime::from_hms_opt(1, 0, 0).unwrap();
        // 2026-11-21 12:00 UTC is 06:00 in Mexico City (UTC-6): next is tomorrow 01:00 local.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
            .unwrap();
        assert_eq!(
            next_run(now, one, tz),
            chrono::Utc.with_ymd_and_hms(2026, 11, 22, 7, 0, 0).unwrap()
        );
        // 06:30 UTC is 00:30 local: later the same local day.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 6, 30, 0)
            .unwrap();
        assert_eq!(
            next_run(now, one, tz),
            chrono::Utc.with_ymd_and_hms(2026, 11, 21, 7, 0, 0).unwrap()
        );
        // Exactly at the time: the next day's.
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 21, 7, 0, 0).unwrap();
        assert_eq!(
            next_run(now, one, tz),
            chrono::Utc.with_ymd_and_hms(2026, 11, 22, 7, 0, 0).unwrap()
        );
    }

    #[test]
    fn a_local_time_skipped_by_daylight_saving_runs_an_hour_later() {
        let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let two_thirty = chrono::NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        // 2026-03-08: New York skips 02:00–03:00.
        let now = chrono::Utc.with_ymd_and_hms(2026, 3, 8, 5, 0, 0).unwrap();
        assert_eq!(
            next_run(now, two_thirty, tz),
            chrono::Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap()
        );
    }
}
