//! Configuration: defaults, then an optional TOML file, then `INCREMENTA_*` environment
//! variables (and `DATABASE_URL`). Loaded once, validated with a clear message per wrong value,
//! and passed down; never a global.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

/// A wrong setting, named, with what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML file is malformed.
    #[error("configuration file {path} is not valid: {message}")]
    Parse {
        /// File.
        path: String,
        /// Parser message.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("{name}: {problem}")]
    Invalid {
        /// Setting name as the operator writes it.
        name: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },
}

/// The longest reset page address (`reset_url`).
const MAX_RESET_URL: usize = 512;

/// Checks the front end's password-reset page and returns its normalised form: an absolute
/// `https` address (`http` only on a loopback host, for development) without credentials,
/// fragment or placeholder-like brackets, up to [`MAX_RESET_URL`] characters. Reset e-mails
/// append `#token=<code>` to it.
fn reset_page(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let expected = "an absolute https:// address of the front end's reset page, e.g. \
                    https://app.example.mx/restablecer";
    if raw.len() > MAX_RESET_URL {
        return Err(format!(
            "must be at most {MAX_RESET_URL} characters: {expected}"
        ));
    }
    if raw.contains('#') {
        return Err(format!(
            "must not have a fragment (`#…`): the mail adds `#token=<code>`; {expected}"
        ));
    }
    if raw.contains("[[") || raw.contains("]]") {
        return Err(format!("must not contain `[[` or `]]`: {expected}"));
    }
    let page = url::Url::parse(raw).map_err(|e| format!("{e}: {expected}"))?;
    let loopback = match page.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("has no host: {expected}")),
    };
    match page.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "must use https (http only for localhost): the link carries a reset code; {expected}"
            ));
        }
        _ => return Err(expected.to_owned()),
    }
    if !page.username().is_empty() || page.password().is_some() {
        return Err(format!("must not hold a user name or password: {expected}"));
    }
    Ok(page.into())
}

/// The most password hashes a process computes at once (`hash_concurrency`).
const MAX_HASH_CONCURRENCY: usize = 256;

