//! INC-1..2 through the API: an audit alert opens an incident, the incident moves through its
//! workflow (illegal moves refused), the affected user is notified, and the outbox worker
//! delivers the message over SMTP to a real listener; security notices (MFA enabled) too.

use serde_json::json;

use crate::helpers::*;

async fn smtp_app(sink: &SmtpSink) -> TestApp {
    let port = sink.port;
    spawn_configured(test_support::TestDb::sqlite(), move |s| {
        s.smtp_host = Some("127.0.0.1".into());
        s.smtp_port = port;
        s.smtp_tls = "none".into();
        s.outbox_interval_seconds = 1;
        s.mail_from = "Seguridad <seguridad@example.com>".into();
    })
    .await
}

#[actix_web::test]
async fn an_alert_becomes_an_incident_that_moves_through_its_states_and_notifies_over_smtp() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink).await;
    let [(_, owner), _, (_, manager), (vendor_id, _)] = app.company_with_roles("inc-").await;

    // Detection: repeated failed logins on the vendor's account raise an alert (AUD-7).
    for _ in 0..5 {
        app.login("inc-vendor@example.com", "Wrong#Password1").await;
    }
    let alerts = app
        .call("GET", "/v1/audit/alerts", Some(&owner), None)
        .await;
    let alert_id = alerts.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"].as_str().unwrap_or("").contains("failures"))
        .unwrap_or_else(|| panic!("no failure alert: {}", alerts.raw))["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let opened = app
        .call(
            "POST",
            "/v1/incidents",
            Some(&owner),
            Some(json!({
                "kind": "unauthorized_access", "severity": "high",
                "summary": "Intentos de acceso a la cuenta de un vendedor",
                "affected_user_ids": [vendor_id], "alert_id": alert_id
            })),
        )
        .await;
    assert_eq!(opened.status, 201, "{}", opened.raw);
    assert_eq!(opened.body["status"], "open");
    assert_eq!(opened.body["alert_id"], alert_id);
    assert_eq!(opened.body["affected_user_ids"], json!([vendor_id]));
    let id = opened.body["id"].as_str().unwrap().to_owned();

    // Managers do not manage incidents.
    assert_problem(
        &app.call("GET", "/v1/incidents", Some(&manager), None).await,
        403,
        "forbidden",
    );
    // Validation: unknown kind, unknown alert.
    let bad = app
        .call(
            "POST",
            "/v1/incidents",
            Some(&owner),
            Some(json!({ "kind": "meteor", "severity": "low", "summary": "x", "alert_id": uuid::Uuid::new_v4() })),
        )
        .await;
    assert_problem(&bad, 422, "validation_failed");
    assert_eq!(
        bad.body["errors"],
        json!([{ "field": "kind", "code": "unknown" }])
    );
    let bad = app
        .call(
            "POST",
            "/v1/incidents",
            Some(&owner),
            Some(json!({ "kind": "other", "severity": "low", "summary": "x", "alert_id": uuid::Uuid::new_v4() })),
        )
        .await;
    assert_problem(&bad, 422, "validation_failed");
    assert_eq!(
        bad.body["errors"],
        json!([{ "field": "alert_id", "code": "unknown_alert" }])
    );

    let step = |to: &'static str| {
        let app = &app;
        let owner = owner.clone();
        let id = id.clone();
        async move {
            app.call(
                "POST",
                &format!("/v1/incidents/{id}/transitions"),
                Some(&owner),
                Some(json!({ "to": to, "note": format!("paso a {to}") })),
            )
            .await
        }
    };
    let skip = step("resolved").await;
    assert_problem(&skip, 409, "invalid_transition");
    assert_eq!(step("contained").await.status, 200);
    let note = app
        .call(
            "POST",
            &format!("/v1/incidents/{id}/notes"),
            Some(&owner),
            Some(json!({ "note": "Sesiones revocadas y contraseña restablecida." })),
        )
        .await;
    assert_eq!(note.status, 201, "{}", note.raw);

    let notified = app
        .call(
            "POST",
            &format!("/v1/incidents/{id}/notifications"),
            Some(&owner),
            Some(json!({ "message": "Detectamos intentos de acceso a tu cuenta." })),
        )
        .await;
    assert_eq!(notified.status, 202, "{}", notified.raw);
    assert_eq!(notified.body["queued"], 1);
    let mail = sink
        .wait_for("Detectamos intentos de acceso a tu cuenta.")
        .await;
    assert!(
        mail.contains("To: Vendedor <inc-vendor@example.com>"),
        "{mail}"
    );
    assert!(
        mail.contains("From: Seguridad <seguridad@example.com>"),
        "{mail}"
    );
    assert!(mail.contains("Hola, Vendedor:"), "{mail}");

    assert_eq!(step("resolved").await.status, 200);
    let closed = step("closed").await;
    assert_eq!(closed.status, 200, "{}", closed.raw);
    assert_eq!(closed.body["status"], "closed");
    let kinds: Vec<&str> = closed.body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "transition",
            "note",
            "notified",
            "transition",
            "transition"
        ]
    );
    assert_problem(&step("open").await, 409, "invalid_transition");

    // Two more incidents; the list in pages of two equals the whole list, newest first.
    for summary in ["Segundo", "Tercero"] {
        let r = app
            .call(
                "POST",
                "/v1/incidents",
                Some(&owner),
                Some(json!({ "kind": "other", "severity": "low", "summary": summary })),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.raw);
    }
    let all = app.call("GET", "/v1/incidents", Some(&owner), None).await;
    assert!(all.body["next_cursor"].is_null(), "{}", all.raw);
    let summaries = |r: &Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["summary"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(summaries(&all)[..2], ["Tercero", "Segundo"]);
    let first = app
        .call("GET", "/v1/incidents?limit=2", Some(&owner), None)
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .call(
            "GET",
            &format!("/v1/incidents?limit=2&cursor={cursor}"),
            Some(&owner),
            None,
        )
        .await;
    assert!(second.body["next_cursor"].is_null(), "{}", second.raw);
    assert_eq!(
        [summaries(&first), summaries(&second)].concat(),
        summaries(&all)
    );
    for bad in ["cursor=1.2.3", "limit=0", "limit=201"] {
        assert_problem(
            &app.call("GET", &format!("/v1/incidents?{bad}"), Some(&owner), None)
                .await,
            400,
            "malformed_request",
        );
    }

    // Every change audited; the attempt recorded as delivered.
    let audit = app.audit_dump().await.join("\n");
    for action in [
        "incident.created|success",
        "incident.transitioned|success",
        "incident.note_added|success",
        "incident.notified|success",
    ] {
        assert!(audit.contains(action), "{action}");
    }
    let db = app.db.connect().await;
    use sea_orm::ConnectionTrait as _;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM outbox_attempts WHERE outcome = 'delivered'".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(row.try_get_by_index::<i64>(0).unwrap() >= 1);
}

