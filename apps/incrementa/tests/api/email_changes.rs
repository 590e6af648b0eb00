//! A user changes their own e-mail address (`POST /v1/me/email`, `…/confirm`): step-up to ask,
//! a code at the new address to confirm, the old address warned and told; the login moves with
//! it, other sessions end, and no code is ever stored.

use serde_json::json;

use crate::helpers::*;

const NEW: &str = "duena@nuevo.mx";

/// Asks to move the account of `token` to `email`.
async fn ask(app: &TestApp, token: &str, email: &str) -> Reply {
    app.call(
        "POST",
        "/v1/me/email",
        Some(token),
        Some(json!({ "new_email": email })),
    )
    .await
}

/// Confirms with `code` from the session `token`.
async fn confirm(app: &TestApp, token: &str, code: &str) -> Reply {
    app.call(
        "POST",
        "/v1/me/email/confirm",
        Some(token),
        Some(json!({ "token": code })),
    )
    .await
}

/// The whole path on each database.
#[actix_web::test]
async fn an_owner_moves_the_account_to_a_new_address_proved_by_its_code() {
    for db in test_support::TestDb::each().await {
        let app = spawn_configured(db, |s| {
            s.outbox_interval_seconds = 1;
            s.session_limit = 5;
        })
        .await;
        let b = app.db.backend;
        let (_, owner_id) = app.signup("owner@example.com").await;
        let owner = app.token("owner@example.com").await;
        let other_session = app.token("owner@example.com").await;
        app.create_user(&owner, "vendor@example.com", "vendor")
            .await;
        let vendor = app.token("vendor@example.com").await;

        // Without a fresh step-up: refused, nothing pending.
        assert_problem(
            &ask(&app, &owner, NEW).await,
            403,
            "reauthentication_required",
        );
        app.reauth(&owner).await;
        assert_problem(
            &ask(&app, &owner, "no es correo").await,
            422,
            "validation_failed",
        );
        assert_problem(
            &ask(&app, &owner, "OWNER@example.com").await,
            422,
            "validation_failed",
        );
        assert_problem(
            &ask(&app, &owner, "vendor@example.com").await,
            409,
            "email_taken",
        );

        let asked = ask(&app, &owner, "Duena@Nuevo.MX").await;
        assert_eq!(asked.status, 202, "{b}: {}", asked.raw);
        assert_eq!(asked.body["pending_email"], NEW, "{b}");
        assert!(asked.body["expires_at"].is_string(), "{b}: {}", asked.raw);
        let again = ask(&app, &owner, "otra@nuevo.mx").await;
        assert_problem(&again, 429, "rate_limited");
        assert!(again.retry_after() > 0, "{b}");

        // The code went to the new address; the old one was warned, naming the new one.
        let outbox = app.data_dir.join("outbox");
        let codes = delivered_mails(&outbox, "Confirma tu nuevo correo", 1).await;
        assert!(
            codes[0].contains(NEW),
            "{b}: addressed to the new one: {}",
            codes[0]
        );
        assert!(!codes[0].contains("owner@example.com"), "{b}: {}", codes[0]);
        let code = mailed_code(&codes[0]);
        let warned = delivered_mails(&outbox, "Se pidió cambiar el correo", 1).await;
        assert!(
            warned[0].contains("owner@example.com"),
            "{b}: {}",
            warned[0]
        );
        assert!(warned[0].contains(NEW), "{b}: {}", warned[0]);
        // Neither the database nor the audit log holds the code.
        let stored = app.stored_bodies("email_change_code").await;
        assert_eq!(stored.len(), 1, "{b}");
        assert!(!stored[0].contains(&code), "{b}");
        assert!(!app.audit_dump().await.concat().contains(&code), "{b}");

        // Another user cannot use it, nor can a forged code; the address is unchanged.
        assert_problem(
            &confirm(&app, &vendor, &code).await,
            400,
            "email_change_invalid",
        );
        let mut forged = code.clone().into_bytes();
        forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_problem(
            &confirm(&app, &owner, &forged).await,
            400,
            "email_change_invalid",
        );
        assert_eq!(
            app.call("GET", "/v1/me", Some(&owner), None).await.body["email"],
            "owner@example.com",
            "{b}"
        );

        let done = confirm(&app, &owner, &code).await;
        assert_eq!(done.status, 200, "{b}: {}", done.raw);
        assert_eq!(done.body["email"], NEW, "{b}");
        assert_eq!(
            app.call("GET", "/v1/me", Some(&owner), None).await.body["email"],
            NEW,
            "{b}: the session that confirmed stays"
        );
        assert_problem(
            &app.call("GET", "/v1/me", Some(&other_session), None).await,
            401,
            "unauthenticated",
        );
        // The login moved with the address.
        assert_eq!(
            app.login("owner@example.com", PASSWORD).await.status,
            401,
            "{b}"
        );
        assert_eq!(app.login(NEW, PASSWORD).await.status, 201, "{b}");
        // Used once.
        assert_problem(
            &confirm(&app, &owner, &code).await,
            400,
            "email_change_invalid",
        );
        // The old address is told; a password reset now goes to the new one.
        let told = delivered_mails(&outbox, "El correo de tu cuenta", 1).await;
        assert!(told[0].contains("owner@example.com"), "{b}: {}", told[0]);
        assert_eq!(app.outbox_count("email_changed").await, 1, "{b}");

        let audit = app.audit_dump().await;
        let target = format!("user:{owner_id}");
        for action in [
            "user.email_change_requested|success|",
            "user.email_changed|success|",
        ] {
            assert_eq!(
                audit
                    .iter()
                    .filter(|r| r.starts_with(action) && r.contains(&target))
                    .count(),
                1,
                "{b}: {action} {audit:?}"
            );
        }
        let verify = app
            .call("GET", "/v1/audit/verify", Some(&owner), None)
            .await;
        assert_eq!(verify.body["ok"], true, "{b}: {}", verify.raw);
        // An Owner's new mailbox now resets the Owner's password: the company's alerts say so.
        app.assert_alert(&owner, "privileged_email_change", "medium", &target)
            .await;
    }
}
