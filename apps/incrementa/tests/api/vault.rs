use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::*;

fn parts<'a>(cer: &'a [u8], key: &'a [u8], pw: &'a [u8]) -> [(&'static str, &'a [u8]); 3] {
    [("certificate", cer), ("private_key", key), ("password", pw)]
}

#[actix_web::test]
async fn upload_list_sign_and_delete() {
    for app in spawn_each().await {
        let [(_, owner), (_, admin), (_, manager), (_, vendor)] = app.company_with_roles("").await;
        let (cer, key, pw) = (
            fixture("csd_valid", "certificate.cer"),
            fixture("csd_valid", "private_key.key"),
            fixture("csd_valid", "password.txt"),
        );
        assert_problem(
            &app.upload(&owner, &parts(&cer, &key, &pw)).await,
            403,
            "reauthentication_required",
        );
        assert_problem(
            &app.upload(&manager, &parts(&cer, &key, &pw)).await,
            403,
            "forbidden",
        );
        app.reauth(&owner).await;
        let r = app.upload(&owner, &parts(&cer, &key, &pw)).await;
        assert_eq!(r.status, 201, "{}: {}", app.db.backend, r.raw);
        assert_eq!(r.body["kind"], "csd");
        assert_eq!(r.body["rfc"], "TCM970625MB1");
        assert_eq!(r.body["legal_name"], "TACOS CAMPESTRE MX SA DE CV");
        assert_eq!(r.body["certificate_number"], "30001000000500009901");
        assert_eq!(r.body["issuer"], "AC de Pruebas IncrementaCRM");
        assert_eq!(r.body["valid_to"], "2029-01-01T00:00:00.000Z");
        assert!(r.body["days_to_expiry"].as_i64().unwrap() > 30);
        assert_eq!(r.body["expiring_soon"], false);
        for secret in ["12345678a", "private_key\":", "password\":"] {
            assert!(!r.raw.contains(secret), "{secret} in {}", r.raw);
        }
        let id = r.body["id"].as_str().unwrap().to_owned();
        // The same certificate twice is a conflict.
        assert_problem(
            &app.upload(&owner, &parts(&cer, &key, &pw)).await,
            409,
            "credential_exists",
        );

        let list = app
            .call("GET", "/v1/fiscal/credentials", Some(&admin), None)
            .await;
        assert_eq!(
            list.body["items"].as_array().unwrap().len(),
            1,
            "{}",
            list.raw
        );
        assert_problem(
            &app.call("GET", "/v1/fiscal/credentials", Some(&vendor), None)
                .await,
            403,
            "forbidden",
        );

        // Signing: fiscal.sign, no step-up; the signature verifies with the certificate.
        let data = "||4.0|A|123|2026-11-21T10:00:00|99|30001000000500009901|Ñandú||";
        let signed = app
            .call(
                "POST",
                &format!("/v1/fiscal/credentials/{id}/signatures"),
                Some(&admin),
                Some(json!({ "data": data })),
            )
            .await;
        assert_eq!(signed.status, 200, "{}", signed.raw);
        assert_eq!(signed.body["algorithm"], "RSA-SHA256");
        assert_eq!(signed.body["certificate_number"], "30001000000500009901");
        assert!(
            crypto::verify_signature(
                &cer,
                data.as_bytes(),
                signed.body["signature"].as_str().unwrap()
            )
            .unwrap()
        );
        assert_problem(
            &app.call(
                "POST",
                &format!("/v1/fiscal/credentials/{id}/signatures"),
                Some(&vendor),
                Some(json!({ "data": data })),
            )
            .await,
            403,
            "forbidden",
        );

        // Delete needs step-up.
        assert_problem(
            &app.call(
                "DELETE",
                &format!("/v1/fiscal/credentials/{id}"),
                Some(&admin),
                None,
            )
            .await,
            403,
            "reauthentication_required",
        );
        assert_eq!(
            app.call(
                "DELETE",
                &format!("/v1/fiscal/credentials/{id}"),
                Some(&owner),
                None
            )
            .await
            .status,
            204
        );
        assert_problem(
            &app.call(
                "GET",
                &format!("/v1/fiscal/credentials/{id}"),
                Some(&owner),
                None,
            )
            .await,
            404,
            "not_found",
        );

        let audit = app.audit_dump().await;
        for action in [
            "fiscal.credential_uploaded|success",
            "fiscal.credential_used|success",
            "fiscal.credential_deleted|success",
        ] {
            assert!(
                audit.iter().any(|r| r.starts_with(action)),
                "{action}: {audit:?}"
            );
        }
        assert!(audit.iter().all(|r| !r.contains("12345678a")), "AUD-8");
    }
}

