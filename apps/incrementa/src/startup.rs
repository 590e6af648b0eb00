//! Builds the application from [`Settings`]: the one place where adapters are chosen and handed to
//! the cores.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use accounts::{AccountService, OwnershipService, PasswordPolicy};
use actix_web::HttpServer;
use actix_web::dev::Server;
use async_trait::async_trait;
use chrono::Duration;
use crypto::{
    AesCtrHmacEnvelope, Argon2Hasher, HashParams, HmacChain, KeySource, Keyring, RandomIds,
    RandomTokens, SatInspector,
};
use kernel::{ClientNet, Clock, RateLimiter, SystemClock};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use sessions::{SessionConfig, SessionPorts, SessionService, ThrottlePolicy};
use store_sea::{PoolSettings, SeaStore};

use crate::config::Settings;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The master key is unusable.
    #[error(transparent)]
    Key(crypto::CryptoError),
    /// The database could not be reached or migrated.
    #[error("database: {0}")]
    Database(#[source] store_sea::StoreError),
    /// The mail transport could not be set up.
    #[error("mail: {0}")]
    Mail(String),
    /// `INCREMENTA_VAULT_TRUSTED_ISSUERS` names a file that cannot be read or holds no usable
    /// certificate: the server does not start rather than accept any issuer.
    #[error("INCREMENTA_VAULT_TRUSTED_ISSUERS {path}: {why}")]
    TrustedIssuers {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// The database URL in force: `DATABASE_URL`, else the SQLite file in the data directory.
#[must_use]
pub fn database_url(settings: &Settings) -> String {
    settings.database_url.as_ref().map_or_else(
        || {
            format!(
                "sqlite://{}?mode=rwc",
                settings.data_dir.join("incrementa.db").display()
            )
        },
        |u| u.expose_secret().to_owned(),
    )
}

/// Creates the data directory (mode 0700 when new).
///
/// # Errors
/// I/O errors.
pub fn ensure_data_dir(settings: &Settings) -> Result<(), StartupError> {
    let dir = &settings.data_dir;
    let err = |source| StartupError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Connects to the configured database and applies migrations.
///
/// # Errors
/// Connection or migration errors.
pub async fn database(settings: &Settings) -> Result<DatabaseConnection, StartupError> {
    ensure_data_dir(settings)?;
    if settings.database_url.is_none() {
        create_private_file(&settings.data_dir.join("incrementa.db"))?;
    }
    let url = database_url(settings);
    // SQLite writes one transaction at a time: more connections only add writers that sleep
    // in the busy handler (p99 of writes 180 ms with 16, 46-68 ms with 4, 28-33 ms with 2) and
    // worker threads whose allocator arenas grow the process (about 1.6 MiB each: 32 MiB with
    // 4 against 29 MiB with 2 after 600 logins). Two leave one reader beside the writer.
    let default_pool = if url.starts_with("sqlite:") { 2 } else { 16 };
    let pool = PoolSettings {
        max_connections: settings.db_max_connections.unwrap_or(default_pool),
        ..PoolSettings::default()
    };
    let db = store_sea::connect(&url, pool)
        .await
        .map_err(StartupError::Database)?;
    store_sea::migrate(&db)
        .await
        .map_err(StartupError::Database)?;
    Ok(db)
}

/// Creates an empty file with mode 0600 if it does not exist. SQLite opens an empty file as an
/// empty database and gives its WAL and shared-memory files the same mode, so password hashes,
/// token hashes and audit records are readable by the server's user only.
fn create_private_file(path: &std::path::Path) -> Result<(), StartupError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StartupError::DataDir {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The master keyring in force (environment, key file, or a generated key file).
///
/// # Errors
/// [`StartupError::Key`].
pub fn keyring(settings: &Settings) -> Result<(Keyring, KeySource), StartupError> {
    ensure_data_dir(settings)?;
    Keyring::resolve(
        settings.master_key.as_ref(),
        settings.master_key_file.as_deref(),
        &settings.data_dir,
    )
    .map_err(StartupError::Key)
}

/// The CAs of `INCREMENTA_VAULT_TRUSTED_ISSUERS`, when it is set.
///
/// # Errors
/// `TrustedIssuers` when the file cannot be read or holds no usable certificate.
pub fn trusted_issuers(
    settings: &Settings,
) -> Result<Option<crypto::TrustedIssuers>, StartupError> {
    let Some(path) = &settings.vault_trusted_issuers else {
        return Ok(None);
    };
    let failed = |why: String| StartupError::TrustedIssuers {
        path: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    crypto::TrustedIssuers::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| failed(e.to_string()))
}

/// The trusted CA certificates whose validity has ended at `now`: they still vouch for the
/// credentials they issued while valid, and for no newer ones (a file of only those makes the
/// vault refuse every new credential).
#[must_use]
pub fn expired_issuers(
    issuers: &crypto::TrustedIssuers,
    now: kernel::Timestamp,
) -> Vec<crypto::TrustedIssuer> {
    issuers
        .certificates()
        .into_iter()
        .filter(|c| c.valid_to.is_some_and(|end| end <= now))
        .collect()
}

/// The SAT inspector: with `INCREMENTA_VAULT_TRUSTED_ISSUERS`, one that accepts only
/// certificates those CAs signed; a CA certificate of the file that has expired at `now` is
/// logged as a warning.
///
/// # Errors
/// `TrustedIssuers` when the file cannot be read or holds no usable certificate.
pub fn certificate_inspector(
    settings: &Settings,
    now: kernel::Timestamp,
) -> Result<Arc<dyn vault::CertificateInspector>, StartupError> {
    let Some(issuers) = trusted_issuers(settings)? else {
        return Ok(Arc::new(SatInspector));
    };
    for expired in expired_issuers(&issuers, now) {
        tracing::warn!(
            issuer = %expired.name,
            valid_to = ?expired.valid_to,
            "a trusted issuer's certificate has expired: it vouches only for credentials it \
             issued before then"
        );
    }
    tracing::info!(
        certificates = issuers.len(),
        "the vault accepts only certificates of the trusted issuers"
    );
    Ok(Arc::new(crypto::TrustingSatInspector::new(issuers)))
}

/// The vault wired to the store, the keyring and the SAT inspector.
#[must_use]
pub fn vault_service(
    keyring: &Keyring,
    store: &Arc<SeaStore>,
    inspector: Arc<dyn vault::CertificateInspector>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn kernel::IdGenerator>,
) -> vault::VaultService {
    vault::VaultService::new(
        vault::VaultPorts {
            repo: store.clone(),
            envelope: Arc::new(AesCtrHmacEnvelope::new(keyring)),
            inspector,
            accounts: store.clone(),
            audit: store.clone(),
            clock,
            ids,
        },
        vault::UploadLimits::default(),
    )
}

/// MFA wired to the store, the keyring's envelope (TOTP secrets are sealed like fiscal
/// credentials, MFA-4), HMAC-SHA-1 and the OS random generator.
#[must_use]
pub fn mfa_service(
    keyring: &Keyring,
    store: &Arc<SeaStore>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn kernel::IdGenerator>,
) -> mfa::MfaService {
    mfa::MfaService::new(mfa::MfaPorts {
        repo: store.clone(),
        envelope: Arc::new(AesCtrHmacEnvelope::new(keyring)),
        hotp: Arc::new(crypto::HmacSha1Otp),
        crypto: Arc::new(crypto::MfaRandom),
        clock,
        ids,
        audit: store.clone(),
    })
}

/// The daily retention purge (AUD-5) with the notices those records caused (delivered or given
/// up, queued before the same cut-off), the purge of stale login throttle state and of sessions
/// that ended longer ago than their retention: a minute after start, then every 24 hours.
/// Several processes may run it: each purge is idempotent.
fn spawn_retention(
    audit: audit::AuditService,
    sessions: SessionService,
    outbox: notify::OutboxWorker,
    days: i64,
) {
    actix_web::rt::spawn(async move {
        let mut interval = actix_web::rt::time::interval_at(
            actix_web::rt::time::Instant::now() + std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(24 * 60 * 60),
        );
        loop {
            interval.tick().await;
            match audit.purge(Duration::days(days)).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(removed = n, retention_days = days, "audit retention purge")
                }
                Err(e) => tracing::error!(error = %e, "audit retention purge failed"),
            }
            match outbox.purge_finished(Duration::days(days)).await {
                Ok(notify::OutboxPurge {
                    messages: 0,
                    files: 0,
                }) => {}
                Ok(purged) => tracing::info!(
                    removed = purged.messages,
                    files = purged.files,
                    retention_days = days,
                    "delivered and given-up notices purged"
                ),
                Err(e) => tracing::error!(error = %e, "outbox retention purge failed"),
            }
            match sessions.purge_stale_throttles().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "stale login throttle state purged"),
                Err(e) => tracing::error!(error = %e, "login throttle purge failed"),
            }
            match sessions.purge_ended_sessions().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "ended sessions purged"),
                Err(e) => tracing::error!(error = %e, "ended session purge failed"),
            }
        }
    });
}

