use std::sync::{Arc, Mutex};

use audit::{Action, Alert, AuditRecord, Outcome};
use chrono::{Duration, TimeZone};
use kernel::{CompanyId, ManualClock, RequestContext, UserId};
use uuid::Uuid;

use super::*;

fn t0() -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
        .unwrap()
}

fn company() -> CompanyId {
    CompanyId::from_uuid(Uuid::from_u128(7))
}

fn user(n: u128) -> UserId {
    UserId::from_uuid(Uuid::from_u128(n))
}

fn record(action: Action) -> AuditRecord {
    AuditRecord::new(
        Uuid::from_u128(99),
        t0(),
        action,
        Outcome::Success,
        &RequestContext::default(),
    )
    .company(company())
    .actor(user(1))
    .target("user", user(2))
}

#[test]
fn security_events_notify_the_user_they_concern() {
    for (action, template) in [
        (Action::USER_PASSWORD_CHANGED, Template::PasswordChanged),
        (Action::MFA_ENABLED, Template::MfaEnabled),
        (Action::MFA_DISABLED, Template::MfaDisabled),
        (
            Action::MFA_RECOVERY_CODES_REGENERATED,
            Template::RecoveryCodesRegenerated,
        ),
        (Action::USER_DEACTIVATED, Template::AccountDeactivated),
    ] {
        assert_eq!(
            notices_for_record(&record(action)),
            vec![Notice {
                company_id: company(),
                user_id: user(2),
                template,
                at: t0(),
                cause: Uuid::from_u128(99),
                address: None,
            }],
            "{action}"
        );
    }
}

#[test]
fn failures_rehashes_and_other_events_notify_nobody() {
    let mut failed = record(Action::USER_PASSWORD_CHANGED);
    failed.outcome = Outcome::Failure;
    let rehash = record(Action::USER_PASSWORD_CHANGED)
        .details(serde_json::json!({ "reason": "hash_parameters_upgraded" }));
    let mut no_company = record(Action::MFA_ENABLED);
    no_company.company_id = None;
    for r in [
        failed,
        rehash,
        no_company,
        record(Action::SESSION_LOGIN),
        record(Action::USER_CREATED),
        record(Action::AUDIT_EXPORTED),
    ] {
        assert!(notices_for_record(&r).is_empty(), "{}", r.action);
    }
}

#[test]
fn an_incident_notification_reaches_each_recipient_with_the_message() {
    let r = record(Action::INCIDENT_NOTIFIED).details(serde_json::json!({
        "recipients": [user(3).to_string(), user(4).to_string(), "not-a-uuid"],
        "message": "Detectamos accesos no autorizados."
    }));
    let notices = notices_for_record(&r);
    assert_eq!(
        notices.iter().map(|n| n.user_id).collect::<Vec<_>>(),
        [user(3), user(4)]
    );
    assert!(notices.iter().all(|n| n.template
        == Template::Incident {
            message: "Detectamos accesos no autorizados.".into()
        }));
}

#[test]
fn a_privileged_login_from_a_new_ip_notifies_that_user() {
    let alert = Alert {
        id: Uuid::from_u128(5),
        company_id: Some(company()),
        at: t0(),
        rule: "new_ip_privileged_login".into(),
        severity: "medium".into(),
        summary: "x".into(),
        subject: format!("{}@203.0.113.9", user(2)),
        status: "open".into(),
        record_id: Uuid::from_u128(6),
    };
    let n = notice_for_alert(&alert).unwrap();
    assert_eq!(n.user_id, user(2));
    assert_eq!(
        n.template,
        Template::NewIpLogin {
            ip: "203.0.113.9".into()
        }
    );
    let other = Alert {
        rule: "repeated_login_failures_account".into(),
        ..alert
    };
    assert_eq!(notice_for_alert(&other), None);
}

