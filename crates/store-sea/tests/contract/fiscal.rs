//! The fiscal vault's storage on both databases.

use ::vault::{
    CertificateInfo, CredentialKind, CredentialRepository, FiscalCredential, Sealed,
    SealedCredential, VaultError,
};

use super::*;

fn sealed(company: CompanyId, by: UserId, number: &str) -> SealedCredential {
    SealedCredential {
        credential: FiscalCredential {
            id: id(),
            company_id: company,
            info: CertificateInfo {
                rfc: "TCM970625MB1".into(),
                representative_rfc: None,
                curp: None,
                legal_name: "TACOS CAMPESTRE MX SA DE CV".into(),
                certificate_number: number.into(),
                issuer: "AC de Pruebas".into(),
                valid_from: t0(),
                valid_to: t0() + chrono::Duration::days(1_460),
                kind: CredentialKind::Csd,
            },
            created_by: by,
            created_at: t0(),
        },
        certificate: Sealed::new("v1.cert".into()),
        private_key: Sealed::new("v1.key".into()),
        password: Sealed::new("v1.password".into()),
        key_id: 1,
    }
}

/// The count the upload bound checks is the company's own, follows inserts and deletions, and
/// a refused duplicate adds nothing.
#[tokio::test]
async fn credentials_are_counted_per_company() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (a, ua) = company_with_owner(&store, Role::Owner).await;
        let (other, uo) = company_with_owner(&store, Role::Owner).await;
        let first = sealed(a.id, ua.id, "30001000000500000001");
        store.insert(&first, 100, vec![]).await.unwrap();
        store
            .insert(&sealed(a.id, ua.id, "30001000000500000002"), 100, vec![])
            .await
            .unwrap();
        store
            .insert(
                &sealed(other.id, uo.id, "30001000000500000001"),
                100,
                vec![],
            )
            .await
            .unwrap();
        let again = store
            .insert(&sealed(a.id, ua.id, "30001000000500000002"), 100, vec![])
            .await;
        assert!(
            matches!(again, Err(VaultError::Duplicate)),
            "{b}: {again:?}"
        );
        assert_eq!(store.count(a.id).await.unwrap(), 2, "{b}");
        assert_eq!(store.count(other.id).await.unwrap(), 1, "{b}");
        assert!(
            store
                .delete(a.id, first.credential.id, vec![])
                .await
                .unwrap()
        );
        assert_eq!(store.count(a.id).await.unwrap(), 1, "{b}");
    }
}

/// The metadata reads (one credential, the list) give what was stored, the company's own only,
/// and agree with the read that carries the envelopes.
#[tokio::test]
async fn metadata_reads_match_what_was_stored_and_stay_in_the_company() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (a, ua) = company_with_owner(&store, Role::Owner).await;
        let (other, _) = company_with_owner(&store, Role::Owner).await;
        let mut stored = sealed(a.id, ua.id, "30001000000500000011");
        stored.credential.info.representative_rfc = Some("VAAM130719H60".into());
        stored.credential.info.curp = Some("VAAM130719HDFLLR04".into());
        stored.credential.info.kind = CredentialKind::Fiel;
        store.insert(&stored, 100, vec![]).await.unwrap();
        let id = stored.credential.id;
        let one = store.credential(a.id, id).await.unwrap();
        assert_eq!(one.as_ref(), Some(&stored.credential), "{b}");
        assert_eq!(
            store.list(a.id).await.unwrap(),
            vec![stored.credential.clone()],
            "{b}"
        );
        let full = store.sealed(a.id, id).await.unwrap().unwrap();
        assert_eq!(full.credential, stored.credential, "{b}");
        assert_eq!(full.private_key.as_str(), "v1.key", "{b}");
        assert_eq!(store.credential(other.id, id).await.unwrap(), None, "{b}");
        assert_eq!(
            store
                .credential(a.id, uuid::Uuid::from_u128(7))
                .await
                .unwrap(),
            None,
            "{b}"
        );
        assert!(store.list(other.id).await.unwrap().is_empty(), "{b}");
    }
}

