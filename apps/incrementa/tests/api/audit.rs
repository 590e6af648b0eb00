use std::process::Command;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::*;

async fn raw_get(app: &TestApp, path: &str, token: &str) -> (u16, String, String) {
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .finish();
    let mut res = client
        .get(format!("{}{path}", app.base))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.body().limit(64 * 1024 * 1024).await.unwrap();
    (
        res.status().as_u16(),
        ct,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_web::test]
async fn query_filters_pagination_and_the_access_log() {
    for app in spawn_each().await {
        let [(owner_id, owner), _, _, (_, vendor)] = app.company_with_roles("").await;
        for _ in 0..3 {
            app.login("owner@example.com", "Wrong#Pass2026").await;
        }
        // Page through everything two at a time.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/audit/events?limit=2&cursor={c}"),
                None => "/v1/audit/events?limit=2".to_owned(),
            };
            let r = app.call("GET", &path, Some(&owner), None).await;
            assert_eq!(r.status, 200, "{}", r.raw);
            let items = r.body["items"].as_array().unwrap().clone();
            assert!(items.len() <= 2);
            seen.extend(items.into_iter().map(|i| i["seq"].as_i64().unwrap()));
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(
            seen, sorted,
            "{}: newest first, no duplicates",
            app.db.backend
        );
        assert_eq!(*seen.last().unwrap(), 1, "down to the first record");

        let failures = app
            .call(
                "GET",
                "/v1/audit/events?action=session.login&outcome=failure",
                Some(&owner),
                None,
            )
            .await;
        let items = failures.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 3, "{}", failures.raw);
        assert!(
            items
                .iter()
                .all(|i| i["ip"] == "127.0.0.1" && i["user_agent"] == "api-tests/1")
        );
        let mine = app
            .call(
                "GET",
                &format!("/v1/audit/events?actor_id={owner_id}&action=user.created"),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(
            mine.body["items"].as_array().unwrap().len(),
            4,
            "{}",
            mine.raw
        );
        let access = app
            .call("GET", "/v1/audit/access-log?limit=200", Some(&owner), None)
            .await;
        assert!(
            access.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["action"].as_str().unwrap().starts_with("session.")),
            "{}",
            access.raw
        );
        let none = app
            .call(
                "GET",
                "/v1/audit/access-log?action=user.created",
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(none.body["items"], json!([]));
        let bad = app
            .call("GET", "/v1/audit/events?outcome=maybe", Some(&owner), None)
            .await;
        assert_problem(&bad, 400, "malformed_request");
        assert_problem(
            &app.call("GET", "/v1/audit/events", Some(&vendor), None)
                .await,
            403,
            "forbidden",
        );
    }
}

#[actix_web::test]
async fn export_needs_step_up_streams_every_record_and_is_itself_audited() {
    let app = spawn_app().await;
    let [(_, owner), _, _, _] = app.company_with_roles("").await;
    // A user agent that a spreadsheet would run as a formula.
    let client = awc::Client::default();
    client
        .post(format!("{}/v1/sessions", app.base))
        .insert_header(("User-Agent", "=HYPERLINK(\"http://evil\")"))
        .send_json(&json!({ "email": "owner@example.com", "password": "bad" }))
        .await
        .unwrap();
    let (status, _, _) = raw_get(&app, "/v1/audit/export?format=ndjson", &owner).await;
    assert_eq!(status, 403);
    app.reauth(&owner).await;
    let total = app
        .call("GET", "/v1/audit/events?limit=200", Some(&owner), None)
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .len();
    let (status, ct, body) = raw_get(&app, "/v1/audit/export?format=ndjson", &owner).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ct, "application/x-ndjson");
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        total + 1,
        "every record, plus the export's own record"
    );
    assert_eq!(lines[0]["action"], "audit.exported");
    let (status, ct, csv) = raw_get(
        &app,
        "/v1/audit/export?format=csv&action=session.login",
        &owner,
    )
    .await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/csv"));
    assert!(csv.starts_with(
        "id,seq,at,actor_id,action,target,ip,user_agent,outcome,request_id,details\r\n"
    ));
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""),
        "formula neutralized: {csv}"
    );
    assert!(!csv.contains(",\"=HYPERLINK"));
    let exported = app
        .call(
            "GET",
            "/v1/audit/events?action=audit.exported",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(exported.body["items"].as_array().unwrap().len(), 2);
}