#[actix_web::test]
async fn every_rejection_has_its_code_and_stores_nothing() {
    let app = spawn_app().await;
    let [(_, owner), _, _, _] = app.company_with_roles("").await;
    app.reauth(&owner).await;
    let f = fixture;
    let valid = ("csd_valid", "certificate.cer");
    // (certificate, key, password, status, code)
    type Case = (Vec<u8>, Vec<u8>, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            f(valid.0, valid.1),
            f("csd_valid", "private_key.key"),
            b"12345678b".to_vec(),
            422,
            "private_key_password_invalid",
        ),
        (
            f("mismatch", "certificate.cer"),
            f("mismatch", "private_key.key"),
            f("mismatch", "password.txt"),
            422,
            "certificate_key_mismatch",
        ),
        (
            f("csd_expired", "certificate.cer"),
            f("csd_expired", "private_key.key"),
            f("csd_expired", "password.txt"),
            422,
            "certificate_expired",
        ),
        (
            f("csd_future", "certificate.cer"),
            f("csd_future", "private_key.key"),
            f("csd_future", "password.txt"),
            422,
            "certificate_not_yet_valid",
        ),
        (
            f("csd_person", "certificate.cer"),
            f("csd_person", "private_key.key"),
            f("csd_person", "password.txt"),
            422,
            "rfc_mismatch",
        ),
        (
            b"not a certificate".to_vec(),
            f("csd_valid", "private_key.key"),
            f("csd_valid", "password.txt"),
            422,
            "certificate_invalid",
        ),
        (
            f(valid.0, valid.1),
            b"not a key".to_vec(),
            f("csd_valid", "password.txt"),
            422,
            "private_key_invalid",
        ),
        (
            f(valid.0, valid.1),
            vec![0_u8; 70 * 1024],
            f("csd_valid", "password.txt"),
            413,
            "payload_too_large",
        ),
        (
            f(valid.0, valid.1),
            f("csd_valid", "private_key.key"),
            vec![b'x'; 1025],
            413,
            "payload_too_large",
        ),
    ];
    for (cer, key, pw, status, code) in cases {
        let r = app.upload(&owner, &parts(&cer, &key, &pw)).await;
        assert_problem(&r, status, code);
        assert!(!r.raw.contains("12345678"), "{}", r.raw);
    }
    // A 413 says which bound the upload broke.
    let long = app
        .upload(
            &owner,
            &parts(
                &f(valid.0, valid.1),
                &f("csd_valid", "private_key.key"),
                &[b'x'; 1025],
            ),
        )
        .await;
    assert_eq!(
        long.body["detail"], "the password may be up to 1024 bytes",
        "{}",
        long.raw
    );
    // Missing and unknown parts, and a JSON body.
    let cer = f(valid.0, valid.1);
    assert_problem(
        &app.upload(&owner, &[("certificate", &cer)]).await,
        400,
        "malformed_request",
    );
    assert_problem(
        &app.upload(
            &owner,
            &[("certificate", &cer), ("key", b"x"), ("password", b"x")],
        )
        .await,
        400,
        "malformed_request",
    );
    assert_problem(
        &app.call(
            "POST",
            "/v1/fiscal/credentials",
            Some(&owner),
            Some(json!({})),
        )
        .await,
        415,
        "unsupported_media_type",
    );
    let list = app
        .call("GET", "/v1/fiscal/credentials", Some(&owner), None)
        .await;
    assert_eq!(
        list.body["items"],
        json!([]),
        "nothing was stored: {}",
        list.raw
    );
    // A FIEL is accepted and says so.
    let r = app
        .upload(
            &owner,
            &parts(
                &f("fiel_valid", "certificate.cer"),
                &f("fiel_valid", "private_key.key"),
                b"12345678a\n",
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.raw);
    assert_eq!(r.body["kind"], "fiel");
}

