//! A bounded load generator for the IncrementaCRM security core (issue 10).
//!
//! It talks only to loopback addresses ([`check_loopback`] refuses anything else), every phase
//! stops at a request count *and* a time limit, both capped by [`Limits::MAX_SECONDS`] and
//! [`Limits::MAX_REQUESTS`], and the whole run stops by itself.
//!
//! One run measures, side by side on one server:
//! - `healthz`: the unauthenticated baseline route;
//! - `me`: an authenticated `GET /v1/me` (session lookup, permission check, handler);
//! - `write`: `PATCH /v1/company` (a configuration change with its change row and audit record);
//! - `login`: `POST /v1/sessions` (Argon2id verification, session cap, audit record);
//! - `storm`: logins at full load while `GET /v1/me` runs beside them (the p99 other routes see);
//! - memory: the server's resident set when idle and after every session the run created.
//!
//! The Argon2 bound (cores ÷ the time of one hash at the server's parameters) is measured in the
//! same run, in this process, while the server is idle: the login phase runs in rounds with a
//! [`HashProbe`] before, between and after them, and each round is held against the probes
//! beside it ([`Bound::over_rounds`]), so the host's drifting speed does not decide the ratio.
#![forbid(unsafe_code)]

pub mod cpu;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target is not a loopback address.
    #[error("refusing {0}: the load tool only talks to 127.0.0.1, ::1 or localhost")]
    NotLoopback(String),
    /// The target is not an `http://host:port` URL.
    #[error("not an http://host:port URL: {0}")]
    BadUrl(String),
    /// A limit outside the allowed range.
    #[error("{0}")]
    BadLimit(String),
    /// Preparing the run (sign-up, users, tokens) failed.
    #[error("setup failed: {0}")]
    Setup(String),
    /// Starting or watching the server process failed.
    #[error("server process: {0}")]
    Server(String),
}

/// Refuses every target that is not `http://` on a loopback address.
///
/// # Errors
/// [`LoadError::BadUrl`] or [`LoadError::NotLoopback`].
pub fn check_loopback(url: &str) -> Result<(), LoadError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| LoadError::BadUrl(url.to_owned()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(LoadError::BadUrl(url.to_owned()));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    if host.is_empty() {
        return Err(LoadError::BadUrl(url.to_owned()));
    }
    // Names other than `localhost` are refused unresolved: a resolver could point them anywhere.
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(()),
        _ => Err(LoadError::NotLoopback(url.to_owned())),
    }
}

/// When a phase stops: whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    /// Seconds of load.
    pub seconds: f64,
    /// Requests started.
    pub max_requests: u64,
}

impl Limits {
    /// The longest a phase may run.
    pub const MAX_SECONDS: f64 = 600.0;
    /// The most requests a phase may send.
    pub const MAX_REQUESTS: u64 = 10_000_000;

    /// Checked limits.
    ///
    /// # Errors
    /// [`LoadError::BadLimit`] outside (0, [`Self::MAX_SECONDS`]] or (0, [`Self::MAX_REQUESTS`]].
    pub fn new(seconds: f64, max_requests: u64) -> Result<Self, LoadError> {
        if !(seconds > 0.0 && seconds <= Self::MAX_SECONDS) {
            return Err(LoadError::BadLimit(format!(
                "seconds must be in (0, {}]",
                Self::MAX_SECONDS
            )));
        }
        if max_requests == 0 || max_requests > Self::MAX_REQUESTS {
            return Err(LoadError::BadLimit(format!(
                "requests must be in [1, {}]",
                Self::MAX_REQUESTS
            )));
        }
        Ok(Self {
            seconds,
            max_requests,
        })
    }
}

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Limits of each phase (the storm and the memory phase use `login_limits`).
    pub limits: Limits,
    /// Limits of the login phases.
    pub login_limits: Limits,
    /// Concurrent clients of the request phases.
    pub concurrency: usize,
    /// Concurrent clients of the login phases.
    pub login_concurrency: usize,
    /// Users that log in (round robin).
    pub login_users: usize,
    /// Sessions to create before the second memory reading (0: no memory phase).
    pub sessions: u64,
    /// Rounds the login phase is split into, with the Argon2 bound probed between them
    /// (1..=[`Self::MAX_LOGIN_ROUNDS`]).
    pub login_rounds: usize,
    /// Users with one session each that the storm's `GET /v1/me` goes round (0: the owner's
    /// session alone; at most [`Self::MAX_READERS`]). Many sessions read while others log in
    /// is what a busy deployment looks like to the session cache.
    pub readers: usize,
    /// Clients of the flood phase (0: no flood): they log in from one forwarded address while
    /// two clients from two others log in beside them, so the report shows what one address
    /// flooding the server costs everybody else under the server's cap on one address's
    /// requests in flight. The server must trust loopback as a proxy (`--spawn` sets it).
    pub flood: usize,
}

impl Plan {
    /// The most rounds a login phase is split into.
    pub const MAX_LOGIN_ROUNDS: usize = 20;
    /// The most readers: each costs two hashes to set up.
    pub const MAX_READERS: usize = 1_000;
    /// The most flood clients.
    pub const MAX_FLOOD: usize = 1_000;
    /// The forwarded address of the flood's clients (TEST-NET-2).
    pub const FLOOD_ADDRESS: &'static str = "198.51.100.1";
    /// The forwarded addresses of the two clients logging in beside the flood.
    pub const BYSTANDER_ADDRESSES: [&'static str; 2] = ["198.51.100.2", "198.51.100.3"];
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            limits: Limits {
                seconds: 5.0,
                max_requests: 200_000,
            },
            login_limits: Limits {
                seconds: 5.0,
                max_requests: 2_000,
            },
            concurrency: 16,
            login_concurrency: 8,
            login_users: 4,
            sessions: 0,
            login_rounds: 4,
            readers: 0,
            flood: 0,
        }
    }
}