#[test]
fn every_template_is_spanish_signed_and_greets_by_name() {
    for t in [
        Template::PasswordChanged,
        Template::MfaEnabled,
        Template::MfaDisabled,
        Template::RecoveryCodesRegenerated,
        Template::AccountDeactivated,
        Template::NewIpLogin {
            ip: "203.0.113.9".into(),
        },
        Template::Incident {
            message: "Mensaje".into(),
        },
        Template::PasswordReset { expires_at: t0() },
        changed(true),
        changed(false),
        expiring("CSD", 12, false),
        expiring("e.firma", 0, false),
        expiring("CSD", -1, true),
    ] {
        let r = render(&t, "Ana López");
        assert!(r.body.starts_with("Hola, Ana López:"), "{}", t.name());
        assert!(r.body.contains("Seguridad de IncrementaCRM"));
        assert!(!r.subject.is_empty());
    }
    assert!(
        render(
            &Template::NewIpLogin {
                ip: "203.0.113.9".into()
            },
            "Ana"
        )
        .body
        .contains("203.0.113.9")
    );
}

fn changed(uploaded: bool) -> Template {
    Template::CredentialChanged {
        uploaded,
        kind: "e.firma".into(),
        rfc: "TCM970625MB1".into(),
        certificate_number: "30001000000500003415".into(),
        by: "Luis Pérez".into(),
    }
}

#[test]
fn a_stored_or_deleted_credential_notifies_the_other_managers_the_vault_named() {
    for (action, uploaded) in [
        (Action::FISCAL_CREDENTIAL_UPLOADED, true),
        (Action::FISCAL_CREDENTIAL_DELETED, false),
    ] {
        let r = record(action).details(serde_json::json!({
            "kind": "fiel",
            "rfc": "TCM970625MB1",
            "certificate_number": "30001000000500003415",
            "by": "Luis Pérez",
            "recipients": [user(3).to_string()],
        }));
        let notices = notices_for_record(&r);
        assert_eq!(notices.len(), 1, "{action}");
        assert_eq!(notices[0].user_id, user(3));
        assert_eq!(notices[0].template, changed(uploaded));
        // A record from before recipients were named (or without its facts) tells nobody.
        let old = record(action).details(serde_json::json!({
            "kind": "fiel", "rfc": "TCM970625MB1", "certificate_number": "1",
        }));
        assert!(notices_for_record(&old).is_empty(), "{action}");
        let bare =
            record(action).details(serde_json::json!({ "recipients": [user(3).to_string()] }));
        assert!(notices_for_record(&bare).is_empty(), "{action}");
    }
    assert_eq!(changed(true).name(), "credential_uploaded");
    assert_eq!(changed(false).name(), "credential_deleted");
    let stored = render(&changed(true), "Ana");
    assert_eq!(
        stored.subject,
        "Se guardó una e.firma en la bóveda de tu empresa"
    );
    assert!(stored.body.contains(
        "Luis Pérez guardó la e.firma del RFC TCM970625MB1 (certificado número 30001000000500003415)"
    ));
    let deleted = render(&changed(false), "Ana");
    assert_eq!(
        deleted.subject,
        "Se eliminó una e.firma de la bóveda de tu empresa"
    );
    assert!(deleted.body.contains("ya no se podrá firmar"));
}

fn expiring(kind: &str, days_to_expiry: i64, expired: bool) -> Template {
    Template::CredentialExpiring {
        kind: kind.into(),
        rfc: "TCM970625MB1".into(),
        certificate_number: "30001000000500003416".into(),
        valid_to: t0() + Duration::days(days_to_expiry),
        days_to_expiry,
        expired,
    }
}

fn expiring_record(stage: u64, days_to_expiry: i64) -> AuditRecord {
    let mut r = record(Action::FISCAL_CREDENTIAL_EXPIRING).details(serde_json::json!({
        "kind": "csd",
        "rfc": "TCM970625MB1",
        "certificate_number": "30001000000500003416",
        "valid_to": "2026-12-03T18:30:00Z",
        "days_to_expiry": days_to_expiry,
        "stage": stage,
        "recipients": [user(3).to_string(), "not-a-uuid", user(4).to_string()],
    }));
    r.actor_id = None;
    r.target = Some("fiscal_credential:00000000-0000-0000-0000-000000000005".into());
    r
}