/// VAULT-5: after an upload no file under the data directory holds the key, its password or the
/// certificate's original bytes.
#[actix_web::test]
async fn nothing_readable_reaches_the_disk() {
    let app = spawn_app().await;
    let [(_, owner), _, _, _] = app.company_with_roles("").await;
    app.reauth(&owner).await;
    let (cer, key) = (
        fixture("csd_valid", "certificate.cer"),
        fixture("csd_valid", "private_key.key"),
    );
    // The stored password is the fixture's, 12345678a: it is what the search looks for.
    app.upload_fixture(&owner, "csd_valid").await;
    let mut files = Vec::new();
    let mut stack = vec![app.data_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path)
            } else {
                files.push(path)
            }
        }
    }
    // The test database (and its WAL) lives in its own directory in this harness: search it too.
    let db_dir = std::path::Path::new(
        app.db
            .url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap(),
    )
    .parent()
    .unwrap()
    .to_owned();
    for entry in std::fs::read_dir(db_dir).unwrap() {
        files.push(entry.unwrap().path());
    }
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("incrementa.db")
                || f.to_string_lossy().contains("test.db")),
        "{files:?}"
    );
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("password", b"12345678a".to_vec()),
        ("key start", key[..48].to_vec()),
        ("key middle", key[600..648].to_vec()),
        ("key end", key[key.len() - 48..].to_vec()),
        ("certificate start", cer[..48].to_vec()),
        ("certificate middle", cer[500..548].to_vec()),
    ];
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for (what, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what} found in {}",
                file.display()
            );
        }
    }
}

async fn exec(app: &TestApp, sql: &str) {
    let db = app.db.connect().await;
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap();
}

/// VAULT-1: an envelope edited, or copied to another company's row, does not open.
#[actix_web::test]
async fn tampered_or_swapped_envelopes_fail_closed() {
    for app in spawn_each().await {
        let [(_, a_owner), _, _, _] = app.company_with_roles("a-").await;
        let [(_, b_owner), _, _, _] = app.company_with_roles("b-").await;
        app.reauth(&a_owner).await;
        app.reauth(&b_owner).await;
        let a = app.upload_fixture(&a_owner, "csd_valid").await;
        let b = app.upload_fixture(&b_owner, "csd_valid").await;
        let sign = |token: String, id: String| {
            let app = &app;
            async move {
                app.call(
                    "POST",
                    &format!("/v1/fiscal/credentials/{id}/signatures"),
                    Some(&token),
                    Some(json!({ "data": "x" })),
                )
                .await
            }
        };
        assert_eq!(sign(b_owner.clone(), b.clone()).await.status, 200);
        // Copy A's key envelope into B's row: B can no longer sign, and nothing leaks.
        let (a_lit, b_lit) = match app.db.backend {
            "postgres" => (format!("'{a}'"), format!("'{b}'")),
            _ => (
                format!("X'{}'", a.replace('-', "")),
                format!("X'{}'", b.replace('-', "")),
            ),
        };
        exec(&app, &format!("UPDATE fiscal_credentials SET private_key = (SELECT private_key FROM fiscal_credentials WHERE id = {a_lit}) WHERE id = {b_lit}")).await;
        let r = sign(b_owner.clone(), b.clone()).await;
        assert_problem(&r, 500, "internal_error");
        assert!(
            !r.raw.contains("ev1.") && !r.raw.to_lowercase().contains("sql"),
            "{}",
            r.raw
        );
        // Flip one character of A's password envelope.
        exec(&app, &format!("UPDATE fiscal_credentials SET password = REPLACE(password, 'ev1.', 'ev1.A') WHERE id = {a_lit}")).await;
        assert_problem(
            &sign(a_owner.clone(), a.clone()).await,
            500,
            "internal_error",
        );
    }
}