/// Throughput and latency of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Phase name.
    pub name: String,
    /// Requests completed.
    pub requests: u64,
    /// Requests that got the expected status.
    pub ok: u64,
    /// Count per status (0: transport error).
    pub statuses: BTreeMap<u16, u64>,
    /// Wall time of the phase.
    pub seconds: f64,
    /// Completed requests per second.
    pub per_second: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Stats {
    fn from_samples(name: &str, samples: Samples, seconds: f64) -> Self {
        let Samples {
            mut latencies_us,
            statuses,
            ok,
        } = samples;
        latencies_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            if latencies_us.is_empty() {
                return 0.0;
            }
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let rank = ((latencies_us.len() as f64) * p).ceil() as usize;
            let index = rank.saturating_sub(1).min(latencies_us.len() - 1);
            latencies_us
                .get(index)
                .map_or(0.0, |us| f64::from(*us) / 1000.0)
        };
        let requests = latencies_us.len() as u64;
        #[allow(clippy::cast_precision_loss)]
        let per_second = if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        };
        Self {
            name: name.to_owned(),
            requests,
            ok,
            statuses,
            seconds,
            per_second,
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
            max_ms: pct(1.0),
        }
    }

    /// Requests that did not get the expected status.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.requests - self.ok
    }
}

#[derive(Debug, Default)]
struct Samples {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    ok: u64,
}

impl Samples {
    /// Adds the samples of another round of the same phase.
    fn merge(&mut self, other: Self) {
        self.latencies_us.extend(other.latencies_us);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.ok += other.ok;
    }
}

/// The memory readings (resident set, KiB).
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// After start-up, before the first request.
    pub idle_kib: u64,
    /// After the request phases.
    pub after_load_kib: u64,
    /// Sessions created when the last reading was taken.
    pub sessions_created: u64,
    /// After `sessions_created` sessions, idle again (3 s after the last login).
    pub after_sessions_kib: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server's base URL.
    pub target: String,
    /// `sqlite` or `postgres`, as the caller said.
    pub backend: String,
    /// The plan that ran.
    pub plan: Plan,
    /// Logical CPUs of this machine.
    pub cores: usize,
    /// The time of one Argon2id hash alone at the server's default parameters, in
    /// milliseconds, as the login phase's rounds saw it (see [`Bound::over_rounds`]).
    pub argon2_ms: f64,
    /// cores ÷ `argon2_ms`: the goal's Argon2 bound, in logins per second.
    pub argon2_bound_per_second: f64,
    /// The time of one hash while every core hashes, in milliseconds, likewise.
    pub argon2_all_cores_ms: f64,
    /// cores ÷ `argon2_all_cores_ms`: what the machine gives when it does nothing but hash.
    pub argon2_all_cores_per_second: f64,
    /// Every probe of the bound, in order: before the first login round and after each one.
    pub hash_probes: Vec<HashProbe>,
    /// The server's own mean time of one hash during the login phase, in milliseconds, from its
    /// `/metrics` (absent when the server does not serve them to this client): against
    /// `argon2_ms` it shows how much concurrent hashes slow each other down.
    pub server_hash_ms: Option<f64>,
    /// Where the machine's CPU time went during the login phase, per login (absent without the
    /// server's process id or outside Linux).
    pub login_cpu: Option<cpu::CpuBreakdown>,
    /// The share of the storm's authenticated requests the server answered from its session
    /// cache, from its `/metrics` (absent when it does not serve them to this client).
    pub storm_cache_hit_share: Option<f64>,
    /// One entry per phase.
    pub phases: Vec<Stats>,
    /// Memory readings, when the server's process id was known.
    pub memory: Option<Memory>,
}

/// One goal of issue 10 and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// What is compared.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// The goal.
    pub target: f64,
    /// `true` when the value is on the right side of the target.
    pub met: bool,
}

impl Report {
    /// The phase called `name`.
    #[must_use]
    pub fn phase(&self, name: &str) -> Option<&Stats> {
        self.phases.iter().find(|s| s.name == name)
    }

