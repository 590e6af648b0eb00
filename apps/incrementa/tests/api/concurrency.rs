use std::collections::HashSet;

use futures_util::future::join_all;

use crate::helpers::*;

/// `n` simultaneous logins of `email` spread over `apps`, each from an address of its own behind
/// a trusted proxy on loopback (the apps must trust it): one address may only have a few
/// password checks in flight at once.
async fn storm(apps: &[&str], email: &str, n: usize) -> (Vec<String>, HashSet<String>) {
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .finish();
    let calls = (0..n).map(|i| {
        let url = format!("{}/v1/sessions", apps[i % apps.len()]);
        let client = client.clone();
        async move {
            let mut res = client
                .post(url)
                .insert_header(("X-Forwarded-For", format!("10.1.0.{}", i + 1)))
                .send_json(&serde_json::json!({ "email": email, "password": PASSWORD }))
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            res.json::<serde_json::Value>().await.unwrap()
        }
    });
    let replies = join_all(calls).await;
    let tokens = replies
        .iter()
        .map(|r| r["token"].as_str().unwrap().to_owned())
        .collect();
    let revoked = replies
        .iter()
        .flat_map(|r| {
            r["revoked_session_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
        })
        .collect::<Vec<_>>();
    let unique: HashSet<String> = revoked.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        revoked.len(),
        "a session was named revoked twice"
    );
    (tokens, unique)
}

async fn live_tokens(app: &TestApp, tokens: &[String]) -> Vec<String> {
    let mut live = Vec::new();
    for t in tokens {
        if app.call("GET", "/v1/me", Some(t), None).await.status == 200 {
            live.push(t.clone());
        }
    }
    live
}

/// SES-2 over HTTP: 50 simultaneous logins of one user leave exactly 2 live sessions.
#[actix_web::test]
async fn fifty_simultaneous_logins_leave_two_sessions() {
    for db in test_support::TestDb::each().await {
        let app = spawn_configured(db, |s| s.trusted_proxies = "127.0.0.1".into()).await;
        app.signup("ana@example.com").await;
        let (tokens, revoked) = storm(&[&app.base], "ana@example.com", 50).await;
        let live = live_tokens(&app, &tokens).await;
        assert_eq!(live.len(), 2, "{}", app.db.backend);
        assert_eq!(revoked.len(), 48, "{}", app.db.backend);
        let sessions = app.call("GET", "/v1/sessions", Some(&live[0]), None).await;
        let ids: HashSet<String> = sessions.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(
            ids.is_disjoint(&revoked),
            "a surviving session was reported revoked"
        );
    }
}

/// SES-2 across processes: two `incrementa` processes on one database, logins spread over both.
#[actix_web::test]
async fn two_server_processes_sharing_one_database_keep_the_cap() {
    for app in spawn_each().await {
        app.signup("ana@example.com").await;
        let behind_proxy = [("INCREMENTA_TRUSTED_PROXIES", "127.0.0.1")];
        let p1 = ServerProcess::start(&app, &behind_proxy, None).await;
        let p2 = ServerProcess::start(&app, &behind_proxy, None).await;
        let (tokens, revoked) = storm(&[&p1.base, &p2.base], "ana@example.com", 50).await;
        let live = live_tokens(&app, &tokens).await;
        assert_eq!(live.len(), 2, "{}", app.db.backend);
        assert_eq!(revoked.len(), 48, "{}", app.db.backend);
    }
}