/// `INCREMENTA_VAULT_TRUSTED_ISSUERS`: with the fixtures' CA trusted, its credential is
/// stored; with only another CA trusted, the same upload is 422 `certificate_untrusted` and
/// nothing is stored; a file that holds no certificate, or a certificate that is not a CA's,
/// stops the server from starting.
#[actix_web::test]
async fn only_credentials_of_trusted_issuers_are_stored() {
    let ca = format!(
        "{}/../../crates/crypto/tests/fixtures/ca.cer",
        env!("CARGO_MANIFEST_DIR")
    );
    use incrementa::startup::Application;
    use test_support::TestDb;
    async fn upload(app: &TestApp) -> (Reply, usize) {
        let [(_, owner), _, _, _] = app.company_with_roles("").await;
        app.reauth(&owner).await;
        let (cer, key, pw) = (
            fixture("csd_valid", "certificate.cer"),
            fixture("csd_valid", "private_key.key"),
            fixture("csd_valid", "password.txt"),
        );
        let r = app.upload(&owner, &parts(&cer, &key, &pw)).await;
        let list = app
            .call("GET", "/v1/fiscal/credentials", Some(&owner), None)
            .await;
        (r, list.body["items"].as_array().unwrap().len())
    }
    let trusted = spawn_configured(TestDb::sqlite(), |s| {
        s.vault_trusted_issuers = Some(ca.clone().into());
    })
    .await;
    let (r, stored) = upload(&trusted).await;
    assert_eq!((r.status.as_u16(), stored), (201, 1), "{}", r.raw);

    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("other-ca.cer");
    std::fs::write(
        &elsewhere,
        std::fs::read(format!(
            "{}/../../crates/crypto/tests/fixtures/other_ca.cer",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let strict = spawn_configured(TestDb::sqlite(), |s| {
        s.vault_trusted_issuers = Some(elsewhere.clone());
    })
    .await;
    let (r, stored) = upload(&strict).await;
    assert_problem(&r, 422, "certificate_untrusted");
    assert_eq!(stored, 0);

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, b"").unwrap();
    let db = TestDb::sqlite();
    let mut settings = settings_for(&db, &dir.path().join("data"));
    settings.vault_trusted_issuers = Some(empty);
    let err = Application::build(&settings).await.err().unwrap();
    assert!(
        err.to_string().contains("INCREMENTA_VAULT_TRUSTED_ISSUERS"),
        "{err}"
    );
    // A taxpayer's certificate is no issuer: whoever holds its key could vouch for anything.
    let leaf = dir.path().join("leaf.cer");
    std::fs::write(&leaf, fixture("csd_valid", "certificate.cer")).unwrap();
    settings.vault_trusted_issuers = Some(leaf);
    let err = Application::build(&settings).await.err().unwrap();
    assert!(
        err.to_string().contains("INCREMENTA_VAULT_TRUSTED_ISSUERS")
            && err.to_string().contains("is not a CA certificate"),
        "{err}"
    );
}

/// One message of the outbox.
#[derive(Debug)]
struct Mail {
    template: String,
    to: String,
    subject: String,
    body: String,
    delivered: bool,
}

/// The outbox's messages whose template is `template` (SQL `LIKE`), oldest first (ties: by
/// recipient).
async fn outbox(app: &TestApp, template: &str) -> Vec<Mail> {
    let conn = app.db.connect().await;
    conn.query_all_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        match conn.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                "SELECT template, to_address, subject, body, delivered_at IS NOT NULL \
                 FROM outbox_messages WHERE template LIKE $1 ORDER BY created_at, to_address"
            }
            _ => {
                "SELECT template, to_address, subject, body, delivered_at IS NOT NULL \
                 FROM outbox_messages WHERE template LIKE ? ORDER BY created_at, to_address"
            }
        },
        [template.into()],
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| Mail {
        template: r.try_get_by_index(0).unwrap(),
        to: r.try_get_by_index(1).unwrap(),
        subject: r.try_get_by_index(2).unwrap(),
        body: r.try_get_by_index(3).unwrap(),
        delivered: r.try_get_by_index(4).unwrap(),
    })
    .collect()
}

/// The outbox's credential-expiry messages: (to, subject, delivered), oldest first.
async fn expiry_mails(app: &TestApp) -> Vec<(String, String, bool)> {
    outbox(app, "credential_expiring")
        .await
        .into_iter()
        .map(|m| (m.to, m.subject, m.delivered))
        .collect()
}