    /// The goals of issue 10 this run can judge.
    #[must_use]
    pub fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        if let (Some(me), Some(base)) = (self.phase("me"), self.phase("healthz"))
            && base.per_second > 0.0
        {
            let target = if self.backend == "postgres" { 0.3 } else { 0.5 };
            let value = me.per_second / base.per_second;
            goals.push(Goal {
                name: "GET /v1/me throughput / GET /healthz throughput".into(),
                value,
                target,
                met: value >= target,
            });
        }
        if let Some(login) = self.phase("login")
            && self.argon2_bound_per_second > 0.0
        {
            let value = login.per_second / self.argon2_bound_per_second;
            goals.push(Goal {
                name: "logins per second / Argon2 bound".into(),
                value,
                target: 0.9,
                met: value >= 0.9,
            });
        }
        if let Some(me) = self.phase("storm: GET /v1/me") {
            goals.push(Goal {
                name: "p99 of GET /v1/me during the login storm (ms)".into(),
                value: me.p99_ms,
                target: 50.0,
                met: me.p99_ms < 50.0,
            });
        }
        if let Some(memory) = &self.memory {
            #[allow(clippy::cast_precision_loss)]
            let idle = memory.idle_kib as f64 / 1024.0;
            goals.push(Goal {
                name: "idle resident memory (MiB)".into(),
                value: idle,
                target: 30.0,
                met: idle < 30.0,
            });
            if memory.sessions_created > 0 {
                #[allow(clippy::cast_precision_loss)]
                let after = memory.after_sessions_kib as f64 / 1024.0;
                goals.push(Goal {
                    name: format!(
                        "resident memory after {} sessions (MiB)",
                        memory.sessions_created
                    ),
                    value: after,
                    target: 30.0,
                    met: after < 30.0,
                });
            }
        }
        goals
    }

    /// A plain-text table of the run.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = format!(
            "target {} ({}), {} cores, Argon2id hash alone {:.1} ms -> bound {:.1} logins/s; \
             with every core hashing {:.1} ms -> {:.1} hashes/s\n",
            self.target,
            self.backend,
            self.cores,
            self.argon2_ms,
            self.argon2_bound_per_second,
            self.argon2_all_cores_ms,
            self.argon2_all_cores_per_second,
        );
        if !self.hash_probes.is_empty() {
            let list = |f: fn(&HashProbe) -> f64| {
                self.hash_probes
                    .iter()
                    .map(|p| format!("{:.1}", f(p)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out.push_str(&format!(
                "probes around the login rounds (ms): alone {}; every core {}\n",
                list(|p| p.alone_ms),
                list(|p| p.all_cores_ms)
            ));
        }
        if let Some(login) = self.phase("login")
            && self.argon2_all_cores_per_second > 0.0
        {
            out.push_str(&format!(
                "logins / the machine's hashing rate with every core hashing: {:.3} (shown, not the goal)\n",
                login.per_second / self.argon2_all_cores_per_second
            ));
        }
        if let Some(ms) = self.server_hash_ms {
            out.push_str(&format!(
                "the server's own hashes during the login phase: {ms:.1} ms each ({:+.0}% against the bound's)\n",
                (ms / self.argon2_ms - 1.0) * 100.0
            ));
        }
        if let Some(cpu) = &self.login_cpu {
            out.push_str(&cpu.render());
        }
        if let Some(share) = self.storm_cache_hit_share {
            out.push_str(&format!(
                "the storm's GET /v1/me answered from the session cache: {:.1}%\n",
                share * 100.0
            ));
        }
        out.push('\n');
        out.push_str(&format!(
            "{:<22} {:>8} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8}  statuses\n",
            "phase", "requests", "failed", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        for s in &self.phases {
            let statuses = s
                .statuses
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" ");
            out.push_str(&format!(
                "{:<22} {:>8} {:>6} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}\n",
                s.name,
                s.requests,
                s.failures(),
                s.per_second,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.max_ms,
                statuses
            ));
        }
        if let Some(m) = &self.memory {
            out.push_str(&format!(
                "\nresident memory: idle {} KiB, after load {} KiB, after {} sessions {} KiB\n",
                m.idle_kib, m.after_load_kib, m.sessions_created, m.after_sessions_kib
            ));
        }
        out.push_str("\ngoals (issue 10):\n");
        for g in self.goals() {
            out.push_str(&format!(
                "  {:<52} {:>9.3}  goal {:>6}  {}\n",
                g.name,
                g.value,
                g.target,
                if g.met { "met" } else { "NOT met" }
            ));
        }
        out
    }
}

/// One reading of the machine's Argon2id speed at the server's default parameters, taken
/// through the server's own hasher in this process while the server is idle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HashProbe {
    /// Median time of one hash with nothing else hashing, in milliseconds: the goal's bound is
    /// `cores ÷` this.
    pub alone_ms: f64,
    /// Median time of one hash while every core hashes at once, in milliseconds: what the
    /// hardware gives when all cores hash (shared caches, memory bandwidth and the host's clock
    /// make it slower than a hash alone). Shown beside the bound, not the goal.
    pub all_cores_ms: f64,
}

/// Takes [`HashProbe`]s: one hasher for hashes alone, one that hashes on every core.
pub struct HashProber {
    alone: crypto::Argon2Hasher,
    all: crypto::Argon2Hasher,
    cores: usize,
}

impl std::fmt::Debug for HashProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashProber")
            .field("cores", &self.cores)
            .finish_non_exhaustive()
    }
}

impl HashProber {
    /// Hashes alone per probe (after one warm-up hash).
    const ALONE: usize = 5;
    /// Rounds of `cores` simultaneous hashes per probe (after one warm-up round).
    const ALL_CORES: usize = 3;

    /// Hashers at the server's default parameters for a machine of `cores` cores.
    ///
    /// # Errors
    /// [`LoadError::Setup`] when a hasher cannot be built.
    pub fn new(cores: usize) -> Result<Self, LoadError> {
        let build = |concurrency| {
            crypto::Argon2Hasher::new(crypto::HashParams::OWASP_MINIMUM, concurrency)
                .map_err(|e| LoadError::Setup(format!("argon2: {e}")))
        };
        Ok(Self {
            alone: build(1)?,
            all: build(cores.max(1))?,
            cores: cores.max(1),
        })
    }

    /// One probe: a few hashes alone, then a few rounds of every core hashing at once.
    ///
    /// # Errors
    /// [`LoadError::Setup`] when hashing fails.
    pub async fn probe(&self) -> Result<HashProbe, LoadError> {
        Ok(HashProbe {
            alone_ms: Self::median_ms(&self.alone, 1, Self::ALONE).await?,
            all_cores_ms: Self::median_ms(&self.all, self.cores, Self::ALL_CORES).await?,
        })
    }