/// The bound holds under concurrency: with room for one more credential, six uploads at once
/// store exactly one, and the others get `LimitReached` (counted inside each transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_never_pass_the_bound() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (a, ua) = company_with_owner(&store, Role::Owner).await;
        for n in 0..2 {
            store
                .insert(
                    &sealed(a.id, ua.id, &format!("3000100000050000010{n}")),
                    3,
                    vec![],
                )
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for n in 0..6 {
            let store = store.clone();
            let c = sealed(a.id, ua.id, &format!("3000100000050000020{n}"));
            tasks.push(tokio::spawn(
                async move { store.insert(&c, 3, vec![]).await },
            ));
        }
        let mut stored = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => stored += 1,
                Err(VaultError::LimitReached { max: 3 }) => {}
                Err(e) => panic!("{b}: {e:?}"),
            }
        }
        assert_eq!(stored, 1, "{b}");
        assert_eq!(store.count(a.id).await.unwrap(), 3, "{b}");
    }
}

fn valid_until(
    company: CompanyId,
    by: UserId,
    number: &str,
    valid_to: Timestamp,
) -> SealedCredential {
    let mut c = sealed(company, by, number);
    c.credential.info.valid_to = valid_to;
    c
}

/// The record the vault writes with an expiry notice (VAULT-8), naming `recipients`.
fn expiring_record(
    company: CompanyId,
    credential: uuid::Uuid,
    stage: u16,
    recipients: &[UserId],
) -> AuditRecord {
    record(Action::FISCAL_CREDENTIAL_EXPIRING, Some(company))
        .target("fiscal_credential", credential)
        .details(serde_json::json!({
            "kind": "csd",
            "rfc": "TCM970625MB1",
            "certificate_number": "30001000000500000001",
            "valid_to": "2026-12-01T12:00:00Z",
            "days_to_expiry": 9,
            "stage": stage,
            "recipients": recipients.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))
}

/// The expiry pass's reads (VAULT-8): credentials of every company whose validity ends inside
/// the window and whose last notice was not the "expired" one, by id, page by page.
#[tokio::test]
async fn expiry_candidates_are_the_window_s_credentials_not_yet_noticed_as_expired() {
    let d = chrono::Duration::days;
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (a, ua) = company_with_owner(&store, Role::Owner).await;
        let (other, uo) = company_with_owner(&store, Role::Owner).await;
        let soon = valid_until(a.id, ua.id, "30001000000500000001", t0() + d(10));
        let later = valid_until(a.id, ua.id, "30001000000500000002", t0() + d(40));
        let long_gone = valid_until(a.id, ua.id, "30001000000500000003", t0() - d(40));
        let just_gone = valid_until(a.id, ua.id, "30001000000500000004", t0() - d(5));
        let elsewhere = valid_until(other.id, uo.id, "30001000000500000001", t0() + d(2));
        for c in [&soon, &later, &long_gone, &just_gone, &elsewhere] {
            store.insert(c, 100, vec![]).await.unwrap();
        }
        let window = (t0() - d(30), t0() + d(30));
        let mut expected = vec![
            soon.credential.id,
            just_gone.credential.id,
            elsewhere.credential.id,
        ];
        expected.sort();
        let first = store
            .expiry_candidates(window.0, window.1, None, 2)
            .await
            .unwrap();
        let rest = store
            .expiry_candidates(window.0, window.1, Some(first[1].credential.id), 2)
            .await
            .unwrap();
        let seen: Vec<uuid::Uuid> = first.iter().chain(&rest).map(|c| c.credential.id).collect();
        assert_eq!(seen, expected, "{b}");
        assert!(
            first.iter().chain(&rest).all(|c| c.noticed.is_none()),
            "{b}"
        );
        let read = first
            .iter()
            .chain(&rest)
            .find(|c| c.credential.id == soon.credential.id)
            .unwrap();
        assert_eq!(read.credential, soon.credential, "{b}");

        // A notice moves the stage; the "expired" one (0) takes the credential out.
        assert!(
            store
                .record_expiry_notice(a.id, soon.credential.id, 30, vec![])
                .await
                .unwrap()
        );
        assert!(
            store
                .record_expiry_notice(a.id, just_gone.credential.id, 0, vec![])
                .await
                .unwrap()
        );
        let after: Vec<(uuid::Uuid, Option<u16>)> = store
            .expiry_candidates(window.0, window.1, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.credential.id, c.noticed))
            .collect();
        let mut expected = vec![
            (soon.credential.id, Some(30)),
            (elsewhere.credential.id, None),
        ];
        expected.sort();
        assert_eq!(after, expected, "{b}");
    }
}

