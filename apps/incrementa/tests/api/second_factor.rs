//! MFA-1..4 through the API: enrolment with a QR code, confirmation and recovery codes, login
//! and re-authentication with a second factor, replay, throttling, step-up for disabling and
//! regenerating, and the company policy after its grace period.

use std::sync::Arc;

use base64::Engine as _;
use kernel::{Clock as _, ManualClock};
use serde_json::{Value, json};

use crate::helpers::*;

/// What an authenticator app would show for `secret` (base32) at the server's time.
fn code(secret: &str, clock: &ManualClock) -> String {
    let secret = mfa::base32_decode(secret).unwrap();
    mfa::code_at(
        &crypto::HmacSha1Otp,
        &secret,
        clock.now(),
        mfa::TotpParams::default(),
    )
}

fn half_a_minute(clock: &ManualClock) {
    clock.advance(chrono::Duration::seconds(30));
}

fn decode_qr(png_base64: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png_base64)
        .unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}

async fn login_with(app: &TestApp, email: &str, extra: Value) -> Reply {
    let mut body = json!({ "email": email, "password": PASSWORD });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.call("POST", "/v1/sessions", None, Some(body)).await
}

/// Enrols the user behind `token`; returns (secret, recovery codes).
async fn enrol(app: &TestApp, clock: &ManualClock, token: &str) -> (String, Vec<String>) {
    let r = app.call("POST", "/v1/me/mfa/totp", Some(token), None).await;
    assert_eq!(r.status, 201, "{}", r.raw);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    let c = app
        .call(
            "POST",
            "/v1/me/mfa/totp/confirm",
            Some(token),
            Some(json!({ "code": code(&secret, clock) })),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.raw);
    let codes = c.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    // The confirmation spent this step's code: move on so the next login has a fresh one.
    half_a_minute(clock);
    (secret, codes)
}

#[actix_web::test]
async fn enrolment_gives_a_scannable_qr_code_and_ten_recovery_codes_stored_only_hashed() {
    let (app, clock) = spawn_with_clock().await;
    app.signup("mfa-owner@example.com").await;
    let login = app.login("mfa-owner@example.com", PASSWORD).await;
    assert_eq!(login.status, 201, "{}", login.raw);
    // MFA-2: the company policy is on by default with a 14-day grace: a reminder, not a block.
    assert!(login.body["mfa_enrolment_due"].is_string(), "{}", login.raw);
    let token = login.body["token"].as_str().unwrap().to_owned();

    let r = app
        .call("POST", "/v1/me/mfa/totp", Some(&token), None)
        .await;
    assert_eq!(r.status, 201, "{}", r.raw);
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    let uri = r.body["otpauth_uri"].as_str().unwrap();
    assert_eq!(
        mfa::base32_decode(&secret).unwrap().len(),
        20,
        "160-bit secret"
    );
    assert_eq!(
        uri,
        format!(
            "otpauth://totp/IncrementaCRM:mfa-owner%40example.com?secret={secret}&issuer=IncrementaCRM&algorithm=SHA1&digits=6&period=30"
        )
    );
    assert_eq!(decode_qr(r.body["qr_png_base64"].as_str().unwrap()), uri);

    // Pending: nothing is protected yet, and a wrong first code confirms nothing.
    let me = app.call("GET", "/v1/me", Some(&token), None).await;
    assert_eq!(me.body["mfa_enabled"], false);
    let status = app.call("GET", "/v1/me/mfa", Some(&token), None).await;
    assert_eq!(status.body["pending"], true, "{}", status.raw);
    let bad = app
        .call(
            "POST",
            "/v1/me/mfa/totp/confirm",
            Some(&token),
            Some(json!({ "code": "000000" })),
        )
        .await;
    assert_problem(&bad, 422, "mfa_invalid");

    let ok = app
        .call(
            "POST",
            "/v1/me/mfa/totp/confirm",
            Some(&token),
            Some(json!({ "code": code(&secret, &clock) })),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.raw);
    let codes: Vec<&str> = ok.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(
        codes.iter().collect::<std::collections::HashSet<_>>().len(),
        10
    );
    let me = app.call("GET", "/v1/me", Some(&token), None).await;
    assert_eq!(me.body["mfa_enabled"], true);
    let again = app
        .call("POST", "/v1/me/mfa/totp", Some(&token), None)
        .await;
    assert_problem(&again, 409, "mfa_already_enabled");

    // At rest: the secret only as a vault envelope, the codes only as digests (MFA-4, MFA-1).
    let db = app.db.connect().await;
    let dump = |sql: &str| {
        let db = db.clone();
        let sql = sql.to_owned();
        async move {
            use sea_orm::ConnectionTrait as _;
            db.query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<_>>()
        }
    };
    let secrets = dump("SELECT secret FROM mfa_totp").await;
    assert_eq!(secrets.len(), 1);
    assert!(secrets[0].starts_with("ev1."), "{}", secrets[0]);
    let digests = dump("SELECT code_digest FROM mfa_recovery_codes")
        .await
        .join(" ");
    let audit = app.audit_dump().await.join("\n");
    for code in &codes {
        let plain = code.replace('-', "");
        assert!(
            !digests.contains(&plain) && !audit.contains(&plain),
            "{code}"
        );
    }
    assert!(!audit.contains(&secret) && !secrets[0].contains(&secret));
    assert!(audit.contains("mfa.enrolment_started|success"));
    assert!(audit.contains("mfa.enabled|success"));
}