/// Every setting of the server, typed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `INCREMENTA_BIND`: listen address.
    pub bind: SocketAddr,
    /// `INCREMENTA_DATA_DIR`: SQLite file, key file, outbox, local backups.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`: overrides the SQLite default (may hold a password: secret).
    pub database_url: Option<SecretString>,
    /// `INCREMENTA_MASTER_KEY`: the vault master key itself.
    pub master_key: Option<SecretString>,
    /// `INCREMENTA_MASTER_KEY_FILE`: a file holding it.
    pub master_key_file: Option<PathBuf>,
    /// `INCREMENTA_VAULT_TRUSTED_ISSUERS`: a PEM bundle (or one DER certificate) of the CAs
    /// whose certificates the vault accepts; unset, any well-formed certificate is accepted.
    pub vault_trusted_issuers: Option<PathBuf>,
    /// `INCREMENTA_LOG`: tracing filter.
    pub log: String,
    /// `INCREMENTA_RATE_LIMIT_PER_IP`: failed logins per IP per hour (0 turns per-IP limits off).
    pub rate_limit_per_ip: u32,
    /// `INCREMENTA_SIGNUP_LIMIT_PER_IP`: sign-ups per IP per hour (off with the per-IP limits).
    pub signup_limit_per_ip: u32,
    /// `INCREMENTA_TOKEN_FAILURE_LIMIT_PER_IP`: unknown bearer tokens per IP per hour (0, or the
    /// per-IP limits off, turns it off).
    pub token_failure_limit_per_ip: u32,
    /// `INCREMENTA_SESSION_LIMIT`: active sessions per user unless the company sets its own.
    pub session_limit: u16,
    /// `INCREMENTA_SESSION_CACHE_MS`: how long a process may serve a session from memory
    /// (changes made through the same process are seen at once, and on PostgreSQL other
    /// processes' too through change notices; on a shared SQLite file within this time). 0 turns
    /// the cache off.
    pub session_cache_ms: u32,
    /// `INCREMENTA_BODY_TIMEOUT_SECS`: how long a client may take to send a request's body
    /// (then 408 and the connection closes).
    pub body_timeout_secs: u32,
    /// `INCREMENTA_IN_FLIGHT_PER_IP`: requests one client (an IPv4 address, an IPv6 /64) may
    /// have in flight at once; past it, 429. 0, or the per-IP limits off, turns it off.
    pub in_flight_per_ip: u32,
    /// `INCREMENTA_HASHING_PER_IP`: requests that hash a password (logins, re-authentications,
    /// sign-ups, new users, password changes and resets) one client may have in flight at
    /// once; past it, 429. 0, or the per-IP limits off, turns it off.
    pub hashing_per_ip: u32,
    /// `INCREMENTA_SESSION_IDLE_MINUTES`.
    pub session_idle_minutes: i64,
    /// `INCREMENTA_SESSION_LIFETIME_MINUTES`.
    pub session_lifetime_minutes: i64,
    /// `INCREMENTA_ARGON2_MEMORY_KIB`.
    pub argon2_memory_kib: u32,
    /// `INCREMENTA_ARGON2_ITERATIONS`.
    pub argon2_iterations: u32,
    /// `INCREMENTA_ARGON2_PARALLELISM`.
    pub argon2_parallelism: u32,
    /// `INCREMENTA_HASH_CONCURRENCY`: password hashes at once (default: CPU count).
    pub hash_concurrency: usize,
    /// `INCREMENTA_WORKERS`: HTTP worker threads (default: CPU count).
    pub workers: usize,
    /// `INCREMENTA_DB_MAX_CONNECTIONS`: pool size (default: 2 on SQLite, which has one writer
    /// at a time, 16 on PostgreSQL).
    pub db_max_connections: Option<u32>,
    /// `INCREMENTA_AUDIT_RETENTION_DAYS`: audit records older than this are purged daily (AUD-5).
    pub audit_retention_days: i64,
    /// `INCREMENTA_SESSION_RETENTION_DAYS`: sessions that ended (revoked, expired or idle) longer
    /// ago than this are deleted daily, with their IP addresses and user agents.
    pub session_retention_days: i64,
    /// `INCREMENTA_ALERT_ACCOUNT_FAILURES`: failed logins per account in the window that raise an alert.
    pub alert_account_failures: usize,
    /// `INCREMENTA_ALERT_IP_FAILURES`: failed logins per IP in the window that raise an alert.
    pub alert_ip_failures: usize,
    /// `INCREMENTA_ALERT_WINDOW_MINUTES`: the failure window.
    pub alert_window_minutes: i64,
    /// `INCREMENTA_ALERT_EXPORT_BURST`: audit exports by one user in 10 minutes that raise an alert.
    pub alert_export_burst: usize,
    /// `INCREMENTA_MAIL_FROM`: the sender of user notifications.
    pub mail_from: String,
    /// `INCREMENTA_SMTP_HOST`: deliver notifications over SMTP to this host. Unset (the
    /// embedded default): write them as `.eml` files under `<data_dir>/outbox`.
    pub smtp_host: Option<String>,
    /// `INCREMENTA_SMTP_PORT`: SMTP port (default 587).
    pub smtp_port: u16,
    /// `INCREMENTA_SMTP_TLS`: `starttls` (default), `tls` or `none`.
    pub smtp_tls: String,
    /// `INCREMENTA_SMTP_USERNAME`: SMTP user, if the server wants one.
    pub smtp_username: Option<String>,
    /// `INCREMENTA_SMTP_PASSWORD`: SMTP password (never logged).
    pub smtp_password: Option<SecretString>,
    /// `INCREMENTA_OUTBOX_INTERVAL_SECONDS`: how often the outbox worker looks for due messages.
    pub outbox_interval_seconds: u64,
    /// `INCREMENTA_RESET_URL`: the front end's password-reset page (`https://…`; `http://` only
    /// for a loopback host). Set, reset e-mails also carry a link `<page>#token=<code>`;
    /// unset (the default), the code alone. Normalised when loaded.
    pub reset_url: Option<String>,
    /// `INCREMENTA_VAULT_EXPIRY_CHECK_SECONDS`: how often the server looks for SAT credentials
    /// that reached a new expiry stage (30, 7, 1 days left, expired) and tells those who manage
    /// them (VAULT-8). Each stage is told once whatever the interval or the number of servers.
    pub vault_expiry_check_seconds: u64,
    /// `INCREMENTA_TRUSTED_PROXIES`: comma-separated addresses or CIDR networks of reverse
    /// proxies whose `X-Forwarded-For` is believed (default: none).
    pub trusted_proxies: String,
    /// `INCREMENTA_CORS_ORIGINS`: comma-separated browser origins (`https://app.example.com`)
    /// allowed to call the API; empty (the default): no cross-origin access.
    pub cors_origins: String,
    /// `INCREMENTA_METRICS_TOKEN`: bearer token for `GET /metrics`; unset, only loopback
    /// clients may read the metrics.
    pub metrics_token: Option<SecretString>,
    /// `INCREMENTA_BACKUP_REMOTE` (formerly `INCREMENTA_BACKUP_DIR_2`): the second backup
    /// destination — a directory (e.g. a mounted share), `file:///…`, or `s3://bucket/prefix`
    /// (credentials, region and endpoint from the usual `AWS_*` variables, never the URL); the
    /// first is `<data_dir>/backups`.
    pub backup_remote: Option<String>,
    /// `INCREMENTA_BACKUP_FORMAT`: `portable` (default: rows as JSON Lines, restorable into
    /// SQLite or PostgreSQL) or `native` (an SQLite file or a `pg_dump` script).
    pub backup_format: String,
    /// `INCREMENTA_BACKUP_KEEP`: backups kept per destination (default 7).
    pub backup_keep: usize,
    /// `INCREMENTA_BACKUP_AT`: local time of the daily backup `serve` runs (`01:00`), or `off`.
    pub backup_at: String,
    /// `INCREMENTA_BACKUP_TIME_ZONE`: the time zone of `backup_at` (`America/Mexico_City`).
    pub backup_time_zone: String,
}