/// The notification transport: SMTP when `INCREMENTA_SMTP_HOST` is set, else the embedded
/// default, a directory of `.eml` files under `<data_dir>/outbox`.
///
/// # Errors
/// [`StartupError::Mail`].
pub fn mailer(settings: &Settings) -> Result<Arc<dyn notify::Mailer>, StartupError> {
    match &settings.smtp_host {
        Some(host) => {
            let tls = mail::TlsMode::parse(&settings.smtp_tls)
                .ok_or_else(|| StartupError::Mail("unknown SMTP TLS mode".into()))?;
            let smtp = mail::SmtpMailer::new(&mail::SmtpSettings {
                host: host.clone(),
                port: settings.smtp_port,
                tls,
                username: settings.smtp_username.clone(),
                password: settings.smtp_password.clone(),
                from: settings.mail_from.clone(),
                timeout: std::time::Duration::from_secs(30),
            })
            .map_err(StartupError::Mail)?;
            Ok(Arc::new(smtp))
        }
        None => Ok(Arc::new(
            mail::DirectoryMailer::new(settings.data_dir.join("outbox"), &settings.mail_from)
                .map_err(StartupError::Mail)?,
        )),
    }
}

/// The outbox worker (INC-2): delivers due notifications every few seconds. Several processes
/// may run it: claims are leases, so each message goes to one worker at a time.
fn spawn_outbox(worker: notify::OutboxWorker, every: std::time::Duration) {
    actix_web::rt::spawn(async move {
        let mut interval = actix_web::rt::time::interval(every);
        loop {
            interval.tick().await;
            match worker.run_once().await {
                Ok(r) if r.delivered + r.retrying + r.given_up == 0 => {}
                Ok(r) => tracing::info!(
                    delivered = r.delivered,
                    retrying = r.retrying,
                    given_up = r.given_up,
                    "outbox delivery"
                ),
                Err(e) => tracing::error!(error = %e, "outbox delivery failed"),
            }
        }
    });
}

