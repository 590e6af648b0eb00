//! A user changes their own e-mail address (`POST /v1/me/email`, `…/confirm`): step-up to ask,
//! a code at the new address to confirm, the old address warned and told; the login moves with
//! it, other sessions end, and no code is ever stored. The old address can undo the move
//! (`POST /v1/email-changes/revert`) with the code in its notice.

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
        let status = app.call("GET", "/v1/me/email", Some(&owner), None).await;
        assert_eq!(status.status, 200, "{b}: {}", status.raw);
        assert_eq!(status.body["email"], "owner@example.com", "{b}");
        assert_eq!(status.body["pending_email"], NEW, "{b}");
        // The same instant (PostgreSQL keeps microseconds).
        let instant = |v: &serde_json::Value| {
            chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
                .unwrap()
                .timestamp_micros()
        };
        assert_eq!(
            instant(&status.body["expires_at"]),
            instant(&asked.body["expires_at"]),
            "{b}"
        );
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
        let status = app.call("GET", "/v1/me/email", Some(&owner), None).await;
        assert_eq!(
            (
                &status.body["email"],
                &status.body["pending_email"],
                &status.body["expires_at"]
            ),
            (&json!(NEW), &json!(null), &json!(null)),
            "{b}: {}",
            status.raw
        );
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
        assert_eq!(app.outbox_count("email_changed_undo").await, 1, "{b}");

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