impl Default for Settings {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            master_key: None,
            master_key_file: None,
            vault_trusted_issuers: None,
            log: "info".into(),
            rate_limit_per_ip: 100,
            signup_limit_per_ip: 20,
            token_failure_limit_per_ip: 1000,
            session_limit: 2,
            session_cache_ms: 1000,
            body_timeout_secs: http_api::DEFAULT_BODY_TIMEOUT_SECS,
            in_flight_per_ip: http_api::in_flight::DEFAULT_IN_FLIGHT_PER_IP,
            hashing_per_ip: http_api::in_flight::DEFAULT_HASHING_PER_IP,
            session_idle_minutes: 30,
            session_lifetime_minutes: 12 * 60,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: cpus,
            workers: cpus,
            db_max_connections: None,
            audit_retention_days: 365,
            session_retention_days: 30,
            alert_account_failures: 5,
            alert_ip_failures: 20,
            alert_window_minutes: 15,
            alert_export_burst: 3,
            mail_from: "IncrementaCRM Seguridad <seguridad@incrementa.invalid>".into(),
            smtp_host: None,
            smtp_port: 587,
            smtp_tls: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            outbox_interval_seconds: 5,
            reset_url: None,
            vault_expiry_check_seconds: 3600,
            trusted_proxies: String::new(),
            cors_origins: String::new(),
            metrics_token: None,
            backup_remote: None,
            backup_format: "portable".into(),
            backup_keep: 7,
            backup_at: "01:00".into(),
            backup_time_zone: "America/Mexico_City".into(),
        }
    }
}

/// The TOML file: the same names as the variables, lower case without the prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    bind: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    master_key_file: Option<PathBuf>,
    vault_trusted_issuers: Option<PathBuf>,
    log: Option<String>,
    rate_limit_per_ip: Option<u32>,
    signup_limit_per_ip: Option<u32>,
    token_failure_limit_per_ip: Option<u32>,
    session_limit: Option<u16>,
    session_cache_ms: Option<u32>,
    body_timeout_secs: Option<u32>,
    in_flight_per_ip: Option<u32>,
    hashing_per_ip: Option<u32>,
    session_idle_minutes: Option<i64>,
    session_lifetime_minutes: Option<i64>,
    argon2_memory_kib: Option<u32>,
    argon2_iterations: Option<u32>,
    argon2_parallelism: Option<u32>,
    hash_concurrency: Option<usize>,
    workers: Option<usize>,
    db_max_connections: Option<u32>,
    audit_retention_days: Option<i64>,
    session_retention_days: Option<i64>,
    mail_from: Option<String>,
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    smtp_tls: Option<String>,
    smtp_username: Option<String>,
    outbox_interval_seconds: Option<u64>,
    reset_url: Option<String>,
    vault_expiry_check_seconds: Option<u64>,
    trusted_proxies: Option<String>,
    cors_origins: Option<String>,
    #[serde(alias = "backup_dir_2")]
    backup_remote: Option<String>,
    backup_format: Option<String>,
    backup_keep: Option<usize>,
    backup_at: Option<String>,
    backup_time_zone: Option<String>,
}

fn parse<T: std::str::FromStr>(
    name: &'static str,
    raw: &str,
    expected: &str,
) -> Result<T, ConfigError> {
    raw.trim().parse().map_err(|_| ConfigError::Invalid {
        name,
        problem: format!("expected {expected}, found {raw:?}"),
    })
}

impl Settings {
    /// `limit`, a per-IP limit other than the failed-login one, as it applies: 0 (off) when
    /// `INCREMENTA_RATE_LIMIT_PER_IP=0` turns per-IP limits off (behind a trusted gateway).
    #[must_use]
    pub const fn per_ip(&self, limit: u32) -> u32 {
        if self.rate_limit_per_ip == 0 {
            0
        } else {
            limit
        }
    }

