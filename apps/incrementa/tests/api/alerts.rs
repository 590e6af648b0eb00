use serde_json::json;

use crate::helpers::*;

fn rules(r: &Reply) -> Vec<String> {
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn suspicious_access_raises_alerts_once() {
    for app in spawn_each().await {
        let [(_, owner), (admin_id, _), _, (_, vendor)] = app.company_with_roles("").await;
        assert_eq!(
            app.call("GET", "/v1/audit/alerts", Some(&owner), None)
                .await
                .body["items"],
            json!([])
        );
        assert_problem(
            &app.call("GET", "/v1/audit/alerts", Some(&vendor), None)
                .await,
            403,
            "forbidden",
        );

        // Six failures for one account: one alert, not two.
        for _ in 0..6 {
            app.login("vendor@example.com", "Wrong#Pass2026").await;
        }
        // A deactivated user tries to log in with the right password (another account than the
        // one just locked by the failures, whose lock would refuse the attempt before any check).
        app.call(
            "PATCH",
            &format!("/v1/users/{admin_id}"),
            Some(&owner),
            Some(json!({ "active": false })),
        )
        .await;
        app.login("admin@example.com", PASSWORD).await;
        // Three exports in a row.
        app.reauth(&owner).await;
        for _ in 0..3 {
            assert_eq!(
                app.call("GET", "/v1/audit/export?format=ndjson", Some(&owner), None)
                    .await
                    .status,
                200
            );
        }
        let r = app
            .call("GET", "/v1/audit/alerts?status=open", Some(&owner), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.raw);
        let mut got = rules(&r);
        got.sort();
        assert_eq!(
            got,
            vec![
                "deactivated_user_login",
                "export_burst",
                "repeated_login_failures"
            ],
            "{}: {}",
            app.db.backend,
            r.raw
        );
        let severities: Vec<&str> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["severity"].as_str().unwrap())
            .collect();
        assert!(severities.contains(&"high"));
        // The same three in pages of two: the first names a cursor, the second ends the list.
        assert!(r.body["next_cursor"].is_null(), "{}", r.raw);
        let first = app
            .call(
                "GET",
                "/v1/audit/alerts?status=open&limit=2",
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(
            first.body["items"].as_array().unwrap().len(),
            2,
            "{}",
            first.raw
        );
        let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
        let second = app
            .call(
                "GET",
                &format!("/v1/audit/alerts?status=open&limit=2&cursor={cursor}"),
                Some(&owner),
                None,
            )
            .await;
        assert!(second.body["next_cursor"].is_null(), "{}", second.raw);
        let mut paged = first.body["items"].as_array().unwrap().clone();
        paged.extend(second.body["items"].as_array().unwrap().iter().cloned());
        assert_eq!(
            &paged,
            r.body["items"].as_array().unwrap(),
            "{}",
            app.db.backend
        );
        for bad in ["cursor=12", "cursor=x.y.z", "limit=0", "limit=201"] {
            assert_problem(
                &app.call(
                    "GET",
                    &format!("/v1/audit/alerts?{bad}"),
                    Some(&owner),
                    None,
                )
                .await,
                400,
                "malformed_request",
            );
        }
        // Reviewing again raises nothing new.
        assert_eq!(
            rules(
                &app.call("GET", "/v1/audit/alerts", Some(&owner), None)
                    .await
            )
            .len(),
            3
        );
    }
}

#[actix_web::test]
async fn a_privileged_login_from_a_new_address_is_flagged() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    app.company_with_roles("").await;
    app.token("owner@example.com").await;
    // Pretend the earlier logins came from elsewhere: the next one, from 127.0.0.1, is new.
    // (The chain is not re-verified in this test: editing records is what AUD-4 detects.)
    let db = app.db.connect().await;
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "UPDATE audit_events SET ip = '203.0.113.50' WHERE action = 'session.login'".to_owned(),
    ))
    .await
    .unwrap();
    let newest = app.token("owner@example.com").await;
    let r = app
        .call("GET", "/v1/audit/alerts", Some(&newest), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(
        rules(&r).contains(&"new_ip_privileged_login".to_owned()),
        "{}",
        r.raw
    );
}

