//! OPS hygiene through the API: metrics, request ids in problems, client IPs behind proxies.

use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn methods_a_client_makes_up_share_one_metrics_label() {
    let app = spawn_app().await;
    for i in 0..20 {
        let r = app
            .call(&format!("XMETHOD{i}"), &format!("/nowhere/{i}"), None, None)
            .await;
        assert_eq!(r.status, 404, "{}", r.raw);
    }
    let r = app.call("BREW", "/healthz", None, None).await;
    assert_eq!(r.status, 405, "{}", r.raw);
    let r = app.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    for line in [
        "incrementa_http_requests_total{method=\"OTHER\",route=\"(unmatched)\",status=\"404\"} 20",
        "incrementa_http_requests_total{method=\"OTHER\",route=\"/healthz\",status=\"405\"} 1",
    ] {
        assert!(r.raw.contains(line), "{line} missing from:\n{}", r.raw);
    }
    assert!(!r.raw.contains("XMETHOD"), "{}", r.raw);
    assert!(!r.raw.contains("BREW"), "{}", r.raw);
}

#[actix_web::test]
async fn metrics_count_requests_by_route_and_login_outcome() {
    let app = spawn_app().await;
    app.signup("metrics@example.com").await;
    let token = app.token("metrics@example.com").await;
    app.login("metrics@example.com", "Wrong#Password1").await;
    app.call(
        "GET",
        &format!("/v1/users/{}", uuid::Uuid::new_v4()),
        Some(&token),
        None,
    )
    .await;
    let r = app.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(
        r.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    for line in [
        "incrementa_http_requests_total{method=\"POST\",route=\"/v1/signup\",status=\"201\"} 1",
        "incrementa_http_requests_total{method=\"GET\",route=\"/v1/users/{id}\",status=\"404\"} 1",
        "incrementa_logins_total{outcome=\"success\"} 1",
        "incrementa_logins_total{outcome=\"failure\"} 1",
        "incrementa_active_sessions 1",
        "# TYPE incrementa_http_request_duration_seconds histogram",
        "# TYPE incrementa_outbox_backlog gauge",
        "# TYPE incrementa_password_hashes_total counter",
        "# TYPE incrementa_password_hash_seconds_total counter",
        "# TYPE incrementa_password_hash_wait_seconds_total counter",
        "incrementa_password_hash_queue 0",
    ] {
        assert!(r.raw.contains(line), "{line} missing from:\n{}", r.raw);
    }
    // Sign-up, the login and the failed login each appended audit records (all processes count).
    let appends: f64 = r
        .raw
        .lines()
        .find_map(|l| l.strip_prefix("incrementa_audit_appends "))
        .expect("incrementa_audit_appends")
        .parse()
        .unwrap();
    assert!(appends >= 3.0, "{appends}");
    // The sign-up's hash and both logins' verifications, with the time they took.
    let value = |name: &str| -> f64 {
        r.raw
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    assert!(value("incrementa_password_hashes_total") >= 3.0);
    assert!(value("incrementa_password_hash_seconds_total") > 0.0);
    // Raw paths never become labels: the id is not there.
    assert!(!r.raw.contains("/v1/users/0") && !r.raw.contains("metrics@example.com"));
}

/// Operators see how much the session cache answers: the first request of a session asks the
/// database, its repeats do not.
#[actix_web::test]
async fn metrics_count_the_session_caches_hits_and_misses() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.session_cache_ms = 60_000;
    })
    .await;
    app.signup("cache@example.com").await;
    let token = app.token("cache@example.com").await;
    for _ in 0..3 {
        assert_eq!(
            app.call("GET", "/v1/me", Some(&token), None).await.status,
            200
        );
    }
    let r = app.call("GET", "/metrics", None, None).await;
    for line in [
        "# TYPE incrementa_session_cache_hits_total counter",
        "incrementa_session_cache_hits_total 2",
        "incrementa_session_cache_misses_total 1",
    ] {
        assert!(r.raw.contains(line), "{line} missing from:\n{}", r.raw);
    }
}