    /// Loads defaults, then `file` (if given), then the environment `env`.
    ///
    /// # Errors
    /// A named [`ConfigError`] for the first wrong value.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut s = Self::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let f: FileSettings = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.message().to_owned(),
            })?;
            if let Some(v) = f.bind {
                s.bind = parse("bind", &v, "an address like 127.0.0.1:8080")?;
            }
            if let Some(v) = f.data_dir {
                s.data_dir = v;
            }
            if let Some(v) = f.database_url {
                s.database_url = Some(SecretString::from(v));
            }
            if let Some(v) = f.master_key_file {
                s.master_key_file = Some(v);
            }
            if let Some(v) = f.vault_trusted_issuers {
                s.vault_trusted_issuers = Some(v);
            }
            if let Some(v) = f.log {
                s.log = v;
            }
            if let Some(v) = f.rate_limit_per_ip {
                s.rate_limit_per_ip = v;
            }
            if let Some(v) = f.signup_limit_per_ip {
                s.signup_limit_per_ip = v;
            }
            if let Some(v) = f.token_failure_limit_per_ip {
                s.token_failure_limit_per_ip = v;
            }
            if let Some(v) = f.session_limit {
                s.session_limit = v;
            }
            if let Some(v) = f.session_cache_ms {
                s.session_cache_ms = v;
            }
            if let Some(v) = f.body_timeout_secs {
                s.body_timeout_secs = v;
            }
            if let Some(v) = f.in_flight_per_ip {
                s.in_flight_per_ip = v;
            }
            if let Some(v) = f.hashing_per_ip {
                s.hashing_per_ip = v;
            }
            if let Some(v) = f.session_idle_minutes {
                s.session_idle_minutes = v;
            }
            if let Some(v) = f.session_lifetime_minutes {
                s.session_lifetime_minutes = v;
            }
            if let Some(v) = f.argon2_memory_kib {
                s.argon2_memory_kib = v;
            }
            if let Some(v) = f.argon2_iterations {
                s.argon2_iterations = v;
            }
            if let Some(v) = f.argon2_parallelism {
                s.argon2_parallelism = v;
            }
            if let Some(v) = f.hash_concurrency {
                s.hash_concurrency = v;
            }
            if let Some(v) = f.workers {
                s.workers = v;
            }
            if let Some(v) = f.db_max_connections {
                s.db_max_connections = Some(v);
            }
            if let Some(v) = f.audit_retention_days {
                s.audit_retention_days = v;
            }
            if let Some(v) = f.session_retention_days {
                s.session_retention_days = v;
            }
            if let Some(v) = f.mail_from {
                s.mail_from = v;
            }
            if let Some(v) = f.smtp_host {
                s.smtp_host = Some(v).filter(|h| !h.trim().is_empty());
            }
            if let Some(v) = f.smtp_port {
                s.smtp_port = v;
            }
            if let Some(v) = f.smtp_tls {
                s.smtp_tls = v;
            }
            if let Some(v) = f.smtp_username {
                s.smtp_username = Some(v);
            }
            if let Some(v) = f.outbox_interval_seconds {
                s.outbox_interval_seconds = v;
            }
            if let Some(v) = f.reset_url {
                s.reset_url = Some(v).filter(|v| !v.trim().is_empty());
            }
            if let Some(v) = f.vault_expiry_check_seconds {
                s.vault_expiry_check_seconds = v;
            }
            if let Some(v) = f.trusted_proxies {
                s.trusted_proxies = v;
            }
            if let Some(v) = f.cors_origins {
                s.cors_origins = v;
            }
            if let Some(v) = f.backup_remote {
                s.backup_remote = Some(v).filter(|v| !v.trim().is_empty());
            }
            if let Some(v) = f.backup_format {
                s.backup_format = v;
            }
            if let Some(v) = f.backup_keep {
                s.backup_keep = v;
            }
            if let Some(v) = f.backup_at {
                s.backup_at = v;
            }
            if let Some(v) = f.backup_time_zone {
                s.backup_time_zone = v;
            }
        }
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = var("INCREMENTA_BIND") {
            s.bind = parse("INCREMENTA_BIND", &v, "an address like 127.0.0.1:8080")?;
        }
        if let Some(v) = var("INCREMENTA_DATA_DIR") {
            s.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("DATABASE_URL") {
            s.database_url = Some(SecretString::from(v));
        }
        if let Some(v) = var("INCREMENTA_MASTER_KEY") {
            s.master_key = Some(SecretString::from(v));
        }
        if let Some(v) = var("INCREMENTA_MASTER_KEY_FILE") {
            s.master_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = var("INCREMENTA_VAULT_TRUSTED_ISSUERS") {
            s.vault_trusted_issuers = Some(PathBuf::from(v));
        }
        if let Some(v) = var("INCREMENTA_LOG") {
            s.log = v;
        }
        if let Some(v) = var("INCREMENTA_RATE_LIMIT_PER_IP") {
            s.rate_limit_per_ip = parse(
                "INCREMENTA_RATE_LIMIT_PER_IP",
                &v,
                "a whole number (0 turns per-IP limits off)",
            )?;
        }
        if let Some(v) = var("INCREMENTA_SIGNUP_LIMIT_PER_IP") {
            s.signup_limit_per_ip = parse("INCREMENTA_SIGNUP_LIMIT_PER_IP", &v, "a whole number")?;
        }
        if let Some(v) = var("INCREMENTA_TOKEN_FAILURE_LIMIT_PER_IP") {
            s.token_failure_limit_per_ip = parse(
                "INCREMENTA_TOKEN_FAILURE_LIMIT_PER_IP",
                &v,
                "a whole number (0 turns it off)",
            )?;
        }
        if let Some(v) = var("INCREMENTA_SESSION_LIMIT") {
            s.session_limit = parse(
                "INCREMENTA_SESSION_LIMIT",
                &v,
                "a whole number from 1 to 100",
            )?;
        }
        if let Some(v) = var("INCREMENTA_SESSION_CACHE_MS") {
            s.session_cache_ms = parse(
                "INCREMENTA_SESSION_CACHE_MS",
                &v,
                "milliseconds from 0 to 60000",
            )?;
        }
        if let Some(v) = var("INCREMENTA_BODY_TIMEOUT_SECS") {
            s.body_timeout_secs =
                parse("INCREMENTA_BODY_TIMEOUT_SECS", &v, "seconds from 1 to 300")?;
        }
        if let Some(v) = var("INCREMENTA_IN_FLIGHT_PER_IP") {
            s.in_flight_per_ip = parse(
                "INCREMENTA_IN_FLIGHT_PER_IP",
                &v,
                "requests from 0 (off) to 100000",
            )?;
        }
        if let Some(v) = var("INCREMENTA_HASHING_PER_IP") {
            s.hashing_per_ip = parse(
                "INCREMENTA_HASHING_PER_IP",
                &v,
                "requests from 0 (off) to 10000",
            )?;
        }
        if let Some(v) = var("INCREMENTA_SESSION_IDLE_MINUTES") {
            s.session_idle_minutes = parse("INCREMENTA_SESSION_IDLE_MINUTES", &v, "minutes")?;
        }
        if let Some(v) = var("INCREMENTA_SESSION_LIFETIME_MINUTES") {
            s.session_lifetime_minutes =
                parse("INCREMENTA_SESSION_LIFETIME_MINUTES", &v, "minutes")?;
        }
        if let Some(v) = var("INCREMENTA_ARGON2_MEMORY_KIB") {
            s.argon2_memory_kib = parse("INCREMENTA_ARGON2_MEMORY_KIB", &v, "KiB, at least 19456")?;
        }
        if let Some(v) = var("INCREMENTA_ARGON2_ITERATIONS") {
            s.argon2_iterations = parse("INCREMENTA_ARGON2_ITERATIONS", &v, "at least 2")?;
        }
        if let Some(v) = var("INCREMENTA_ARGON2_PARALLELISM") {
            s.argon2_parallelism = parse("INCREMENTA_ARGON2_PARALLELISM", &v, "at least 1")?;
        }
        if let Some(v) = var("INCREMENTA_HASH_CONCURRENCY") {
            s.hash_concurrency = parse("INCREMENTA_HASH_CONCURRENCY", &v, "a whole number from 1")?;
        }
        if let Some(v) = var("INCREMENTA_WORKERS") {
            s.workers = parse("INCREMENTA_WORKERS", &v, "a whole number from 1")?;
        }
        if let Some(v) = var("INCREMENTA_DB_MAX_CONNECTIONS") {
            s.db_max_connections = Some(parse(
                "INCREMENTA_DB_MAX_CONNECTIONS",
                &v,
                "a whole number from 1",
            )?);
        }
        if let Some(v) = var("INCREMENTA_AUDIT_RETENTION_DAYS") {
            s.audit_retention_days = parse("INCREMENTA_AUDIT_RETENTION_DAYS", &v, "days, from 1")?;
        }
        if let Some(v) = var("INCREMENTA_SESSION_RETENTION_DAYS") {
            s.session_retention_days =
                parse("INCREMENTA_SESSION_RETENTION_DAYS", &v, "days, from 1")?;
        }
        if let Some(v) = var("INCREMENTA_ALERT_ACCOUNT_FAILURES") {
            s.alert_account_failures = parse(
                "INCREMENTA_ALERT_ACCOUNT_FAILURES",
                &v,
                "a whole number from 1",
            )?;
        }
        if let Some(v) = var("INCREMENTA_ALERT_IP_FAILURES") {
            s.alert_ip_failures =
                parse("INCREMENTA_ALERT_IP_FAILURES", &v, "a whole number from 1")?;
        }
        if let Some(v) = var("INCREMENTA_ALERT_WINDOW_MINUTES") {
            s.alert_window_minutes =
                parse("INCREMENTA_ALERT_WINDOW_MINUTES", &v, "minutes, from 1")?;
        }
        if let Some(v) = var("INCREMENTA_ALERT_EXPORT_BURST") {
            s.alert_export_burst =
                parse("INCREMENTA_ALERT_EXPORT_BURST", &v, "a whole number from 1")?;
        }
        if let Some(v) = var("INCREMENTA_MAIL_FROM") {
            s.mail_from = v;
        }
        if let Some(v) = var("INCREMENTA_SMTP_HOST") {
            s.smtp_host = Some(v).filter(|h| !h.trim().is_empty());
        }
        if let Some(v) = var("INCREMENTA_SMTP_PORT") {
            s.smtp_port = parse("INCREMENTA_SMTP_PORT", &v, "a port number")?;
        }
        if let Some(v) = var("INCREMENTA_SMTP_TLS") {
            s.smtp_tls = v;
        }
        if let Some(v) = var("INCREMENTA_SMTP_USERNAME") {
            s.smtp_username = Some(v);
        }
        if let Some(v) = var("INCREMENTA_SMTP_PASSWORD") {
            s.smtp_password = Some(SecretString::from(v));
        }
        if let Some(v) = var("INCREMENTA_BACKUP_REMOTE").or_else(|| var("INCREMENTA_BACKUP_DIR_2"))
        {
            s.backup_remote = Some(v);
        }
        if let Some(v) = var("INCREMENTA_BACKUP_FORMAT") {
            s.backup_format = v;
        }
        if let Some(v) = var("INCREMENTA_BACKUP_AT") {
            s.backup_at = v;
        }
        if let Some(v) = var("INCREMENTA_BACKUP_TIME_ZONE") {
            s.backup_time_zone = v;
        }
        if let Some(v) = var("INCREMENTA_BACKUP_KEEP") {
            s.backup_keep = parse("INCREMENTA_BACKUP_KEEP", &v, "a whole number from 1")?;
        }
        if let Some(v) = var("INCREMENTA_TRUSTED_PROXIES") {
            s.trusted_proxies = v;
        }
        if let Some(v) = var("INCREMENTA_CORS_ORIGINS") {
            s.cors_origins = v;
        }
        if let Some(v) = var("INCREMENTA_METRICS_TOKEN") {
            s.metrics_token = Some(SecretString::from(v)).filter(|t| t.expose_secret().len() >= 16);
            if s.metrics_token.is_none() {
                return Err(ConfigError::Invalid {
                    name: "INCREMENTA_METRICS_TOKEN",
                    problem: "must be at least 16 characters".into(),
                });
            }
        }
        if let Some(v) = var("INCREMENTA_OUTBOX_INTERVAL_SECONDS") {
            s.outbox_interval_seconds =
                parse("INCREMENTA_OUTBOX_INTERVAL_SECONDS", &v, "seconds, from 1")?;
        }
        if let Some(v) = var("INCREMENTA_RESET_URL") {
            s.reset_url = Some(v);
        }
        if let Some(v) = var("INCREMENTA_VAULT_EXPIRY_CHECK_SECONDS") {
            s.vault_expiry_check_seconds = parse(
                "INCREMENTA_VAULT_EXPIRY_CHECK_SECONDS",
                &v,
                "seconds, from 1",
            )?;
        }
        s.validate()?;
        if let Some(page) = s.reset_url.take() {
            s.reset_url = Some(reset_page(&page).map_err(|problem| ConfigError::Invalid {
                name: "reset_url",
                problem,
            })?);
        }
        Ok(s)
    }

    /// The daily backup's local time and time zone; `None` when off or invalid.
    #[must_use]
    pub fn backup_schedule(&self) -> Option<(chrono::NaiveTime, chrono_tz::Tz)> {
        let at = chrono::NaiveTime::parse_from_str(self.backup_at.trim(), "%H:%M").ok()?;
        let tz = self.backup_time_zone.trim().parse::<chrono_tz::Tz>().ok()?;
        Some((at, tz))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &'static str, problem: &str| {
            Err(ConfigError::Invalid {
                name,
                problem: problem.to_owned(),
            })
        };
        if self.backup_at != "off" && self.backup_schedule().is_none() {
            return bad(
                "backup_at",
                "must be a local time HH:MM (e.g. 01:00) or off",
            );
        }
        if !(1..=3650).contains(&self.backup_keep) {
            return bad("backup_keep", "must be between 1 and 3650");
        }
        if crate::backup::SnapshotKind::parse(&self.backup_format).is_none() {
            return bad("backup_format", "must be portable or native");
        }
        if let Some(spec) = &self.backup_remote
            && let Err(problem) = crate::backup::Destination::parse(spec)
        {
            return bad("backup_remote", &problem);
        }
        if let Err(problem) = http_api::proxy::TrustedProxies::parse(&self.trusted_proxies) {
            return bad("trusted_proxies", &problem);
        }
        if let Err(problem) = http_api::cors::AllowedOrigins::parse(&self.cors_origins) {
            return bad("cors_origins", &problem);
        }
        if mail::TlsMode::parse(&self.smtp_tls).is_none() {
            return bad("smtp_tls", "must be starttls, tls or none");
        }
        if !(1..=3600).contains(&self.outbox_interval_seconds) {
            return bad("outbox_interval_seconds", "must be between 1 and 3600");
        }
        if !(1..=86_400).contains(&self.vault_expiry_check_seconds) {
            return bad("vault_expiry_check_seconds", "must be between 1 and 86400");
        }
        if self.smtp_username.is_some() != self.smtp_password.is_some() {
            return bad(
                "smtp_username",
                "set INCREMENTA_SMTP_USERNAME and INCREMENTA_SMTP_PASSWORD together",
            );
        }
        if !self.mail_from.contains('@') {
            return bad(
                "mail_from",
                "must be an email address, e.g. Seguridad <seguridad@example.com>",
            );
        }
        if !(1..=100).contains(&self.session_limit) {
            return bad("session_limit", "must be between 1 and 100");
        }
        if self.session_cache_ms > 60_000 {
            return bad(
                "session_cache_ms",
                "must be between 0 (off) and 60000 milliseconds",
            );
        }
        if !(1..=300).contains(&self.body_timeout_secs) {
            return bad("body_timeout_secs", "must be between 1 and 300 seconds");
        }
        if self.in_flight_per_ip > 100_000 {
            return bad(
                "in_flight_per_ip",
                "must be between 0 (off) and 100000 requests",
            );
        }
        if self.hashing_per_ip > 10_000 {
            return bad(
                "hashing_per_ip",
                "must be between 0 (off) and 10000 requests",
            );
        }
        if !(1..=24 * 60).contains(&self.session_idle_minutes) {
            return bad("session_idle_minutes", "must be between 1 and 1440");
        }
        if !(1..=30 * 24 * 60).contains(&self.session_lifetime_minutes)
            || self.session_lifetime_minutes < self.session_idle_minutes
        {
            return bad(
                "session_lifetime_minutes",
                "must be between the idle timeout and 43200 (30 days)",
            );
        }
        if self.argon2_memory_kib < 19_456
            || self.argon2_iterations < 2
            || self.argon2_parallelism < 1
        {
            return bad(
                "argon2",
                "parameters below OWASP's minimum (memory 19456 KiB, 2 iterations, parallelism 1) are refused",
            );
        }
        if self.argon2_memory_kib > 4 * 1024 * 1024
            || self.argon2_iterations > 20
            || self.argon2_parallelism > 64
        {
            return bad(
                "argon2",
                "parameters above 4 GiB, 20 iterations or 64 lanes are refused",
            );
        }
        if self.alert_account_failures == 0
            || self.alert_ip_failures == 0
            || self.alert_export_burst == 0
            || !(1..=1440).contains(&self.alert_window_minutes)
        {
            return bad(
                "alert thresholds",
                "counts must be at least 1 and the window between 1 and 1440 minutes",
            );
        }
        if !(1..=36_500).contains(&self.audit_retention_days) {
            return bad("audit_retention_days", "must be between 1 and 36500");
        }
        if !(1..=3_650).contains(&self.session_retention_days) {
            return bad("session_retention_days", "must be between 1 and 3650");
        }
        if self.hash_concurrency == 0 || self.workers == 0 || self.db_max_connections == Some(0) {
            return bad(
                "hash_concurrency/workers/db_max_connections",
                "must be at least 1",
            );
        }
        // One thread and, while it hashes, 19 MiB or more per concurrent hash.
        if self.hash_concurrency > MAX_HASH_CONCURRENCY {
            return bad(
                "hash_concurrency",
                "must be between 1 and 256 (each concurrent hash is a thread with its own working memory)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/configuration.md` lists every variable this file reads.
    #[test]
    fn every_variable_is_documented() {
        let source = include_str!("config.rs");
        let doc = include_str!("../../../docs/configuration.md");
        let mut checked = 0;
        for (i, _) in source.match_indices("var(\"") {
            let name: String = source[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is missing from docs/configuration.md"
            );
            checked += 1;
        }
        assert!(
            checked > 30,
            "only {checked} variables found: did the reading code change?"
        );
    }
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.session_limit, 2);
        assert_eq!(s.rate_limit_per_ip, 100);
        assert_eq!(s.token_failure_limit_per_ip, 1000);
        assert_eq!(s.body_timeout_secs, 15);
        assert_eq!(s.in_flight_per_ip, 64);
        assert_eq!(s.hashing_per_ip, 4);
        assert!(s.database_url.is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("incrementa.toml");
        std::fs::write(&file, "bind = \"0.0.0.0:9000\"\nsession_limit = 3\n").unwrap();
        let s = Settings::load(
            Some(&file),
            &env(&[
                ("INCREMENTA_SESSION_LIMIT", "4"),
                ("INCREMENTA_RATE_LIMIT_PER_IP", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(s.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(s.session_limit, 4);
        assert_eq!(s.rate_limit_per_ip, 0);
        assert_eq!(s.vault_trusted_issuers, None, "unset by default");
        std::fs::write(&file, "vault_trusted_issuers = \"/etc/sat/cas.pem\"\n").unwrap();
        let s = Settings::load(Some(&file), &env(&[])).unwrap();
        assert_eq!(
            s.vault_trusted_issuers,
            Some(PathBuf::from("/etc/sat/cas.pem"))
        );
        let s = Settings::load(
            Some(&file),
            &env(&[("INCREMENTA_VAULT_TRUSTED_ISSUERS", "/run/secrets/sat.pem")]),
        )
        .unwrap();
        assert_eq!(
            s.vault_trusted_issuers,
            Some(PathBuf::from("/run/secrets/sat.pem"))
        );
    }

    /// The reset page is an https address the mail can append `#token=…` to; anything a
    /// reset code should not travel to is refused with what is expected.
    #[test]
    fn the_reset_page_is_checked_and_normalised() {
        assert_eq!(Settings::load(None, &env(&[])).unwrap().reset_url, None);
        for (given, kept) in [
            (
                "https://App.Example.mx/restablecer",
                "https://app.example.mx/restablecer",
            ),
            ("https://app.example.mx", "https://app.example.mx/"),
            (
                " https://app.example.mx/cuenta/restablecer?origen=correo ",
                "https://app.example.mx/cuenta/restablecer?origen=correo",
            ),
            ("http://localhost:3000/reset", "http://localhost:3000/reset"),
            ("http://127.0.0.1:3000/reset", "http://127.0.0.1:3000/reset"),
            ("http://[::1]:3000/reset", "http://[::1]:3000/reset"),
        ] {
            let s = Settings::load(None, &env(&[("INCREMENTA_RESET_URL", given)])).unwrap();
            assert_eq!(s.reset_url.as_deref(), Some(kept), "{given}");
        }
        let long = format!("https://app.example.mx/{}", "a".repeat(MAX_RESET_URL));
        for (given, says) in [
            ("http://app.example.mx/reset", "https"),
            ("ftp://app.example.mx/reset", "https://"),
            ("app.example.mx/reset", "https://"),
            ("https://app.example.mx/reset#token=", "fragment"),
            (
                "https://ana:secreto@app.example.mx/reset",
                "user name or password",
            ),
            ("https://app.example.mx/[[token]]", "[["),
            ("mailto:ana@example.mx", "host"),
            (long.as_str(), "at most 512"),
        ] {
            let err = Settings::load(None, &env(&[("INCREMENTA_RESET_URL", given)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("reset_url:") && err.contains(says),
                "{given}: {err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("incrementa.toml");
        std::fs::write(&file, "reset_url = \"https://app.example.mx/r\"\n").unwrap();
        let s = Settings::load(Some(&file), &env(&[])).unwrap();
        assert_eq!(s.reset_url.as_deref(), Some("https://app.example.mx/r"));
    }

    #[test]
    fn the_body_timeout_is_bounded() {
        let s = Settings::load(None, &env(&[("INCREMENTA_BODY_TIMEOUT_SECS", "60")])).unwrap();
        assert_eq!(s.body_timeout_secs, 60);
        for wrong in ["0", "301", "-1", "ten"] {
            let err = Settings::load(None, &env(&[("INCREMENTA_BODY_TIMEOUT_SECS", wrong)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("body_timeout_secs") || err.contains("INCREMENTA_BODY_TIMEOUT_SECS"),
                "{wrong}: {err}"
            );
            assert!(err.contains("300"), "{wrong}: {err}");
        }
    }

    #[test]
    fn the_in_flight_caps_are_bounded_and_zero_turns_them_off() {
        let s = Settings::load(None, &env(&[("INCREMENTA_IN_FLIGHT_PER_IP", "0")])).unwrap();
        assert_eq!(s.in_flight_per_ip, 0);
        let s = Settings::load(None, &env(&[("INCREMENTA_IN_FLIGHT_PER_IP", "500")])).unwrap();
        assert_eq!(s.in_flight_per_ip, 500);
        assert_eq!(s.per_ip(s.in_flight_per_ip), 500);
        // Per-IP limits off (behind a gateway that enforces its own) turns this one off too.
        let s = Settings::load(
            None,
            &env(&[
                ("INCREMENTA_IN_FLIGHT_PER_IP", "500"),
                ("INCREMENTA_RATE_LIMIT_PER_IP", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(s.per_ip(s.in_flight_per_ip), 0);
        assert_eq!(s.per_ip(s.token_failure_limit_per_ip), 0);
        assert_eq!(s.per_ip(s.signup_limit_per_ip), 0);
        assert_eq!(s.per_ip(s.hashing_per_ip), 0);
        let s = Settings::load(None, &env(&[("INCREMENTA_HASHING_PER_IP", "12")])).unwrap();
        assert_eq!(s.hashing_per_ip, 12);
        for wrong in ["10001", "-1", "few"] {
            let err = Settings::load(None, &env(&[("INCREMENTA_HASHING_PER_IP", wrong)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("hashing_per_ip") || err.contains("INCREMENTA_HASHING_PER_IP"),
                "{wrong}: {err}"
            );
            assert!(err.contains("10000"), "{wrong}: {err}");
        }
        for wrong in ["100001", "-1", "many"] {
            let err = Settings::load(None, &env(&[("INCREMENTA_IN_FLIGHT_PER_IP", wrong)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("in_flight_per_ip") || err.contains("INCREMENTA_IN_FLIGHT_PER_IP"),
                "{wrong}: {err}"
            );
            assert!(err.contains("100000"), "{wrong}: {err}");
        }
    }

    #[test]
    fn wrong_values_are_named() {
        let err = Settings::load(None, &env(&[("INCREMENTA_HASH_CONCURRENCY", "100000")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hash_concurrency") && err.contains("256"),
            "{err}"
        );
        assert!(Settings::load(None, &env(&[("INCREMENTA_HASH_CONCURRENCY", "256")])).is_ok());
        let err = Settings::load(None, &env(&[("INCREMENTA_BIND", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("INCREMENTA_BIND") && err.contains("127.0.0.1:8080"),
            "{err}"
        );
        let err = Settings::load(None, &env(&[("INCREMENTA_ARGON2_MEMORY_KIB", "1024")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OWASP"), "{err}");
        let err = Settings::load(None, &env(&[("INCREMENTA_SESSION_LIMIT", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("session_limit"), "{err}");
        let err = Settings::load(
            None,
            &env(&[("INCREMENTA_TOKEN_FAILURE_LIMIT_PER_IP", "lots")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("INCREMENTA_TOKEN_FAILURE_LIMIT_PER_IP") && err.contains("lots"),
            "{err}"
        );
        assert_eq!(
            Settings::load(None, &env(&[]))
                .unwrap()
                .session_retention_days,
            30
        );
        for days in ["0", "3651"] {
            let err = Settings::load(None, &env(&[("INCREMENTA_SESSION_RETENTION_DAYS", days)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("session_retention_days") && err.contains("3650"),
                "{err}"
            );
        }
        let s = Settings::load(None, &env(&[("INCREMENTA_SESSION_RETENTION_DAYS", "7")])).unwrap();
        assert_eq!(s.session_retention_days, 7);
        assert_eq!(
            Settings::load(None, &env(&[]))
                .unwrap()
                .vault_expiry_check_seconds,
            3600
        );
        for every in ["0", "86401"] {
            let err = Settings::load(
                None,
                &env(&[("INCREMENTA_VAULT_EXPIRY_CHECK_SECONDS", every)]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("vault_expiry_check_seconds") && err.contains("86400"),
                "{err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "sesion_limit = 3\n").unwrap();
        let err = Settings::load(Some(&file), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sesion_limit"), "{err}");
    }

    #[test]
    fn backup_destinations_and_formats_are_checked() {
        let s = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(
            (s.backup_format.as_str(), s.backup_remote.as_deref()),
            ("portable", None)
        );
        let s = Settings::load(
            None,
            &env(&[("INCREMENTA_BACKUP_REMOTE", "s3://bucket/daily")]),
        )
        .unwrap();
        assert_eq!(s.backup_remote.as_deref(), Some("s3://bucket/daily"));
        // The former name still works.
        let s = Settings::load(None, &env(&[("INCREMENTA_BACKUP_DIR_2", "/mnt/share")])).unwrap();
        assert_eq!(s.backup_remote.as_deref(), Some("/mnt/share"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("incrementa.toml");
        std::fs::write(
            &file,
            "backup_dir_2 = \"/mnt/old\"\nbackup_format = \"native\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), &env(&[])).unwrap();
        assert_eq!(s.backup_remote.as_deref(), Some("/mnt/old"));
        assert_eq!(s.backup_format, "native");
        for (name, value, expected) in [
            ("INCREMENTA_BACKUP_FORMAT", "zip", "portable or native"),
            (
                "INCREMENTA_BACKUP_REMOTE",
                "ftp://host/x",
                "unsupported destination scheme",
            ),
            (
                "INCREMENTA_BACKUP_REMOTE",
                "s3://key:hunter2@bucket/x",
                "credentials",
            ),
        ] {
            let err = Settings::load(None, &env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected) && !err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn secrets_never_reach_debug() {
        let s = Settings::load(
            None,
            &env(&[
                ("DATABASE_URL", "postgres://u:hunter2@h/db"),
                ("INCREMENTA_MASTER_KEY", "c2VjcmV0"),
            ]),
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("c2VjcmV0"),
            "{dbg}"
        );
    }
}