#[test]
fn an_expiring_credential_notifies_each_recipient_the_vault_named() {
    let notices = notices_for_record(&expiring_record(7, 2));
    assert_eq!(
        notices.iter().map(|n| n.user_id).collect::<Vec<_>>(),
        [user(3), user(4)]
    );
    let expected = Template::CredentialExpiring {
        kind: "CSD".into(),
        rfc: "TCM970625MB1".into(),
        certificate_number: "30001000000500003416".into(),
        valid_to: chrono::Utc
            .with_ymd_and_hms(2026, 12, 3, 18, 30, 0)
            .unwrap(),
        days_to_expiry: 2,
        expired: false,
    };
    assert!(notices.iter().all(|n| n.template == expected
        && n.company_id == company()
        && n.cause == Uuid::from_u128(99)));
    assert_eq!(expected.name(), "credential_expiring");
    let expired = notices_for_record(&expiring_record(0, -1));
    assert!(matches!(
        expired[0].template,
        Template::CredentialExpiring { expired: true, .. }
    ));
    // Details the vault never writes tell nobody rather than something wrong.
    for broken in [
        serde_json::json!({ "kind": "other" }),
        serde_json::json!({ "valid_to": "yesterday" }),
        serde_json::json!({ "stage": "seven" }),
    ] {
        let mut r = expiring_record(7, 2);
        for (k, v) in broken.as_object().unwrap() {
            r.details[k] = v.clone();
        }
        assert!(notices_for_record(&r).is_empty(), "{broken}");
    }
}

#[test]
fn credential_notices_say_what_expires_when_and_what_to_do() {
    let soon = render(&expiring("CSD", 12, false), "Ana");
    assert_eq!(soon.subject, "Tu CSD del RFC TCM970625MB1 vence en 12 días");
    assert!(
        soon.body
            .contains("certificado número 30001000000500003416")
    );
    assert!(soon.body.contains("03/12/2026 a las 12:00 (hora UTC)"));
    assert!(soon.body.contains("Tramita un CSD nuevo"));
    let one = render(&expiring("e.firma", 1, false), "Ana");
    assert_eq!(
        one.subject,
        "Tu e.firma del RFC TCM970625MB1 vence en 1 día"
    );
    assert!(one.body.contains("Renueva tu e.firma"));
    assert!(
        one.body.contains("La e.firma del RFC TCM970625MB1"),
        "{}",
        one.body
    );
    let hours = render(&expiring("CSD", 0, false), "Ana");
    assert_eq!(
        hours.subject,
        "Tu CSD del RFC TCM970625MB1 vence en menos de un día"
    );
    let gone = render(&expiring("CSD", -1, true), "Ana");
    assert_eq!(gone.subject, "Tu CSD del RFC TCM970625MB1 venció");
    assert!(gone.body.contains("ya no sirve para firmar"));
}

#[test]
fn backoff_doubles_up_to_the_cap_and_gives_up_after_the_last_attempt() {
    let p = RetryPolicy::default();
    assert_eq!(p.next_attempt(1, t0()), Some(t0() + Duration::seconds(30)));
    assert_eq!(p.next_attempt(2, t0()), Some(t0() + Duration::seconds(60)));
    assert_eq!(p.next_attempt(3, t0()), Some(t0() + Duration::seconds(120)));
    assert_eq!(
        p.next_attempt(9, t0()),
        Some(t0() + Duration::hours(2) + Duration::minutes(8))
    );
    assert_eq!(p.next_attempt(10, t0()), None);
    let long = RetryPolicy {
        max_attempts: 100,
        ..p
    };
    assert_eq!(long.next_attempt(40, t0()), Some(t0() + Duration::hours(6)));
}

fn message(n: u128, attempts: u32) -> OutboxMessage {
    OutboxMessage {
        id: Uuid::from_u128(n),
        company_id: company(),
        user_id: user(2),
        to: "ana@example.com".into(),
        to_name: "Ana".into(),
        template: "mfa_enabled".into(),
        subject: "s".into(),
        body: "b".into(),
        cause: Uuid::from_u128(n + 1000),
        created_at: t0(),
        attempts,
    }
}