#[actix_web::test]
async fn with_a_metrics_token_the_scraper_must_present_it() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.metrics_token = Some(secrecy::SecretString::from("scrape-token-0123456789"));
    })
    .await;
    assert_problem(
        &app.call("GET", "/metrics", None, None).await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.call("GET", "/metrics", Some("wrong-token-000000000"), None)
            .await,
        403,
        "forbidden",
    );
    let ok = app
        .call("GET", "/metrics", Some("scrape-token-0123456789"), None)
        .await;
    assert_eq!(ok.status, 200, "{}", ok.raw);
}

#[actix_web::test]
async fn problems_carry_the_request_id_of_their_response() {
    let app = spawn_app().await;
    let client = awc::Client::default();
    let mut res = client
        .get(format!("{}/v1/me", app.base))
        .insert_header(("X-Request-Id", "trace-abc-123"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "trace-abc-123");
    assert_eq!(body["request_id"], "trace-abc-123");
    assert_eq!(body["code"], "unauthenticated");
    // Not a problem: the body is left alone.
    let health = app.call("GET", "/healthz", None, None).await;
    assert!(health.body.get("request_id").is_none());
}

async fn login_ip(app: &TestApp, email: &str, forwarded: &str) -> String {
    let client = awc::Client::default();
    let res = client
        .post(format!("{}/v1/sessions", app.base))
        .insert_header(("X-Forwarded-For", forwarded))
        .send_json(&json!({ "email": email, "password": PASSWORD }))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let token = app.token(email).await;
    let sessions = app.call("GET", "/v1/sessions", Some(&token), None).await;
    sessions.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ip"].as_str().unwrap_or("").to_owned())
        .find(|ip| ip != "127.0.0.1")
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

#[actix_web::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    // Default: nobody is trusted, the header is ignored.
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| s.session_limit = 5).await;
    app.signup("xff@example.com").await;
    assert_eq!(
        login_ip(&app, "xff@example.com", "198.51.100.23").await,
        "127.0.0.1"
    );
    // Behind a trusted proxy on loopback: the client's address is used.
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.session_limit = 5;
        s.trusted_proxies = "127.0.0.1, 10.0.0.0/8".into();
    })
    .await;
    app.signup("xff@example.com").await;
    assert_eq!(
        login_ip(&app, "xff@example.com", "198.51.100.23, 10.1.1.1").await,
        "198.51.100.23"
    );
}

