use std::path::PathBuf;

use awc::http::StatusCode;
use incrementa::config::Settings;
use incrementa::startup::Application;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use test_support::TestDb;

pub const PASSWORD: &str = "Tlacuache#2026";

pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    pub data_dir: PathBuf,
    pub _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl Reply {
    /// The `Retry-After` header in seconds; panics (failing the test) without one.
    pub fn retry_after(&self) -> u64 {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After in seconds: {:?}", self.headers))
    }
}

pub fn settings_for(db: &TestDb, data_dir: &std::path::Path) -> Settings {
    let mut s = Settings::load(None, &|_| None).unwrap();
    s.bind = "127.0.0.1:0".parse().unwrap();
    s.data_dir = data_dir.to_owned();
    s.workers = 2;
    s.hash_concurrency = 2;
    s.database_url = Some(secrecy::SecretString::from(db.url.clone()));
    s
}

/// The server on SQLite.
pub async fn spawn_app() -> TestApp {
    spawn_on(TestDb::sqlite()).await
}

/// The server on each configured backend.
pub async fn spawn_each() -> Vec<TestApp> {
    let mut apps = Vec::new();
    for db in TestDb::each().await {
        apps.push(spawn_on(db).await);
    }
    apps
}

pub async fn spawn_on(db: TestDb) -> TestApp {
    spawn_configured(db, |_| {}).await
}

/// The server with adjusted settings.
pub async fn spawn_configured(db: TestDb, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut settings = settings_for(&db, &data_dir);
    adjust(&mut settings);
    let app = Application::build(&settings).await.expect("server starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        base,
        db,
        data_dir,
        _dir: dir,
    }
}

impl TestApp {
    /// The value of one unlabelled line of `/metrics`, as text.
    pub async fn metric(&self, name: &str) -> Option<String> {
        let r = self.call("GET", "/metrics", None, None).await;
        let prefix = format!("{name} ");
        r.raw
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::to_owned)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, path, token, body, &[]).await
    }

    /// [`Self::call`] with extra request headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let client = awc::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .finish();
        let mut req = client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .insert_header(("User-Agent", "api-tests/1"));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        for (name, value) in headers {
            req = req.append_header((*name, *value));
        }
        let mut res = match body {
            Some(b) => req.send_json(&b).await.unwrap(),
            None => req.send().await.unwrap(),
        };
        let bytes = res.body().limit(10 * 1024 * 1024).await.unwrap();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
        }
    }

    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        self.send_raw_with(None, method, path, content_type, body)
            .await
    }

    /// Sends `body` as `content_type` with the bearer token.
    pub async fn send_raw_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        self.send_raw_with(Some(token), method, path, content_type, body)
            .await
    }

    async fn send_raw_with(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let client = awc::Client::default();
        let mut req = client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .insert_header(("Content-Type", content_type));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut res = req.send_body(body).await.unwrap();
        let bytes = res.body().limit(10 * 1024 * 1024).await.unwrap();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
        }
    }

    /// Signs a company up; returns (company id, owner id).
    pub async fn signup(&self, email: &str) -> (String, String) {
        let r = self
            .call(
                "POST",
                "/v1/signup",
                None,
                Some(json!({
                    "company_name": "Tacos El Güero", "email": email, "password": PASSWORD,
                    "password_confirmation": PASSWORD, "name": "Ana López", "rfc": "TCM970625MB1"
                })),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.raw);
        (
            r.body["company"]["id"].as_str().unwrap().to_owned(),
            r.body["user"]["id"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({ "email": email, "password": password })),
        )
        .await
    }

    /// Logs in and returns the token.
    pub async fn token(&self, email: &str) -> String {
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status, 201, "{}", r.raw);
        r.body["token"].as_str().unwrap().to_owned()
    }

    pub async fn create_user(&self, token: &str, email: &str, role: &str) -> String {
        let r = self
            .call("POST", "/v1/users", Some(token), Some(json!({
                "email": email, "name": "Vendedor", "role": role, "password": PASSWORD, "password_confirmation": PASSWORD
            })))
            .await;
        assert_eq!(r.status, 201, "{}", r.raw);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Runs the real binary on this server's data directory and database: (success, stdout,
    /// stderr).
    pub fn command(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_incrementa"))
            .args(args)
            .env("INCREMENTA_DATA_DIR", &self.data_dir)
            .env("DATABASE_URL", &self.db.url)
            .env("INCREMENTA_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// How many messages of `template` the outbox holds.
    /// Asserts that the company of `token` has an alert of `rule` with `severity` about
    /// `subject` (e.g. `user:<id>`).
    pub async fn assert_alert(&self, token: &str, rule: &str, severity: &str, subject: &str) {
        let alerts = self
            .call("GET", "/v1/audit/alerts", Some(token), None)
            .await;
        assert_eq!(alerts.status, 200, "{}", alerts.raw);
        assert!(
            alerts.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["rule"] == rule && a["severity"] == severity && a["subject"] == subject),
            "{} {rule} {severity} {subject}: {}",
            self.db.backend,
            alerts.raw
        );
    }

    /// The stored bodies of the queued messages of `template`.
    pub async fn stored_bodies(&self, template: &str) -> Vec<String> {
        let conn = self.db.connect().await;
        conn.query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT body FROM outbox_messages WHERE template = '{template}'"),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
    }

    pub async fn outbox_count(&self, template: &str) -> i64 {
        let conn = self.db.connect().await;
        let sql = match conn.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                "SELECT COUNT(*) FROM outbox_messages WHERE template = $1"
            }
            _ => "SELECT COUNT(*) FROM outbox_messages WHERE template = ?",
        };
        conn.query_one_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            [template.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
    }

    /// Every audit row as text, for searching.
    pub async fn audit_dump(&self) -> Vec<String> {
        let db = self.db.connect().await;
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT action, outcome, COALESCE(target, ''), COALESCE(ip, ''), COALESCE(user_agent, ''), details FROM audit_events".to_owned(),
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                (0..6)
                    .map(|i| r.try_get_by_index::<String>(i).unwrap())
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }
}