    /// The median wall time of `rounds` rounds of `width` simultaneous hashes (after one
    /// warm-up round that maps the hasher's working memory).
    async fn median_ms(
        hasher: &crypto::Argon2Hasher,
        width: usize,
        rounds: usize,
    ) -> Result<f64, LoadError> {
        use accounts::PasswordHasher as _;
        let password = accounts::Password::new("correct horse battery staple");
        let mut times = Vec::with_capacity(rounds);
        for i in 0..=rounds.max(1) {
            let start = Instant::now();
            let results =
                futures_util::future::join_all((0..width).map(|_| hasher.hash(&password))).await;
            let elapsed = start.elapsed().as_secs_f64() * 1000.0;
            for r in results {
                r.map_err(|e| LoadError::Setup(format!("argon2: {e}")))?;
            }
            if i > 0 {
                times.push(elapsed);
            }
        }
        Ok(median(&mut times))
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The Argon2 bound over a login phase run in rounds, with a [`HashProbe`] before the first
/// round and after each one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// The time of one hash alone that the phase's bound amounts to, in milliseconds.
    pub alone_ms: f64,
    /// Logins per second at the bound: cores ÷ one hash alone.
    pub per_second: f64,
    /// The same with the time of a hash while every core hashes.
    pub all_cores_ms: f64,
    /// Logins per second with every core hashing and nothing else.
    pub all_cores_per_second: f64,
}

impl Bound {
    /// Each round `(seconds, …)` is held against the mean of the probes on either side of it
    /// (`probes[i]` and `probes[i + 1]`): the host's speed drifts by several percent within
    /// minutes, and only readings taken next to a round describe the machine it ran on. The
    /// rounds' bounds add up (`cores × seconds ÷ hash` logins each) into the phase's.
    /// `None` when a probe is missing or not positive.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn over_rounds(cores: usize, round_seconds: &[f64], probes: &[HashProbe]) -> Option<Self> {
        let cores = cores.max(1) as f64;
        let (mut seconds, mut alone, mut all) = (0.0, 0.0, 0.0);
        for (i, round) in round_seconds.iter().enumerate() {
            let (before, after) = (probes.get(i)?, probes.get(i + 1)?);
            let alone_ms = f64::midpoint(before.alone_ms, after.alone_ms);
            let all_ms = f64::midpoint(before.all_cores_ms, after.all_cores_ms);
            if !(alone_ms > 0.0 && all_ms > 0.0) {
                return None;
            }
            seconds += round;
            alone += cores * round * 1000.0 / alone_ms;
            all += cores * round * 1000.0 / all_ms;
        }
        if !(seconds > 0.0 && alone > 0.0 && all > 0.0) {
            return None;
        }
        Some(Self {
            alone_ms: cores * seconds * 1000.0 / alone,
            per_second: alone / seconds,
            all_cores_ms: cores * seconds * 1000.0 / all,
            all_cores_per_second: all / seconds,
        })
    }
}

/// The resident set of process `pid` in KiB (Linux `/proc`), if it can be read.
#[must_use]
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The password every load-test account uses.
const PASSWORD: &str = "Carga-de-prueba-2026!";

/// A client of the server under test.
#[derive(Clone)]
struct Api {
    base: String,
    client: awc::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

impl Api {
    fn new(base: &str, connections: usize) -> Self {
        let connector = awc::Connector::new().limit(connections.max(1));
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: awc::Client::builder()
                .connector(connector)
                .timeout(Duration::from_secs(30))
                .finish(),
        }
    }