/// The daily backup (BAK-2) at `INCREMENTA_BACKUP_AT` in `INCREMENTA_BACKUP_TIME_ZONE`. Every
/// server schedules it; the day's run is claimed in the database, so one process runs it.
fn spawn_backups(settings: Settings, store: Arc<SeaStore>, clock: Arc<dyn Clock>) {
    let Some((at, tz)) = settings.backup_schedule() else {
        return;
    };
    actix_web::rt::spawn(async move {
        loop {
            let now = clock.now();
            let next = crate::backup::next_run(now, at, tz);
            let wait = (next - now).to_std().unwrap_or_default();
            actix_web::rt::time::sleep(wait).await;
            let day = next.with_timezone(&tz).date_naive().to_string();
            match store.claim_daily("backup", &day).await {
                Ok(true) => {
                    let result = match crate::backup::default_destinations(&settings) {
                        Ok(destinations) => {
                            crate::backup::create(
                                &settings,
                                &destinations,
                                &crate::backup::Progress::none(),
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(r) if r.failed.is_empty() => {
                            tracing::info!(file = %r.manifest.file, "daily backup written");
                        }
                        Ok(r) => tracing::error!(
                            file = %r.manifest.file,
                            failed = r.failed.len(),
                            "daily backup: some destinations failed"
                        ),
                        Err(e) => tracing::error!(error = %e, "daily backup failed"),
                    }
                }
                Ok(false) => tracing::debug!(%day, "daily backup already taken by another process"),
                Err(e) => tracing::error!(error = %e, "daily backup could not be scheduled"),
            }
        }
    });
}

/// The expiry notices of the vault (VAULT-8) every `every`, the first pass at start. Several
/// processes may run them: each notice is recorded by compare-and-set, so a stage is told once.
fn spawn_expiry_notices(vault: vault::VaultService, every: std::time::Duration) {
    actix_web::rt::spawn(async move {
        let mut interval = actix_web::rt::time::interval(every);
        loop {
            interval.tick().await;
            match vault.send_expiry_notices().await {
                Ok(r) if r.sent + r.skipped == 0 => {}
                Ok(r) => tracing::info!(
                    sent = r.sent,
                    skipped = r.skipped,
                    "fiscal credential expiry notices"
                ),
                Err(e) => tracing::error!(error = %e, "fiscal credential expiry notices failed"),
            }
        }
    });
}

/// Most alerts of one review pass logged one by one; the rest are counted.
const LOGGED_ALERTS: usize = 20;

/// One warning per raised alert, for log-based monitoring: its id, rule, severity and company
/// (`platform` for failed logins of no company, which only the operator's `incrementa audit
/// alerts` shows). The subject and summary stay out of the logs: they name emails and addresses,
/// which `GET /v1/audit/alerts` and the command give to those allowed to see them.
fn log_alerts(raised: &[audit::Alert]) {
    for a in raised.iter().take(LOGGED_ALERTS) {
        let company = a
            .company_id
            .map_or_else(|| "platform".to_owned(), |c| c.to_string());
        tracing::warn!(
            alert_id = %a.id,
            rule = %a.rule,
            severity = %a.severity,
            company = %company,
            "audit review raised an alert"
        );
    }
    if raised.len() > LOGGED_ALERTS {
        tracing::warn!(
            more = raised.len() - LOGGED_ALERTS,
            "audit review raised more alerts than it logs one by one"
        );
    }
}

/// The automated review (AUD-7) every 30 seconds. Several processes may run it: the review
/// cursor moves by compare-and-set, so each record is reviewed once.
fn spawn_review(audit: audit::AuditService) {
    actix_web::rt::spawn(async move {
        let mut interval = actix_web::rt::time::interval(std::time::Duration::from_secs(30));
        loop {
            interval.tick().await;
            match audit.review_all().await {
                Ok(raised) => log_alerts(&raised),
                Err(e) => tracing::error!(error = %e, "audit review failed"),
            }
        }
    });
}

/// The audit service on its own, for the `audit` commands.
///
/// # Errors
/// Key or database errors.
pub async fn audit_for_cli(settings: &Settings) -> Result<audit::AuditService, StartupError> {
    let (ring, _) = keyring(settings)?;
    let db = database(settings).await?;
    let chain = Arc::new(HmacChain::new(&ring));
    let store = Arc::new(SeaStore::new(db, chain.clone()));
    Ok(audit::AuditService::new(
        store.clone(),
        store,
        chain,
        Arc::new(SystemClock),
        Arc::new(RandomIds),
    ))
}

/// What the `users` commands work with.
pub struct UsersCli {
    /// Accounts: the configured Argon2 parameters, the default password policy, records on the
    /// audit chains (whose notices reach the outbox in the same transaction, as in the server).
    pub accounts: AccountService,
    /// The login throttle (OPS-4), keyed by normalized e-mail address.
    pub throttle: Arc<dyn sessions::LoginThrottle>,
    /// MFA (TOTP secrets sealed with the keyring).
    pub mfa: mfa::MfaService,
}

impl std::fmt::Debug for UsersCli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsersCli").finish_non_exhaustive()
    }
}

