use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn critical_changes_need_a_fresh_reauthentication_and_a_login_does_not_count() {
    let (app, clock) = spawn_with_clock().await;
    let [_, (_, admin), _, (vendor_id, _)] = app.company_with_roles("").await;
    let path = format!("/v1/users/{vendor_id}/role");
    let body = json!({ "role": "manager" });
    // A fresh login is not a re-authentication.
    assert_problem(
        &app.call("PUT", &path, Some(&admin), Some(body.clone()))
            .await,
        403,
        "reauthentication_required",
    );
    // A wrong password does not open the window and does not end the session.
    let wrong = app
        .call(
            "POST",
            "/v1/sessions/current/reauthenticate",
            Some(&admin),
            Some(json!({ "password": "Nope#2026xx" })),
        )
        .await;
    assert_problem(&wrong, 403, "reauthentication_failed");
    assert_eq!(
        app.call("GET", "/v1/me", Some(&admin), None).await.status,
        200
    );
    assert_problem(
        &app.call("PUT", &path, Some(&admin), Some(body.clone()))
            .await,
        403,
        "reauthentication_required",
    );

    let ok = app
        .call(
            "POST",
            "/v1/sessions/current/reauthenticate",
            Some(&admin),
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.raw);
    assert!(ok.body["reauthenticated_until"].is_string());
    let r = app
        .call("PUT", &path, Some(&admin), Some(body.clone()))
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["role"], "manager");

    // Five minutes later the window is closed again.
    clock.advance(chrono::Duration::minutes(5));
    assert_problem(
        &app.call(
            "PUT",
            &path,
            Some(&admin),
            Some(json!({ "role": "vendor" })),
        )
        .await,
        403,
        "reauthentication_required",
    );
    let audit = app.audit_dump().await;
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with("session.reauthenticated|failure")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with("session.reauthenticated|success"))
    );
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with("user.role_changed|success")
                && r.contains("\"from\":\"vendor\"")
                && r.contains("\"to\":\"manager\""))
    );
}