fn config_check(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_incrementa"));
    cmd.args(["config", "check"])
        .env("INCREMENTA_DATA_DIR", dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("PGSSLMODE")
        .env_remove("INCREMENTA_MASTER_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn config_check_names_the_wrong_value_and_never_prints_secrets() {
    let (code, out) = config_check(&[("INCREMENTA_SMTP_TLS", "ssl3")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("smtp_tls"), "{out}");
    let (code, out) = config_check(&[("INCREMENTA_TRUSTED_PROXIES", "10.0.0.0/40")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("10.0.0.0/40"), "{out}");
    let (code, out) = config_check(&[
        ("INCREMENTA_SMTP_HOST", "smtp.example.com"),
        ("INCREMENTA_SMTP_USERNAME", "mailer"),
        ("INCREMENTA_SMTP_PASSWORD", "Smtp-Secret-2026"),
        ("INCREMENTA_METRICS_TOKEN", "metrics-secret-0123456789"),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("configuration OK") && out.contains("smtp.example.com"),
        "{out}"
    );
    assert!(
        !out.contains("Smtp-Secret-2026") && !out.contains("metrics-secret-0123456789"),
        "{out}"
    );
    // The database's TLS as the server will use it, and never the URL's password.
    for (url, expected) in [
        (
            "postgres://app:Db-Secret-2026@db.example.com/crm",
            "sslmode=require",
        ),
        (
            "postgres://app:Db-Secret-2026@127.0.0.1/crm",
            "sslmode=disable",
        ),
        (
            "postgres://app:Db-Secret-2026@db.example.com/crm?sslmode=verify-full",
            "as DATABASE_URL or PGSSLMODE says",
        ),
    ] {
        let (code, out) = config_check(&[("DATABASE_URL", url)]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains(expected), "{url}: {out}");
        assert!(!out.contains("Db-Secret-2026"), "{out}");
    }
    // Trusted issuers: a usable bundle is named, an unusable one fails the check.
    let ca = format!(
        "{}/../../crates/crypto/tests/fixtures/ca.cer",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, out) = config_check(&[("INCREMENTA_VAULT_TRUSTED_ISSUERS", &ca)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("trusted issuers in"), "{out}");
    assert!(
        out.contains(
            "trusted issuer 1: AC de Pruebas IncrementaCRM, valid 2015-01-01 to 2045-01-01\n"
        ),
        "{out}"
    );
    // A CA certificate that has expired is named as such (the check still passes: it vouches
    // for what it issued while valid).
    let expired = format!(
        "{}/../../crates/crypto/tests/fixtures/expired_ca.cer",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, out) = config_check(&[("INCREMENTA_VAULT_TRUSTED_ISSUERS", &expired)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "trusted issuer 1: AC Vencida de Pruebas, valid 2010-01-01 to 2015-01-01 (EXPIRED"
        ),
        "{out}"
    );
    let (code, out) = config_check(&[("INCREMENTA_VAULT_TRUSTED_ISSUERS", "/nonexistent/cas.pem")]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("INCREMENTA_VAULT_TRUSTED_ISSUERS"), "{out}");
}

/// CORS: off by default; with INCREMENTA_CORS_ORIGINS only the listed origins get preflights
/// answered and responses marked readable, and errors carry the headers too.
#[actix_web::test]
async fn cors_allows_only_configured_origins() {
    let send = |base: String, method: &str, origin: &str, preflight: bool| {
        let method = method.to_owned();
        let origin = origin.to_owned();
        async move {
            let client = awc::Client::default();
            let mut req = client
                .request(method.parse().unwrap(), format!("{base}/v1/me"))
                .insert_header(("Origin", origin));
            if preflight {
                req = req
                    .insert_header(("Access-Control-Request-Method", "GET"))
                    .insert_header(("Access-Control-Request-Headers", "authorization"));
            }
            req.send().await.unwrap()
        }
    };
    let off = spawn_app().await;
    let res = send(off.base.clone(), "GET", "https://app.example.com", false).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.cors_origins = "https://app.example.com".into();
    })
    .await;
    let pre = send(app.base.clone(), "OPTIONS", "https://app.example.com", true).await;
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    assert!(
        pre.headers()
            .get("access-control-allow-headers")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    assert!(
        pre.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let res = send(app.base.clone(), "GET", "https://app.example.com", false).await;
    assert_eq!(res.status(), 401, "the answer itself is unchanged");
    assert_eq!(
        res.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    assert!(
        res.headers()
            .get("access-control-expose-headers")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("x-request-id")
    );
    for other in [
        "https://evil.example",
        "https://app.example.com.evil.example",
    ] {
        let pre = send(app.base.clone(), "OPTIONS", other, true).await;
        assert!(
            pre.headers().get("access-control-allow-origin").is_none(),
            "{other}"
        );
        let res = send(app.base.clone(), "GET", other, false).await;
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{other}"
        );
    }
}

/// Logs (OPS-3): JSON lines, every line of a request carries its request id, and neither the
/// password nor the session token ever appears.
#[actix_web::test]
async fn log_lines_carry_the_request_id_and_no_secret() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let server = ServerProcess::start(
        &app,
        &[("INCREMENTA_LOG", "info,http_api=debug")],
        Some(std::fs::File::create(&log_path).unwrap()),
    )
    .await;
    let p = server.app(&app);
    p.signup("logs@example.com").await;
    let token = p.token("logs@example.com").await;
    let client = awc::Client::default();
    let res = client
        .get(format!("{}/v1/users/{}", p.base, uuid::Uuid::new_v4()))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("X-Request-Id", "trace-me-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    drop(server); // flushes nothing more: lines are written as they happen
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let served = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "trace-me-123")
        .unwrap_or_else(|| panic!("no line with the request id in:\n{log}"));
    assert_eq!(served["fields"]["status"], 404, "{served}");
    assert_eq!(
        served["span"]["path"].as_str().unwrap().len(),
        "/v1/users/".len() + 36
    );
    assert!(
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == "request served")
            .all(|l| l["span"]["request_id"].is_string()),
        "every request line names its request"
    );
    assert!(!log.contains(PASSWORD), "the password reached the log");
    assert!(!log.contains(&token), "the token reached the log");
}