#[tokio::test]
async fn the_worker_records_every_attempt_and_schedules_retries() {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let mut store = MockOutboxStore::new();
    store
        .expect_claim_due()
        .withf(|now, lease, limit| *lease == *now + Duration::minutes(2) && *limit == 50)
        .returning(|_, _, _| Ok(vec![message(1, 0), message(2, 0), message(3, 9)]));
    let seen = attempts.clone();
    store
        .expect_record_attempt()
        .times(3)
        .returning(move |id, at, error, retry| {
            seen.lock().unwrap().push((id, at, error, retry));
            Ok(())
        });
    let mut mailer = MockMailer::new();
    mailer.expect_send().returning(|m| {
        if m.id == Uuid::from_u128(1) {
            Ok(())
        } else {
            Err(NotifyError::Delivery("550 mailbox unavailable".into()))
        }
    });
    let worker = OutboxWorker::new(
        Arc::new(store),
        Arc::new(mailer),
        Arc::new(ManualClock::new(t0())),
        RetryPolicy::default(),
    );
    let report = worker.run_once().await.unwrap();
    assert_eq!(
        report,
        DeliveryReport {
            delivered: 1,
            retrying: 1,
            given_up: 1
        }
    );
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts[0], (Uuid::from_u128(1), t0(), None, None));
    assert_eq!(
        attempts[1],
        (
            Uuid::from_u128(2),
            t0(),
            Some("550 mailbox unavailable".into()),
            Some(t0() + Duration::seconds(30))
        )
    );
    assert_eq!(attempts[2].3, None, "the tenth failure gives up");
}

/// A worker whose clock reads `t0()`.
fn worker_at_t0(store: MockOutboxStore, mailer: MockMailer) -> OutboxWorker {
    OutboxWorker::new(
        Arc::new(store),
        Arc::new(mailer),
        Arc::new(ManualClock::new(t0())),
        RetryPolicy::default(),
    )
}

