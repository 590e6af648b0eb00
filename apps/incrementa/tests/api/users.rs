use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn only_owner_and_admin_manage_users() {
    let app = spawn_app().await;
    app.signup("owner@example.com").await;
    let owner = app.token("owner@example.com").await;
    app.create_user(&owner, "admin@example.com", "admin").await;
    app.create_user(&owner, "manager@example.com", "manager")
        .await;
    app.create_user(&owner, "vendor@example.com", "vendor")
        .await;
    let admin = app.token("admin@example.com").await;
    let manager = app.token("manager@example.com").await;
    let vendor = app.token("vendor@example.com").await;

    // Admin creates; Manager and Vendor may not.
    app.create_user(&admin, "vendor2@example.com", "vendor")
        .await;
    let body = json!({ "email": "x@example.com", "name": "X", "role": "vendor", "password": PASSWORD, "password_confirmation": PASSWORD });
    assert_problem(
        &app.call("POST", "/v1/users", Some(&manager), Some(body.clone()))
            .await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.call("POST", "/v1/users", Some(&vendor), Some(body))
            .await,
        403,
        "forbidden",
    );

    // Nobody creates a second owner.
    let owner_body = json!({ "email": "o2@example.com", "name": "X", "role": "owner", "password": PASSWORD, "password_confirmation": PASSWORD });
    assert_problem(
        &app.call("POST", "/v1/users", Some(&owner), Some(owner_body))
            .await,
        403,
        "forbidden",
    );

    // Reading users: Owner and Admin yes; Manager and Vendor no (issue 2).
    for t in [&owner, &admin] {
        let list = app.call("GET", "/v1/users", Some(t), None).await;
        assert_eq!(list.status, 200, "{}", list.raw);
        assert_eq!(list.body["items"].as_array().unwrap().len(), 5);
        assert!(
            !list.raw.contains("argon2"),
            "hashes never leave the server"
        );
    }
    // In pages of two, oldest first: the same five as one page, the owner first.
    let emails = |r: &Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_owned())
            .collect()
    };
    let whole = app.call("GET", "/v1/users", Some(&owner), None).await;
    assert!(whole.body["next_cursor"].is_null(), "{}", whole.raw);
    assert_eq!(emails(&whole)[0], "owner@example.com");
    let mut paged = Vec::new();
    let mut path = "/v1/users?limit=2".to_owned();
    for page in 0.. {
        assert!(page < 3, "more pages than five users need");
        let r = app.call("GET", &path, Some(&owner), None).await;
        assert_eq!(r.status, 200, "{}", r.raw);
        paged.extend(emails(&r));
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/users?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, emails(&whole));
    for bad in ["cursor=abc", "limit=0", "limit=201"] {
        assert_problem(
            &app.call("GET", &format!("/v1/users?{bad}"), Some(&owner), None)
                .await,
            400,
            "malformed_request",
        );
    }
    for t in [&manager, &vendor] {
        assert_problem(
            &app.call("GET", "/v1/users", Some(t), None).await,
            403,
            "forbidden",
        );
        let me = app.call("GET", "/v1/me", Some(t), None).await;
        let id = me.body["id"].as_str().unwrap().to_owned();
        assert_problem(
            &app.call("GET", &format!("/v1/users/{id}"), Some(t), None)
                .await,
            403,
            "forbidden",
        );
        let patch = json!({ "name": "Me" });
        assert_problem(
            &app.call("PATCH", &format!("/v1/users/{id}"), Some(t), Some(patch))
                .await,
            403,
            "forbidden",
        );
    }

    let audit = app.audit_dump().await;
    assert!(
        audit
            .iter()
            .filter(|r| r.starts_with("authorization.denied|denied"))
            .count()
            >= 3,
        "{audit:?}"
    );
}