pub fn assert_problem(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.raw);
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/problem+json",
        "{}",
        r.raw
    );
    assert_eq!(r.body["code"], code, "{}", r.raw);
    assert_eq!(r.body["status"], status);
    assert!(
        r.body["title"].is_string() && r.body["type"].is_string() && r.body["detail"].is_string(),
        "{}",
        r.raw
    );
    // OPS: every problem names the request, as the X-Request-Id header does.
    assert_eq!(
        r.body["request_id"].as_str(),
        r.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        "{}",
        r.raw
    );
}

impl TestApp {
    /// Opens the step-up window of the session behind `token`.
    pub async fn reauth(&self, token: &str) {
        let r = self
            .call(
                "POST",
                "/v1/sessions/current/reauthenticate",
                Some(token),
                Some(json!({ "password": PASSWORD })),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.raw);
    }

    /// A company with one user per role; returns (owner, admin, manager, vendor) as (id, token).
    pub async fn company_with_roles(&self, prefix: &str) -> [(String, String); 4] {
        let (_, owner_id) = self.signup(&format!("{prefix}owner@example.com")).await;
        let owner = self.token(&format!("{prefix}owner@example.com")).await;
        let mut out = vec![(owner_id, owner.clone())];
        for role in ["admin", "manager", "vendor"] {
            let email = format!("{prefix}{role}@example.com");
            let id = self.create_user(&owner, &email, role).await;
            out.push((id, self.token(&email).await));
        }
        out.try_into().unwrap()
    }
}

/// The server on SQLite with a clock the test moves by hand (starting at the real time).
pub async fn spawn_with_clock() -> (TestApp, std::sync::Arc<kernel::ManualClock>) {
    spawn_with_clock_configured(|_| {}).await
}

/// [`spawn_with_clock`] with adjusted settings.
pub async fn spawn_with_clock_configured(
    adjust: impl FnOnce(&mut Settings),
) -> (TestApp, std::sync::Arc<kernel::ManualClock>) {
    use kernel::Clock as _;
    let clock = std::sync::Arc::new(kernel::ManualClock::new(kernel::SystemClock.now()));
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut settings = settings_for(&db, &data_dir);
    adjust(&mut settings);
    let app = Application::build_with_clock(&settings, clock.clone())
        .await
        .expect("server starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    (
        TestApp {
            base,
            db,
            data_dir,
            _dir: dir,
        },
        clock,
    )
}