/// Polls `GET /v1/me` on `app` with `token` every 50 ms until it answers 401, failing if it
/// still answers 200 after `limit` (or answers anything else meanwhile).
async fn refused_within(app: &TestApp, token: &str, limit: std::time::Duration, what: &str) {
    let started = std::time::Instant::now();
    loop {
        let status = app.call("GET", "/v1/me", Some(token), None).await.status;
        if status == 401 {
            return;
        }
        assert_eq!(status, 200, "{what}");
        assert!(
            started.elapsed() < limit,
            "{}, {what}: the other process still accepts the session",
            app.db.backend
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// ACC-1 across processes on PostgreSQL: with a one-minute session cache, a logout and a
/// deactivation through one process are refused by the other, which had the sessions cached,
/// within seconds: the change notices (migration m0012) reach it, not the cache's time to live.
#[actix_web::test]
async fn on_postgres_a_revocation_reaches_the_other_process_before_its_cache_expires() {
    let Some(db) = test_support::TestDb::postgres().await else {
        return;
    };
    let app = spawn_on(db).await;
    app.signup("ana@example.com").await;
    let owner = app.token("ana@example.com").await;
    let luis_id = app.create_user(&owner, "luis@example.com", "vendor").await;
    let minute = [("INCREMENTA_SESSION_CACHE_MS", "60000")];
    let p1 = ServerProcess::start(&app, &minute, None).await;
    let p2 = ServerProcess::start(&app, &minute, None).await;
    let (a1, a2) = (p1.app(&app), p2.app(&app));
    let ten_seconds = std::time::Duration::from_secs(10);

    let token = a1.token("ana@example.com").await;
    assert_eq!(
        a2.call("GET", "/v1/me", Some(&token), None).await.status,
        200
    );
    let out = a1
        .call("DELETE", "/v1/sessions/current", Some(&token), None)
        .await;
    assert_eq!(out.status, 204, "{}", out.raw);
    refused_within(&a2, &token, ten_seconds, "a logout").await;

    let luis = a1.token("luis@example.com").await;
    assert_eq!(
        a2.call("GET", "/v1/me", Some(&luis), None).await.status,
        200
    );
    let ana = a1.token("ana@example.com").await;
    let off = a1
        .call(
            "PATCH",
            &format!("/v1/users/{luis_id}"),
            Some(&ana),
            Some(serde_json::json!({ "active": false })),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.raw);
    refused_within(&a2, &luis, ten_seconds, "a deactivation").await;
}

/// The session cache (INCREMENTA_SESSION_CACHE_MS, default 1 s): a logout through one process is
/// refused at once by that process and within the cache's time to live by another process that
/// had the session cached.
#[actix_web::test]
async fn a_logout_in_one_process_reaches_the_other_within_the_cache_time() {
    for app in spawn_each().await {
        app.signup("ana@example.com").await;
        let p1 = ServerProcess::start(&app, &[("INCREMENTA_SESSION_CACHE_MS", "1000")], None).await;
        let p2 = ServerProcess::start(&app, &[("INCREMENTA_SESSION_CACHE_MS", "1000")], None).await;
        let (a1, a2) = (p1.app(&app), p2.app(&app));
        let token = a1.token("ana@example.com").await;
        assert_eq!(
            a2.call("GET", "/v1/me", Some(&token), None).await.status,
            200
        );
        assert_eq!(
            a1.call("GET", "/v1/me", Some(&token), None).await.status,
            200
        );
        let out = a1
            .call("DELETE", "/v1/sessions/current", Some(&token), None)
            .await;
        assert_eq!(out.status, 204, "{}", out.raw);
        assert_eq!(
            a1.call("GET", "/v1/me", Some(&token), None).await.status,
            401,
            "the process that revoked it refuses it at once"
        );
        refused_within(
            &a2,
            &token,
            std::time::Duration::from_secs(5),
            "within the cache time",
        )
        .await;
    }
}

/// Sends `bodies` to `method path` as `token`, all at once. Each reply is 200 or, when the
/// record kept changing under every attempt, 409 `concurrent_change`; the indexes of the 200s.
async fn at_once(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    bodies: &[serde_json::Value],
) -> Vec<usize> {
    let replies = join_all(
        bodies
            .iter()
            .map(|body| app.call(method, path, Some(token), Some(body.clone()))),
    )
    .await;
    let mut landed = Vec::new();
    for (i, r) in replies.iter().enumerate() {
        if r.status == 200 {
            landed.push(i);
        } else {
            assert_problem(r, 409, "concurrent_change");
        }
    }
    assert!(!landed.is_empty(), "{}: nothing landed", app.db.backend);
    landed
}

/// Simultaneous grants of different permissions to one user: every grant that was answered
/// 200 is in the user's permissions at the end (none computed from grants another one
/// replaced), and the audit log records exactly those.
#[actix_web::test]
async fn simultaneous_permission_grants_lose_none() {
    const GRANTS: [&str; 6] = [
        "users.read",
        "company.config.read",
        "audit.read",
        "incidents.manage",
        "customers.read.all",
        "fiscal.credentials.read",
    ];
    for app in spawn_each().await {
        let b = app.db.backend;
        let [(_, owner), _, _, (vendor_id, _)] = app.company_with_roles("").await;
        app.reauth(&owner).await;
        let path = format!("/v1/users/{vendor_id}/permissions");
        let bodies: Vec<_> = GRANTS
            .iter()
            .map(|p| serde_json::json!({ "grant": [p] }))
            .collect();
        let landed = at_once(&app, &owner, "PUT", &path, &bodies).await;
        let user = app
            .call("GET", &format!("/v1/users/{vendor_id}"), Some(&owner), None)
            .await;
        let held: HashSet<&str> = user.body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        for (i, permission) in GRANTS.iter().enumerate() {
            assert_eq!(
                held.contains(permission),
                landed.contains(&i),
                "{b}: {permission} ({})",
                user.raw
            );
        }
        let recorded = app
            .audit_dump()
            .await
            .into_iter()
            .filter(|r| r.starts_with("user.permissions_changed|success"))
            .count();
        assert_eq!(recorded, landed.len(), "{b}");
    }
}

/// Simultaneous changes of the company's configuration take turns rather than fail: every one
/// is answered 200 and is in the configuration at the end, and each field's change record
/// names as old value what the company held before it.
#[actix_web::test]
async fn simultaneous_company_changes_all_land() {
    let fields: [(&str, serde_json::Value); 4] = [
        ("name", serde_json::json!("Tacos Nuevos")),
        ("legal_name", serde_json::json!("Tacos Nuevos SA de CV")),
        ("postal_code", serde_json::json!("06700")),
        ("tax_regime", serde_json::json!("601")),
    ];
    for app in spawn_each().await {
        let b = app.db.backend;
        app.signup("duena@example.com").await;
        let owner = app.token("duena@example.com").await;
        let before = app.call("GET", "/v1/company", Some(&owner), None).await;
        let bodies: Vec<_> = fields
            .iter()
            .map(|(field, value)| serde_json::json!({ *field: value }))
            .collect();
        let replies = join_all(
            bodies
                .iter()
                .map(|body| app.call("PATCH", "/v1/company", Some(&owner), Some(body.clone()))),
        )
        .await;
        for r in &replies {
            assert_eq!(r.status, 200, "{b}: {}", r.raw);
        }
        let after = app.call("GET", "/v1/company", Some(&owner), None).await;
        for (field, value) in &fields {
            assert_eq!(&after.body[*field], value, "{b}: {field} ({})", after.raw);
        }
        let changes = app
            .call("GET", "/v1/company/changes", Some(&owner), None)
            .await;
        let changes = changes.body["items"].as_array().unwrap();
        assert_eq!(changes.len(), fields.len(), "{b}");
        for change in changes {
            let field = change["field"].as_str().unwrap();
            assert_eq!(change["old_value"], before.body[field], "{b}: {change}");
        }
    }
}
