use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn a_third_login_revokes_the_first_session_at_once() {
    for app in spawn_each().await {
        app.signup("ana@example.com").await;
        let first = app.login("ana@example.com", PASSWORD).await;
        let second = app.login("ana@example.com", PASSWORD).await;
        let third = app.login("ana@example.com", PASSWORD).await;
        assert_eq!(third.status, 201, "{}", third.raw);
        assert_eq!(second.body["revoked_session_ids"], json!([]));
        assert_eq!(
            third.body["revoked_session_ids"],
            json!([first.body["session"]["id"]]),
            "{}",
            app.db.backend
        );
        let t = |r: &Reply| r.body["token"].as_str().unwrap().to_owned();
        assert_problem(
            &app.call("GET", "/v1/me", Some(&t(&first)), None).await,
            401,
            "unauthenticated",
        );
        assert_eq!(
            app.call("GET", "/v1/me", Some(&t(&second)), None)
                .await
                .status,
            200
        );
        assert_eq!(
            app.call("GET", "/v1/me", Some(&t(&third)), None)
                .await
                .status,
            200
        );

        let list = app
            .call("GET", "/v1/sessions", Some(&t(&third)), None)
            .await;
        let items = list.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{}", list.raw);
        assert_eq!(items[0]["id"], third.body["session"]["id"]);
        assert_eq!(items[0]["current"], true);
        assert_eq!(items[1]["current"], false);
        assert_eq!(items[0]["ip"], "127.0.0.1");
        assert_eq!(items[0]["user_agent"], "api-tests/1");
        assert!(!list.raw.contains(&t(&second)), "tokens are never listed");
    }
}

#[actix_web::test]
async fn logout_and_revocation_of_own_sessions_only() {
    let app = spawn_app().await;
    app.signup("ana@example.com").await;
    app.signup("bob@example.com").await;
    let a1 = app.login("ana@example.com", PASSWORD).await;
    let a2 = app.token("ana@example.com").await;
    let bob = app.token("bob@example.com").await;
    let a1_id = a1.body["session"]["id"].as_str().unwrap();
    let a1_token = a1.body["token"].as_str().unwrap();

    // Bob cannot revoke Ana's session: it does not exist for him.
    assert_problem(
        &app.call("DELETE", &format!("/v1/sessions/{a1_id}"), Some(&bob), None)
            .await,
        404,
        "not_found",
    );
    assert_eq!(
        app.call("GET", "/v1/me", Some(a1_token), None).await.status,
        200
    );

    // Ana revokes her first session from the second.
    assert_eq!(
        app.call("DELETE", &format!("/v1/sessions/{a1_id}"), Some(&a2), None)
            .await
            .status,
        204
    );
    assert_problem(
        &app.call("GET", "/v1/me", Some(a1_token), None).await,
        401,
        "unauthenticated",
    );

    // Logout ends the current session.
    assert_eq!(
        app.call("DELETE", "/v1/sessions/current", Some(&a2), None)
            .await
            .status,
        204
    );
    assert_problem(
        &app.call("GET", "/v1/me", Some(&a2), None).await,
        401,
        "unauthenticated",
    );

    let audit = app.audit_dump().await;
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with("session.logout|success")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with("session.revoked|success")),
        "{audit:?}"
    );
}