/// Accounts and the login throttle, for the `users` commands.
///
/// # Errors
/// Key or database errors, or Argon2 parameters the hasher refuses.
pub async fn users_for_cli(settings: &Settings) -> Result<UsersCli, StartupError> {
    let (ring, _) = keyring(settings)?;
    let db = database(settings).await?;
    let store = Arc::new(SeaStore::new(db, Arc::new(HmacChain::new(&ring))));
    let params = HashParams {
        m_kib: settings.argon2_memory_kib,
        t: settings.argon2_iterations,
        p: settings.argon2_parallelism,
    };
    let hasher = Arc::new(Argon2Hasher::new(params, 1).map_err(StartupError::Key)?);
    let mfa = mfa_service(&ring, &store, Arc::new(SystemClock), Arc::new(RandomIds));
    Ok(UsersCli {
        mfa,
        accounts: AccountService::new(
            store.clone(),
            hasher,
            store.clone(),
            Arc::new(SystemClock),
            Arc::new(RandomIds),
            PasswordPolicy::default(),
        ),
        throttle: store,
    })
}

/// What the `keys` commands work with.
pub struct KeysCli {
    /// The fiscal vault (credentials sealed with the keyring).
    pub vault: vault::VaultService,
    /// MFA (TOTP secrets sealed with the keyring).
    pub mfa: mfa::MfaService,
    /// The keyring as loaded.
    pub ring: Keyring,
    /// Where it came from.
    pub source: KeySource,
    /// Where the commands record what they did (AUD-2). Its chain MACs use the keyring as
    /// loaded, before the command changes it, so a rotation's record is sealed with a key the
    /// running servers already know.
    pub audit: Arc<dyn audit::AuditSink>,
}

