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
