//! Self-service password reset (`POST /v1/password-resets`, `…/confirm`): the e-mailed code sets
//! a new password once, revokes every session and lifts a login lock; the code is never stored.

use std::path::Path;

use serde_json::json;

use crate::helpers::*;

const NEW: &str = "Recuperada#2026";

/// The front end's reset page the e-mail links to.
const PAGE: &str = "https://app.example.mx/restablecer";

/// Waits for the outbox directory to hold `n` reset e-mails and returns their texts.
async fn reset_mails(dir: &Path, n: usize) -> Vec<String> {
    delivered_mails(dir, "restablecimiento", n).await
}

/// Confirms a reset with `code` and `password` (twice).
async fn confirm(app: &TestApp, code: &str, password: &str) -> Reply {
    let body =
        json!({ "token": code, "new_password": password, "new_password_confirmation": password });
    app.call("POST", "/v1/password-resets/confirm", None, Some(body))
        .await
}

/// Asks for a reset e-mail for `email`.
async fn ask(app: &TestApp, email: &str) -> Reply {
    app.call(
        "POST",
        "/v1/password-resets",
        None,
        Some(json!({ "email": email })),
    )
    .await
}

/// The whole path on each database: a locked-out Owner asks, gets one e-mail (asking again at
/// once sends nothing, unknown addresses get the same answer) with the code and a link to the
/// reset page carrying it, the code sets a new password,
/// which revokes the old session and lifts the lock; the code then stops working, the stored
/// message never held it, and the chain verifies with both records on it.
#[actix_web::test]
async fn a_forgotten_password_is_reset_with_the_emailed_code() {
    for db in test_support::TestDb::each().await {
        let app = spawn_configured(db, |s| {
            s.outbox_interval_seconds = 1;
            s.reset_url = Some(PAGE.to_owned());
        })
        .await;
        let b = app.db.backend;
        let (_, owner_id) = app.signup("owner@example.com").await;
        let before = app.token("owner@example.com").await;
        for _ in 0..5 {
            app.login("owner@example.com", "Olvidada#2026").await;
        }
        let locked = app.login("owner@example.com", PASSWORD).await;
        assert_eq!(locked.status, 429, "{b}: {}", locked.raw);

        for email in [
            "Owner@Example.com",
            "nadie@example.com",
            "owner@example.com",
        ] {
            let r = ask(&app, email).await;
            assert_eq!(r.status, 202, "{b} {email}: {}", r.raw);
            assert!(r.raw.is_empty(), "{b}: the answer says nothing: {}", r.raw);
        }
        assert_problem(&ask(&app, "not an address").await, 422, "validation_failed");
        let mails = reset_mails(&app.data_dir.join("outbox"), 1).await;
        let code = mailed_code(&mails[0]);
        assert!(mails[0].contains("owner@example.com"), "{b}: {}", mails[0]);
        // The front end's page is linked with the same code in the fragment.
        assert!(
            mails[0].contains(&format!("\n{PAGE}#token={code}")),
            "{b}: {}",
            mails[0]
        );
        // What the database keeps is the placeholders, never the code or the link.
        let stored = app.stored_bodies("password_reset").await;
        assert_eq!(stored.len(), 1, "{b}: one e-mail for three requests");
        assert!(stored[0].contains(notify::RESET_TOKEN_PLACEHOLDER), "{b}");
        assert!(stored[0].contains(notify::RESET_LINK_PLACEHOLDER), "{b}");
        assert!(
            !stored[0].contains(&code) && !stored[0].contains(PAGE),
            "{b}"
        );
        assert!(!app.audit_dump().await.concat().contains(&code), "{b}");

        // A wrong code, and a password the policy refuses (the code stays good).
        let mut forged = code.clone().into_bytes();
        forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_problem(
            &confirm(&app, &forged, NEW).await,
            400,
            "reset_token_invalid",
        );
        let weak = confirm(&app, &code, "corta").await;
        assert_problem(&weak, 422, "password_policy");

        let done = confirm(&app, &code, NEW).await;
        assert_eq!(done.status, 204, "{b}: {}", done.raw);
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
        let after = app.login("owner@example.com", NEW).await;
        assert_eq!(after.status, 201, "{b}: the lock is lifted: {}", after.raw);
        assert!(after.body.get("password_change_required").is_none(), "{b}");
        let token = after.body["token"].as_str().unwrap().to_owned();

        // Used once: the same code again is refused and changes nothing.
        assert_problem(
            &confirm(&app, &code, "Otra#Distinta2026").await,
            400,
            "reset_token_invalid",
        );
        assert_eq!(app.login("owner@example.com", NEW).await.status, 201, "{b}");

        let audit = app.audit_dump().await;
        let target = format!("user:{owner_id}");
        let requested: Vec<&String> = audit
            .iter()
            .filter(|r| {
                r.starts_with("user.password_reset_requested|success|") && r.contains(&target)
            })
            .collect();
        assert_eq!(requested.len(), 1, "{b}: {audit:?}");
        let changed: Vec<&String> = audit
            .iter()
            .filter(|r| r.starts_with("user.password_changed|success|") && r.contains(&target))
            .collect();
        assert_eq!(changed.len(), 1, "{b}: {audit:?}");
        assert!(changed[0].contains("password_reset"), "{b}: {}", changed[0]);
        assert!(!audit.concat().contains(NEW), "{b}");
        assert_eq!(app.outbox_count("password_changed").await, 1, "{b}");
        let verify = app
            .call("GET", "/v1/audit/verify", Some(&token), None)
            .await;
        assert_eq!(verify.status, 200, "{b}: {}", verify.raw);
        assert_eq!(verify.body["ok"], true, "{b}: {}", verify.raw);
        // An Owner's password reset by mail is among the company's alerts: whoever reads that
        // mailbox holds the account.
        app.assert_alert(&token, "privileged_password_reset", "medium", &target)
            .await;
    }
}

/// Requests and failed codes count against the client's limit (the sign-up limit), and a
/// deactivated user gets no e-mail.
#[actix_web::test]
async fn reset_requests_are_limited_and_deactivated_users_get_nothing() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.signup_limit_per_ip = 4;
        s.outbox_interval_seconds = 1;
    })
    .await;
    app.signup("owner@example.com").await;
    let owner = app.token("owner@example.com").await;
    let vendor = app
        .create_user(&owner, "vendor@example.com", "vendor")
        .await;
    let off = app
        .call(
            "PATCH",
            &format!("/v1/users/{vendor}"),
            Some(&owner),
            Some(json!({ "active": false })),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.raw);
    // Two requests and two wrong codes use the four; the fifth attempt waits.
    for _ in 0..2 {
        let r = ask(&app, "vendor@example.com").await;
        assert_eq!(r.status, 202, "{}", r.raw);
    }
    for _ in 0..2 {
        let r = confirm(&app, "no-such-code", NEW).await;
        assert_problem(&r, 400, "reset_token_invalid");
    }
    let limited = ask(&app, "owner@example.com").await;
    assert_problem(&limited, 429, "rate_limited");
    assert!(limited.retry_after() > 0);
    assert_eq!(app.outbox_count("password_reset").await, 0);
}