#[actix_web::test]
async fn role_and_permission_changes_apply_on_the_very_next_request() {
    for app in spawn_each().await {
        let [(_, owner), _, _, (vendor_id, vendor)] = app.company_with_roles("").await;
        app.reauth(&owner).await;
        assert_problem(
            &app.call("GET", "/v1/users", Some(&vendor), None).await,
            403,
            "forbidden",
        );

        // Grant users.read: the vendor's next request sees it.
        let r = app
            .call(
                "PUT",
                &format!("/v1/users/{vendor_id}/permissions"),
                Some(&owner),
                Some(json!({ "grant": ["users.read"] })),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.raw);
        assert!(
            r.body["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "users.read")
        );
        assert_eq!(
            app.call("GET", "/v1/users", Some(&vendor), None)
                .await
                .status,
            200,
            "{}",
            app.db.backend
        );

        // Revoke it again, and a default one too.
        let r = app
            .call(
                "PUT",
                &format!("/v1/users/{vendor_id}/permissions"),
                Some(&owner),
                Some(json!({ "revoke": ["users.read", "customers.write.assigned"] })),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.raw);
        let me = app.call("GET", "/v1/me", Some(&vendor), None).await;
        assert_eq!(
            me.body["permissions"],
            json!(["customers.read.assigned"]),
            "{}",
            me.raw
        );
        assert_problem(
            &app.call("GET", "/v1/users", Some(&vendor), None).await,
            403,
            "forbidden",
        );

        // A role change too; the explicit revocation of users.read outlives it.
        app.call(
            "PUT",
            &format!("/v1/users/{vendor_id}/role"),
            Some(&owner),
            Some(json!({ "role": "admin" })),
        )
        .await;
        let me = app.call("GET", "/v1/me", Some(&vendor), None).await;
        assert_eq!(me.body["role"], "admin");
        let perms = me.body["permissions"].as_array().unwrap();
        assert!(
            perms.iter().any(|p| p == "users.manage") && !perms.iter().any(|p| p == "users.read"),
            "{}",
            me.raw
        );
        assert_problem(
            &app.call("GET", "/v1/users", Some(&vendor), None).await,
            403,
            "forbidden",
        );
        app.call(
            "PUT",
            &format!("/v1/users/{vendor_id}/permissions"),
            Some(&owner),
            Some(json!({ "grant": ["users.read"] })),
        )
        .await;
        assert_eq!(
            app.call("GET", "/v1/users", Some(&vendor), None)
                .await
                .status,
            200
        );
    }
}

#[actix_web::test]
async fn no_escalation() {
    let app = spawn_app().await;
    let [
        (owner_id, owner),
        (admin_id, admin),
        (manager_id, manager),
        (vendor_id, _),
    ] = app.company_with_roles("").await;
    for t in [&owner, &admin, &manager] {
        app.reauth(t).await;
    }
    let role = |id: &str| format!("/v1/users/{id}/role");
    let perms = |id: &str| format!("/v1/users/{id}/permissions");
    // Nobody assigns `owner`; nobody changes their own role; Admin never touches the Owner.
    assert_problem(
        &app.call(
            "PUT",
            &role(&vendor_id),
            Some(&owner),
            Some(json!({ "role": "owner" })),
        )
        .await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.call(
            "PUT",
            &role(&admin_id),
            Some(&admin),
            Some(json!({ "role": "vendor" })),
        )
        .await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.call(
            "PUT",
            &role(&owner_id),
            Some(&admin),
            Some(json!({ "role": "vendor" })),
        )
        .await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.call(
            "PATCH",
            &format!("/v1/users/{owner_id}"),
            Some(&admin),
            Some(json!({ "active": false })),
        )
        .await,
        403,
        "forbidden",
    );
    // Nobody grants what they do not hold, or to themselves.
    assert_problem(
        &app.call(
            "PUT",
            &perms(&vendor_id),
            Some(&admin),
            Some(json!({ "grant": ["ownership.transfer"] })),
        )
        .await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.call(
            "PUT",
            &perms(&admin_id),
            Some(&admin),
            Some(json!({ "grant": ["audit.read"] })),
        )
        .await,
        403,
        "forbidden",
    );
    // A manager is not an administrator, whatever it asks.
    assert_problem(
        &app.call(
            "PUT",
            &role(&vendor_id),
            Some(&manager),
            Some(json!({ "role": "manager" })),
        )
        .await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.call(
            "PUT",
            &perms(&manager_id),
            Some(&manager),
            Some(json!({ "grant": ["users.manage"] })),
        )
        .await,
        403,
        "forbidden",
    );
    // Bad input is a 422 with the field named.
    let r = app
        .call(
            "PUT",
            &perms(&vendor_id),
            Some(&owner),
            Some(json!({ "grant": ["users.delete"] })),
        )
        .await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "grant");
    let r = app
        .call(
            "PUT",
            &perms(&vendor_id),
            Some(&owner),
            Some(json!({ "grant": ["users.read"], "revoke": ["users.read"] })),
        )
        .await;
    assert_problem(&r, 422, "validation_failed");
    assert_problem(
        &app.call(
            "PUT",
            &role(&vendor_id),
            Some(&owner),
            Some(json!({ "role": "root" })),
        )
        .await,
        422,
        "validation_failed",
    );
    // Admin may promote a vendor up to admin, not beyond.
    assert_eq!(
        app.call(
            "PUT",
            &role(&vendor_id),
            Some(&admin),
            Some(json!({ "role": "admin" }))
        )
        .await
        .status,
        200
    );
    // Nothing above changed the Owner.
    let users = app.call("GET", "/v1/users", Some(&owner), None).await;
    let owners: Vec<_> = users.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "owner")
        .collect();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["id"], owner_id.as_str());
    assert_eq!(owners[0]["active"], true);
}