#[tokio::test]
async fn the_retention_purge_cuts_at_the_clock_minus_the_retention() {
    let mut store = MockOutboxStore::new();
    store
        .expect_purge_finished()
        .times(1)
        .withf(|before| *before == t0() - Duration::days(365))
        .returning(|_| Ok(7));
    store.expect_claim_due().times(0);
    let mut mailer = MockMailer::new();
    mailer
        .expect_purge_delivered()
        .times(1)
        .withf(|before| *before == t0() - Duration::days(365))
        .returning(|_| Ok(3));
    let worker = worker_at_t0(store, mailer);
    assert_eq!(
        worker.purge_finished(Duration::days(365)).await.unwrap(),
        OutboxPurge {
            messages: 7,
            files: 3
        }
    );

    // A retention reaching before the calendar's start cuts at its start: nothing can be older.
    let mut store = MockOutboxStore::new();
    store
        .expect_purge_finished()
        .times(1)
        .withf(|before| *before == chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .returning(|_| Ok(0));
    let mut mailer = MockMailer::new();
    mailer.expect_purge_delivered().returning(|_| Ok(0));
    let worker = worker_at_t0(store, mailer);
    assert_eq!(
        worker.purge_finished(Duration::MAX).await.unwrap(),
        OutboxPurge::default()
    );

    // When the store fails, the transport's copies stay too (the next run takes both).
    let mut store = MockOutboxStore::new();
    store
        .expect_purge_finished()
        .returning(|_| Err(NotifyError::Delivery("store down".into())));
    let mut mailer = MockMailer::new();
    mailer.expect_purge_delivered().times(0);
    let worker = worker_at_t0(store, mailer);
    assert!(worker.purge_finished(Duration::days(1)).await.is_err());
}

fn reset_record() -> AuditRecord {
    AuditRecord::new(
        Uuid::from_u128(99),
        t0(),
        Action::USER_PASSWORD_RESET_REQUESTED,
        Outcome::Success,
        &RequestContext::default(),
    )
    .company(company())
    .target("user", user(2))
    .details(serde_json::json!({ "expires_at": (t0() + Duration::minutes(30)).to_rfc3339() }))
}

#[test]
fn a_reset_request_mails_its_user_a_body_with_a_placeholder_and_no_token() {
    let notices = notices_for_record(&reset_record());
    let expires_at = t0() + Duration::minutes(30);
    assert_eq!(
        notices,
        vec![Notice {
            company_id: company(),
            user_id: user(2),
            template: Template::PasswordReset { expires_at },
            at: t0(),
            cause: Uuid::from_u128(99),
            address: None,
        }]
    );
    assert_eq!(notices[0].template.name(), PASSWORD_RESET_TEMPLATE);
    let mail = render(&notices[0].template, "Ana");
    assert_eq!(mail.body.matches(RESET_TOKEN_PLACEHOLDER).count(), 1);
    assert!(
        mail.body.contains("21/11/2026 a las 12:30"),
        "{}",
        mail.body
    );
    // A record without its expiry (not what the service writes) mails nobody.
    let mut bare = reset_record();
    bare.details = serde_json::json!({});
    assert_eq!(notices_for_record(&bare), vec![]);
}

fn reset_message(n: u128) -> OutboxMessage {
    OutboxMessage {
        template: PASSWORD_RESET_TEMPLATE.into(),
        body: format!("Hola, Ana {RESET_TOKEN_PLACEHOLDER}:\n\n{RESET_TOKEN_PLACEHOLDER}\n"),
        ..message(n, 0)
    }
}

/// Delivers `messages` through a worker whose minter makes `TOKEN-<reset id>` and that knows
/// the reset page `page` (or none); returns the bodies the mailer received, in order.
async fn deliver(messages: Vec<OutboxMessage>, page: Option<&str>) -> Vec<String> {
    let count = messages.len();
    let mut store = MockOutboxStore::new();
    store
        .expect_claim_due()
        .returning(move |_, _, _| Ok(messages.clone()));
    store
        .expect_record_attempt()
        .times(count)
        .withf(|_, _, error, _| error.is_none())
        .returning(|_, _, _, _| Ok(()));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let seen = sent.clone();
    let mut mailer = MockMailer::new();
    mailer.expect_send().times(count).returning(move |m| {
        seen.lock().unwrap().push(m.body.clone());
        Ok(())
    });
    let mut minter = MockResetTokenMinter::new();
    minter
        .expect_mint()
        .returning(|reset| Some(zeroize::Zeroizing::new(format!("TOKEN-{reset}"))));
    let mut worker = worker_at_t0(store, mailer).with_reset_tokens(Arc::new(minter));
    if let Some(page) = page {
        worker = worker.with_reset_page(page);
    }
    let delivered = worker.run_once().await.unwrap().delivered;
    assert_eq!(usize::try_from(delivered).unwrap(), count);
    std::mem::take(&mut *sent.lock().unwrap())
}

/// The worker fills the token of the message's own reset (its cause) into the copy it hands the
/// mailer; other templates go as stored, placeholder and all.
#[tokio::test]
async fn the_worker_fills_each_reset_message_with_its_own_token_at_delivery() {
    let incident = OutboxMessage {
        body: format!("incident text {RESET_TOKEN_PLACEHOLDER}"),
        ..message(2, 0)
    };
    let sent = deliver(vec![reset_message(1), incident], None).await;
    let token = format!("TOKEN-{}", Uuid::from_u128(1001));
    assert_eq!(
        sent[0],
        format!("Hola, Ana {token}:\n\n{token}\n"),
        "a placeholder in the name yields the recipient's own token, nobody else's"
    );
    assert_eq!(sent[1], format!("incident text {RESET_TOKEN_PLACEHOLDER}"));
}

/// Fails closed: without a minter, or when it cannot make a token, the reset message is not
/// sent (it waits for a retry) and the mailer never sees its placeholder.
#[tokio::test]
async fn a_reset_message_without_its_token_is_not_sent() {
    for minter in [None, Some(())] {
        let mut store = MockOutboxStore::new();
        store
            .expect_claim_due()
            .returning(|_, _, _| Ok(vec![reset_message(1)]));
        store
            .expect_record_attempt()
            .times(1)
            .withf(|_, _, error, retry| {
                error.as_deref() == Some("no key to make the reset token") && retry.is_some()
            })
            .returning(|_, _, _, _| Ok(()));
        let mut mailer = MockMailer::new();
        mailer.expect_send().times(0);
        let mut worker = worker_at_t0(store, mailer);
        if minter.is_some() {
            let mut m = MockResetTokenMinter::new();
            m.expect_mint().returning(|_| None);
            worker = worker.with_reset_tokens(Arc::new(m));
        }
        let report = worker.run_once().await.unwrap();
        assert_eq!(report.retrying, 1);
    }
}

/// One password-reset message of reset 1001 whose stored body is `body`, delivered.
async fn deliver_reset(body: String, page: Option<&str>) -> String {
    let message = OutboxMessage {
        body,
        ..reset_message(1)
    };
    deliver(vec![message], page).await.remove(0)
}

/// With the front end's reset page known, the mail also links to it with the same code in the
/// fragment; without it the mail holds the code alone. Either way no placeholder is left, and
/// one smuggled into the recipient's name links to nothing but the recipient's own code.
#[tokio::test]
async fn a_known_reset_page_adds_a_link_carrying_the_same_code() {
    let template = Template::PasswordReset {
        expires_at: t0() + Duration::minutes(30),
    };
    let stored = render(&template, "Ana").body;
    assert_eq!(stored.matches(RESET_LINK_PLACEHOLDER).count(), 1);
    let code = format!("TOKEN-{}", Uuid::from_u128(1001));

    let linked = deliver_reset(stored.clone(), Some("https://app.example.mx/restablecer")).await;
    assert!(
        linked.contains(&format!(
            "\n\n{code}\n\nO abre este enlace, que ya lo incluye:\n\
             https://app.example.mx/restablecer#token={code}\n\n"
        )),
        "{linked}"
    );
    assert!(!linked.contains("[["), "{linked}");

    let plain = deliver_reset(stored, None).await;
    assert!(
        plain.contains(&format!("\n\n{code}\n\nAl usarlo")),
        "{plain}"
    );
    assert!(
        !plain.contains("enlace") && !plain.contains("[["),
        "{plain}"
    );

    let smuggled = render(&template, &format!("Ana {RESET_LINK_PLACEHOLDER}")).body;
    let sent = deliver_reset(smuggled, Some("https://app.example.mx/r")).await;
    assert_eq!(
        sent.matches(&format!("https://app.example.mx/r#token={code}"))
            .count(),
        2,
        "{sent}"
    );
    assert!(!sent.contains("[["), "{sent}");
}

fn email_change_record(action: Action, details: serde_json::Value) -> AuditRecord {
    AuditRecord::new(
        Uuid::from_u128(98),
        t0(),
        action,
        Outcome::Success,
        &RequestContext::default(),
    )
    .company(company())
    .actor(user(2))
    .target("user", user(2))
    .details(details)
}

/// An e-mail change mails its code to the new address and a warning to the current one; the
/// change mails the old address. Records without their details mail nobody.
#[test]
fn an_email_change_mails_the_code_to_the_new_address_and_warns_the_old_one() {
    let expires_at = t0() + Duration::minutes(60);
    let requested = email_change_record(
        Action::USER_EMAIL_CHANGE_REQUESTED,
        serde_json::json!({ "to": "ana@nuevo.mx", "expires_at": expires_at.to_rfc3339() }),
    );
    let notices = notices_for_record(&requested);
    let base = Notice {
        company_id: company(),
        user_id: user(2),
        template: Template::EmailChangeCode { expires_at },
        at: t0(),
        cause: Uuid::from_u128(98),
        address: Some("ana@nuevo.mx".into()),
    };
    assert_eq!(
        notices,
        vec![
            base.clone(),
            Notice {
                template: Template::EmailChangeRequested {
                    to: "ana@nuevo.mx".into()
                },
                address: None,
                ..base.clone()
            },
        ]
    );
    assert_eq!(notices[0].template.name(), EMAIL_CHANGE_CODE_TEMPLATE);
    let code_mail = render(&notices[0].template, "Ana");
    assert_eq!(code_mail.body.matches(RESET_TOKEN_PLACEHOLDER).count(), 1);
    assert!(!code_mail.body.contains(RESET_LINK_PLACEHOLDER));
    assert!(
        render(&notices[1].template, "Ana")
            .body
            .contains("ana@nuevo.mx")
    );

    let changed = email_change_record(
        Action::USER_EMAIL_CHANGED,
        serde_json::json!({ "from": "ana@example.com", "to": "ana@nuevo.mx" }),
    );
    let plain = notices_for_record(&changed);
    assert_eq!(
        plain,
        vec![Notice {
            template: Template::EmailChanged {
                to: "ana@nuevo.mx".into(),
                revert_until: None,
            },
            address: Some("ana@example.com".into()),
            ..base.clone()
        }]
    );
    assert_eq!(plain[0].template.name(), "email_changed");
    assert!(
        !render(&plain[0].template, "Ana")
            .body
            .contains(RESET_TOKEN_PLACEHOLDER),
        "no undo window of its own, no code"
    );

    // With an undo window, the old address gets the code that undoes the change.
    let revert_until = t0() + Duration::hours(72);
    let undoable = email_change_record(
        Action::USER_EMAIL_CHANGED,
        serde_json::json!({
            "from": "ana@example.com",
            "to": "ana@nuevo.mx",
            "revert_until": revert_until.to_rfc3339(),
        }),
    );
    let notices = notices_for_record(&undoable);
    assert_eq!(
        notices,
        vec![Notice {
            template: Template::EmailChanged {
                to: "ana@nuevo.mx".into(),
                revert_until: Some(revert_until),
            },
            address: Some("ana@example.com".into()),
            ..base.clone()
        }]
    );
    assert_eq!(notices[0].template.name(), EMAIL_CHANGE_UNDO_TEMPLATE);
    let undo_mail = render(&notices[0].template, "Ana");
    assert_eq!(undo_mail.body.matches(RESET_TOKEN_PLACEHOLDER).count(), 1);
    assert!(!undo_mail.body.contains(RESET_LINK_PLACEHOLDER));
    assert!(undo_mail.body.contains("ana@nuevo.mx"));

    // The undo tells both addresses, each by name.
    let reverted = email_change_record(
        Action::USER_EMAIL_CHANGE_REVERTED,
        serde_json::json!({ "from": "ana@nuevo.mx", "to": "ana@example.com" }),
    );
    let notices = notices_for_record(&reverted);
    assert_eq!(
        notices,
        vec![
            Notice {
                template: Template::EmailChangeReverted {
                    from: "ana@nuevo.mx".into()
                },
                address: Some("ana@example.com".into()),
                ..base.clone()
            },
            Notice {
                template: Template::EmailChangeUndone {
                    to: "ana@example.com".into()
                },
                address: Some("ana@nuevo.mx".into()),
                ..base
            },
        ]
    );
    for notice in &notices {
        assert!(
            !render(&notice.template, "Ana").body.contains("[["),
            "{notice:?}"
        );
    }
    for action in [
        Action::USER_EMAIL_CHANGE_REQUESTED,
        Action::USER_EMAIL_CHANGED,
        Action::USER_EMAIL_CHANGE_REVERTED,
    ] {
        let bare = email_change_record(action, serde_json::json!({}));
        assert_eq!(notices_for_record(&bare), vec![], "{action}");
    }
}

/// The code of an e-mail change, and the one undoing a change, are filled in like a reset's,
/// from the message's own cause, and never get the reset page's link.
#[tokio::test]
async fn an_email_change_code_is_filled_in_at_delivery_without_a_link() {
    let templates = [
        (
            EMAIL_CHANGE_CODE_TEMPLATE,
            Template::EmailChangeCode {
                expires_at: t0() + Duration::minutes(60),
            },
        ),
        (
            EMAIL_CHANGE_UNDO_TEMPLATE,
            Template::EmailChanged {
                to: "ana@nuevo.mx".into(),
                revert_until: Some(t0() + Duration::hours(72)),
            },
        ),
    ];
    for (name, template) in templates {
        assert_eq!(template.name(), name);
        let body = render(&template, &format!("Ana {RESET_LINK_PLACEHOLDER}")).body;
        let message = OutboxMessage {
            template: name.into(),
            body,
            ..message(1, 0)
        };
        let sent = deliver(vec![message], Some("https://app.example.mx/r")).await;
        let code = format!("TOKEN-{}", Uuid::from_u128(1001));
        assert!(
            sent[0].contains(&format!("\n\n{code}\n\n")),
            "{name}: {}",
            sent[0]
        );
        assert!(
            !sent[0].contains("https://") && !sent[0].contains("[["),
            "{name}: {}",
            sent[0]
        );
    }
}