#[actix_web::test]
async fn a_deactivated_user_is_rejected_at_once_and_cannot_log_in() {
    for app in spawn_each().await {
        app.signup("owner@example.com").await;
        let owner = app.token("owner@example.com").await;
        let vendor_id = app
            .create_user(&owner, "vendor@example.com", "vendor")
            .await;
        let vendor = app.token("vendor@example.com").await;
        let vendor2 = app.token("vendor@example.com").await;
        assert_eq!(
            app.call("GET", "/v1/me", Some(&vendor), None).await.status,
            200
        );

        let r = app
            .call(
                "PATCH",
                &format!("/v1/users/{vendor_id}"),
                Some(&owner),
                Some(json!({ "active": false })),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(r.body["active"], false);
        for t in [&vendor, &vendor2] {
            assert_problem(
                &app.call("GET", "/v1/me", Some(t), None).await,
                401,
                "unauthenticated",
            );
        }
        assert_problem(
            &app.login("vendor@example.com", PASSWORD).await,
            401,
            "invalid_credentials",
        );

        let r = app
            .call(
                "PATCH",
                &format!("/v1/users/{vendor_id}"),
                Some(&owner),
                Some(json!({ "active": true, "name": "Vendedora" })),
            )
            .await;
        assert_eq!(r.body["active"], true, "{}", r.raw);
        assert_eq!(r.body["name"], "Vendedora");
        app.token("vendor@example.com").await;
        let audit = app.audit_dump().await;
        for action in [
            "user.deactivated|success",
            "user.activated|success",
            "user.updated|success",
            "session.revoked|success",
        ] {
            assert!(
                audit.iter().any(|r| r.starts_with(action)),
                "{action} missing: {audit:?}"
            );
        }
    }
}

#[actix_web::test]
async fn nobody_deactivates_the_owner() {
    let app = spawn_app().await;
    let (_, owner_id) = app.signup("owner@example.com").await;
    let owner = app.token("owner@example.com").await;
    app.create_user(&owner, "admin@example.com", "admin").await;
    let admin = app.token("admin@example.com").await;
    for t in [&admin, &owner] {
        let r = app
            .call(
                "PATCH",
                &format!("/v1/users/{owner_id}"),
                Some(t),
                Some(json!({ "active": false })),
            )
            .await;
        assert_problem(&r, 403, "forbidden");
    }
    assert_eq!(
        app.call("GET", "/v1/me", Some(&owner), None).await.status,
        200
    );
}

#[actix_web::test]
async fn another_companys_users_answer_404_and_stay_unchanged() {
    for app in spawn_each().await {
        app.signup("a@example.com").await;
        app.signup("b@example.com").await;
        let a = app.token("a@example.com").await;
        let b = app.token("b@example.com").await;
        let a_vendor = app.create_user(&a, "va@example.com", "vendor").await;
        let r = app
            .call("GET", &format!("/v1/users/{a_vendor}"), Some(&b), None)
            .await;
        assert_problem(&r, 404, "not_found");
        let r = app
            .call(
                "PATCH",
                &format!("/v1/users/{a_vendor}"),
                Some(&b),
                Some(json!({ "active": false, "name": "Hacked" })),
            )
            .await;
        assert_problem(&r, 404, "not_found");
        let unknown = uuid::Uuid::new_v4();
        assert_problem(
            &app.call("GET", &format!("/v1/users/{unknown}"), Some(&b), None)
                .await,
            404,
            "not_found",
        );
        let still = app
            .call("GET", &format!("/v1/users/{a_vendor}"), Some(&a), None)
            .await;
        assert_eq!(still.body["active"], true, "{}", app.db.backend);
        assert_eq!(still.body["name"], "Vendedor");
        assert_eq!(
            app.call("GET", "/v1/users", Some(&b), None).await.body["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}

/// Break glass (`incrementa users reset-password`): an Owner locked out of their account gets a
/// new random password from the operator. The old password and every session stop working at
/// once, the new one logs in (the lock from failed logins lifted) to a session that may only
/// change it until it is changed, the change is on the
/// company's chain as the operator's (never
/// the password), the Owner is mailed, and the chain still verifies. An unknown address or a
/// malformed one changes nothing and says so.
#[actix_web::test]
async fn the_operator_resets_a_locked_out_owners_password() {
    for db in test_support::TestDb::each().await {
        // No session cache: the command runs in another process, and on SQLite this one would
        // otherwise serve the revoked session for up to its cache time.
        let app = spawn_configured(db, |s| s.session_cache_ms = 0).await;
        let b = app.db.backend;
        let (_, owner_id) = app.signup("owner@example.com").await;
        let before = app.token("owner@example.com").await;
        let cli = |args: &[&str]| app.command(args);
        let audit_before = app.audit_dump().await.len();
        for (email, why) in [
            (
                "nobody@example.com",
                "no user logs in with that e-mail address",
            ),
            ("not an address", "not an e-mail address"),
        ] {
            let (ok, out, err) = cli(&["users", "reset-password", email]);
            assert!(!ok && out.is_empty() && err.contains(why), "{b}: {err}");
        }
        assert_eq!(app.audit_dump().await.len(), audit_before, "{b}");

        // The Owner tried passwords until the account locked (OPS-4).
        for _ in 0..5 {
            app.login("owner@example.com", "Olvidada#2026").await;
        }
        let locked = app.login("owner@example.com", "Olvidada#2026").await;
        assert_eq!(locked.status, 429, "{b}: {}", locked.raw);

        let (ok, out, err) = cli(&["users", "reset-password", "Owner@Example.com"]);
        assert!(ok, "{b}: {err}");
        assert!(
            err.contains("every session of theirs was revoked"),
            "{b}: {err}"
        );
        let password = out.trim().to_owned();
        assert_eq!(password.chars().count(), 20, "{b}: {out}");
        assert_ne!(password, PASSWORD, "{b}");

        assert_eq!(app.outbox_count("password_changed").await, 1, "{b}");
        assert_problem(
            &app.call("GET", "/v1/me", Some(&before), None).await,
            401,
            "unauthenticated",
        );
        assert_eq!(
            app.login("owner@example.com", PASSWORD).await.status,
            401,
            "{b}"
        );
        let after = app.login("owner@example.com", &password).await;
        assert_eq!(after.status, 201, "{b}: {}", after.raw);
        // Someone else knows that password: until the Owner changes it, the session may only
        // change it (and see itself).
        assert_eq!(
            after.body["password_change_required"], true,
            "{b}: {}",
            after.raw
        );
        let token = after.body["token"].as_str().unwrap();
        let me = app.call("GET", "/v1/me", Some(token), None).await;
        assert_eq!(me.body["password_change_required"], true, "{b}: {}", me.raw);
        assert_problem(
            &app.call("GET", "/v1/users", Some(token), None).await,
            403,
            "password_change_required",
        );
        let changed = app
            .call(
                "PUT",
                "/v1/me/password",
                Some(token),
                Some(json!({
                    "current_password": password,
                    "new_password": "Nueva#Clave2026",
                    "new_password_confirmation": "Nueva#Clave2026"
                })),
            )
            .await;
        assert_eq!(changed.status, 204, "{b}: {}", changed.raw);
        let me = app.call("GET", "/v1/me", Some(token), None).await;
        assert!(
            me.body.get("password_change_required").is_none(),
            "{b}: {}",
            me.raw
        );
        assert_eq!(
            app.call("GET", "/v1/users", Some(token), None).await.status,
            200,
            "{b}"
        );
        let relogin = app.login("owner@example.com", "Nueva#Clave2026").await;
        assert_eq!(relogin.status, 201, "{b}");
        assert!(
            relogin.body.get("password_change_required").is_none(),
            "{b}"
        );

        let audit = app.audit_dump().await;
        let target = format!("user:{owner_id}");
        assert!(
            audit.iter().any(|r| r
                .starts_with(&format!("user.password_changed|success|{target}|"))
                && r.contains("\"operator\"")),
            "{b}: {audit:?}"
        );
        assert!(
            audit
                .iter()
                .any(|r| r.starts_with("session.revoked|success|session:")
                    && r.contains("password_changed")),
            "{b}"
        );
        assert!(!audit.iter().any(|r| r.contains(&password)), "{b}");

        // The company sees it among its alerts, naming the user.
        app.assert_alert(token, "operator_password_reset", "high", &target)
            .await;
        let (ok, verified, err) = cli(&["audit", "verify"]);
        assert!(ok && verified.contains("verified"), "{b}: {verified}{err}");
    }
}

/// `If-Match` on a user: `GET /v1/users/{id}` and every change answer the user's `ETag`; an
/// Admin's form read before the Owner deactivated the user cannot reactivate it (412, nothing
/// changed), nor change its role or permissions on that read; the current tag lands.
#[actix_web::test]
async fn a_user_change_naming_a_stale_etag_is_refused() {
    for app in spawn_each().await {
        let b = app.db.backend;
        let [(_, owner), (_, admin), _, (vendor_id, _)] = app.company_with_roles("").await;
        let path = format!("/v1/users/{vendor_id}");
        let etag_of = |r: &Reply| r.headers.get("etag").unwrap().to_str().unwrap().to_owned();
        // The Admin's `method` of `body` to `to`, sent with `If-Match: tag`.
        let as_admin_if =
            |method: &'static str, to: String, body: serde_json::Value, tag: String| {
                let (app, admin) = (&app, &admin);
                async move {
                    app.call_with(method, &to, Some(admin), Some(body), &[("If-Match", &tag)])
                        .await
                }
            };
        let read = app.call("GET", &path, Some(&admin), None).await;
        let stale = etag_of(&read);

        let off = app
            .call(
                "PATCH",
                &path,
                Some(&owner),
                Some(json!({ "active": false })),
            )
            .await;
        assert_eq!(off.status, 200, "{b}: {}", off.raw);
        let fresh = etag_of(&off);
        assert_ne!(fresh, stale, "{b}");

        app.reauth(&admin).await;
        let on = as_admin_if(
            "PATCH",
            path.clone(),
            json!({ "active": true }),
            stale.clone(),
        )
        .await;
        assert_problem(&on, 412, "precondition_failed");
        let role = as_admin_if(
            "PUT",
            format!("{path}/role"),
            json!({ "role": "manager" }),
            stale.clone(),
        )
        .await;
        assert_problem(&role, 412, "precondition_failed");
        let grant = as_admin_if(
            "PUT",
            format!("{path}/permissions"),
            json!({ "grant": ["users.read"] }),
            stale.clone(),
        )
        .await;
        assert_problem(&grant, 412, "precondition_failed");
        let now = app.call("GET", &path, Some(&admin), None).await;
        assert_eq!(
            (
                &now.body["active"],
                &now.body["role"],
                etag_of(&now) == fresh
            ),
            (&json!(false), &json!("vendor"), true),
            "{b}: {}",
            now.raw
        );

        // On the current read it lands, and answers the next tag.
        let named = as_admin_if(
            "PATCH",
            path.clone(),
            json!({ "name": "Vendedora Renombrada" }),
            fresh.clone(),
        )
        .await;
        assert_eq!(named.status, 200, "{b}: {}", named.raw);
        assert_ne!(etag_of(&named), fresh, "{b}");
        let bad = as_admin_if(
            "PATCH",
            path.clone(),
            json!({ "name": "Otra" }),
            "sin comillas".to_owned(),
        )
        .await;
        assert_problem(&bad, 400, "malformed_request");
    }
}
