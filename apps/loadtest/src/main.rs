//! `loadtest`: bounded loopback load against an `incrementa serve` process (issue 10).
//!
//! ```text
//! cargo build --release -p incrementa -p loadtest
//! target/release/loadtest --spawn                                   # SQLite, fresh data dir
//! target/release/loadtest --spawn --database-url postgres://postgres@127.0.0.1:5432/load
//! target/release/loadtest --target http://127.0.0.1:8080 --backend sqlite
//! ```
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use loadtest::{Limits, LoadError, Plan, Server};

/// The server's `INCREMENTA_IN_FLIGHT_PER_IP` by default (`http_api::in_flight`).
const DEFAULT_IN_FLIGHT_PER_IP: u32 = 64;

/// Bounded load against a server on this machine; refuses every non-loopback target.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
struct Cli {
    /// A running server (loopback only), e.g. http://127.0.0.1:8080. Start it with
    /// `INCREMENTA_TRUSTED_PROXIES=127.0.0.1`: the logins name addresses of their own in
    /// X-Forwarded-For (one address may only have 4 password checks in flight), and so does
    /// --flood. With more than 64 clients, also raise `INCREMENTA_IN_FLIGHT_PER_IP`.
    #[arg(long, conflicts_with = "spawn")]
    target: Option<String>,
    /// Start `incrementa serve` on a free loopback port with a fresh data directory.
    #[arg(long)]
    spawn: bool,
    /// The `incrementa` binary for --spawn (default: beside this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Database of the spawned server (default: the embedded SQLite file). Loopback only.
    #[arg(long)]
    database_url: Option<String>,
    /// Backend name for the report when --target is used: sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Seconds per request phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Requests per request phase at most.
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// Seconds per login phase.
    #[arg(long, default_value_t = 5.0)]
    login_seconds: f64,
    /// Logins per login phase at most.
    #[arg(long, default_value_t = 2_000)]
    logins: u64,
    /// Concurrent clients of the request phases.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Concurrent clients of the login phases.
    #[arg(long, default_value_t = 8)]
    login_concurrency: usize,
    /// Sessions to create before the last memory reading (0: skip).
    #[arg(long, default_value_t = 0)]
    sessions: u64,
    /// Rounds of the login phase, with the Argon2 bound probed before, between and after them.
    #[arg(long, default_value_t = 4)]
    login_rounds: usize,
    /// Users with one session each that the storm's `GET /v1/me` spreads over (0: the owner's
    /// session alone). At most 1000.
    #[arg(long, default_value_t = 0)]
    readers: usize,
    /// Clients of a flood phase: they log in from one address (X-Forwarded-For) while two clients
    /// of two other addresses log in beside them (0: no flood). At most 1000.
    #[arg(long, default_value_t = 0)]
    flood: usize,
    /// `INCREMENTA_IN_FLIGHT_PER_IP` of the spawned server (default: the server's own, 64; 0
    /// turns the cap off, to compare a flood without it).
    #[arg(long)]
    in_flight_per_ip: Option<u32>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match actix_web::rt::System::new().block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), LoadError> {
    let plan = Plan {
        limits: Limits::new(cli.seconds, cli.requests)?,
        login_limits: Limits::new(cli.login_seconds, cli.logins)?,
        concurrency: cli.concurrency.clamp(1, 1024),
        login_concurrency: cli.login_concurrency.clamp(1, 1024),
        login_users: 4,
        sessions: cli.sessions.min(Limits::MAX_REQUESTS),
        login_rounds: cli.login_rounds.clamp(1, Plan::MAX_LOGIN_ROUNDS),
        readers: cli.readers.min(Plan::MAX_READERS),
        flood: cli.flood.min(Plan::MAX_FLOOD),
    };
    // The request phases come from loopback itself (the logins from forwarded addresses of
    // their own): the server's cap on one address's requests in flight must leave room for
    // their clients, or the server would refuse the measurement itself.
    let cap = cli.in_flight_per_ip.unwrap_or(DEFAULT_IN_FLIGHT_PER_IP);
    let most = plan.concurrency.max(2);
    if cli.spawn && cap != 0 && most > usize::try_from(cap).unwrap_or(usize::MAX) {
        return Err(LoadError::BadLimit(format!(
            "{most} clients at once from one address exceed the server's cap of {cap} requests \
             in flight: pass --in-flight-per-ip {most} or more (0: off)"
        )));
    }
    let (server, base, backend) = if let Some(target) = cli.target {
        (None, target, cli.backend)
    } else if cli.spawn {
        if let Some(url) = &cli.database_url {
            loopback_database(url)?;
        }
        let binary = match cli.server_bin {
            Some(b) => b,
            None => std::env::current_exe()
                .map_err(|e| LoadError::Server(e.to_string()))?
                .with_file_name("incrementa"),
        };
        if !binary.exists() {
            return Err(LoadError::Server(format!(
                "{} not found: build it with `cargo build --release -p incrementa` or pass --server-bin",
                binary.display()
            )));
        }
        let backend = if cli
            .database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres"))
        {
            "postgres"
        } else {
            "sqlite"
        };
        let server =
            Server::start(&binary, cli.database_url.as_deref(), cli.in_flight_per_ip).await?;
        let base = server.base.clone();
        (Some(server), base, backend.to_owned())
    } else {
        return Err(LoadError::BadUrl(
            "give --target http://127.0.0.1:PORT or --spawn".into(),
        ));
    };
    let report = loadtest::run(&base, &backend, server.as_ref().map(Server::pid), &plan).await?;
    drop(server);
    let _ = write!(std::io::stdout(), "{}", report.render());
    if let Some(path) = cli.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| LoadError::Setup(e.to_string()))?;
        std::fs::write(&path, text)
            .map_err(|e| LoadError::Setup(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// The spawned server's database must be on this machine too.
fn loopback_database(url: &str) -> Result<(), LoadError> {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return Ok(());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    loadtest::check_loopback(&format!("http://{host_port}"))
}