/// An Owner behind a trusted proxy logs in from IPv6 addresses: the first address of a /64 is a
/// new place (one alert naming the network), another address of the same /64 is not, a second
/// /64 is (AUD-7 counts an IPv6 client by its /64, as the per-IP limits do).
#[actix_web::test]
async fn a_rotating_ipv6_address_is_one_place_and_a_new_network_is_flagged() {
    for db in test_support::TestDb::each().await {
        let app = spawn_configured(db, |s| s.trusted_proxies = "127.0.0.1".into()).await;
        let [(owner_id, _), _, _, _] = app.company_with_roles("").await;
        let client = awc::Client::default();
        let mut new_places = Vec::new();
        for (forwarded, new_network) in [
            ("2001:db8:1:2::a", Some("2001:db8:1:2::/64")),
            ("2001:db8:1:2:ffff:1:2:b", None),
            ("2001:db8:1:2::a", None),
            ("2001:db8:7:7::1", Some("2001:db8:7:7::/64")),
        ] {
            let mut res = client
                .post(format!("{}/v1/sessions", app.base))
                .insert_header(("X-Forwarded-For", forwarded))
                .send_json(&json!({ "email": "owner@example.com", "password": PASSWORD }))
                .await
                .unwrap();
            assert_eq!(res.status(), 201, "{forwarded}");
            // The newest session: the cap may have closed the older ones.
            let session: serde_json::Value = res.json().await.unwrap();
            let owner = session["token"].as_str().unwrap().to_owned();
            if let Some(network) = new_network {
                new_places.push(format!("{owner_id}@{network}"));
            }
            let alerts = app
                .call("GET", "/v1/audit/alerts", Some(&owner), None)
                .await;
            let mut subjects: Vec<String> = alerts.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["rule"] == "new_ip_privileged_login")
                .map(|a| a["subject"].as_str().unwrap().to_owned())
                .collect();
            subjects.sort();
            let mut expected = new_places.clone();
            expected.sort();
            assert_eq!(subjects, expected, "{} after {forwarded}", app.db.backend);
        }
    }
}

/// AUD-7 triage over HTTP on both databases: an Owner or Admin dismisses an open alert with a
/// reason (audited), or opens an incident from it; either way it leaves `?status=open`. A
/// second dismissal is 409 naming the status; a manager or vendor is refused, and so is the
/// admin an alert is about; bad reasons, bodies, statuses and ids get their problem.
#[actix_web::test]
async fn alerts_are_dismissed_or_taken_into_an_incident() {
    for app in spawn_each().await {
        let b = app.db.backend;
        let [(_, owner), (_, admin), (_, manager), (_, vendor)] = app.company_with_roles("").await;
        for email in ["manager@example.com", "vendor@example.com"] {
            for _ in 0..5 {
                app.login(email, "Wrong#Password1").await;
            }
        }
        let alerts = |query: &'static str| {
            let (app, admin) = (&app, admin.clone());
            async move {
                let r = app
                    .call(
                        "GET",
                        &format!("/v1/audit/alerts{query}"),
                        Some(&admin),
                        None,
                    )
                    .await;
                assert_eq!(r.status, 200, "{}", r.raw);
                r.body["items"].as_array().unwrap().clone()
            }
        };
        let open = alerts("?status=open").await;
        assert_eq!(open.len(), 2, "{b}: {open:?}");
        let gauge = || app.metric("incrementa_alerts_open");
        assert_eq!(gauge().await.as_deref(), Some("2"), "{b}");
        let (first, second) = (
            open[0]["id"].as_str().unwrap().to_owned(),
            open[1]["id"].as_str().unwrap().to_owned(),
        );
        let dismiss = |id: &str, body: Option<serde_json::Value>, token: &str| {
            let path = format!("/v1/audit/alerts/{id}/dismiss");
            let (app, token) = (&app, token.to_owned());
            async move { app.call("POST", &path, Some(&token), body).await }
        };

        for token in [&manager, &vendor] {
            assert_problem(&dismiss(&first, None, token).await, 403, "forbidden");
        }
        let long = "x".repeat(501);
        let r = dismiss(&first, Some(json!({ "reason": long })), &admin).await;
        assert_problem(&r, 422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "reason", "{b}");
        let r = dismiss(&first, Some(json!(["not", "an", "object"])), &admin).await;
        assert_problem(&r, 400, "malformed_request");
        let r = dismiss(&uuid::Uuid::new_v4().to_string(), None, &admin).await;
        assert_problem(&r, 404, "not_found");
        assert_problem(&dismiss("not-a-uuid", None, &admin).await, 404, "not_found");

        let r = dismiss(
            &first,
            Some(json!({ "reason": "pruebas del equipo de soporte" })),
            &admin,
        )
        .await;
        assert_eq!(r.status, 200, "{b}: {}", r.raw);
        assert_eq!(r.body["status"], "dismissed");
        assert_eq!(r.body["id"], first.as_str());
        let r = dismiss(&first, None, &admin).await;
        assert_problem(&r, 409, "alert_not_open");
        assert_eq!(r.body["current_status"], "dismissed", "{b}");

        let opened = app
            .call(
                "POST",
                "/v1/incidents",
                Some(&admin),
                Some(json!({
                    "kind": "unauthorized_access", "severity": "medium",
                    "summary": "Intentos fallidos", "alert_id": second
                })),
            )
            .await;
        assert_eq!(opened.status, 201, "{b}: {}", opened.raw);
        let r = dismiss(&second, None, &admin).await;
        assert_problem(&r, 409, "alert_not_open");
        assert_eq!(r.body["current_status"], "incident", "{b}");

        assert!(alerts("?status=open").await.is_empty(), "{b}");
        let ids = |items: Vec<serde_json::Value>| -> Vec<String> {
            items
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ids(alerts("?status=dismissed").await), vec![first.clone()]);
        assert_eq!(ids(alerts("?status=incident").await), vec![second.clone()]);
        assert_eq!(alerts("").await.len(), 2, "{b}");
        assert_problem(
            &app.call("GET", "/v1/audit/alerts?status=closed", Some(&admin), None)
                .await,
            400,
            "malformed_request",
        );
        let records = app
            .call(
                "GET",
                "/v1/audit/events?action=audit.alert_dismissed",
                Some(&admin),
                None,
            )
            .await;
        let items = records.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{b}: {}", records.raw);
        assert_eq!(items[0]["target"], format!("alert:{first}"));
        assert_eq!(
            items[0]["details"]["reason"],
            "pruebas del equipo de soporte"
        );

        // An alert about the admin's own account: the admin may not dismiss it, the Owner may.
        for _ in 0..5 {
            app.login("admin@example.com", "Wrong#Password1").await;
        }
        let own = alerts("?status=open").await;
        assert_eq!(own.len(), 1, "{b}: {own:?}");
        let own = own[0]["id"].as_str().unwrap().to_owned();
        let r = dismiss(&own, None, &admin).await;
        assert_problem(&r, 403, "forbidden");
        assert_eq!(alerts("?status=open").await.len(), 1, "{b}");
        assert_eq!(gauge().await.as_deref(), Some("1"), "{b}");
        assert_eq!(dismiss(&own, None, &owner).await.status, 200, "{b}");
        assert_eq!(gauge().await.as_deref(), Some("0"), "{b}");
    }
}

