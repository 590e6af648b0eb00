use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn the_owner_transfers_and_the_receiver_accepts_both_with_step_up() {
    for app in spawn_each().await {
        let [(owner_id, owner), (admin_id, admin), _, _] = app.company_with_roles("").await;
        let body = json!({ "to_user_id": admin_id });
        assert_problem(
            &app.call(
                "POST",
                "/v1/ownership-transfers",
                Some(&owner),
                Some(body.clone()),
            )
            .await,
            403,
            "reauthentication_required",
        );
        app.reauth(&owner).await;
        let started = app
            .call(
                "POST",
                "/v1/ownership-transfers",
                Some(&owner),
                Some(body.clone()),
            )
            .await;
        assert_eq!(started.status, 201, "{}", started.raw);
        assert_eq!(started.body["status"], "pending");
        assert_eq!(started.body["from_user_id"], owner_id.as_str());
        assert_eq!(started.body["to_user_id"], admin_id.as_str());
        assert_problem(
            &app.call("POST", "/v1/ownership-transfers", Some(&owner), Some(body))
                .await,
            409,
            "transfer_pending",
        );

        let id = started.body["id"].as_str().unwrap();
        let accept = format!("/v1/ownership-transfers/{id}/accept");
        // The Owner cannot accept its own transfer; the receiver needs step-up.
        assert_problem(
            &app.call("POST", &accept, Some(&owner), None).await,
            404,
            "not_found",
        );
        assert_problem(
            &app.call("POST", &accept, Some(&admin), None).await,
            403,
            "reauthentication_required",
        );
        app.reauth(&admin).await;
        let done = app.call("POST", &accept, Some(&admin), None).await;
        assert_eq!(done.status, 200, "{}: {}", app.db.backend, done.raw);
        assert_eq!(done.body["status"], "completed");
        assert_problem(
            &app.call("POST", &accept, Some(&admin), None).await,
            409,
            "transfer_not_pending",
        );

        // On the very next request: the old Owner is an Admin, the receiver the Owner.
        assert_eq!(
            app.call("GET", "/v1/me", Some(&owner), None).await.body["role"],
            "admin"
        );
        assert_eq!(
            app.call("GET", "/v1/me", Some(&admin), None).await.body["role"],
            "owner"
        );
        let users = app.call("GET", "/v1/users", Some(&admin), None).await;
        assert_eq!(
            users.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|u| u["role"] == "owner")
                .count(),
            1
        );
        // The old Owner can no longer transfer.
        assert_problem(
            &app.call(
                "POST",
                "/v1/ownership-transfers",
                Some(&owner),
                Some(json!({ "to_user_id": owner_id })),
            )
            .await,
            403,
            "forbidden",
        );
        let audit = app.audit_dump().await;
        assert!(
            audit
                .iter()
                .any(|r| r.starts_with("ownership.transfer_started|success"))
        );
        assert!(
            audit
                .iter()
                .any(|r| r.starts_with("ownership.transfer_completed|success"))
        );
    }
}

#[actix_web::test]
async fn either_party_cancels_and_a_cancelled_transfer_cannot_be_accepted() {
    let app = spawn_app().await;
    let [(_, owner), (admin_id, admin), (_, manager), _] = app.company_with_roles("").await;
    app.reauth(&owner).await;
    app.reauth(&admin).await;
    let started = app
        .call(
            "POST",
            "/v1/ownership-transfers",
            Some(&owner),
            Some(json!({ "to_user_id": admin_id })),
        )
        .await;
    let id = started.body["id"].as_str().unwrap().to_owned();
    // Not a party: nothing to see.
    assert_problem(
        &app.call(
            "POST",
            &format!("/v1/ownership-transfers/{id}/cancel"),
            Some(&manager),
            None,
        )
        .await,
        404,
        "not_found",
    );
    let r = app
        .call(
            "POST",
            &format!("/v1/ownership-transfers/{id}/cancel"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["status"], "cancelled");
    assert_problem(
        &app.call(
            "POST",
            &format!("/v1/ownership-transfers/{id}/accept"),
            Some(&admin),
            None,
        )
        .await,
        409,
        "transfer_not_pending",
    );
    assert_eq!(
        app.call("GET", "/v1/me", Some(&owner), None).await.body["role"],
        "owner"
    );
    // Unknown users and oneself are refused.
    let r = app
        .call(
            "POST",
            "/v1/ownership-transfers",
            Some(&owner),
            Some(json!({ "to_user_id": uuid::Uuid::new_v4() })),
        )
        .await;
    assert_problem(&r, 404, "not_found");
}

#[actix_web::test]
async fn simultaneous_accepts_complete_once() {
    let app = spawn_app().await;
    let [(_, owner), (admin_id, _), _, _] = app.company_with_roles("").await;
    app.reauth(&owner).await;
    let started = app
        .call(
            "POST",
            "/v1/ownership-transfers",
            Some(&owner),
            Some(json!({ "to_user_id": admin_id })),
        )
        .await;
    let id = started.body["id"].as_str().unwrap().to_owned();
    // The receiver accepts from two sessions at once (cap 2), ten times.
    let a1 = app.token("admin@example.com").await;
    let a2 = app.token("admin@example.com").await;
    app.reauth(&a1).await;
    app.reauth(&a2).await;
    let path = format!("/v1/ownership-transfers/{id}/accept");
    let calls = (0..10).map(|i| {
        let token = if i % 2 == 0 { a1.clone() } else { a2.clone() };
        let path = path.clone();
        let app = &app;
        async move {
            app.call("POST", &path, Some(&token), None)
                .await
                .status
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
}