#[actix_web::test]
async fn login_requires_a_fresh_second_factor_once_enrolled() {
    let (app, clock) = spawn_with_clock().await;
    app.signup("mfa-login@example.com").await;
    let token = app.token("mfa-login@example.com").await;
    let (secret, codes) = enrol(&app, &clock, &token).await;
    let email = "mfa-login@example.com";

    assert_problem(&app.login(email, PASSWORD).await, 401, "mfa_required");
    assert_problem(
        &login_with(&app, email, json!({ "totp_code": "123456" })).await,
        401,
        "mfa_invalid",
    );
    // A wrong password with a right code is still invalid_credentials.
    let wrong_pw = app
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({ "email": email, "password": "Wrong#2026x", "totp_code": code(&secret, &clock) })),
        )
        .await;
    assert_problem(&wrong_pw, 401, "invalid_credentials");

    let now = code(&secret, &clock);
    let ok = login_with(&app, email, json!({ "totp_code": now })).await;
    assert_eq!(ok.status, 201, "{}", ok.raw);
    // The same code again, within its window: a replay, refused and recorded (MFA-4).
    assert_problem(
        &login_with(&app, email, json!({ "totp_code": now })).await,
        401,
        "mfa_invalid",
    );
    assert!(
        app.audit_dump()
            .await
            .iter()
            .any(|r| r.starts_with("session.login|failure") && r.contains("mfa_replayed"))
    );
    half_a_minute(&clock);
    let next = login_with(&app, email, json!({ "totp_code": code(&secret, &clock) })).await;
    assert_eq!(next.status, 201, "{}", next.raw);

    // Recovery codes: one-time, any case or grouping.
    let sloppy = codes[0].replace('-', " ").to_uppercase();
    let rec = login_with(&app, email, json!({ "recovery_code": sloppy })).await;
    assert_eq!(rec.status, 201, "{}", rec.raw);
    assert_eq!(rec.body["recovery_codes_remaining"], 9);
    assert_problem(
        &login_with(&app, email, json!({ "recovery_code": codes[0] })).await,
        401,
        "mfa_invalid",
    );
    let both = login_with(
        &app,
        email,
        json!({ "totp_code": "123456", "recovery_code": codes[1] }),
    )
    .await;
    assert_problem(&both, 400, "malformed_request");
    let audit = app.audit_dump().await.join("\n");
    assert!(audit.contains("mfa.recovery_code_used|success"));
    assert!(audit.contains("\"second_factor\":\"totp\""), "{audit}");
    assert!(!audit.contains(&codes[0]) && !audit.contains(&now));
}