async fn exec(app: &TestApp, sql: &str) {
    let db = app.db.connect().await;
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap();
}

#[actix_web::test]
async fn verify_reports_the_first_tampered_record_over_http_and_the_command_line() {
    for app in spawn_each().await {
        let [(_, owner), _, _, _] = app.company_with_roles("").await;
        let ok = app
            .call("GET", "/v1/audit/verify", Some(&owner), None)
            .await;
        assert_eq!(ok.body["ok"], true, "{}", ok.raw);
        assert!(ok.body["checked"].as_u64().unwrap() >= 5);
        let cli = || {
            Command::new(env!("CARGO_BIN_EXE_incrementa"))
                .args(["audit", "verify"])
                .env("INCREMENTA_DATA_DIR", &app.data_dir)
                .env("DATABASE_URL", &app.db.url)
                .env("INCREMENTA_LOG", "warn")
                .output()
                .unwrap()
        };
        let out = cli();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Someone with database access rewrites an event's outcome.
        exec(
            &app,
            "UPDATE audit_events SET outcome = 'denied' WHERE seq = 2 AND action = 'user.created'",
        )
        .await;
        let broken = app
            .call("GET", "/v1/audit/verify", Some(&owner), None)
            .await;
        assert_eq!(
            broken.body["ok"], false,
            "{}: {}",
            app.db.backend, broken.raw
        );
        assert!(broken.body["first_broken_id"].is_string());
        let out = cli();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("BROKEN at record"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// AUD-8: a whole scenario with known secrets, through the real binary with debug logs; no
/// password, token or key password appears in any audit row or log line.
#[actix_web::test]
async fn no_secret_reaches_audit_records_or_logs() {
    let app = spawn_app().await;
    let log = app.data_dir.parent().unwrap().join("server.log");
    let mut server = ServerProcess::start(
        &app,
        &[("INCREMENTA_LOG", "debug")],
        Some(std::fs::File::create(&log).unwrap()),
    )
    .await;
    let remote = server.app(&app);
    let [(_, owner), _, _, _] = remote.company_with_roles("").await;
    remote
        .login("owner@example.com", "Incorrecta#Clave99")
        .await;
    remote.login("Secreto#Tecleado1", "x").await;
    remote.reauth(&owner).await;
    remote.upload_fixture(&owner, "csd_valid").await;
    remote.call("PUT", "/v1/me/password", Some(&owner), Some(json!({ "current_password": PASSWORD, "new_password": "Nuevo#Secreto2026", "new_password_confirmation": "Nuevo#Secreto2026" }))).await;
    server.stop();

    let secrets = [
        PASSWORD,
        "Incorrecta#Clave99",
        "Secreto#Tecleado1",
        "Nuevo#Secreto2026",
        "12345678a",
        &owner,
    ];
    let audit = app.audit_dump().await;
    assert!(audit.len() > 10);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.lines().count() > 3, "the server logged: {logs}");
    for secret in secrets {
        assert!(
            audit.iter().all(|r| !r.contains(secret)),
            "{secret} in the audit log"
        );
        assert!(!logs.contains(secret), "{secret} in the server log");
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Adds `thousands` × 1,000 records to the chain of `owner`'s company, straight into the
/// SQLite database (their MACs are not real: an export does not verify).
async fn bulk_records(app: &TestApp, owner: &str, thousands: i64) {
    let company = app.call("GET", "/v1/me", Some(owner), None).await.body["company_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = app.db.connect().await;
    let start = 1_000_i64;
    let hex_company = company.replace('-', "");
    for batch in 0..thousands {
        let values: Vec<String> = (0..1000)
            .map(|i| {
                let seq = start + batch * 1000 + i;
                format!(
                    "(X'{:032x}', X'{hex_company}', '2026-11-21 12:00:00.000000+00:00', 'user.updated', 'user:{seq}', 'success', '203.0.113.9', 'load/1', '{{\"fields\":[\"name\"]}}', '{company}', {seq}, 1, '00')",
                    0xabc0_0000_0000_0000_u128 + seq as u128
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO audit_events (id, company_id, at, action, target, outcome, ip, user_agent, details, chain, seq, key_id, mac) VALUES {}",
            values.join(",")
        );
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
    }
}

/// AUD-6: an export of 100,000 records streams; the server's peak memory barely moves. While
/// it streams, the company's next export is refused with 429; once it is read, or its client
/// has gone away, one may start.
#[actix_web::test]
async fn exporting_100000_records_keeps_memory_flat() {
    let app = spawn_app().await;
    let [(_, owner), _, _, _] = app.company_with_roles("").await;
    bulk_records(&app, &owner, 100).await;
    let mut server = ServerProcess::start(&app, &[("INCREMENTA_WORKERS", "1")], None).await;
    let base = server.base.clone();
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .finish();
    let remote = server.app(&app);
    let token = remote.token("owner@example.com").await;
    remote.reauth(&token).await;
    // Warm up with a small export, then measure the peak during the big one.
    let (status, _, _) = raw_get(
        &remote,
        "/v1/audit/export?format=ndjson&action=session.login",
        &token,
    )
    .await;
    assert_eq!(status, 200);
    let before = peak_rss_kib(server.pid());
    let mut res = client
        .get(format!("{base}/v1/audit/export?format=ndjson"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut lines = 0_usize;
    let mut bytes = 0_usize;
    use futures_util::StreamExt as _;
    while let Some(chunk) = res.next().await {
        let chunk = chunk.unwrap();
        if bytes == 0 {
            // Mid-stream (far more is left than the sockets buffer): the company's second
            // export waits, with Retry-After.
            let busy = remote
                .call("GET", "/v1/audit/export?format=csv", Some(&token), None)
                .await;
            assert_problem(&busy, 429, "rate_limited");
            assert_eq!(busy.retry_after(), 10);
        }
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let after = peak_rss_kib(server.pid());
    // The pass went with the last page: the next export may start as soon as this one is read.
    let (status, _, _) = raw_get(
        &remote,
        "/v1/audit/export?format=ndjson&action=audit.exported",
        &token,
    )
    .await;
    assert_eq!(status, 200);
    // A client that goes away mid-stream frees the company's exports: the server drops the
    // stream, and the pass with it, once it finds the connection closed.
    let mut gone = awc::Client::new()
        .get(format!("{base}/v1/audit/export?format=csv"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    gone.next().await.unwrap().unwrap();
    drop(gone);
    let mut freed = false;
    for _ in 0..100 {
        let r = remote
            .call(
                "GET",
                "/v1/audit/export?format=csv&action=audit.exported",
                Some(&token),
                None,
            )
            .await;
        if r.status == 200 {
            freed = true;
            break;
        }
        assert_problem(&r, 429, "rate_limited");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        freed,
        "the export of a client that left still holds the company's pass"
    );
    server.stop();
    assert!(lines > 100_000, "{lines} lines");
    assert!(bytes > 20 * 1024 * 1024, "{bytes} bytes exported");
    let growth_mib = (after.saturating_sub(before)) / 1024;
    assert!(
        growth_mib < 20,
        "peak RSS grew by {growth_mib} MiB while streaming {} MiB",
        bytes / 1024 / 1024
    );
    eprintln!(
        "exported {lines} records, {} MiB; peak RSS {before} KiB -> {after} KiB",
        bytes / 1024 / 1024
    );
}

/// AUD-6: a client that stops reading an export holds the company's exports for five minutes
/// after its last page, not for ever. Then the next export takes its place (its record says
/// so) and streams whole, and the stalled one ends without its last records.
#[actix_web::test]
async fn a_stalled_export_gives_way_after_five_idle_minutes() {
    use futures_util::StreamExt as _;
    let (app, clock) = spawn_with_clock().await;
    let [(_, owner), _, _, _] = app.company_with_roles("").await;
    bulk_records(&app, &owner, 100).await;
    app.reauth(&owner).await;
    let export = |format: &str| {
        awc::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .finish()
            .get(format!("{}/v1/audit/export?format={format}", app.base))
            .insert_header(("Authorization", format!("Bearer {owner}")))
            .send()
    };
    let mut stalled = export("ndjson").await.unwrap();
    assert_eq!(stalled.status(), 200);
    let first = stalled.next().await.unwrap().unwrap();
    // The client reads no more; the server fills the sockets' buffers and waits.
    let busy = app
        .call("GET", "/v1/audit/export?format=csv", Some(&owner), None)
        .await;
    assert_problem(&busy, 429, "rate_limited");
    // Five minutes and a second later the next export takes over. The server may still be
    // filling the sockets' buffers when the clock moves (each page it reads renews the pass at
    // the clock's time), so the clock moves again until the stalled stream has stopped.
    let mut newer = None;
    for _ in 0..20 {
        clock.advance(chrono::Duration::seconds(301));
        app.reauth(&owner).await;
        let res = export("ndjson").await.unwrap();
        if res.status() == 200 {
            newer = Some(res);
            break;
        }
        assert_eq!(res.status(), 429);
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut newer = newer.expect("the stalled export never gave way");
    let mut lines = 0_usize;
    while let Some(chunk) = newer.next().await {
        lines += chunk.unwrap().iter().filter(|b| **b == b'\n').count();
    }
    assert!(lines > 100_000, "{lines} lines");
    // The stalled export, read on, ends early: its next page found the pass taken over.
    // (The server closes the connection without the chunked body's last chunk.)
    let mut stalled_lines = first.iter().filter(|b| **b == b'\n').count();
    while let Some(Ok(chunk)) = stalled.next().await {
        stalled_lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    assert!(stalled_lines < 100_000, "{stalled_lines} lines");
    let exported = app
        .call(
            "GET",
            "/v1/audit/events?action=audit.exported",
            Some(&owner),
            None,
        )
        .await;
    let items = exported.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", exported.raw);
    assert_eq!(items[0]["details"]["replaced_idle_export"], true);
    assert_eq!(items[1]["details"].get("replaced_idle_export"), None);
}

#[actix_web::test]
async fn page_sizes_outside_the_range_are_refused() {
    let app = spawn_app().await;
    app.signup("pages@example.com").await;
    let token = app.token("pages@example.com").await;
    for path in [
        "/v1/audit/events",
        "/v1/audit/access-log",
        "/v1/company/changes",
    ] {
        for limit in ["0", "201", "2147483648", "-1", "x"] {
            let r = app
                .call("GET", &format!("{path}?limit={limit}"), Some(&token), None)
                .await;
            assert_problem(&r, 400, "malformed_request");
        }
        let r = app
            .call("GET", &format!("{path}?limit=0"), Some(&token), None)
            .await;
        assert!(r.raw.contains("limit is 1 to 200"), "{path}: {}", r.raw);
        for limit in ["1", "200"] {
            let r = app
                .call("GET", &format!("{path}?limit={limit}"), Some(&token), None)
                .await;
            assert_eq!(r.status, 200, "{path}?limit={limit}: {}", r.raw);
        }
    }
}