/// Waits (up to 30 s) until the outbox holds `n` delivered credential-expiry messages.
async fn wait_for_expiry_mails(app: &TestApp, n: usize) -> Vec<(String, String, bool)> {
    for _ in 0..300 {
        let mails = expiry_mails(app).await;
        if mails.len() >= n && mails.iter().all(|m| m.2) {
            return mails;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "expected {n} delivered expiry mails: {:?}",
        expiry_mails(app).await
    );
}

/// VAULT-8 on the running server: when a stored CSD reaches 30, 7 and 1 days before its expiry,
/// and once it has expired, the company's Owner and Admin (who manage credentials) are e-mailed
/// once per stage — not the Manager or the Vendor, and never twice for a stage however many
/// passes run — each notice recorded in the audit log.
#[actix_web::test]
async fn credential_managers_are_told_once_per_stage_as_a_csd_expires() {
    let (app, clock) = spawn_with_clock_configured(|s| {
        s.vault_expiry_check_seconds = 1;
        s.outbox_interval_seconds = 1;
    })
    .await;
    let [(_, owner), _, _, _] = app.company_with_roles("exp-").await;
    app.reauth(&owner).await;
    let id = app.upload_fixture(&owner, "csd_valid").await;
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let managers = ["exp-admin@example.com", "exp-owner@example.com"];

    // The fixture expires on 2029-01-01T00:00:00Z. 9 days and 12 hours before: stage 30; two
    // days before: stage 7, told once more (the passes in between repeated nothing); a day
    // after (the server "missed" stage 1): only the expiry is told.
    let mut mails = Vec::new();
    for (now, subject) in [
        (
            "2028-12-22T12:00:00Z",
            "Tu CSD del RFC TCM970625MB1 vence en 9 días",
        ),
        (
            "2028-12-30T00:00:00Z",
            "Tu CSD del RFC TCM970625MB1 vence en 2 días",
        ),
        ("2029-01-02T00:00:00Z", "Tu CSD del RFC TCM970625MB1 venció"),
    ] {
        clock.set(at(now));
        let told = mails.len();
        mails = wait_for_expiry_mails(&app, told + 2).await;
        assert_eq!(mails.len(), told + 2, "{now}: {mails:?}");
        let new: Vec<(&str, &str)> = mails[told..]
            .iter()
            .map(|m| (m.0.as_str(), m.1.as_str()))
            .collect();
        assert_eq!(
            new,
            [(managers[0], subject), (managers[1], subject)],
            "{now}"
        );
        // The operator's gauges follow (all companies): expiring until it has expired.
        let expired = now.starts_with("2029");
        assert_eq!(
            (
                app.metric("incrementa_fiscal_credentials_expiring").await,
                app.metric("incrementa_fiscal_credentials_expired").await,
            ),
            (
                Some(if expired { "0" } else { "1" }.to_owned()),
                Some(if expired { "1" } else { "0" }.to_owned()),
            ),
            "{now}"
        );
    }
    assert!(mails.iter().all(|m| managers.contains(&m.0.as_str())));

    // Each notice is one audit record naming its stage and the two recipients.
    let conn = app.db.connect().await;
    let stages: Vec<serde_json::Value> = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!(
                "SELECT details FROM audit_events WHERE action = 'fiscal.credential_expiring' \
                 AND target = 'fiscal_credential:{id}' ORDER BY seq"
            ),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.try_get_by_index::<String>(0).unwrap()).unwrap())
        .collect();
    assert_eq!(
        stages
            .iter()
            .map(|d| d["stage"].clone())
            .collect::<Vec<_>>(),
        [json!(30), json!(7), json!(0)]
    );
    assert!(
        stages
            .iter()
            .all(|d| d["recipients"].as_array().unwrap().len() == 2)
    );
    // The messages were delivered (the default mailer writes .eml files).
    let files = std::fs::read_dir(app.data_dir.join("outbox"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".eml"))
        })
        .count();
    assert!(files >= 6, "{files} mail files");
}

/// The other credential managers hear of a stored or deleted credential: the Owner's upload
/// mails the Admin (not the Owner, the Manager or the Vendor), the Admin's deletion mails the
/// Owner, each naming who did it.
#[actix_web::test]
async fn the_other_credential_managers_hear_of_an_upload_and_a_deletion() {
    for app in spawn_each().await {
        let b = app.db.backend;
        let [(_, owner), (_, admin), _, _] = app.company_with_roles("chg-").await;
        app.reauth(&owner).await;
        let id = app.upload_fixture(&owner, "csd_valid").await;
        app.reauth(&admin).await;
        let r = app
            .call(
                "DELETE",
                &format!("/v1/fiscal/credentials/{id}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{b}: {}", r.raw);

        let mails = outbox(&app, "credential_%").await;
        let who: Vec<(&str, &str)> = mails
            .iter()
            .map(|m| (m.template.as_str(), m.to.as_str()))
            .collect();
        assert_eq!(
            who,
            [
                ("credential_uploaded", "chg-admin@example.com"),
                ("credential_deleted", "chg-owner@example.com"),
            ],
            "{b}"
        );
        assert!(
            mails[0]
                .body
                .contains("Ana López guardó el CSD del RFC TCM970625MB1"),
            "{b}: {:?}",
            mails[0]
        );
        assert!(
            mails[1]
                .body
                .contains("Vendedor eliminó el CSD del RFC TCM970625MB1"),
            "{b}: {:?}",
            mails[1]
        );
    }
}