#[actix_web::test]
async fn wrong_codes_count_towards_the_login_throttle() {
    let (app, clock) = spawn_with_clock().await;
    app.signup("mfa-throttle@example.com").await;
    let token = app.token("mfa-throttle@example.com").await;
    let (secret, _) = enrol(&app, &clock, &token).await;
    let email = "mfa-throttle@example.com";
    for _ in 0..5 {
        assert_problem(
            &login_with(&app, email, json!({ "totp_code": "000000" })).await,
            401,
            "mfa_invalid",
        );
    }
    // Locked: even the right code waits.
    let locked = login_with(&app, email, json!({ "totp_code": code(&secret, &clock) })).await;
    assert_problem(&locked, 429, "rate_limited");
    // Asking for the factor is not a failure: no lock from that alone.
    let (app2, clock2) = spawn_with_clock().await;
    app2.signup("mfa-ask@example.com").await;
    let t2 = app2.token("mfa-ask@example.com").await;
    let (secret2, _) = enrol(&app2, &clock2, &t2).await;
    for _ in 0..8 {
        assert_problem(
            &app2.login("mfa-ask@example.com", PASSWORD).await,
            401,
            "mfa_required",
        );
    }
    let ok = login_with(
        &app2,
        "mfa-ask@example.com",
        json!({ "totp_code": code(&secret2, &clock2) }),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.raw);
}

#[actix_web::test]
async fn step_up_needs_the_code_and_guards_disabling_and_regenerating() {
    let (app, clock) = spawn_with_clock().await;
    app.signup("mfa-stepup@example.com").await;
    let token = app.token("mfa-stepup@example.com").await;
    let (secret, old_codes) = enrol(&app, &clock, &token).await;
    let reauth = |body: Value| {
        app.call(
            "POST",
            "/v1/sessions/current/reauthenticate",
            Some(&token),
            Some(body),
        )
    };

    // Without step-up both critical MFA routes refuse.
    assert_problem(
        &app.call("DELETE", "/v1/me/mfa/totp", Some(&token), None)
            .await,
        403,
        "reauthentication_required",
    );
    assert_problem(
        &app.call("POST", "/v1/me/mfa/recovery-codes", Some(&token), None)
            .await,
        403,
        "reauthentication_required",
    );
    // Re-authentication now wants the code too (MFA-3).
    assert_problem(
        &reauth(json!({ "password": PASSWORD })).await,
        401,
        "mfa_required",
    );
    assert_problem(
        &reauth(json!({ "password": PASSWORD, "totp_code": "000000" })).await,
        401,
        "mfa_invalid",
    );
    let ok = reauth(json!({ "password": PASSWORD, "totp_code": code(&secret, &clock) })).await;
    assert_eq!(ok.status, 200, "{}", ok.raw);

    let new = app
        .call("POST", "/v1/me/mfa/recovery-codes", Some(&token), None)
        .await;
    assert_eq!(new.status, 200, "{}", new.raw);
    let new_codes = new.body["recovery_codes"].as_array().unwrap();
    assert_eq!(new_codes.len(), 10);
    let email = "mfa-stepup@example.com";
    assert_problem(
        &login_with(&app, email, json!({ "recovery_code": old_codes[2] })).await,
        401,
        "mfa_invalid",
    );
    let with_new = login_with(&app, email, json!({ "recovery_code": new_codes[2] })).await;
    assert_eq!(with_new.status, 201, "{}", with_new.raw);

    let off = app
        .call("DELETE", "/v1/me/mfa/totp", Some(&token), None)
        .await;
    assert_eq!(off.status, 204, "{}", off.raw);
    assert_problem(
        &app.call("DELETE", "/v1/me/mfa/totp", Some(&token), None)
            .await,
        409,
        "mfa_not_enabled",
    );
    let me = app.call("GET", "/v1/me", Some(&token), None).await;
    assert_eq!(me.body["mfa_enabled"], false);
    assert_eq!(app.login(email, PASSWORD).await.status, 201);
    let audit = app.audit_dump().await.join("\n");
    assert!(audit.contains("mfa.recovery_codes_regenerated|success"));
    assert!(audit.contains("mfa.disabled|success"));
}