    /// Sends a request with the tool's user agent and, when given, the bearer token, a JSON
    /// body and the client address a proxy would forward (`X-Forwarded-For`); `None` on a
    /// transport error.
    async fn dispatch(
        &self,
        method: awc::http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        forwarded: Option<&str>,
    ) -> Option<awc::ClientResponse> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .insert_header(("User-Agent", "incrementa-loadtest/1"));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        if let Some(client) = forwarded {
            req = req.insert_header(("X-Forwarded-For", client));
        }
        let sent = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        };
        sent.ok()
    }

    /// Sends a request (as [`Self::dispatch`]) and returns only its status (0 on a transport
    /// error); the body is read and dropped, not parsed, so the load tool spends its CPU on
    /// sending.
    async fn status(
        &self,
        method: awc::http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        forwarded: Option<&str>,
    ) -> u16 {
        let Some(mut res) = self.dispatch(method, path, token, body, forwarded).await else {
            return 0;
        };
        match res.body().limit(1024 * 1024).await {
            Ok(_) => res.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Two counters from the server's `/metrics`, if it serves them to us.
    async fn counters(&self, first: &str, second: &str) -> Option<(f64, f64)> {
        let mut res = self
            .dispatch(awc::http::Method::GET, "/metrics", None, None, None)
            .await?;
        if res.status() != 200 {
            return None;
        }
        let body = res.body().limit(4 * 1024 * 1024).await.ok()?;
        let text = std::str::from_utf8(&body).ok()?;
        Some((metric(text, first)?, metric(text, second)?))
    }

    /// The server's password-hash count and seconds.
    async fn hash_counters(&self) -> Option<(f64, f64)> {
        self.counters(
            "incrementa_password_hashes_total",
            "incrementa_password_hash_seconds_total",
        )
        .await
    }

    /// The server's session cache hits and misses.
    async fn cache_counters(&self) -> Option<(f64, f64)> {
        self.counters(
            "incrementa_session_cache_hits_total",
            "incrementa_session_cache_misses_total",
        )
        .await
    }

    /// Sends a request and returns the status (0 on a transport error) and the JSON body.
    async fn send(
        &self,
        method: awc::http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let Some(mut res) = self.dispatch(method, path, token, body, None).await else {
            return (0, Value::Null);
        };
        let status = res.status().as_u16();
        let body = res
            .body()
            .limit(1024 * 1024)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        (status, body)
    }
}

/// The value of the unlabelled metric `name` in Prometheus text.
/// Hits ÷ lookups between two readings of (hits, misses); `None` without lookups.
fn hit_share(before: (f64, f64), after: (f64, f64)) -> Option<f64> {
    let hits = after.0 - before.0;
    let lookups = hits + (after.1 - before.1);
    (lookups > 0.0).then(|| hits / lookups)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `request` (which answers the status it got, 0 for a transport error) from
/// `concurrency` clients until `limits` stop it; `expected` is the status that counts as ok.
async fn phase<F, Fut>(
    name: &str,
    concurrency: usize,
    limits: Limits,
    expected: u16,
    request: F,
) -> Stats
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = u16>,
{
    let (samples, seconds) = load(concurrency, limits, expected, request).await;
    Stats::from_samples(name, samples, seconds)
}

/// Runs `request` from `concurrency` clients until `limits`; the samples and the wall time.
async fn load<F, Fut>(
    concurrency: usize,
    limits: Limits,
    expected: u16,
    request: F,
) -> (Samples, f64)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = u16>,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(limits.seconds);
    let issued = Rc::new(RefCell::new(0_u64));
    let samples = Rc::new(RefCell::new(Samples::default()));
    let workers = (0..concurrency.max(1)).map(|_| {
        let issued = issued.clone();
        let samples = samples.clone();
        let request = &request;
        async move {
            loop {
                let n = {
                    let mut issued = issued.borrow_mut();
                    if *issued >= limits.max_requests || Instant::now() >= deadline {
                        return;
                    }
                    *issued += 1;
                    *issued
                };
                let t0 = Instant::now();
                let status = request(n).await;
                let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                let mut s = samples.borrow_mut();
                s.latencies_us.push(us);
                *s.statuses.entry(status).or_default() += 1;
                if status == expected {
                    s.ok += 1;
                }
            }
        }
    });
    futures_util::future::join_all(workers).await;
    let seconds = started.elapsed().as_secs_f64();
    let samples = Rc::try_unwrap(samples)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    (samples, seconds)
}

/// The accounts a run uses.
#[derive(Debug)]
struct Fixture {
    owner_token: String,
    login_emails: Vec<String>,
    /// Sessions of users who never log in during the phases.
    reader_tokens: Vec<String>,
}

async fn setup(api: &Api, login_users: usize, readers: usize) -> Result<Fixture, LoadError> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let owner = format!("owner-{tag}@carga.example");
    let (status, body) = api
        .send(
            awc::http::Method::POST,
            "/v1/signup",
            None,
            Some(&json!({
                "company_name": "Carga de Prueba", "email": owner, "password": PASSWORD,
                "password_confirmation": PASSWORD, "name": "Dueña de Prueba", "rfc": "CPR970625MB1"
            })),
        )
        .await;
    if status != 201 {
        return Err(LoadError::Setup(format!(
            "sign-up answered {status}: {body}"
        )));
    }
    let owner_token = login(api, &owner).await?;
    let mut login_emails = Vec::new();
    for i in 0..login_users.max(1) {
        let email = format!("user{i}-{tag}@carga.example");
        add_user(api, &owner_token, &email).await?;
        login_emails.push(email);
    }
    let mut reader_tokens = Vec::with_capacity(readers);
    for i in 0..readers {
        let email = format!("reader{i}-{tag}@carga.example");
        add_user(api, &owner_token, &email).await?;
        reader_tokens.push(login(api, &email).await?);
    }
    Ok(Fixture {
        owner_token,
        login_emails,
        reader_tokens,
    })
}

async fn add_user(api: &Api, owner_token: &str, email: &str) -> Result<(), LoadError> {
    let (status, body) = api
        .send(
            awc::http::Method::POST,
            "/v1/users",
            Some(owner_token),
            Some(&json!({
                "email": email, "name": "Vendedora de Prueba", "role": "vendor",
                "password": PASSWORD, "password_confirmation": PASSWORD
            })),
        )
        .await;
    if status == 201 {
        Ok(())
    } else {
        Err(LoadError::Setup(format!(
            "creating a user answered {status}: {body}"
        )))
    }
}

/// The token the storm's `n`-th `GET /v1/me` presents: the readers' in turn, or the owner's.
fn reader_token(fixture: &Fixture, n: u64) -> &str {
    let readers = fixture.reader_tokens.len() as u64;
    if readers == 0 {
        return &fixture.owner_token;
    }
    let index = usize::try_from(n % readers).unwrap_or(0);
    fixture
        .reader_tokens
        .get(index)
        .map_or(fixture.owner_token.as_str(), String::as_str)
}

async fn login(api: &Api, email: &str) -> Result<String, LoadError> {
    let (status, body) = api
        .send(
            awc::http::Method::POST,
            "/v1/sessions",
            None,
            Some(&json!({ "email": email, "password": PASSWORD })),
        )
        .await;
    body.get("token")
        .and_then(Value::as_str)
        .filter(|_| status == 201)
        .map(str::to_owned)
        .ok_or_else(|| LoadError::Setup(format!("login answered {status}: {body}")))
}

/// The address the `n`-th login of the login phases comes from: one of 62,500 in 10.77.0.0/16,
/// so the few logins in flight at once never share one.
fn login_address(n: u64) -> String {
    format!("10.77.{}.{}", (n / 250) % 250, n % 250 + 1)
}

fn login_body(fixture: &Fixture, n: u64) -> Value {
    let users = fixture.login_emails.len().max(1) as u64;
    let index = usize::try_from(n % users).unwrap_or(0);
    let email = fixture.login_emails.get(index).map_or("", String::as_str);
    json!({ "email": email, "password": PASSWORD })
}