/// A file of the project's own SAT-like fixtures (scripts/gen-sat-like-fixtures.sh).
pub fn fixture(name: &str, file: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../crates/crypto/tests/fixtures/{name}/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A multipart/form-data body: (content type, body).
pub fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----incrementa-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl TestApp {
    /// Uploads a credential as multipart.
    pub async fn upload(&self, token: &str, parts: &[(&str, &[u8])]) -> Reply {
        let (content_type, body) = multipart(parts);
        self.send_raw_as(token, "POST", "/v1/fiscal/credentials", &content_type, body)
            .await
    }

    /// Uploads one of the fixtures; returns the credential id.
    pub async fn upload_fixture(&self, token: &str, name: &str) -> String {
        let (cer, key, pw) = (
            fixture(name, "certificate.cer"),
            fixture(name, "private_key.key"),
            fixture(name, "password.txt"),
        );
        let r = self
            .upload(
                token,
                &[
                    ("certificate", &cer),
                    ("private_key", &key),
                    ("password", &pw),
                ],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.raw);
        r.body["id"].as_str().unwrap().to_owned()
    }
}

/// A real `incrementa serve` process on a free loopback port, on `app`'s database and data
/// directory; killed when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts the binary with `env` on top of the test defaults and waits until `/readyz` is 200.
    pub async fn start(app: &TestApp, env: &[(&str, &str)], stderr: Option<std::fs::File>) -> Self {
        Self::start_on(&app.db.url, &app.data_dir, env, stderr).await
    }

    /// Starts the binary on `database_url` and `data_dir`.
    pub async fn start_on(
        database_url: &str,
        data_dir: &std::path::Path,
        env: &[(&str, &str)],
        stderr: Option<std::fs::File>,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_incrementa"));
        cmd.arg("serve")
            .env("INCREMENTA_BIND", format!("127.0.0.1:{port}"))
            .env("INCREMENTA_DATA_DIR", data_dir)
            .env("DATABASE_URL", database_url)
            .env("INCREMENTA_WORKERS", "2")
            .env("INCREMENTA_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(stderr.map_or_else(std::process::Stdio::null, std::process::Stdio::from));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let process = Self {
            child: cmd.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = awc::Client::default();
        for _ in 0..300 {
            if let Ok(res) = client.get(format!("{}/readyz", process.base)).send().await
                && res.status() == 200
            {
                return process;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("server process on port {port} did not become ready");
    }

    /// The process id (for /proc measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A [`TestApp`] that talks to this process, for the usual helpers.
    pub fn app(&self, of: &TestApp) -> TestApp {
        TestApp {
            base: self.base.clone(),
            db: TestDb::existing(&of.db.url, of.db.backend),
            data_dir: of.data_dir.clone(),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `true` while the process runs (it has not exited or crashed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the process to stop (SIGTERM: graceful shutdown).
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `within` for the process to exit by itself.
    pub async fn exited(
        &mut self,
        within: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }

    /// Stops the process now (SIGKILL: no graceful shutdown).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal SMTP server on 127.0.0.1 that accepts every message and keeps it: a real listener
/// for the SMTP adapter to talk to (not a mock of it).
pub struct SmtpSink {
    pub port: u16,
    pub messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = messages.clone();
        actix_web::rt::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                actix_web::rt::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 sink ESMTP\r\n").await.ok();
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(body) = data.as_mut() {
                            if line == "." {
                                store.lock().unwrap().push(std::mem::take(body));
                                data = None;
                                write.write_all(b"250 queued\r\n").await.ok();
                            } else {
                                body.push_str(line.strip_prefix('.').unwrap_or(&line));
                                body.push('\n');
                            }
                            continue;
                        }
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250-sink\r\n250 8BITMIME\r\n",
                            "DATA" => {
                                data = Some(String::new());
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                write.write_all(b"221 bye\r\n").await.ok();
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        write.write_all(reply).await.ok();
                    }
                });
            }
        });
        Self { port, messages }
    }

    /// Waits (up to 15 s) until a message containing `needle` arrives.
    pub async fn wait_for(&self, needle: &str) -> String {
        for _ in 0..150 {
            if let Some(m) = self
                .messages
                .lock()
                .unwrap()
                .iter()
                .find(|m| m.contains(needle))
            {
                return m.clone();
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "no message with {needle:?} arrived; got {:?}",
            self.messages.lock().unwrap()
        );
    }
}

/// The text of a delivered `.eml` file: quoted-printable soft breaks joined, `=XX` decoded.
pub fn eml_text(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits for the outbox directory `dir` to hold `n` e-mails whose text contains `needle`, and
/// returns their texts.
pub async fn delivered_mails(dir: &std::path::Path, needle: &str, n: usize) -> Vec<String> {
    let mut found = Vec::new();
    for _ in 0..200 {
        found = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .map(|e| eml_text(&std::fs::read_to_string(e.path()).unwrap()))
                    .filter(|t| t.contains(needle))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if found.len() >= n {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        found.len(),
        n,
        "e-mails with {needle:?} in {}",
        dir.display()
    );
    found
}

/// The code in a reset or e-mail change message: the line that is 48 URL-safe base64
/// characters.
pub fn mailed_code(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| {
            l.len() == 48
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or_else(|| panic!("no code in {mail}"))
        .to_owned()
}