#[actix_web::test]
async fn after_the_grace_period_owners_and_admins_without_mfa_may_only_enrol() {
    let (app, clock): (TestApp, Arc<ManualClock>) = spawn_with_clock().await;
    app.signup("grace-owner@example.com").await;
    let owner = app.token("grace-owner@example.com").await;
    app.create_user(&owner, "grace-admin@example.com", "admin")
        .await;
    app.create_user(&owner, "grace-vendor@example.com", "vendor")
        .await;
    clock.advance(chrono::Duration::days(15));

    for email in ["grace-owner@example.com", "grace-admin@example.com"] {
        let r = app.login(email, PASSWORD).await;
        assert_eq!(r.status, 201, "{}", r.raw);
        assert_eq!(r.body["mfa_enrolment_required"], true, "{}", r.raw);
        let t = r.body["token"].as_str().unwrap().to_owned();
        assert_problem(
            &app.call("GET", "/v1/users", Some(&t), None).await,
            403,
            "mfa_enrolment_required",
        );
        assert_problem(
            &app.call("PUT", "/v1/me/password", Some(&t), Some(json!({})))
                .await,
            403,
            "mfa_enrolment_required",
        );
        let me = app.call("GET", "/v1/me", Some(&t), None).await;
        assert_eq!(me.status, 200, "{}", me.raw);
        assert_eq!(me.body["permissions"], json!([]));
    }
    // Managers and vendors are outside the policy.
    let vendor = app.login("grace-vendor@example.com", PASSWORD).await;
    assert!(
        vendor.body.get("mfa_enrolment_required").is_none(),
        "{}",
        vendor.raw
    );

    // Enrolling in the restricted session lifts the restriction at once.
    let r = app.login("grace-owner@example.com", PASSWORD).await;
    let t = r.body["token"].as_str().unwrap().to_owned();
    enrol(&app, &clock, &t).await;
    let users = app.call("GET", "/v1/users", Some(&t), None).await;
    assert_eq!(users.status, 200, "{}", users.raw);
    assert!(
        app.audit_dump()
            .await
            .iter()
            .any(|r| r.starts_with("authorization.denied|denied")
                && r.contains("mfa_enrolment_required"))
    );

    // A company that turns the policy off lets the admin in with the password alone.
    let patch = app
        .call(
            "PATCH",
            "/v1/company",
            Some(&t),
            Some(json!({ "mfa_required": false })),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.raw);
    let admin = app.login("grace-admin@example.com", PASSWORD).await;
    assert!(
        admin.body.get("mfa_enrolment_required").is_none(),
        "{}",
        admin.raw
    );
    let t = admin.body["token"].as_str().unwrap();
    assert_eq!(
        app.call("GET", "/v1/users", Some(t), None).await.status,
        200
    );
}

/// Break glass (`incrementa users reset-mfa`): a user who lost the authenticator and the
/// recovery codes logs in with the password alone afterwards; the change is the operator's in
/// the audit log and mailed; a second reset, an unknown address or a malformed one change
/// nothing and say so.
#[actix_web::test]
async fn the_operator_turns_mfa_off_for_a_user_who_lost_it() {
    let (app, clock) = spawn_with_clock().await;
    let email = "lost-phone@example.com";
    let (_, owner_id) = app.signup(email).await;
    let token = app.token(email).await;
    enrol(&app, &clock, &token).await;
    assert_problem(&app.login(email, PASSWORD).await, 401, "mfa_required");

    for (who, why) in [
        (
            "nobody@example.com",
            "no user logs in with that e-mail address",
        ),
        ("not an address", "not an e-mail address"),
    ] {
        let (ok, out, err) = app.command(&["users", "reset-mfa", who]);
        assert!(!ok && out.is_empty() && err.contains(why), "{err}");
    }
    assert_problem(&app.login(email, PASSWORD).await, 401, "mfa_required");

    let (ok, out, err) = app.command(&["users", "reset-mfa", "Lost-Phone@Example.com"]);
    assert!(ok && out.contains("turned off"), "{out}{err}");
    let back = app.login(email, PASSWORD).await;
    assert_eq!(back.status, 201, "{}", back.raw);
    let me = app
        .call(
            "GET",
            "/v1/me",
            Some(back.body["token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(me.body["mfa_enabled"], false, "{}", me.raw);
    assert!(
        app.audit_dump().await.iter().any(|r| r
            .starts_with(&format!("mfa.disabled|success|user:{owner_id}|"))
            && r.contains("\"operator\"")),
        "no operator record"
    );
    assert_eq!(app.outbox_count("mfa_disabled").await, 1);
    app.assert_alert(
        back.body["token"].as_str().unwrap(),
        "operator_mfa_reset",
        "high",
        &format!("user:{owner_id}"),
    )
    .await;

    let (ok, _, err) = app.command(&["users", "reset-mfa", email]);
    assert!(!ok && err.contains("no MFA to reset"), "{err}");
}