/// Whoever holds an Owner's password and step-up moves the account to their mailbox and asks
/// for a reset there; the old address undoes it with the code in its notice: the account is
/// back, nobody's password works and every session ended, the mover's reset and authenticator
/// are gone, both
/// addresses are told, the company gets a high alert, and a reset to the old address lets the
/// Owner in again. The code is never stored, works once, and wrong codes run into the limit.
#[actix_web::test]
async fn the_old_address_takes_a_moved_account_back_with_the_code_in_its_notice() {
    const MOVER: &str = "ladron@atacante.mx";
    for db in test_support::TestDb::each().await {
        let app = spawn_configured(db, |s| {
            s.outbox_interval_seconds = 1;
            s.session_limit = 5;
        })
        .await;
        let b = app.db.backend;
        let outbox = app.data_dir.join("outbox");
        let (_, owner_id) = app.signup("owner@example.com").await;
        let mover = app.token("owner@example.com").await;
        app.reauth(&mover).await;
        assert_eq!(ask(&app, &mover, MOVER).await.status, 202, "{b}");
        let code = mailed_code(&delivered_mails(&outbox, "Confirma tu nuevo correo", 1).await[0]);
        assert_eq!(confirm(&app, &mover, &code).await.status, 200, "{b}");
        let held = app.token(MOVER).await;
        // The mover puts their own authenticator on the account.
        let enrol = app.call("POST", "/v1/me/mfa/totp", Some(&held), None).await;
        assert_eq!(enrol.status, 201, "{b}: {}", enrol.raw);
        let secret = mfa::base32_decode(enrol.body["secret"].as_str().unwrap()).unwrap();
        let totp = mfa::code_at(
            &crypto::HmacSha1Otp,
            &secret,
            kernel::Clock::now(&kernel::SystemClock),
            mfa::TotpParams::default(),
        );
        let enrolled = app
            .call(
                "POST",
                "/v1/me/mfa/totp/confirm",
                Some(&held),
                Some(json!({ "code": totp })),
            )
            .await;
        assert_eq!(enrolled.status, 200, "{b}: {}", enrolled.raw);
        let asked = app
            .call(
                "POST",
                "/v1/password-resets",
                None,
                Some(json!({ "email": MOVER })),
            )
            .await;
        assert_eq!(asked.status, 202, "{b}: {}", asked.raw);
        let movers_reset = mailed_code(&delivered_mails(&outbox, "restablecimiento", 1).await[0]);
        // The vacated address stays the Owner's: the mover cannot register it to make the undo
        // fail.
        let squat = app
            .call(
                "POST",
                "/v1/signup",
                None,
                Some(json!({
                    "company_name": "Otra", "email": "owner@example.com", "password": PASSWORD,
                    "password_confirmation": PASSWORD, "name": "Luis", "rfc": "TCM970625MB1"
                })),
            )
            .await;
        assert_problem(&squat, 409, "email_taken");
        app.signup("otro@example.com").await;
        let other = app.token("otro@example.com").await;
        app.reauth(&other).await;
        assert_problem(
            &ask(&app, &other, "owner@example.com").await,
            409,
            "email_taken",
        );

        // The old address was told, with the code that undoes the move.
        let told = delivered_mails(&outbox, "El correo de tu cuenta", 1).await;
        assert!(told[0].contains("owner@example.com"), "{b}: {}", told[0]);
        let undo = mailed_code(&told[0]);
        let stored = app.stored_bodies("email_changed_undo").await;
        assert_eq!(stored.len(), 1, "{b}");
        assert!(
            !stored[0].contains(&undo),
            "{b}: the code is made at delivery"
        );

        let revert = |code: String| {
            let app = &app;
            async move {
                app.call(
                    "POST",
                    "/v1/email-changes/revert",
                    None,
                    Some(json!({ "token": code })),
                )
                .await
            }
        };
        let mut forged = undo.clone().into_bytes();
        forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_problem(&revert(forged.clone()).await, 400, "email_change_invalid");
        // The confirmation code of the move is not an undo code.
        assert_problem(&revert(code.clone()).await, 400, "email_change_invalid");
        assert_problem(
            &app.call("POST", "/v1/email-changes/revert", None, Some(json!({})))
                .await,
            400,
            "malformed_request",
        );

        let done = revert(undo.clone()).await;
        assert_eq!(done.status, 204, "{b}: {}", done.raw);
        for session in [&mover, &held] {
            assert_problem(
                &app.call("GET", "/v1/me", Some(session), None).await,
                401,
                "unauthenticated",
            );
        }
        assert_eq!(app.login(MOVER, PASSWORD).await.status, 401, "{b}");
        assert_eq!(
            app.login("owner@example.com", PASSWORD).await.status,
            401,
            "{b}: the password the mover knew no longer works"
        );
        let reset = |code: String| {
            let app = &app;
            async move {
                let body = json!({
                    "token": code,
                    "new_password": "Recuperada#2026",
                    "new_password_confirmation": "Recuperada#2026",
                });
                app.call("POST", "/v1/password-resets/confirm", None, Some(body))
                    .await
            }
        };
        assert_problem(&reset(movers_reset).await, 400, "reset_token_invalid");
        assert_problem(&revert(undo.clone()).await, 400, "email_change_invalid");

        // Both addresses are told.
        let back = delivered_mails(&outbox, "la cuenta vuelve a usar esta dirección", 1).await;
        assert!(back[0].contains("owner@example.com"), "{b}: {}", back[0]);
        assert!(back[0].contains(MOVER), "{b}: {}", back[0]);
        let undone = delivered_mails(&outbox, "que usaba esta dirección volvió", 1).await;
        assert!(undone[0].contains(MOVER), "{b}: {}", undone[0]);

        // A reset to the old address lets the Owner in again.
        let asked = app
            .call(
                "POST",
                "/v1/password-resets",
                None,
                Some(json!({ "email": "owner@example.com" })),
            )
            .await;
        assert_eq!(asked.status, 202, "{b}: {}", asked.raw);
        let mails = delivered_mails(&outbox, "restablecimiento", 2).await;
        let own = mails
            .iter()
            .find(|m| m.contains("owner@example.com"))
            .unwrap_or_else(|| panic!("{b}: {mails:?}"));
        assert_eq!(reset(mailed_code(own)).await.status, 204, "{b}");
        // The mover's authenticator went with the undo: the password alone logs in.
        let login = app.login("owner@example.com", "Recuperada#2026").await;
        assert_eq!(login.status, 201, "{b}: {}", login.raw);
        let gone = delivered_mails(&outbox, "verificación en dos pasos se desactivó", 1).await;
        assert!(gone[0].contains("owner@example.com"), "{b}: {}", gone[0]);
        let owner = login.body["token"].as_str().unwrap().to_owned();

        let audit = app.audit_dump().await;
        assert!(!audit.concat().contains(&undo), "{b}");
        let target = format!("user:{owner_id}");
        assert_eq!(
            audit
                .iter()
                .filter(
                    |r| r.starts_with("user.email_change_reverted|success|") && r.contains(&target)
                )
                .count(),
            1,
            "{b}: {audit:?}"
        );
        let verify = app
            .call("GET", "/v1/audit/verify", Some(&owner), None)
            .await;
        assert_eq!(verify.body["ok"], true, "{b}: {}", verify.raw);
        app.assert_alert(&owner, "email_change_reverted", "high", &target)
            .await;

        // Wrong codes from one client address run into the limit.
        let mut limited = false;
        for _ in 0..50 {
            let r = revert(forged.clone()).await;
            if r.status == 429 {
                assert_problem(&r, 429, "rate_limited");
                limited = true;
                break;
            }
            assert_problem(&r, 400, "email_change_invalid");
        }
        assert!(limited, "{b}");
    }
}