/// Runs `plan` against the server at `base` (a loopback URL). `pid` is the server's process id,
/// for the memory readings; `backend` names its database in the report.
///
/// # Errors
/// [`LoadError`] when the target is refused or the setup fails. Failed requests during the
/// phases are counted, not raised.
pub async fn run(
    base: &str,
    backend: &str,
    pid: Option<u32>,
    plan: &Plan,
) -> Result<Report, LoadError> {
    use awc::http::Method;
    check_loopback(base)?;
    let flood = plan.flood.min(Plan::MAX_FLOOD);
    let api = Api::new(
        base,
        plan.concurrency.max(plan.login_concurrency).max(flood + 2) * 2,
    );
    // Idle: started, migrated, nothing served yet.
    let idle_kib = pid.and_then(resident_kib);
    let fixture = setup(&api, plan.login_users, plan.readers).await?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut phases = Vec::new();
    let token = fixture.owner_token.as_str();

    phases.push(
        phase("healthz", plan.concurrency, plan.limits, 200, |_| {
            api.status(Method::GET, "/healthz", None, None, None)
        })
        .await,
    );
    phases.push(
        phase("me", plan.concurrency, plan.limits, 200, |_| {
            api.status(Method::GET, "/v1/me", Some(token), None, None)
        })
        .await,
    );
    phases.push(
        phase("write", plan.concurrency, plan.limits, 200, |n| {
            let body = json!({ "legal_name": format!("Carga de Prueba {n}") });
            let api = &api;
            async move {
                api.status(Method::PATCH, "/v1/company", Some(token), Some(&body), None)
                    .await
            }
        })
        .await,
    );

    let after_load_kib = pid.and_then(resident_kib);
    let mut sessions_created = 0_u64;

    // Each login comes from an address of its own (X-Forwarded-For, believed when the server
    // trusts loopback as a proxy), as a deployment's users do: one address may only have a few
    // password checks in flight at once.
    let logins = |n: u64| {
        let body = login_body(&fixture, n);
        let client = login_address(n);
        let api = &api;
        async move {
            api.status(
                Method::POST,
                "/v1/sessions",
                None,
                Some(&body),
                Some(&client),
            )
            .await
        }
    };
    // The login phase runs in rounds with the bound probed before the first and after each
    // one, while the server is idle: the host's speed drifts by several percent within
    // minutes, so each round is held against readings taken right next to it.
    let prober = HashProber::new(cores)?;
    let rounds = plan.login_rounds.clamp(1, Plan::MAX_LOGIN_ROUNDS);
    #[allow(clippy::cast_precision_loss)]
    let round_limits = Limits {
        seconds: plan.login_limits.seconds / rounds as f64,
        max_requests: plan.login_limits.max_requests.div_ceil(rounds as u64),
    };
    let mut probes = vec![prober.probe().await?];
    let hashing_before = api.hash_counters().await;
    let mut samples = Samples::default();
    let mut round_seconds = Vec::with_capacity(rounds);
    let mut round_cpu = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let left = plan
            .login_limits
            .max_requests
            .saturating_sub(samples.latencies_us.len() as u64);
        if left == 0 {
            break;
        }
        let limits = Limits {
            max_requests: round_limits.max_requests.min(left),
            ..round_limits
        };
        let cpu_before = cpu::CpuSnapshot::take(pid);
        let offset = samples.latencies_us.len() as u64;
        let (round, seconds) =
            load(plan.login_concurrency, limits, 201, |i| logins(offset + i)).await;
        round_cpu.extend(pid.and_then(|_| {
            cpu_before.until(&cpu::CpuSnapshot::take(pid), cores, seconds, round.ok)
        }));
        probes.push(prober.probe().await?);
        round_seconds.push(seconds);
        samples.merge(round);
    }
    let server_hash_ms = match (hashing_before, api.hash_counters().await) {
        (Some((n0, s0)), Some((n1, s1))) if n1 > n0 => Some((s1 - s0) * 1000.0 / (n1 - n0)),
        _ => None,
    };
    let login_cpu = cpu::CpuBreakdown::combine(&round_cpu);
    let bound = Bound::over_rounds(cores, &round_seconds, &probes);
    let stats = Stats::from_samples("login", samples, round_seconds.iter().sum());
    sessions_created += stats.ok;
    phases.push(stats);

    // The storm: logins at full load, and a few clients of GET /v1/me beside them.
    let me_limits = Limits {
        seconds: plan.login_limits.seconds,
        max_requests: plan.limits.max_requests,
    };
    let cache_before = api.cache_counters().await;
    let (storm, beside) = futures_util::future::join(
        phase(
            "storm: logins",
            plan.login_concurrency,
            plan.login_limits,
            201,
            logins,
        ),
        phase("storm: GET /v1/me", 2, me_limits, 200, |n| {
            api.status(
                Method::GET,
                "/v1/me",
                Some(reader_token(&fixture, n)),
                None,
                None,
            )
        }),
    )
    .await;
    let storm_cache_hit_share = cache_before
        .zip(api.cache_counters().await)
        .and_then(|(before, after)| hit_share(before, after));
    sessions_created += storm.ok;
    phases.push(storm);
    phases.push(beside);

    // Memory: keep creating sessions until `plan.sessions` exist, then read the resident set.
    let remaining = plan.sessions.saturating_sub(sessions_created);
    if remaining > 0 {
        // 100,000 logins take about 15 minutes here: this phase may run up to an hour.
        let limits = Limits {
            seconds: 3_600.0,
            max_requests: remaining,
        };
        let stats = phase("sessions", plan.login_concurrency, limits, 201, logins).await;
        sessions_created += stats.ok;
        phases.push(stats);
    }
    // Idle again: the server hands Argon2's working memory back 2 s after the last hash.
    if pid.is_some() {
        actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    }
    let memory = match (idle_kib, after_load_kib, pid.and_then(resident_kib)) {
        (Some(idle_kib), Some(after_load_kib), Some(after_sessions_kib)) => Some(Memory {
            idle_kib,
            after_load_kib,
            sessions_created,
            after_sessions_kib,
        }),
        _ => None,
    };
    // The flood, after the memory readings (its hundreds of connections are not what the
    // memory goal is about): many clients of one address log in as fast as they are answered,
    // two clients of other addresses beside them. A refused flood client waits the second its
    // 429 asks for before it tries again (its latency includes that wait): one that did not
    // would spend this machine's cores on the tool itself, which an attacker's own machines
    // would not.
    if flood > 0 {
        let logins_as = |n: u64, client: &'static str| {
            let body = login_body(&fixture, n);
            let api = &api;
            async move {
                let status = api
                    .status(
                        Method::POST,
                        "/v1/sessions",
                        None,
                        Some(&body),
                        Some(client),
                    )
                    .await;
                if status == 429 {
                    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
                }
                status
            }
        };
        let (flooding, bystanders) = futures_util::future::join(
            phase("flood: one address", flood, plan.login_limits, 201, |n| {
                logins_as(n, Plan::FLOOD_ADDRESS)
            }),
            phase("flood: two others", 2, plan.login_limits, 201, |n| {
                let [first, second] = Plan::BYSTANDER_ADDRESSES;
                logins_as(n, if n % 2 == 0 { first } else { second })
            }),
        )
        .await;
        phases.push(flooding);
        phases.push(bystanders);
    }
    Ok(Report {
        target: base.to_owned(),
        backend: backend.to_owned(),
        plan: plan.clone(),
        cores,
        argon2_ms: bound.map_or(0.0, |b| b.alone_ms),
        argon2_bound_per_second: bound.map_or(0.0, |b| b.per_second),
        argon2_all_cores_ms: bound.map_or(0.0, |b| b.all_cores_ms),
        argon2_all_cores_per_second: bound.map_or(0.0, |b| b.all_cores_per_second),
        hash_probes: probes,
        server_hash_ms,
        storm_cache_hit_share,
        login_cpu,
        phases,
        memory,
    })
}

