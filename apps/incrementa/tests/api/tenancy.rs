//! Tenant isolation: every id-bearing route of one company tried with another company's ids
//! answers 404, exactly like an unknown id, and changes nothing.

use http_api::routes::table;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn another_companys_ids_are_404_on_every_route_and_nothing_changes() {
    for app in spawn_each().await {
        let [
            (a_owner_id, a_owner),
            (a_admin_id, a_admin),
            _,
            (a_vendor_id, a_vendor),
        ] = app.company_with_roles("a-").await;
        let [_, (_, b_admin), _, _] = app.company_with_roles("b-").await;
        let b_owner = app.token("b-owner@example.com").await;
        app.reauth(&a_owner).await;
        app.reauth(&b_owner).await;
        app.reauth(&b_admin).await;
        let a_session = app
            .call("GET", "/v1/sessions", Some(&a_vendor), None)
            .await
            .body["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let started = app
            .call(
                "POST",
                "/v1/ownership-transfers",
                Some(&a_owner),
                Some(json!({ "to_user_id": a_admin_id })),
            )
            .await;
        assert_eq!(started.status, 201, "{}", started.raw);
        let a_transfer = started.body["id"].as_str().unwrap().to_owned();
        let a_credential = app.upload_fixture(&a_owner, "csd_valid").await;
        let opened = app
            .call(
                "POST",
                "/v1/incidents",
                Some(&a_owner),
                Some(json!({ "kind": "other", "severity": "low", "summary": "A's incident", "affected_user_ids": [a_vendor_id] })),
            )
            .await;
        assert_eq!(opened.status, 201, "{}", opened.raw);
        let a_incident = opened.body["id"].as_str().unwrap().to_owned();
        // An alert of A's review: failed logins on A's vendor.
        for _ in 0..5 {
            app.login("a-vendor@example.com", "Wrong#Password1").await;
        }
        let a_alert = app
            .call("GET", "/v1/audit/alerts?status=open", Some(&a_owner), None)
            .await
            .body["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();

        let mut covered = Vec::new();
        for route in table().into_iter().filter(|r| r.path.contains("{id}")) {
            let method = route.method.as_str();
            let (id, body) = match (method, route.path) {
                ("DELETE", "/v1/sessions/{id}") => (a_session.clone(), None),
                ("GET", "/v1/users/{id}") => (a_vendor_id.clone(), None),
                ("PATCH", "/v1/users/{id}") => (
                    a_vendor_id.clone(),
                    Some(json!({ "active": false, "name": "Hacked" })),
                ),
                ("PUT", "/v1/users/{id}/role") => {
                    (a_vendor_id.clone(), Some(json!({ "role": "admin" })))
                }
                ("PUT", "/v1/users/{id}/permissions") => (
                    a_vendor_id.clone(),
                    Some(json!({ "grant": ["audit.read"] })),
                ),
                (
                    "POST",
                    "/v1/ownership-transfers/{id}/accept" | "/v1/ownership-transfers/{id}/cancel",
                ) => (a_transfer.clone(), None),
                ("GET" | "DELETE", "/v1/fiscal/credentials/{id}") => (a_credential.clone(), None),
                ("POST", "/v1/fiscal/credentials/{id}/signatures") => {
                    (a_credential.clone(), Some(json!({ "data": "||x||" })))
                }
                ("GET", "/v1/incidents/{id}") => (a_incident.clone(), None),
                ("POST", "/v1/incidents/{id}/transitions") => {
                    (a_incident.clone(), Some(json!({ "to": "contained" })))
                }
                ("POST", "/v1/incidents/{id}/notes") => {
                    (a_incident.clone(), Some(json!({ "note": "B was here" })))
                }
                ("POST", "/v1/incidents/{id}/notifications") => (a_incident.clone(), None),
                ("POST", "/v1/audit/alerts/{id}/dismiss") => {
                    (a_alert.clone(), Some(json!({ "reason": "B was here" })))
                }
                _ => panic!(
                    "{method} {} takes an id but the tenancy test does not try it: add it",
                    route.path
                ),
            };
            let path = route.path.replace("{id}", &id);
            for token in [&b_owner, &b_admin] {
                let r = app.call(method, &path, Some(token), body.clone()).await;
                assert_problem(&r, 404, "not_found");
            }
            covered.push(route.path);
        }
        // Ids in bodies too: B's Owner cannot transfer to A's user.
        let r = app
            .call(
                "POST",
                "/v1/ownership-transfers",
                Some(&b_owner),
                Some(json!({ "to_user_id": a_owner_id })),
            )
            .await;
        assert_problem(&r, 404, "not_found");
        assert!(covered.len() >= 6, "{covered:?}");

        // B cannot open an incident naming A's users either.
        let r = app
            .call(
                "POST",
                "/v1/incidents",
                Some(&b_owner),
                Some(json!({ "kind": "other", "severity": "low", "summary": "x", "affected_user_ids": [a_vendor_id] })),
            )
            .await;
        assert_problem(&r, 422, "validation_failed");
        // Nor one from A's alert.
        let r = app
            .call(
                "POST",
                "/v1/incidents",
                Some(&b_owner),
                Some(json!({ "kind": "other", "severity": "low", "summary": "x", "alert_id": a_alert })),
            )
            .await;
        assert_problem(&r, 422, "validation_failed");
        // Nothing of A changed.
        let alerts = app
            .call("GET", "/v1/audit/alerts?status=open", Some(&a_owner), None)
            .await;
        assert!(
            alerts.raw.contains(&a_alert),
            "A's alert is still open: {}",
            alerts.raw
        );
        let incident = app
            .call(
                "GET",
                &format!("/v1/incidents/{a_incident}"),
                Some(&a_owner),
                None,
            )
            .await;
        assert_eq!(incident.body["status"], "open", "{}", incident.raw);
        assert_eq!(incident.body["timeline"].as_array().unwrap().len(), 1);
        let vendor = app
            .call(
                "GET",
                &format!("/v1/users/{a_vendor_id}"),
                Some(&a_owner),
                None,
            )
            .await;
        assert_eq!(vendor.body["active"], true, "{}", app.db.backend);
        assert_eq!(vendor.body["name"], "Vendedor");
        assert_eq!(vendor.body["role"], "vendor");
        assert_eq!(
            vendor.body["permissions"],
            json!(["customers.read.assigned", "customers.write.assigned"])
        );
        assert_eq!(
            app.call("GET", "/v1/me", Some(&a_vendor), None)
                .await
                .status,
            200
        );
        let credential = app
            .call(
                "GET",
                &format!("/v1/fiscal/credentials/{a_credential}"),
                Some(&a_owner),
                None,
            )
            .await;
        assert_eq!(
            credential.status, 200,
            "the credential is still there: {}",
            credential.raw
        );
        let cancel = app
            .call(
                "POST",
                &format!("/v1/ownership-transfers/{a_transfer}/cancel"),
                Some(&a_admin),
                None,
            )
            .await;
        assert_eq!(
            cancel.body["status"], "cancelled",
            "the transfer was still pending: {}",
            cancel.raw
        );
    }
}