#[actix_web::test]
async fn unknown_email_and_wrong_password_get_the_same_answer_and_both_are_audited() {
    let app = spawn_app().await;
    app.signup("ana@example.com").await;
    let wrong = app.login("ana@example.com", "Wrong#Pass2026").await;
    let unknown = app.login("nadie@example.com", "Wrong#Pass2026").await;
    assert_problem(&wrong, 401, "invalid_credentials");
    assert_problem(&unknown, 401, "invalid_credentials");
    // Identical but for the request id, which is each response's own.
    let without_id = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(
        without_id(wrong.body.clone()),
        without_id(unknown.body.clone())
    );
    app.token("ana@example.com").await;

    let audit = app.audit_dump().await;
    let logins: Vec<&String> = audit
        .iter()
        .filter(|r| r.starts_with("session.login|"))
        .collect();
    assert_eq!(logins.len(), 3, "{audit:?}");
    assert!(
        logins
            .iter()
            .any(|r| r.starts_with("session.login|failure") && r.contains("unknown_email"))
    );
    assert!(
        logins
            .iter()
            .any(|r| r.starts_with("session.login|failure") && r.contains("invalid_credentials"))
    );
    assert!(
        logins
            .iter()
            .any(|r| r.starts_with("session.login|success"))
    );
    assert!(
        logins.iter().all(|r| r.contains("|127.0.0.1|api-tests/1|")),
        "{logins:?}"
    );
    assert!(
        audit
            .iter()
            .all(|r| !r.contains("Wrong#Pass2026") && !r.contains(PASSWORD)),
        "AUD-8: {audit:?}"
    );
}

#[actix_web::test]
async fn five_failures_lock_the_account_even_for_the_right_password_across_processes() {
    let app = spawn_app().await;
    app.signup("ana@example.com").await;
    for _ in 0..5 {
        assert_problem(
            &app.login("ana@example.com", "Wrong#Pass2026").await,
            401,
            "invalid_credentials",
        );
    }
    let locked = app.login("ANA@example.com", PASSWORD).await;
    assert_problem(&locked, 429, "rate_limited");
    let retry = locked.retry_after();
    assert!((1..=61).contains(&retry), "{retry}");

    // A second server process on the same database sees the same lock.
    let other = spawn_on(clone_db(&app)).await;
    assert_problem(
        &other.login("ana@example.com", PASSWORD).await,
        429,
        "rate_limited",
    );
}

fn clone_db(app: &TestApp) -> test_support::TestDb {
    test_support::TestDb::existing(&app.db.url, app.db.backend)
}

#[actix_web::test]
async fn password_change_keeps_this_session_and_revokes_the_others() {
    for app in spawn_each().await {
        app.signup("ana@example.com").await;
        let other = app.token("ana@example.com").await;
        let mine = app.token("ana@example.com").await;
        let body = json!({ "current_password": PASSWORD, "new_password": "Nuevo#Secreto2026", "new_password_confirmation": "Nuevo#Secreto2026" });
        let r = app
            .call("PUT", "/v1/me/password", Some(&mine), Some(body))
            .await;
        assert_eq!(r.status, 204, "{}: {}", app.db.backend, r.raw);
        assert_eq!(
            app.call("GET", "/v1/me", Some(&mine), None).await.status,
            200
        );
        assert_problem(
            &app.call("GET", "/v1/me", Some(&other), None).await,
            401,
            "unauthenticated",
        );
        assert_problem(
            &app.login("ana@example.com", PASSWORD).await,
            401,
            "invalid_credentials",
        );
        let relogin = app.login("ana@example.com", "Nuevo#Secreto2026").await;
        assert_eq!(relogin.status, 201);
        let other = relogin.body["token"].as_str().unwrap().to_owned();

        let bad = json!({ "current_password": "nope", "new_password": "Otro#Secreto2026", "new_password_confirmation": "Otro#Secreto2026" });
        assert_problem(
            &app.call("PUT", "/v1/me/password", Some(&mine), Some(bad))
                .await,
            422,
            "current_password_invalid",
        );
        let weak = json!({ "current_password": "Nuevo#Secreto2026", "new_password": "short", "new_password_confirmation": "short" });
        let r = app
            .call("PUT", "/v1/me/password", Some(&mine), Some(weak))
            .await;
        assert_problem(&r, 422, "password_policy");
        // The current password again is no change: refused, and the other sessions live on.
        let same = json!({ "current_password": "Nuevo#Secreto2026", "new_password": "Nuevo#Secreto2026", "new_password_confirmation": "Nuevo#Secreto2026" });
        let r = app
            .call("PUT", "/v1/me/password", Some(&mine), Some(same))
            .await;
        assert_problem(&r, 422, "validation_failed");
        assert_eq!(
            r.body["errors"],
            json!([{ "field": "new_password", "code": "same_as_current" }])
        );
        assert_eq!(
            app.call("GET", "/v1/me", Some(&other), None).await.status,
            200
        );
    }
}