/// The operator's view of the platform's alerts: failed logins for emails of no company raise
/// alerts in the platform chain, which no company's API shows; `incrementa audit alerts` lists
/// them and `incrementa audit dismiss-alert` triages them, recorded in that chain, which still
/// verifies.
#[actix_web::test]
async fn the_operator_lists_and_dismisses_the_platforms_alerts_from_the_command_line() {
    for app in spawn_each().await {
        let b = app.db.backend;
        for n in 0..20 {
            app.login(&format!("nobody{n}@example.com"), "Wrong#Password1")
                .await;
        }
        let cli = |args: &[&str]| app.command(args);
        let (ok, listed, err) = cli(&["audit", "alerts", "--status", "open"]);
        assert!(ok, "{b}: {err}");
        let line = listed
            .lines()
            .find(|l| l.contains(" ip_login_failures "))
            .unwrap_or_else(|| panic!("{b}: no address alert in {listed}"));
        assert!(line.contains(" open high "), "{b}: {line}");
        let id = line.split(' ').next().unwrap().to_owned();
        let platform_gauge = || app.metric("incrementa_platform_alerts_open");
        assert_eq!(platform_gauge().await.as_deref(), Some("1"), "{b}");

        let (ok, _, err) = cli(&["audit", "dismiss-alert", &id, "--reason", "a\u{7}b"]);
        assert!(!ok && err.contains("reason"), "{b}: {err}");
        let (ok, out, err) = cli(&[
            "audit",
            "dismiss-alert",
            &id,
            "--reason",
            "escaneo conocido del proveedor",
        ]);
        assert!(ok, "{b}: {err}");
        assert!(out.contains("dismissed"), "{b}: {out}");
        let (ok, _, err) = cli(&["audit", "dismiss-alert", &id]);
        assert!(!ok && err.contains("dismissed, not open"), "{b}: {err}");
        let (_, listed, _) = cli(&["audit", "alerts", "--status", "open"]);
        assert!(!listed.contains(&id), "{b}: {listed}");
        let (_, listed, _) = cli(&["audit", "alerts", "--status", "dismissed"]);
        assert!(listed.contains(&id), "{b}: {listed}");
        assert_eq!(platform_gauge().await.as_deref(), Some("0"), "{b}");

        // A second alert (failures for one unknown email): pages of one, the first ending with
        // the cursor of the second.
        for _ in 0..5 {
            app.login("ghost@example.com", "Wrong#Password1").await;
        }
        let (ok, first, err) = cli(&["audit", "alerts", "--limit", "1"]);
        assert!(ok, "{b}: {err}");
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(lines.len(), 2, "{b}: {first}");
        let next = lines[1].strip_prefix("next: ").unwrap();
        let (ok, second, err) = cli(&["audit", "alerts", "--limit", "1", "--cursor", next]);
        assert!(ok, "{b}: {err}");
        assert_eq!(second.lines().count(), 1, "{b}: {second}");
        let mut rules: Vec<&str> = [lines[0], second.trim_end()]
            .iter()
            .map(|l| l.split(' ').nth(4).unwrap())
            .collect();
        rules.sort_unstable();
        assert_eq!(
            rules,
            ["ip_login_failures", "repeated_login_failures"],
            "{b}"
        );
        for bad in [
            &["--cursor", "12"][..],
            &["--limit", "0"],
            &["--limit", "201"],
        ] {
            let (ok, _, err) = cli(&[&["audit", "alerts"][..], bad].concat());
            assert!(!ok && err.contains(bad[0]), "{b}: {bad:?}: {err}");
        }
        let (ok, out, err) = cli(&["audit", "verify"]);
        assert!(ok, "{b}: {out}{err}");
    }
}