/// An `incrementa serve` process started by the load tool on a free loopback port, with its own
/// data directory; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: std::process::Child,
    /// Its base URL.
    pub base: String,
    _data: tempfile::TempDir,
}

impl Server {
    /// Starts `binary serve` on `database_url` (the embedded SQLite default under a fresh data
    /// directory when `None`) and waits up to 60 s for `/readyz`.
    ///
    /// # Errors
    /// [`LoadError::Server`] when it cannot start or never becomes ready.
    pub async fn start(
        binary: &std::path::Path,
        database_url: Option<&str>,
        in_flight_per_ip: Option<u32>,
    ) -> Result<Self, LoadError> {
        let data = tempfile::tempdir().map_err(|e| LoadError::Server(e.to_string()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| LoadError::Server(e.to_string()))?
            .port();
        let mut cmd = std::process::Command::new(binary);
        cmd.arg("serve")
            .env("INCREMENTA_BIND", format!("127.0.0.1:{port}"))
            .env("INCREMENTA_DATA_DIR", data.path().join("data"))
            .env("INCREMENTA_LOG", "warn")
            // The flood's clients name their addresses in X-Forwarded-For; the other phases'
            // clients are loopback itself, under the server's cap on one address's requests in
            // flight (its default unless given).
            .env("INCREMENTA_TRUSTED_PROXIES", "127.0.0.1")
            .stdout(std::process::Stdio::null());
        if let Some(cap) = in_flight_per_ip {
            cmd.env("INCREMENTA_IN_FLIGHT_PER_IP", cap.to_string());
        }
        if let Some(url) = database_url {
            cmd.env("DATABASE_URL", url);
        } else {
            cmd.env_remove("DATABASE_URL");
        }
        let child = cmd
            .spawn()
            .map_err(|e| LoadError::Server(format!("{}: {e}", binary.display())))?;
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _data: data,
        };
        let client = awc::Client::default();
        for _ in 0..600 {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(LoadError::Server(format!("exited early: {status}")));
            }
            if let Ok(res) = client.get(format!("{}/readyz", server.base)).send().await
                && res.status() == 200
            {
                return Ok(server);
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        server.stop();
        Err(LoadError::Server("not ready after 60 s".into()))
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://localhost:1",
            "http://[::1]:8080",
            "http://127.0.0.2",
        ] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://[2001:db8::1]:80",
            "http://0.0.0.0:8080",
            "http://localhost.evil.example",
        ] {
            assert!(
                matches!(check_loopback(refused), Err(LoadError::NotLoopback(_))),
                "{refused}"
            );
        }
        for bad in [
            "https://127.0.0.1",
            "127.0.0.1:80",
            "http://user@127.0.0.1",
            "http://",
        ] {
            assert!(
                matches!(check_loopback(bad), Err(LoadError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_storm_goes_round_the_readers_or_uses_the_owner() {
        let mut fixture = Fixture {
            owner_token: "owner".into(),
            login_emails: vec![],
            reader_tokens: vec![],
        };
        assert_eq!(reader_token(&fixture, 7), "owner");
        fixture.reader_tokens = vec!["a".into(), "b".into(), "c".into()];
        let seen: Vec<&str> = (0..4).map(|n| reader_token(&fixture, n)).collect();
        assert_eq!(seen, ["a", "b", "c", "a"]);
    }

    #[test]
    fn the_hit_share_comes_from_the_counters_difference() {
        assert_eq!(hit_share((10.0, 5.0), (40.0, 15.0)), Some(0.75));
        assert_eq!(hit_share((10.0, 5.0), (10.0, 5.0)), None, "no lookups");
    }

    #[test]
    fn limits_are_bounded() {
        assert!(Limits::new(1.0, 1).is_ok());
        assert!(Limits::new(0.0, 1).is_err());
        assert!(Limits::new(f64::NAN, 1).is_err());
        assert!(Limits::new(Limits::MAX_SECONDS + 1.0, 1).is_err());
        assert!(Limits::new(1.0, 0).is_err());
        assert!(Limits::new(1.0, Limits::MAX_REQUESTS + 1).is_err());
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# TYPE incrementa_password_hashes_total counter\n\
            incrementa_password_hashes_total 12\n\
            incrementa_password_hashes_total_x 99\n\
            incrementa_password_hash_seconds_total 0.25\n";
        assert_eq!(metric(text, "incrementa_password_hashes_total"), Some(12.0));
        assert_eq!(
            metric(text, "incrementa_password_hash_seconds_total"),
            Some(0.25)
        );
        assert_eq!(metric(text, "incrementa_password_hash_queue"), None);
    }

    #[test]
    fn percentiles_come_from_the_sorted_samples() {
        let samples = Samples {
            latencies_us: (1..=100).rev().map(|v| v * 1000).collect(),
            statuses: BTreeMap::new(),
            ok: 100,
        };
        let s = Stats::from_samples("x", samples, 2.0);
        assert_eq!(s.requests, 100);
        assert!((s.per_second - 50.0).abs() < 1e-9);
        assert!((s.p50_ms - 50.0).abs() < 1e-9);
        assert!((s.p99_ms - 99.0).abs() < 1e-9);
        assert!((s.max_ms - 100.0).abs() < 1e-9);
        assert_eq!(s.failures(), 0);
    }

    #[test]
    fn each_round_is_held_against_the_probes_beside_it() {
        let probe = |alone_ms, all_cores_ms| HashProbe {
            alone_ms,
            all_cores_ms,
        };
        // Two rounds of 2 s on 2 cores; the host slows down from 20 ms to 30 ms per hash.
        let probes = [probe(20.0, 22.0), probe(20.0, 22.0), probe(30.0, 33.0)];
        let bound = Bound::over_rounds(2, &[2.0, 2.0], &probes).unwrap();
        // Round 1: 2 × 2 s ÷ 20 ms = 200 logins; round 2: 2 × 2 s ÷ 25 ms = 160 logins.
        assert!((bound.per_second - 360.0 / 4.0).abs() < 1e-9, "{bound:?}");
        assert!((bound.alone_ms - 2.0 * 4.0 * 1000.0 / 360.0).abs() < 1e-9);
        // Every core hashing: 2 × 2 ÷ 22 ms + 2 × 2 ÷ 27.5 ms.
        let all = 4000.0 / 22.0 + 4000.0 / 27.5;
        assert!((bound.all_cores_per_second - all / 4.0).abs() < 1e-9);
        // A single probe on each side of one round is the plain midpoint.
        let one = Bound::over_rounds(2, &[3.0], &probes[1..]).unwrap();
        assert!((one.alone_ms - 25.0).abs() < 1e-9 && (one.per_second - 80.0).abs() < 1e-9);
        // A missing or broken probe gives no bound rather than a wrong one.
        assert!(Bound::over_rounds(2, &[2.0, 2.0], &probes[..2]).is_none());
        assert!(Bound::over_rounds(2, &[2.0], &[probe(0.0, 1.0), probe(0.0, 1.0)]).is_none());
        assert!(Bound::over_rounds(2, &[], &probes).is_none());
    }

    #[test]
    fn rounds_of_a_phase_merge_into_one() {
        let mut a = Samples {
            latencies_us: vec![1000, 3000],
            statuses: BTreeMap::from([(201, 2)]),
            ok: 2,
        };
        a.merge(Samples {
            latencies_us: vec![2000],
            statuses: BTreeMap::from([(201, 1), (503, 1)]),
            ok: 1,
        });
        assert_eq!(a.latencies_us.len(), 3);
        assert_eq!(a.statuses, BTreeMap::from([(201, 3), (503, 1)]));
        assert_eq!(a.ok, 3);
        let s = Stats::from_samples("login", a, 1.5);
        assert!((s.per_second - 2.0).abs() < 1e-9 && (s.p50_ms - 2.0).abs() < 1e-9);
    }

    #[test]
    fn goals_use_the_backend_ratio() {
        let stats = |name: &str, per_second: f64| Stats {
            name: name.into(),
            requests: 1,
            ok: 1,
            statuses: BTreeMap::new(),
            seconds: 1.0,
            per_second,
            p50_ms: 1.0,
            p90_ms: 1.0,
            p99_ms: 1.0,
            max_ms: 1.0,
        };
        let mut report = Report {
            target: "http://127.0.0.1:1".into(),
            backend: "postgres".into(),
            plan: Plan::default(),
            cores: 2,
            argon2_ms: 20.0,
            argon2_bound_per_second: 100.0,
            argon2_all_cores_ms: 21.0,
            argon2_all_cores_per_second: 95.2,
            hash_probes: vec![HashProbe {
                alone_ms: 20.0,
                all_cores_ms: 21.0,
            }],
            server_hash_ms: Some(22.0),
            login_cpu: None,
            storm_cache_hit_share: Some(0.5),
            phases: vec![
                stats("healthz", 1000.0),
                stats("me", 400.0),
                stats("login", 95.0),
            ],
            memory: None,
        };
        let goals = report.goals();
        assert!(goals.iter().all(|g| g.met), "{goals:?}");
        assert!(
            report
                .render()
                .contains("22.0 ms each (+10% against the bound's)"),
            "{}",
            report.render()
        );
        report.backend = "sqlite".into();
        let goals = report.goals();
        assert!(!goals.iter().any(|g| g.name.contains("/healthz") && g.met));
    }
}