/// PWD-3: a hash made with weaker parameters (an imported user, an older release) is replaced at
/// the next successful login.
#[actix_web::test]
async fn weaker_password_hashes_are_upgraded_at_the_next_login() {
    use sea_orm::{ConnectionTrait, Statement};
    for app in spawn_each().await {
        app.signup("ana@example.com").await;
        let weak = crypto::legacy_hash(
            &accounts::Password::new(PASSWORD),
            crypto::HashParams {
                m_kib: 4096,
                t: 1,
                p: 1,
            },
        )
        .unwrap();
        let db = app.db.connect().await;
        let backend = db.get_database_backend();
        let set = Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DbBackend::Postgres => {
                    "UPDATE users SET password_hash = $1 WHERE email = $2"
                }
                _ => "UPDATE users SET password_hash = ? WHERE email = ?",
            },
            [weak.as_str().into(), "ana@example.com".into()],
        );
        db.execute_raw(set).await.unwrap();
        let stored = || async {
            let row = db
                .query_one_raw(Statement::from_string(
                    backend,
                    "SELECT password_hash FROM users WHERE email = 'ana@example.com'".to_owned(),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<String>(0).unwrap()
        };
        assert!(stored().await.contains("m=4096,t=1,p=1"));
        app.token("ana@example.com").await;
        let upgraded = stored().await;
        assert!(
            upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}: {upgraded}",
            app.db.backend
        );
        // The new hash still verifies the same password.
        app.token("ana@example.com").await;
        let audit = app.audit_dump().await;
        assert!(
            audit
                .iter()
                .any(|r| r.starts_with("user.password_changed|success")
                    && r.contains("hash_parameters_upgraded")),
            "{audit:?}"
        );
    }
}

#[actix_web::test]
async fn a_flood_of_unknown_tokens_gets_429_while_live_sessions_keep_working() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.token_failure_limit_per_ip = 5;
    })
    .await;
    app.signup("tokens@example.com").await;
    let token = app.token("tokens@example.com").await;
    assert_eq!(
        app.call("GET", "/v1/me", Some(&token), None).await.status,
        200
    );
    for n in 0..5 {
        let r = app
            .call("GET", "/v1/me", Some(&format!("made-up-token-{n}")), None)
            .await;
        assert_eq!(r.status, 401, "{}", r.raw);
    }
    let r = app
        .call("GET", "/v1/me", Some("made-up-token-5"), None)
        .await;
    assert_eq!(r.status, 429, "{}", r.raw);
    assert_eq!(r.body["code"], "rate_limited");
    assert!(
        r.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let wait = r.retry_after();
    assert!(wait > 3500, "{wait}");
    // The live session is in the cache and keeps working.
    assert_eq!(
        app.call("GET", "/v1/me", Some(&token), None).await.status,
        200
    );
    // Logins are not bearer tokens: the owner can still log in.
    assert_eq!(app.login("tokens@example.com", PASSWORD).await.status, 201);
}

#[actix_web::test]
async fn with_per_ip_limits_off_unknown_tokens_are_never_429() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.token_failure_limit_per_ip = 2;
        s.rate_limit_per_ip = 0;
    })
    .await;
    for n in 0..6 {
        let r = app
            .call("GET", "/v1/me", Some(&format!("made-up-token-{n}")), None)
            .await;
        assert_eq!(r.status, 401, "{}", r.raw);
    }
}