/// A notice is recorded once per stage, only forwards (30 → 7 → 1 → 0), only in the
/// credential's own company, with its audit record and the e-mails it causes in the same
/// transaction; a refused one stores nothing.
#[tokio::test]
async fn expiry_notices_move_forward_once_with_their_record_and_mail() {
    for (db, store, conn) in stores().await {
        let b = db.backend;
        let (a, owner) = company_with_owner(&store, Role::Owner).await;
        let (other, _) = company_with_owner(&store, Role::Owner).await;
        let c = valid_until(
            a.id,
            owner.id,
            "30001000000500000001",
            t0() + chrono::Duration::days(9),
        );
        store.insert(&c, 100, vec![]).await.unwrap();
        let cid = c.credential.id;
        let records = || async {
            count(
                &conn,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'fiscal.credential_expiring'",
            )
            .await
        };
        let mails = || async {
            count(
                &conn,
                "SELECT COUNT(*) FROM outbox_messages WHERE template = 'credential_expiring'",
            )
            .await
        };

        let rec = expiring_record(a.id, cid, 7, &[owner.id]);
        assert!(
            store
                .record_expiry_notice(a.id, cid, 7, vec![rec])
                .await
                .unwrap(),
            "{b}"
        );
        assert_eq!(records().await, 1, "{b}");
        assert_eq!(mails().await, 1, "{b}");
        let subject: String = scalar(
            &conn,
            "SELECT subject FROM outbox_messages WHERE template = 'credential_expiring'",
        )
        .await;
        assert_eq!(
            subject, "Tu CSD del RFC TCM970625MB1 vence en 9 días",
            "{b}"
        );

        // The same stage again, an earlier one, or another company's claim: refused, nothing kept.
        for (company, stage) in [(a.id, 7), (a.id, 30), (other.id, 1)] {
            let rec = expiring_record(company, cid, stage, &[owner.id]);
            assert!(
                !store
                    .record_expiry_notice(company, cid, stage, vec![rec])
                    .await
                    .unwrap(),
                "{b}: {stage}"
            );
        }
        assert_eq!((records().await, mails().await), (1, 1), "{b}");

        // Later stages go through; a deleted credential gets none.
        let rec = expiring_record(a.id, cid, 1, &[owner.id]);
        assert!(
            store
                .record_expiry_notice(a.id, cid, 1, vec![rec])
                .await
                .unwrap(),
            "{b}"
        );
        assert!(store.delete(a.id, cid, vec![]).await.unwrap());
        let rec = expiring_record(a.id, cid, 0, &[owner.id]);
        assert!(
            !store
                .record_expiry_notice(a.id, cid, 0, vec![rec])
                .await
                .unwrap(),
            "{b}"
        );
        assert_eq!((records().await, mails().await), (2, 2), "{b}");
    }
}

/// Several processes running the pass at once: of six notices of the same stage exactly one is
/// recorded (the compare-and-set waits for the row lock on PostgreSQL and re-reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_passes_send_a_stage_once() {
    for (db, store, conn) in stores().await {
        let b = db.backend;
        let (a, owner) = company_with_owner(&store, Role::Owner).await;
        let c = valid_until(
            a.id,
            owner.id,
            "30001000000500000001",
            t0() + chrono::Duration::days(3),
        );
        store.insert(&c, 100, vec![]).await.unwrap();
        let cid = c.credential.id;
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let store = store.clone();
            let rec = expiring_record(a.id, cid, 7, &[owner.id]);
            tasks.push(tokio::spawn(async move {
                store.record_expiry_notice(a.id, cid, 7, vec![rec]).await
            }));
        }
        let mut sent = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                sent += 1;
            }
        }
        assert_eq!(sent, 1, "{b}");
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM outbox_messages WHERE template = 'credential_expiring'"
            )
            .await,
            1,
            "{b}"
        );
    }
}