impl std::fmt::Debug for KeysCli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keyring's keys.
        f.debug_struct("KeysCli")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The vault, MFA, the keyring and its source, and an audit sink, for the `keys` commands.
///
/// # Errors
/// Key or database errors.
pub async fn vault_for_cli(settings: &Settings) -> Result<KeysCli, StartupError> {
    let (ring, source) = keyring(settings)?;
    let db = database(settings).await?;
    let store = Arc::new(SeaStore::new(db, Arc::new(HmacChain::new(&ring))));
    let vault = vault_service(
        &ring,
        &store,
        certificate_inspector(settings, SystemClock.now())?,
        Arc::new(SystemClock),
        Arc::new(RandomIds),
    );
    let mfa = mfa_service(&ring, &store, Arc::new(SystemClock), Arc::new(RandomIds));
    Ok(KeysCli {
        vault,
        mfa,
        ring,
        source,
        audit: store,
    })
}

struct DbReadiness(DatabaseConnection);

#[async_trait]
impl http_api::Readiness for DbReadiness {
    async fn check(&self) -> Result<(), String> {
        store_sea::ping(&self.0).await.map_err(|e| e.to_string())?;
        match store_sea::migrations_current(&self.0).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("migrations pending".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The values of `/metrics` read at scrape time: from the database, and the password hasher's.
struct DbGauges(
    Arc<SeaStore>,
    Arc<dyn Clock>,
    Arc<Argon2Hasher>,
    SessionService,
);

#[async_trait]
impl http_api::metrics::Gauges for DbGauges {
    async fn read(&self) -> Vec<(&'static str, &'static str, f64)> {
        let mut out = Vec::new();
        if let Ok(n) = notify::OutboxStore::backlog(self.0.as_ref()).await {
            out.push((
                "incrementa_outbox_backlog",
                "Notifications waiting for delivery.",
                n as f64,
            ));
        }
        if let Ok(n) = self.0.open_alerts(false).await {
            out.push((
                "incrementa_alerts_open",
                "Alerts of the audit review not triaged yet (neither dismissed nor taken into an incident), all companies.",
                n as f64,
            ));
        }
        if let Ok(n) = self.0.open_alerts(true).await {
            out.push((
                "incrementa_platform_alerts_open",
                "Open alerts of no company (failed logins for unknown emails): `incrementa audit alerts` lists them.",
                n as f64,
            ));
        }
        if let Ok(n) = self.0.audit_appends().await {
            out.push((
                "incrementa_audit_appends",
                "Audit records appended to the chains since the database was created, by all processes.",
                n as f64,
            ));
        }
        if let Ok((expiring, expired)) = self
            .0
            .credentials_by_expiry(self.1.now(), vault::EXPIRING_SOON_DAYS)
            .await
        {
            out.push((
                "incrementa_fiscal_credentials_expiring",
                "Stored SAT credentials, all companies, valid for fewer than 30 more days (their managers are e-mailed).",
                expiring as f64,
            ));
            out.push((
                "incrementa_fiscal_credentials_expired",
                "Stored SAT credentials, all companies, whose validity has ended: they sign nothing.",
                expired as f64,
            ));
        }
        if let Ok(n) = self.0.active_sessions(self.1.now()).await {
            out.push((
                "incrementa_active_sessions",
                "Sessions neither revoked nor past their absolute lifetime.",
                n as f64,
            ));
        }
        let hashing = self.2.stats();
        out.extend([
            (
                "incrementa_password_hashes_total",
                "Argon2id hashes and verifications computed by this process.",
                hashing.computed as f64,
            ),
            (
                "incrementa_password_hash_seconds_total",
                "Seconds this process spent computing them (divide by the count: time of one).",
                hashing.compute_seconds,
            ),
            (
                "incrementa_password_hash_wait_seconds_total",
                "Seconds they waited for a free hashing thread, all callers together.",
                hashing.wait_seconds,
            ),
            (
                "incrementa_password_hash_queue",
                "Hashes submitted and not yet started.",
                hashing.queued as f64,
            ),
        ]);
        let cache = self.3.cache_stats();
        out.extend([
            (
                "incrementa_session_cache_hits_total",
                "Authenticated requests this process answered from its session cache.",
                cache.hits as f64,
            ),
            (
                "incrementa_session_cache_misses_total",
                "Authenticated requests that asked the database (nothing cached, changed since, or older than INCREMENTA_SESSION_CACHE_MS).",
                cache.misses as f64,
            ),
        ]);
        out
    }
}

/// A built server, bound and ready to run.
pub struct Application {
    server: Server,
    port: u16,
    /// PostgreSQL's change notices for the session cache; following stops when this drops.
    _changes: Option<store_sea::ChangeFollower>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Resolves the master key, connects and migrates the database, wires the services and binds.
    ///
    /// # Errors
    /// A [`StartupError`] naming what is wrong.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Self::build`] with a given clock (tests drive time by hand).
    ///
    /// # Errors
    /// As [`Self::build`].
    pub async fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        ensure_data_dir(settings)?;
        let (keyring, source) = keyring(settings)?;
        match source {
            KeySource::Generated(path) => tracing::warn!(
                path = %path.display(),
                "created a new master key file (mode 0600). It encrypts the vault: back it up apart from the database, \
                 and in production give the key through INCREMENTA_MASTER_KEY or INCREMENTA_MASTER_KEY_FILE"
            ),
            KeySource::File(path) => {
                tracing::info!(path = %path.display(), versions = ?keyring.ids(), "master keys loaded from file")
            }
            KeySource::Environment => {
                tracing::info!(versions = ?keyring.ids(), "master keys loaded from INCREMENTA_MASTER_KEY")
            }
        }
        let db = database(settings).await?;
        let chain = Arc::new(HmacChain::new(&keyring));
        let store = Arc::new(SeaStore::new(db.clone(), chain.clone()));
        // Before any request: a session another process revokes from now on leaves this
        // process's cache at once (ACC-1, RBAC-6); SQLite: within the cache's time to live.
        let changes = store
            .follow_changes(&database_url(settings))
            .await
            .map_err(StartupError::Database)?;
        let ids = Arc::new(RandomIds);
        let audit = audit::AuditService::new(
            store.clone(),
            store.clone(),
            chain,
            clock.clone(),
            ids.clone(),
        )
        .with_thresholds(audit::AlertThresholds {
            account_failures: settings.alert_account_failures,
            ip_failures: settings.alert_ip_failures,
            failure_window: Duration::minutes(settings.alert_window_minutes),
            export_burst: settings.alert_export_burst,
            export_window: Duration::minutes(10),
        });
        spawn_review(audit.clone());
        spawn_backups(settings.clone(), store.clone(), clock.clone());
        let reset_tokens = Arc::new(crypto::ResetTokens::new(&keyring));
        let mut outbox = notify::OutboxWorker::new(
            store.clone(),
            mailer(settings)?,
            clock.clone(),
            notify::RetryPolicy::default(),
        )
        .with_reset_tokens(reset_tokens.clone());
        if let Some(page) = &settings.reset_url {
            outbox = outbox.with_reset_page(page);
        }
        spawn_outbox(
            outbox.clone(),
            std::time::Duration::from_secs(settings.outbox_interval_seconds),
        );
        let params = HashParams {
            m_kib: settings.argon2_memory_kib,
            t: settings.argon2_iterations,
            p: settings.argon2_parallelism,
        };
        let hasher = Arc::new(
            Argon2Hasher::new(params, settings.hash_concurrency).map_err(StartupError::Key)?,
        );
        let gauge_hasher = hasher.clone();
        let per_ip = settings.per_ip(settings.signup_limit_per_ip);
        let ownership = OwnershipService::new(
            store.clone(),
            store.clone(),
            store.clone(),
            clock.clone(),
            ids.clone(),
        );
        let accounts = AccountService::new(
            store.clone(),
            hasher.clone(),
            store.clone(),
            clock.clone(),
            ids.clone(),
            PasswordPolicy::default(),
        )
        .with_signup_limit(Arc::new(RateLimiter::<ClientNet>::new(
            per_ip,
            Duration::hours(1),
            100_000,
        )));
        // Password-reset requests, failed confirmations and failed undos of an e-mail change:
        // the sign-up limit per client network, one window for all (each is a code guessed
        // without a session).
        let code_limiter = Arc::new(RateLimiter::<ClientNet>::new(
            per_ip,
            Duration::hours(1),
            100_000,
        ));
        // The same token key reads e-mail change and undo codes: each code names its own
        // pending id, and a reset's id is never a change's or an undo window's.
        let email_changes = accounts::EmailChangeService::new(
            accounts::EmailChangePorts {
                users: store.clone(),
                changes: store.clone(),
                tokens: reset_tokens.clone(),
                hasher: hasher.clone(),
                audit: store.clone(),
                clock: clock.clone(),
                ids: ids.clone(),
            },
            code_limiter.clone(),
        );
        let password_resets = accounts::PasswordResetService::new(
            accounts::ResetPorts {
                users: store.clone(),
                resets: store.clone(),
                tokens: reset_tokens,
                hasher: hasher.clone(),
                clock: clock.clone(),
                ids: ids.clone(),
            },
            PasswordPolicy::default(),
            code_limiter,
        );
        let session_config = SessionConfig {
            default_cap: settings.session_limit,
            idle_timeout: Duration::minutes(settings.session_idle_minutes),
            absolute_lifetime: Duration::minutes(settings.session_lifetime_minutes),
            touch_interval: Duration::minutes(1),
            throttle: ThrottlePolicy::default(),
            cache_ttl: Duration::milliseconds(i64::from(settings.session_cache_ms)),
            cache_capacity: 10_000,
            ended_retention: Duration::days(settings.session_retention_days),
        };
        let mfa = mfa_service(&keyring, &store, clock.clone(), ids.clone());
        let sessions = SessionService::new(
            SessionPorts {
                accounts: store.clone(),
                hasher,
                store: store.clone(),
                throttle: store.clone(),
                login_reads: Some(store.clone()),
                tokens: Arc::new(RandomTokens),
                audit: store.clone(),
                clock: clock.clone(),
                ids: ids.clone(),
                mfa: Arc::new(mfa.clone()),
                epoch: store.clone(),
            },
            Arc::new(RateLimiter::new(
                settings.rate_limit_per_ip,
                Duration::hours(1),
                100_000,
            )),
            session_config,
        )
        .with_token_failure_limit(Arc::new(RateLimiter::new(
            settings.per_ip(settings.token_failure_limit_per_ip),
            Duration::hours(1),
            100_000,
        )));
        spawn_retention(
            audit.clone(),
            sessions.clone(),
            outbox,
            settings.audit_retention_days,
        );
        let vault = vault_service(
            &keyring,
            &store,
            certificate_inspector(settings, clock.now())?,
            clock.clone(),
            ids.clone(),
        );
        spawn_expiry_notices(
            vault.clone(),
            std::time::Duration::from_secs(settings.vault_expiry_check_seconds),
        );
        let gauges = Arc::new(DbGauges(
            store.clone(),
            clock.clone(),
            gauge_hasher,
            sessions.clone(),
        ));
        let state = http_api::ApiState {
            accounts,
            sessions,
            ownership,
            password_resets,
            email_changes,
            vault,
            mfa,
            incidents: incidents::IncidentService::new(store.clone(), clock.clone(), ids.clone()),
            audit,
            readiness: Arc::new(DbReadiness(db)),
            trusted_proxies: http_api::proxy::TrustedProxies::parse(&settings.trusted_proxies)
                .unwrap_or_default(),
            metrics: Arc::default(),
            gauges,
            metrics_token: settings.metrics_token.clone(),
            // Validated with the settings; an invalid list cannot get here.
            cors: http_api::cors::AllowedOrigins::parse(&settings.cors_origins).unwrap_or_default(),
            body_timeout: std::time::Duration::from_secs(u64::from(settings.body_timeout_secs)),
            in_flight: http_api::in_flight::InFlight::new(
                settings.per_ip(settings.in_flight_per_ip),
            ),
            hashing: http_api::in_flight::InFlight::new(settings.per_ip(settings.hashing_per_ip)),
        };
        let listener = TcpListener::bind(settings.bind).map_err(|source| StartupError::Bind {
            addr: settings.bind.to_string(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: settings.bind.to_string(),
                source,
            })?
            .port();
        let server = HttpServer::new(move || http_api::app(state.clone()))
            .workers(settings.workers)
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                addr: settings.bind.to_string(),
                source,
            })?
            .run();
        tracing::info!(address = %settings.bind, port, "listening");
        Ok(Self {
            server,
            port,
            _changes: changes,
        })
    }

    /// The bound port (useful with port 0).
    #[must_use]
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, finishing in-flight requests.
    ///
    /// # Errors
    /// Server I/O errors.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn alert(n: u128, company: Option<kernel::CompanyId>) -> audit::Alert {
        audit::Alert {
            id: uuid::Uuid::from_u128(n),
            company_id: company,
            at: kernel::Timestamp::default(),
            rule: "repeated_login_failures".into(),
            severity: "medium".into(),
            summary: "5 failed logins for ana@example.com within 15 minutes".into(),
            subject: "ana@example.com".into(),
            status: audit::Alert::OPEN.into(),
            record_id: uuid::Uuid::from_u128(9),
        }
    }

