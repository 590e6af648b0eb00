use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn configuration_changes_are_logged_field_by_field() {
    for app in spawn_each().await {
        let [(_, owner), (admin_id, admin), (_, manager), (_, vendor)] =
            app.company_with_roles("").await;
        let c = app.call("GET", "/v1/company", Some(&manager), None).await;
        assert_eq!(c.status, 200, "{}", c.raw);
        assert_eq!(c.body["rfc"], "TCM970625MB1");
        assert_eq!(c.body["mfa_required"], true);
        assert!(
            c.body["mfa_grace_until"].is_string(),
            "new companies get a grace period"
        );
        assert_eq!(c.body["session_limit"], 2);
        assert_problem(
            &app.call("GET", "/v1/company", Some(&vendor), None).await,
            403,
            "forbidden",
        );
        assert_problem(
            &app.call(
                "PATCH",
                "/v1/company",
                Some(&manager),
                Some(json!({ "name": "X" })),
            )
            .await,
            403,
            "forbidden",
        );

        let r = app
            .call("PATCH", "/v1/company", Some(&admin), Some(json!({ "legal_name": "TACOS CAMPESTRE MX SA DE CV", "tax_regime": "601", "postal_code": "06600", "session_limit": 3 })))
            .await;
        assert_eq!(r.status, 200, "{}: {}", app.db.backend, r.raw);
        assert_eq!(r.body["tax_regime"], "601");
        // Every invalid field at once, and nothing changed.
        let bad = app.call("PATCH", "/v1/company", Some(&admin), Some(json!({ "tax_regime": "999", "postal_code": "6600", "rfc": "NOPE", "session_limit": 0 }))).await;
        assert_problem(&bad, 422, "validation_failed");
        let fields: Vec<&str> = bad.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            vec!["rfc", "tax_regime", "postal_code", "session_limit"]
        );
        assert_problem(
            &app.call(
                "PATCH",
                "/v1/company",
                Some(&admin),
                Some(json!({ "colour": "blue" })),
            )
            .await,
            400,
            "malformed_request",
        );
        // null clears.
        app.call(
            "PATCH",
            "/v1/company",
            Some(&owner),
            Some(json!({ "postal_code": null })),
        )
        .await;

        let log = app
            .call("GET", "/v1/company/changes?limit=2", Some(&owner), None)
            .await;
        let items = log.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{}", log.raw);
        assert_eq!(items[0]["field"], "postal_code");
        assert_eq!(items[0]["old_value"], "06600");
        assert_eq!(items[0]["new_value"], serde_json::Value::Null);
        let next = log.body["next_cursor"].as_str().unwrap();
        let rest = app
            .call(
                "GET",
                &format!("/v1/company/changes?cursor={next}"),
                Some(&owner),
                None,
            )
            .await;
        let all: Vec<String> = items
            .iter()
            .chain(rest.body["items"].as_array().unwrap().iter())
            .map(|i| i["field"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(all.len(), 5, "{all:?}");
        for f in ["legal_name", "tax_regime", "session_limit"] {
            assert!(all.contains(&f.to_owned()), "{f} in {all:?}");
        }
        assert!(
            rest.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["actor_id"] == admin_id.as_str())
        );
        let audit = app.audit_dump().await;
        assert!(
            audit
                .iter()
                .any(|r| r.starts_with("company.config_changed|success") && r.contains("06600")),
            "{audit:?}"
        );

        // The new session limit applies to the next login: three sessions stay.
        let tokens: Vec<String> = {
            let mut t = Vec::new();
            for _ in 0..4 {
                t.push(app.token("vendor@example.com").await);
            }
            t
        };
        let live = app
            .call("GET", "/v1/sessions", Some(&tokens[3]), None)
            .await;
        assert_eq!(
            live.body["items"].as_array().unwrap().len(),
            3,
            "{}",
            live.raw
        );
    }
}

/// `If-Match` guards a change against a configuration read earlier: `GET` and `PATCH` give the
/// configuration's `ETag`; a change naming a stale one is 412 `precondition_failed` and changes
/// nothing (the owner's form, read before an Admin required MFA, cannot turn it off again), the
/// current one or `*` lands, a weak tag never matches, and a malformed header is 400.
#[actix_web::test]
async fn a_change_naming_a_stale_etag_is_refused() {
    for app in spawn_each().await {
        let b = app.db.backend;
        let [(_, owner), (_, admin), _, _] = app.company_with_roles("").await;
        // The owner's change of `body`, sent with `If-Match: tag`.
        let patch_if = |body: serde_json::Value, tag: String| {
            let (app, owner) = (&app, &owner);
            async move {
                app.call_with(
                    "PATCH",
                    "/v1/company",
                    Some(owner),
                    Some(body),
                    &[("If-Match", &tag)],
                )
                .await
            }
        };
        let etag_of = |r: &Reply| r.headers.get("etag").unwrap().to_str().unwrap().to_owned();
        let read = app.call("GET", "/v1/company", Some(&owner), None).await;
        let etag = etag_of(&read);
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

        // Meanwhile an Admin changes the policy: the owner's tag is stale.
        let changed = app
            .call(
                "PATCH",
                "/v1/company",
                Some(&admin),
                Some(json!({ "mfa_required": false })),
            )
            .await;
        assert_eq!(changed.status, 200, "{b}: {}", changed.raw);
        let fresh = etag_of(&changed);
        assert_ne!(fresh, etag, "{b}");
        let stale = patch_if(json!({ "postal_code": "06700" }), etag).await;
        assert_problem(&stale, 412, "precondition_failed");
        let weak = format!("W/{fresh}");
        let garbage = ["abc", "\"a\"b\"", ""];
        for bad in garbage {
            let r = patch_if(json!({ "postal_code": "06700" }), bad.to_string()).await;
            assert_problem(&r, 400, "malformed_request");
        }
        let r = patch_if(json!({ "postal_code": "06700" }), weak).await;
        assert_problem(&r, 412, "precondition_failed");
        let now = app.call("GET", "/v1/company", Some(&owner), None).await;
        assert_eq!(now.body["postal_code"], serde_json::Value::Null, "{b}");
        assert_eq!(etag_of(&now), fresh);

        // The current tag (in a list, or `*`) lands.
        let list = format!("\"0000000000000000\", {fresh}");
        let r = patch_if(json!({ "postal_code": "06700" }), list).await;
        assert_eq!(r.status, 200, "{b}: {}", r.raw);
        assert_eq!(r.body["postal_code"], "06700");
        let r = patch_if(json!({ "tax_regime": "601" }), "*".to_owned()).await;
        assert_eq!(r.status, 200, "{b}: {}", r.raw);
        let log = app
            .call("GET", "/v1/company/changes", Some(&owner), None)
            .await;
        let fields: Vec<&str> = log.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["tax_regime", "postal_code", "mfa_required"], "{b}");
    }
}