#[actix_web::test]
async fn security_notices_reach_the_user_and_undeliverable_mail_is_retried() {
    // First no SMTP server at all: the message waits in the outbox, failed attempts recorded.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let app = spawn_configured(test_support::TestDb::sqlite(), move |s| {
        s.smtp_host = Some("127.0.0.1".into());
        s.smtp_port = dead_port;
        s.smtp_tls = "none".into();
        s.outbox_interval_seconds = 1;
    })
    .await;
    app.signup("notice@example.com").await;
    let token = app.token("notice@example.com").await;
    let r = app
        .call(
            "PUT",
            "/v1/me/password",
            Some(&token),
            Some(json!({ "current_password": PASSWORD, "new_password": "Otra#Clave2026", "new_password_confirmation": "Otra#Clave2026" })),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.raw);
    let db = app.db.connect().await;
    use sea_orm::ConnectionTrait as _;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
        }
    };
    let mut failed = 0;
    for _ in 0..100 {
        failed = count("SELECT COUNT(*) FROM outbox_attempts WHERE outcome = 'failed'").await;
        if failed > 0 {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(failed > 0, "a failed attempt is recorded");
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox_messages WHERE template = 'password_changed' AND delivered_at IS NULL AND next_attempt_at IS NOT NULL").await,
        1,
        "still queued for a retry"
    );
    // The embedded default instead: the outbox directory receives the notice as a file.
    let app = spawn_app().await;
    app.signup("eml@example.com").await;
    let token = app.token("eml@example.com").await;
    let r = app
        .call(
            "PUT",
            "/v1/me/password",
            Some(&token),
            Some(json!({ "current_password": PASSWORD, "new_password": "Otra#Clave2026", "new_password_confirmation": "Otra#Clave2026" })),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.raw);
    let outbox = app.data_dir.join("outbox");
    let mut text = String::new();
    for _ in 0..150 {
        if let Some(file) = std::fs::read_dir(&outbox).ok().and_then(|mut d| {
            d.find_map(|e| {
                e.ok()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            })
        }) {
            text = std::fs::read_to_string(file.path()).unwrap();
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(text.contains("To: "), "an .eml file arrives: {text}");
    assert!(text.contains("eml@example.com"));
    assert!(!text.contains("Otra#Clave2026") && !text.contains(PASSWORD));
}