    /// Each raised alert is one warning with its id, rule, severity and company (`platform`
    /// without one), never its subject or summary (emails, addresses); past
    /// `LOGGED_ALERTS` the rest are counted in one line.
    #[test]
    fn raised_alerts_are_logged_one_by_one_without_their_subjects() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || sink.clone())
            .finish();
        let company = kernel::CompanyId::from_uuid(uuid::Uuid::from_u128(7));
        let mut raised = vec![alert(1, Some(company)), alert(2, None)];
        raised.extend((3..30).map(|n| alert(n, Some(company))));
        tracing::subscriber::with_default(subscriber, || super::log_alerts(&raised));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), super::LOGGED_ALERTS + 1, "{text}");
        let first = &lines[0]["fields"];
        assert_eq!(first["alert_id"], uuid::Uuid::from_u128(1).to_string());
        assert_eq!(first["rule"], "repeated_login_failures");
        assert_eq!(first["severity"], "medium");
        assert_eq!(first["company"], company.to_string());
        assert_eq!(lines[1]["fields"]["company"], "platform");
        assert_eq!(
            lines[super::LOGGED_ALERTS]["fields"]["more"],
            raised.len() - super::LOGGED_ALERTS
        );
        assert!(!text.contains("ana@example.com"), "{text}");
    }
}
