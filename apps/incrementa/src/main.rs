//! `incrementa`: the IncrementaCRM security core server.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use incrementa::config::Settings;
use incrementa::startup::{self, Application};

/// IncrementaCRM security core: accounts, roles, sessions, vault and audit behind a REST API.
#[derive(Debug, Parser)]
#[command(name = "incrementa", version, about, long_about = None)]
struct Cli {
    /// Optional TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "INCREMENTA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default): applies migrations first.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage the vault's master keys (VAULT-7).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify and maintain the tamper-evident audit log (AUD-4, AUD-5).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Encrypted backups of the whole database (BAK-1, BAK-3).
    Backup(BackupArgs),
    /// Help a locked-out user (break glass).
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, clap::Args)]
struct BackupArgs {
    /// Report progress on stderr (the default when stderr is a terminal).
    #[arg(long, global = true)]
    progress: bool,
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Snapshot the database while it runs, compress, encrypt, and write to every destination
    /// (`<data_dir>/backups` and `INCREMENTA_BACKUP_REMOTE`, or the `--to` destinations); keeps
    /// the newest `INCREMENTA_BACKUP_KEEP` per destination. Exits non-zero if any destination
    /// failed.
    Create {
        /// Destinations instead of the configured ones (repeatable): a directory,
        /// `file:///path` or `s3://bucket/prefix`.
        #[arg(long = "to")]
        to: Vec<String>,
    },
    /// List the backups in the configured destinations, oldest first.
    List,
    /// Check a backup without restoring it: manifest MAC, checksum, every chunk, decompression.
    Verify {
        /// The `.ibk` file: a path or `s3://bucket/prefix/name.ibk`.
        file: String,
    },
    /// Restore a backup into the configured database, which must be empty, then verify the
    /// audit chains. Portable backups restore into SQLite or PostgreSQL.
    Restore {
        /// The `.ibk` file: a path or `s3://bucket/prefix/name.ibk`.
        file: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration (defaults, file, environment) without starting
    /// anything; print the values in force with secrets redacted. Exits 2 on the first wrong
    /// value, naming it.
    Check,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the HMAC chains; exits non-zero and names the first broken record if one is.
    Verify {
        /// Only this company's chain.
        #[arg(long)]
        company: Option<kernel::CompanyId>,
    },
    /// Remove records older than the retention period now (the server also does it daily).
    Purge,
    /// List the review's alerts (AUD-7), newest first, after reviewing the newest records: the
    /// platform's (failed logins for emails of no company, which no company can see) unless
    /// `--company` is given. One line each: id, time, status, severity, rule, summary; when
    /// more follow, a last line `next: CURSOR` to pass as `--cursor` for the next page.
    Alerts {
        /// A company's alerts instead of the platform's.
        #[arg(long)]
        company: Option<kernel::CompanyId>,
        /// Only alerts with this status: open, incident or dismissed.
        #[arg(long, value_parser = ["open", "incident", "dismissed"])]
        status: Option<String>,
        /// Start after this cursor (the `next:` line of the previous page).
        #[arg(long, value_parser = parse_cursor)]
        cursor: Option<kernel::TimeCursor>,
        /// Alerts per page, 1 to 200.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=200))]
        limit: u64,
    },
    /// Dismiss an open alert (triage: it needs no incident), recorded as
    /// `audit.alert_dismissed` by the operator. The platform's alert unless `--company` is given.
    DismissAlert {
        /// The alert's id.
        id: uuid::Uuid,
        /// The alert belongs to this company.
        #[arg(long)]
        company: Option<kernel::CompanyId>,
        /// Why it needs no incident (up to 500 characters), kept in the audit record.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Give a user who cannot log in (an Owner who forgot the password has nobody above them)
    /// a new random password, printed once on standard output for you to hand over on a channel
    /// you trust. Every session of theirs is revoked, the change is recorded on their company's
    /// audit chain as the operator's, and they are e-mailed that their password changed. Their
    /// MFA is left as it is; a lock from failed logins is lifted. Until they change the
    /// password (`PUT /v1/me/password`), their sessions may do nothing else.
    ResetPassword {
        /// The user's e-mail address (their login).
        email: String,
    },
    /// Turn MFA off for a user who lost both the authenticator and the recovery codes: the TOTP
    /// secret and the codes are deleted, the change is recorded as the operator's, and they are
    /// e-mailed that MFA was turned off. Where the company requires MFA, their next login can
    /// only enrol again. Check who asks first: this removes a factor.
    ResetMfa {
        /// The user's e-mail address (their login).
        email: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List key versions and how many stored credentials use each.
    List,
    /// Add a new key version to the key file; new values are sealed with it once servers restart.
    Rotate,
    /// Re-encrypt every stored value under the newest key. Safe while servers run, resumable and
    /// idempotent: run it again after an interruption.
    Rewrap {
        /// Credentials per batch.
        #[arg(long, default_value_t = 100)]
        batch: u64,
    },
    /// Remove a key version from the key file; refused while any stored value uses it.
    Retire {
        /// The key version.
        id: u32,
    },
}

/// A list's `--cursor`: the `next:` line of the previous page.
fn parse_cursor(text: &str) -> Result<kernel::TimeCursor, String> {
    kernel::TimeCursor::parse(text)
        .ok_or_else(|| "not a cursor: pass the `next:` value of the previous page".to_owned())
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        // The request span (request id, method, path) on every line of a request.
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .init();
}

/// The `keys` commands. Results go to standard output, progress to standard error.
#[allow(clippy::print_stdout)] // a command-line tool's answer
async fn keys(settings: &Settings, cmd: KeysCommand) -> Result<(), String> {
    let startup::KeysCli {
        vault,
        mfa,
        mut ring,
        source,
        audit,
    } = startup::vault_for_cli(settings)
        .await
        .map_err(|e| e.to_string())?;
    // AUD-2: a change to the master keys is recorded on the platform chain once it is made
    // (key ids and counts only, never key material). A failed record is reported as such: the
    // change itself has happened. A refused retirement is recorded too, as a failure.
    let record = |action: audit::Action,
                  outcome: audit::Outcome,
                  id: u32,
                  details: serde_json::Value| {
        let audit = audit.clone();
        async move {
            use kernel::{Clock as _, IdGenerator as _};
            let record = audit::AuditRecord::new(
                crypto::RandomIds.new_id(),
                kernel::SystemClock.now(),
                action,
                outcome,
                &kernel::RequestContext::default(),
            )
            .target("master_key", id)
            .details(details);
            audit.record(record).await.map_err(|e| match outcome {
                audit::Outcome::Success => {
                    format!("{action} done, but its audit record could not be written: {e}")
                }
                _ => format!("{action} refused, and its audit record could not be written: {e}"),
            })
        }
    };
    // Records a refused retirement (`reason`: a stable code) and gives back what to tell the
    // operator.
    let refuse = |id: u32, reason: &'static str, message: String| {
        let noted = record(
            audit::Action::KEY_RETIRED,
            audit::Outcome::Failure,
            id,
            serde_json::json!({ "refused": reason }),
        );
        async move {
            match noted.await {
                Ok(()) => message,
                Err(e) => format!("{message}\n{e}"),
            }
        }
    };
    let file = || {
        source.path().map(std::path::Path::to_path_buf).ok_or_else(|| {
            "the keys come from INCREMENTA_MASTER_KEY: edit that variable (ID:KEY entries, newest last; \
             a key is 32 random bytes, e.g. `openssl rand -base64 32`)"
                .to_owned()
        })
    };
    match cmd {
        KeysCommand::List => {
            for id in ring.ids() {
                let used = vault.count_under(id).await.map_err(|e| e.to_string())?;
                let secrets = mfa.count_under(id).await.map_err(|e| e.to_string())?;
                let newest = if id == ring.current_id() {
                    " (newest: new values are sealed with it)"
                } else {
                    ""
                };
                println!("key {id}: {used} stored credentials, {secrets} TOTP secrets{newest}");
            }
        }
        KeysCommand::Rotate => {
            let path = file()?;
            let id = ring.rotate();
            ring.save(&path).map_err(|e| e.to_string())?;
            println!("added key {id} to {}.", path.display());
            println!(
                "Next: restart every server so it knows key {id}, then run `incrementa keys rewrap`."
            );
            record(
                audit::Action::KEY_ROTATED,
                audit::Outcome::Success,
                id,
                serde_json::json!({ "keys": ring.ids() }),
            )
            .await?;
        }
        KeysCommand::Rewrap { batch } => {
            let done = vault
                .rewrap(batch, |p| {
                    eprintln!(
                        "rewrapped {} credentials ({} skipped)",
                        p.rewrapped, p.skipped
                    )
                })
                .await
                .map_err(|e| e.to_string())?;
            let secrets = mfa
                .rewrap(u32::try_from(batch).unwrap_or(u32::MAX))
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "rewrap finished: {} credentials and {secrets} TOTP secrets now under key {}, {} skipped",
                done.rewrapped,
                ring.current_id(),
                done.skipped
            );
            record(
                audit::Action::KEY_REWRAPPED,
                audit::Outcome::Success,
                ring.current_id(),
                serde_json::json!({
                    "credentials": done.rewrapped,
                    "totp_secrets": secrets,
                    "skipped": done.skipped,
                }),
            )
            .await?;
        }
        KeysCommand::Retire { id } => {
            let path = file()?;
            match vault.check_retirable(id).await {
                Ok(()) => {}
                Err(vault::VaultError::Key(message)) => {
                    let reason = if id == ring.current_id() {
                        "newest_key"
                    } else {
                        "credentials_use_key"
                    };
                    return Err(refuse(id, reason, message).await);
                }
                Err(e) => return Err(e.to_string()),
            }
            let secrets = mfa.count_under(id).await.map_err(|e| e.to_string())?;
            if secrets > 0 {
                let message = format!(
                    "{secrets} TOTP secrets are sealed with key {id}: run `incrementa keys rewrap` first"
                );
                return Err(refuse(id, "totp_secrets_use_key", message).await);
            }
            let audit_log = startup::audit_for_cli(settings)
                .await
                .map_err(|e| e.to_string())?;
            let records = audit_log
                .records_under_key(id)
                .await
                .map_err(|e| e.to_string())?;
            if records > 0 {
                let message = format!(
                    "{records} audit records are sealed with key {id} and verify only with it; \
                     it can be retired once retention has removed them"
                );
                return Err(refuse(id, "audit_records_use_key", message).await);
            }
            if let Err(e) = ring.retire(id) {
                return Err(refuse(id, "unknown_key", e.to_string()).await);
            }
            ring.save(&path).map_err(|e| e.to_string())?;
            println!("key {id} removed from {}", path.display());
            record(
                audit::Action::KEY_RETIRED,
                audit::Outcome::Success,
                id,
                serde_json::json!({ "keys": ring.ids() }),
            )
            .await?;
        }
    }
    Ok(())
}

/// The `audit` commands.
#[allow(clippy::print_stdout)] // a command-line tool's answer
async fn audit_cmd(settings: &Settings, cmd: AuditCommand) -> Result<(), String> {
    let audit = startup::audit_for_cli(settings)
        .await
        .map_err(|e| e.to_string())?;
    match cmd {
        AuditCommand::Verify { company } => {
            let reports = audit.verify_all(company).await.map_err(|e| e.to_string())?;
            let mut broken = 0;
            for (chain, r) in &reports {
                if r.ok {
                    println!("{chain}: ok ({} records)", r.checked);
                } else {
                    broken += 1;
                    let id = r
                        .first_broken_id
                        .map_or_else(|| "-".to_owned(), |id| id.to_string());
                    println!(
                        "{chain}: BROKEN at record {id}: {}",
                        r.reason.as_deref().unwrap_or("unknown")
                    );
                }
            }
            if broken > 0 {
                return Err(format!("{broken} audit chain(s) failed verification"));
            }
            println!("{} chain(s) verified", reports.len());
        }
        AuditCommand::Alerts {
            company,
            status,
            cursor,
            limit,
        } => {
            let page = audit
                .operator_alerts(company, status, cursor, limit)
                .await
                .map_err(|e| e.to_string())?;
            let alerts = page.items;
            for a in &alerts {
                println!(
                    "{} {} {} {} {} {}",
                    a.id,
                    a.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    a.status,
                    a.severity,
                    a.rule,
                    a.summary
                );
            }
            if alerts.is_empty() {
                println!("no alerts");
            }
            if let Some(next) = page.next_cursor {
                println!("next: {next}");
            }
        }
        AuditCommand::DismissAlert {
            id,
            company,
            reason,
        } => {
            let alert = audit
                .dismiss_alert_as_operator(company, id, reason.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            println!("alert {} ({}) dismissed", alert.id, alert.rule);
        }
        AuditCommand::Purge => {
            let removed = audit
                .purge(chrono::Duration::days(settings.audit_retention_days))
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "removed {removed} records older than {} days",
                settings.audit_retention_days
            );
        }
    }
    Ok(())
}

/// The `users` commands. `reset-password` prints the temporary password alone on standard
/// output (what was done goes to standard error); `reset-mfa` prints what was done.
#[allow(clippy::print_stdout)] // a command-line tool's answer
async fn users_cmd(settings: &Settings, cmd: UsersCommand) -> Result<(), String> {
    let email = match &cmd {
        UsersCommand::ResetPassword { email } | UsersCommand::ResetMfa { email } => email,
    };
    let email = accounts::Email::parse(email).map_err(|_| "not an e-mail address".to_owned())?;
    let startup::UsersCli {
        accounts,
        throttle,
        mfa,
    } = startup::users_for_cli(settings)
        .await
        .map_err(|e| e.to_string())?;
    // The address stays out of the messages: they are logged too.
    let unknown = || "no user logs in with that e-mail address; nothing changed".to_owned();
    match cmd {
        UsersCommand::ResetPassword { .. } => {
            let password = crypto::temporary_password();
            let user = accounts
                .reset_password_by_operator(&email, &password)
                .await
                .map_err(|e| match e {
                    accounts::AccountsError::NotFound => unknown(),
                    accounts::AccountsError::Forbidden(_) => {
                        "that user is deactivated (an Owner or Admin of their company activates \
                         users); nothing changed"
                            .to_owned()
                    }
                    other => other.to_string(),
                })?;
            // A lock from failed logins (OPS-4) guards the old password against guessing; the
            // new one is random, and the user must be able to use it now.
            let unlocked = sessions::lift_login_lock(throttle.as_ref(), &email).await;
            println!("{}", password.expose());
            if let Err(e) = unlocked {
                eprintln!(
                    "the account's login lock could not be lifted ({e}): it ends by itself within \
                     an hour at most"
                );
            }
            eprintln!(
                "the password of {} (user {}, company {}) was reset: hand it over on a channel you \
                 trust; they must change it before doing anything else; every session of theirs \
                 was revoked and they were e-mailed that their password changed",
                email.as_str(),
                user.id,
                user.company_id
            );
        }
        UsersCommand::ResetMfa { .. } => {
            let user = accounts
                .repository()
                .user_by_email(&email)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(unknown)?;
            mfa.disable_by_operator(&user).await.map_err(|e| match e {
                mfa::MfaError::NotEnabled => {
                    "that user has no MFA to reset; nothing changed".to_owned()
                }
                other => other.to_string(),
            })?;
            println!(
                "MFA of {} (user {}, company {}) turned off; they were e-mailed",
                email.as_str(),
                user.id,
                user.company_id
            );
        }
    }
    Ok(())
}

/// The `backup` commands.
#[allow(clippy::print_stdout)] // a command-line tool's answer
async fn backup_cmd(settings: &Settings, args: BackupArgs) -> Result<(), String> {
    use std::io::IsTerminal as _;

    use incrementa::backup;
    let progress = if args.progress || std::io::stderr().is_terminal() {
        backup::Progress::to(|message| eprintln!("{message}"))
    } else {
        backup::Progress::none()
    };
    match args.command {
        BackupCommand::Create { to } => {
            let destinations = if to.is_empty() {
                backup::default_destinations(settings)?
            } else {
                to.iter()
                    .map(|d| backup::Destination::parse(d).map_err(|e| format!("--to {d}: {e}")))
                    .collect::<Result<Vec<_>, _>>()?
            };
            let report = backup::create(settings, &destinations, &progress).await?;
            for dest in &report.written {
                println!("written: {dest}/{}", report.manifest.file);
            }
            println!(
                "{} of database ({} snapshot), {} sealed, key {}",
                backup::human_bytes(report.manifest.snapshot_bytes),
                report.manifest.snapshot.as_deref().unwrap_or("native"),
                backup::human_bytes(report.manifest.sealed_bytes),
                report.manifest.key_id
            );
            if !report.failed.is_empty() {
                let failures: Vec<String> = report
                    .failed
                    .iter()
                    .map(|(d, e)| format!("{d}: {e}"))
                    .collect();
                return Err(format!("some destinations failed: {}", failures.join("; ")));
            }
        }
        BackupCommand::List => {
            for dest in backup::default_destinations(settings)? {
                for name in dest.list().await? {
                    println!("{dest}/{name}.ibk");
                }
            }
        }
        BackupCommand::Verify { file } => {
            let m = backup::verify(settings, &file, &progress).await?;
            println!(
                "OK: {} ({} {}, {} migrations, {} tables, taken {})",
                m.file,
                m.backend,
                m.snapshot.as_deref().unwrap_or("native"),
                m.migrations,
                m.tables.len(),
                m.created_at
            );
        }
        BackupCommand::Restore { file } => {
            let chains = backup::restore(settings, &file, &progress).await?;
            println!("restored; {chains} audit chain(s) verified");
        }
    }
    Ok(())
}

/// `incrementa config check`: the settings were loaded and validated already; check what can be
/// checked without side effects, then print them (secrets print as redacted).
#[allow(clippy::print_stdout)] // a command-line tool's answer
fn config_check(settings: &Settings) -> Result<(), String> {
    let url = startup::database_url(settings);
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres:")
        || url.starts_with("postgresql:"))
    {
        return Err("DATABASE_URL must start with sqlite:, postgres: or postgresql:".into());
    }
    if !url.starts_with("sqlite:") {
        match store_sea::default_sslmode_for_tools(&url) {
            Some(mode) => println!(
                "database TLS: sslmode={mode} (the default for {}; put sslmode in DATABASE_URL to choose)",
                if mode == "disable" {
                    "a server on this host"
                } else {
                    "a server across the network"
                }
            ),
            None => println!("database TLS: as DATABASE_URL or PGSSLMODE says"),
        }
    }
    if let Some(host) = &settings.smtp_host {
        let tls = mail::TlsMode::parse(&settings.smtp_tls).ok_or("unknown INCREMENTA_SMTP_TLS")?;
        mail::SmtpMailer::new(&mail::SmtpSettings {
            host: host.clone(),
            port: settings.smtp_port,
            tls,
            username: settings.smtp_username.clone(),
            password: settings.smtp_password.clone(),
            from: settings.mail_from.clone(),
            timeout: std::time::Duration::from_secs(30),
        })?;
    }
    if let Some(path) = &settings.vault_trusted_issuers {
        let issuers = startup::trusted_issuers(settings)
            .map_err(|e| e.to_string())?
            .ok_or("INCREMENTA_VAULT_TRUSTED_ISSUERS: no certificates")?;
        println!(
            "vault: stores only certificates of the trusted issuers in {}",
            path.display()
        );
        let now = kernel::Clock::now(&kernel::SystemClock);
        let expired = startup::expired_issuers(&issuers, now);
        let day = |t: Option<kernel::Timestamp>| {
            t.map_or_else(|| "?".to_owned(), |t| t.format("%Y-%m-%d").to_string())
        };
        for (n, c) in issuers.certificates().iter().enumerate() {
            let note = if expired.contains(c) {
                " (EXPIRED: vouches only for credentials it issued before then)"
            } else {
                ""
            };
            println!(
                "vault: trusted issuer {}: {}, valid {} to {}{note}",
                n + 1,
                c.name,
                day(c.valid_from),
                day(c.valid_to)
            );
        }
    }
    println!("{settings:#?}");
    println!("configuration OK");
    Ok(())
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), &|name| std::env::var(name).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("incrementa: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings.log);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match Application::build(&settings).await {
            Ok(app) => app.run_until_stopped().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Command::Migrate => startup::database(&settings)
            .await
            .map(|_| tracing::info!("migrations applied"))
            .map_err(|e| e.to_string()),
        Command::Keys(cmd) => keys(&settings, cmd).await,
        Command::Audit(cmd) => audit_cmd(&settings, cmd).await,
        Command::Config(ConfigCommand::Check) => config_check(&settings),
        Command::Backup(args) => backup_cmd(&settings, args).await,
        Command::Users(cmd) => users_cmd(&settings, cmd).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped");
            eprintln!("incrementa: {e}");
            ExitCode::FAILURE
        }
    }
}
