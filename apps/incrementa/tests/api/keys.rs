//! VAULT-7 end to end with the real binary: rotate, rewrap (twice: idempotent), retire.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use incrementa::startup::Application;
use serde_json::json;

use crate::helpers::*;

fn keys(app: &TestApp, args: &[&str]) -> (bool, String) {
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    incrementa(app, &all)
}

/// Runs the real binary on the test's data directory and database.
fn incrementa(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_incrementa"))
        .args(args)
        .env("INCREMENTA_DATA_DIR", &app.data_dir)
        .env("DATABASE_URL", &app.db.url)
        .env("INCREMENTA_LOG", "warn")
        .env_remove("INCREMENTA_MASTER_KEY")
        .env_remove("INCREMENTA_MASTER_KEY_FILE")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[actix_web::test]
async fn rotate_rewrap_retire() {
    let app = spawn_app().await;
    let [(_, owner), _, _, _] = app.company_with_roles("").await;
    app.reauth(&owner).await;
    let id = app.upload_fixture(&owner, "csd_valid").await;
    // A TOTP secret is sealed with the same keyring (MFA-4): rotation must carry it along.
    let r = app
        .call("POST", "/v1/me/mfa/totp", Some(&owner), None)
        .await;
    assert_eq!(r.status, 201, "{}", r.raw);
    let secret = mfa::base32_decode(r.body["secret"].as_str().unwrap()).unwrap();
    let code_at = |offset: i64| {
        use kernel::Clock as _;
        let at = kernel::SystemClock.now() + chrono::Duration::seconds(offset);
        mfa::code_at(
            &crypto::HmacSha1Otp,
            &secret,
            at,
            mfa::TotpParams::default(),
        )
    };
    let r = app
        .call(
            "POST",
            "/v1/me/mfa/totp/confirm",
            Some(&owner),
            Some(json!({ "code": code_at(0) })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);

    let (ok, out) = keys(&app, &["list"]);
    assert!(
        ok && out.contains("key 1: 1 stored credentials, 1 TOTP secrets"),
        "{out}"
    );
    let (ok, out) = keys(&app, &["retire", "1"]);
    assert!(!ok && out.contains("newest"), "{out}");

    let (ok, out) = keys(&app, &["rotate"]);
    assert!(ok && out.contains("added key 2"), "{out}");
    let key_file = app.data_dir.join("master.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ok, out) = keys(&app, &["retire", "1"]);
    assert!(!ok && out.contains("still use key 1"), "{out}");

    let (ok, out) = keys(&app, &["rewrap"]);
    assert!(
        ok && out.contains("1 credentials and 1 TOTP secrets now under key 2"),
        "{out}"
    );
    let (ok, out) = keys(&app, &["rewrap"]);
    assert!(
        ok && out.contains("0 credentials and 0 TOTP secrets now under key 2"),
        "idempotent: {out}"
    );
    // AUD-2: the rotation and the rewrap are on the platform chain, with key ids and counts
    // and never key material; the rotation's record is sealed with the key every running server
    // already had (1), and the chains still verify with the new keyring.
    let audit = app.audit_dump().await.join("\n");
    assert!(
        audit.contains("key.rotated|success|master_key:2|"),
        "{audit}"
    );
    assert!(
        audit.contains("key.rewrapped|success|master_key:2|")
            && audit.contains(r#""credentials":1"#)
            && audit.contains(r#""totp_secrets":1"#),
        "{audit}"
    );
    // Refused retirements change nothing but are recorded, as failures with a stable reason.
    for reason in ["newest_key", "credentials_use_key"] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains("key.retired|failure|master_key:1|")
                    && l.contains(&format!(r#""refused":"{reason}""#))),
            "{reason}: {audit}"
        );
    }
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    for line in key_text.lines().filter(|l| !l.trim().is_empty()) {
        let secret = line.rsplit(':').next().unwrap().trim();
        assert!(secret.len() >= 32, "{line:?} is not an ID:KEY line");
        assert!(!audit.contains(secret), "key material in the audit log");
    }
    let db = app.db.connect().await;
    use sea_orm::ConnectionTrait as _;
    let sealed = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT key_id FROM audit_events WHERE action = 'key.rotated'".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(
        sealed, 1,
        "the rotation is sealed with the key servers know"
    );
    let (ok, out) = incrementa(&app, &["audit", "verify"]);
    assert!(ok, "{out}");

    // The credential no longer needs key 1, but the audit chain's records made so far do.
    let (ok, out) = keys(&app, &["retire", "1"]);
    assert!(
        !ok && out.contains("audit records are sealed with key 1"),
        "{out}"
    );
    // Simulate retention having removed them.
    db.execute_unprepared("DELETE FROM audit_events WHERE key_id = 1")
        .await
        .unwrap();
    let (ok, out) = keys(&app, &["retire", "9"]);
    assert!(!ok && out.contains("no key with id 9"), "{out}");
    let (ok, out) = keys(&app, &["retire", "1"]);
    assert!(ok, "{out}");
    let audit = app.audit_dump().await.join("\n");
    for (key, reason) in [(1, "audit_records_use_key"), (9, "unknown_key")] {
        assert!(
            audit.lines().any(
                |l| l.contains(&format!("key.retired|failure|master_key:{key}|"))
                    && l.contains(&format!(r#""refused":"{reason}""#))
            ),
            "{reason}: {audit}"
        );
    }
    assert!(
        audit.contains("key.retired|success|master_key:1|") && audit.contains(r#""keys":[2]"#),
        "{audit}"
    );
    let (ok, out) = keys(&app, &["list"]);
    assert!(
        ok && out.contains("key 2: 1 stored credentials, 1 TOTP secrets")
            && !out.contains("key 1:"),
        "{out}"
    );

    // A server started with the new keyring signs with the re-wrapped credential.
    let settings = settings_for(&app.db, &app.data_dir);
    let restarted = Application::build(&settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", restarted.port());
    actix_web::rt::spawn(restarted.run_until_stopped());
    let client = awc::Client::default();
    let mut res = client
        .post(format!("{base}/v1/fiscal/credentials/{id}/signatures"))
        .insert_header(("Authorization", format!("Bearer {owner}")))
        .send_json(&json!({ "data": "||cadena||" }))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The re-sealed TOTP secret still opens: the next step's code logs in.
    let mut login = client
        .post(format!("{base}/v1/sessions"))
        .send_json(&json!({ "email": "owner@example.com", "password": PASSWORD, "totp_code": code_at(30) }))
        .await
        .unwrap();
    assert_eq!(login.status(), 201, "{:?}", login.body().await);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        crypto::verify_signature(
            &fixture("csd_valid", "certificate.cer"),
            b"||cadena||",
            body["signature"].as_str().unwrap()
        )
        .unwrap()
    );
}

#[actix_web::test]
async fn keys_from_the_environment_are_not_edited() {
    let app = spawn_app().await;
    let out = Command::new(env!("CARGO_BIN_EXE_incrementa"))
        .args(["keys", "rotate"])
        .env("INCREMENTA_DATA_DIR", &app.data_dir)
        .env("DATABASE_URL", &app.db.url)
        .env("INCREMENTA_MASTER_KEY", format!("1:{}", "ab".repeat(32)))
        .env("INCREMENTA_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INCREMENTA_MASTER_KEY"));
}
