use std::sync::Arc;

use accounts::{Company, CompanyName, MockAccountRepository, Rfc};
use audit::MockAuditSink;
use chrono::TimeZone;
use kernel::{CompanyId, ManualClock, SequentialIds, SessionId, UserId};
use rbac::Role;
use uuid::Uuid;

use super::*;
use crate::{
    CertificateInfo, CredentialKind, ExpiryCandidate, MockCertificateInspector,
    MockCredentialRepository, MockEnvelope, Sealed,
};

fn t(y: i32, m: u32, d: u32) -> Timestamp {
    chrono::Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn company_id() -> CompanyId {
    CompanyId::from_uuid(Uuid::from_u128(7))
}

fn info() -> CertificateInfo {
    CertificateInfo {
        rfc: "TCM970625MB1".into(),
        representative_rfc: Some("LOLA800101AB2".into()),
        curp: None,
        legal_name: "TACOS CAMPESTRE MX SA DE CV".into(),
        certificate_number: "30001000000500009901".into(),
        issuer: "AC de Pruebas".into(),
        valid_from: t(2025, 1, 1),
        valid_to: t(2029, 1, 1),
        kind: CredentialKind::Csd,
    }
}

fn actor(role: Role, step_up: bool) -> Actor {
    Actor::new(
        UserId::from_uuid(Uuid::from_u128(1)),
        company_id(),
        SessionId::from_uuid(Uuid::from_u128(2)),
        role,
        role.default_permissions(),
    )
    .reauthenticated(step_up.then(|| t(2026, 11, 21)))
}

struct Parts {
    repo: MockCredentialRepository,
    envelope: MockEnvelope,
    inspector: MockCertificateInspector,
    accounts: MockAccountRepository,
    audit: MockAuditSink,
    clock: Arc<ManualClock>,
}

impl Parts {
    fn new(company_rfc: Option<&'static str>) -> Self {
        let mut accounts = MockAccountRepository::new();
        accounts.expect_company().returning(move |id| {
            Ok(Some(Company {
                id,
                name: CompanyName::parse("X").unwrap(),
                rfc: company_rfc.map(|r| Rfc::parse(r).unwrap()),
                session_limit: None,
                profile: accounts::CompanyProfile::default(),
                created_at: t(2025, 1, 1),
            }))
        });
        // The company's credential managers: the acting Owner (user 1) and an Admin (user 3).
        accounts.expect_users().returning(|company, _, _| {
            Ok(vec![
                member(1, company.as_uuid().as_u128(), Role::Owner, true),
                member(3, company.as_uuid().as_u128(), Role::Admin, true),
            ])
        });
        let mut envelope = MockEnvelope::new();
        envelope.expect_current_key_id().return_const(2_u32);
        envelope.expect_seal().returning(|plain, ad| {
            Ok(Sealed::new(format!(
                "sealed:{}:{}",
                ad.purpose.as_str(),
                plain.len()
            )))
        });
        let mut audit = MockAuditSink::new();
        audit.expect_record().returning(|_| Ok(()));
        let mut repo = MockCredentialRepository::new();
        repo.expect_count().returning(|_| Ok(0));
        Self {
            repo,
            envelope,
            inspector: MockCertificateInspector::new(),
            accounts,
            audit,
            clock: Arc::new(ManualClock::new(
                t(2026, 11, 21) + chrono::Duration::seconds(30),
            )),
        }
    }

    fn valid_inspector(mut self) -> Self {
        self.inspector.expect_inspect().returning(|_| Ok(info()));
        self.inspector
            .expect_check_key()
            .returning(|_, _, _| Ok(()));
        self
    }

    fn build(self) -> VaultService {
        VaultService::new(
            VaultPorts {
                repo: Arc::new(self.repo),
                envelope: Arc::new(self.envelope),
                inspector: Arc::new(self.inspector),
                accounts: Arc::new(self.accounts),
                audit: Arc::new(self.audit),
                clock: self.clock,
                ids: Arc::new(SequentialIds::default()),
            },
            UploadLimits::default(),
        )
    }
}

async fn upload(svc: &VaultService, who: &Actor) -> Result<CredentialView, VaultError> {
    svc.upload(
        who,
        b"cert",
        SecretBytes::new(b"key".to_vec()),
        SecretBytes::new(b"12345678a".to_vec()),
        &RequestContext::default(),
    )
    .await
}

#[tokio::test]
async fn a_valid_upload_seals_all_three_values_bound_to_their_record_and_stores_once() {
    let mut p = Parts::new(Some("TCM970625MB1")).valid_inspector();
    p.repo
        .expect_insert()
        .withf(|c, max, audit| {
            *max == 100
                && c.key_id == 2
                && c.certificate.as_str() == "sealed:fiscal.certificate:4"
                && c.private_key.as_str() == "sealed:fiscal.private_key:3"
                && c.password.as_str() == "sealed:fiscal.key_password:9"
                && audit.len() == 1
                && !audit[0].details.to_string().contains("12345678a")
                // The other credential managers are told, by name of the actor.
                && audit[0].details["by"] == "Ana"
                && audit[0].details["recipients"]
                    == serde_json::json!([Uuid::from_u128(3).to_string()])
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    let view = upload(&p.build(), &actor(Role::Admin, true)).await.unwrap();
    assert_eq!(
        view.credential.info.certificate_number,
        "30001000000500009901"
    );
    assert_eq!(view.days_to_expiry, 771);
    assert!(!view.expiring_soon);
}

#[tokio::test]
async fn upload_needs_the_permission_and_a_fresh_step_up() {
    let svc = Parts::new(None).build();
    assert!(matches!(
        upload(&svc, &actor(Role::Manager, true)).await,
        Err(VaultError::Forbidden(_))
    ));
    assert!(matches!(
        upload(&svc, &actor(Role::Owner, false)).await,
        Err(VaultError::ReauthenticationRequired)
    ));
}

#[tokio::test]
async fn every_validation_failure_stores_nothing() {
    // Expired, not yet valid, wrong RFC, and an inspector refusal.
    type Expect = fn(&VaultError) -> bool;
    let cases: Vec<(Parts, Expect)> = vec![
        (
            {
                let p = Parts::new(None).valid_inspector();
                p.clock.set(t(2029, 1, 1));
                p
            },
            |e| matches!(e, VaultError::CertificateExpired),
        ),
        (
            {
                let p = Parts::new(None).valid_inspector();
                p.clock.set(t(2024, 12, 31));
                p
            },
            |e| matches!(e, VaultError::CertificateNotYetValid),
        ),
        (Parts::new(Some("EKU9003173C9")).valid_inspector(), |e| {
            matches!(e, VaultError::RfcMismatch)
        }),
        (
            {
                let mut p = Parts::new(None);
                p.inspector.expect_inspect().returning(|_| Ok(info()));
                p.inspector
                    .expect_check_key()
                    .returning(|_, _, _| Err(VaultError::CertificateKeyMismatch));
                p
            },
            |e| matches!(e, VaultError::CertificateKeyMismatch),
        ),
    ];
    for (n, (mut p, expected)) in cases.into_iter().enumerate() {
        p.repo.expect_insert().times(0);
        let svc = p.build();
        let who = actor(Role::Owner, true).reauthenticated(Some(svc.clock.now()));
        let err = upload(&svc, &who).await.unwrap_err();
        assert!(expected(&err), "case {n}: {err:?}");
    }
}

#[tokio::test]
async fn oversized_inputs_are_refused_before_parsing() {
    let mut p = Parts::new(None);
    p.inspector.expect_inspect().times(0);
    let svc = p.build();
    let big = vec![0_u8; 64 * 1024 + 1];
    let who = actor(Role::Owner, true);
    let err = svc
        .upload(
            &who,
            &big,
            SecretBytes::new(vec![1]),
            SecretBytes::new(vec![1]),
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        VaultError::TooLarge {
            what: "the certificate",
            max: 65_536
        }
    ));
    let err = svc
        .upload(
            &who,
            b"c",
            SecretBytes::new(big.clone()),
            SecretBytes::new(vec![1]),
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        VaultError::TooLarge {
            what: "the private key",
            ..
        }
    ));
    // The password's bound is its own, and the error names it.
    let err = svc
        .upload(
            &who,
            b"c",
            SecretBytes::new(vec![1]),
            SecretBytes::new(vec![b'x'; 1025]),
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        VaultError::TooLarge {
            what: "the password",
            max: 1024
        }
    ));
}

fn stored(key_id: u32) -> SealedCredential {
    SealedCredential {
        credential: FiscalCredential {
            id: Uuid::from_u128(9),
            company_id: company_id(),
            info: info(),
            created_by: UserId::from_uuid(Uuid::from_u128(1)),
            created_at: t(2025, 6, 1),
        },
        certificate: Sealed::new("c".into()),
        private_key: Sealed::new("k".into()),
        password: Sealed::new("p".into()),
        key_id,
    }
}

/// When the actor is the company's only credential manager, the actor is told (nobody else
/// would be, and a change from a stolen session then still reaches the account's mailbox).
#[tokio::test]
async fn the_only_credential_manager_is_told_of_their_own_change() {
    let mut p = Parts::new(Some("TCM970625MB1")).valid_inspector();
    let mut accounts = MockAccountRepository::new();
    accounts.expect_company().returning(|id| {
        Ok(Some(Company {
            id,
            name: CompanyName::parse("X").unwrap(),
            rfc: Some(Rfc::parse("TCM970625MB1").unwrap()),
            session_limit: None,
            profile: accounts::CompanyProfile::default(),
            created_at: t(2025, 1, 1),
        }))
    });
    // The Owner (user 1) manages credentials; the Vendor (user 4) does not.
    accounts.expect_users().returning(|company, _, _| {
        Ok(vec![
            member(1, company.as_uuid().as_u128(), Role::Owner, true),
            member(4, company.as_uuid().as_u128(), Role::Vendor, true),
        ])
    });
    p.accounts = accounts;
    p.repo
        .expect_insert()
        .withf(|_, _, audit| {
            audit[0].details["recipients"] == serde_json::json!([Uuid::from_u128(1).to_string()])
                && audit[0].details["by"] == "Ana"
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    upload(&p.build(), &actor(Role::Owner, true)).await.unwrap();
}

/// A deletion names what went and tells the company's other credential managers; a
/// credential that is not the company's is 404 and nothing is deleted.
#[tokio::test]
async fn a_deletion_is_recorded_with_what_went_and_told_to_the_other_managers() {
    let mut p = Parts::new(None);
    // Only the metadata is read: the envelopes never leave the database for a deletion.
    p.repo.expect_sealed().times(0);
    p.repo.expect_credential().returning(|company, id| {
        Ok((id == Uuid::from_u128(9)).then(|| {
            let mut c = stored(2).credential;
            c.company_id = company;
            c
        }))
    });
    p.repo
        .expect_delete()
        .withf(|_, id, audit| {
            let d = &audit[0].details;
            *id == Uuid::from_u128(9)
                && audit[0].action == Action::FISCAL_CREDENTIAL_DELETED
                && d["kind"] == "csd"
                && d["rfc"] == "TCM970625MB1"
                && d["certificate_number"] == "30001000000500009901"
                && d["by"] == "Ana"
                && d["recipients"] == serde_json::json!([Uuid::from_u128(3).to_string()])
        })
        .times(1)
        .returning(|_, _, _| Ok(true));
    let svc = p.build();
    let who = actor(Role::Owner, true).reauthenticated(Some(svc.clock.now()));
    svc.delete(&who, Uuid::from_u128(9), &RequestContext::default())
        .await
        .unwrap();
    assert!(matches!(
        svc.delete(&who, Uuid::from_u128(8), &RequestContext::default())
            .await,
        Err(VaultError::NotFound)
    ));
}

/// Viewing one credential reads its metadata only; another company's id is 404.
#[tokio::test]
async fn a_credential_is_viewed_without_reading_its_envelopes() {
    let mut p = Parts::new(None);
    p.repo.expect_sealed().times(0);
    p.repo
        .expect_credential()
        .withf(|company, _| *company == company_id())
        .returning(|_, id| Ok((id == Uuid::from_u128(9)).then(|| stored(2).credential)));
    let svc = p.build();
    let seen = svc
        .get(
            &actor(Role::Admin, false),
            Uuid::from_u128(9),
            &RequestContext::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        seen.credential.info.certificate_number,
        "30001000000500009901"
    );
    assert!(matches!(
        svc.get(
            &actor(Role::Admin, false),
            Uuid::from_u128(8),
            &RequestContext::default()
        )
        .await,
        Err(VaultError::NotFound)
    ));
}

#[tokio::test]
async fn signing_opens_key_and_password_for_the_call_and_records_the_use() {
    let mut p = Parts::new(None);
    p.repo.expect_sealed().returning(|_, _| Ok(Some(stored(2))));
    p.envelope.expect_open().returning(|s, ad| {
        assert_eq!(ad.record, Uuid::from_u128(9));
        Ok(SecretBytes::new(match ad.purpose {
            Purpose::PrivateKey if s.as_str() == "k" => b"KEY".to_vec(),
            Purpose::KeyPassword if s.as_str() == "p" => b"PW".to_vec(),
            _ => return Err(VaultError::Tampered),
        }))
    });
    p.inspector
        .expect_sign()
        .withf(|k, pw, data| k == b"KEY" && pw == b"PW" && data == b"||cadena||")
        .returning(|_, _, _| Ok("c2lnbmF0dXJl".into()));
    p.repo
        .expect_record_use()
        .withf(|r, _| r.action == Action::FISCAL_CREDENTIAL_USED)
        .times(1)
        .returning(|_, _| Ok(()));
    // A vendor cannot sign; an admin can, without step-up.
    let svc = p.build();
    assert!(matches!(
        svc.sign(
            &actor(Role::Vendor, false),
            Uuid::from_u128(9),
            b"x",
            &RequestContext::default()
        )
        .await,
        Err(VaultError::Forbidden(_))
    ));
    let sig = svc
        .sign(
            &actor(Role::Admin, false),
            Uuid::from_u128(9),
            b"||cadena||",
            &RequestContext::default(),
        )
        .await
        .unwrap();
    assert_eq!(sig.signature_base64, "c2lnbmF0dXJl");
    assert_eq!(sig.certificate_number, "30001000000500009901");
    assert_eq!(sig.algorithm, "RSA-SHA256");
}

#[tokio::test]
async fn an_expired_certificate_does_not_sign() {
    let mut p = Parts::new(None);
    p.repo.expect_sealed().returning(|_, _| Ok(Some(stored(2))));
    p.envelope.expect_open().times(0);
    p.clock.set(t(2029, 1, 2));
    let err = p
        .build()
        .sign(
            &actor(Role::Admin, false),
            Uuid::from_u128(9),
            b"x",
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::CertificateExpired));
}

#[test]
fn expiry_is_counted_in_whole_days_and_flagged_within_thirty() {
    let c = stored(1).credential;
    assert_eq!(view(c.clone(), t(2028, 12, 1)).days_to_expiry, 31);
    assert!(!view(c.clone(), t(2028, 12, 1)).expiring_soon);
    assert!(view(c.clone(), t(2028, 12, 3)).expiring_soon);
    let expired = view(c, t(2029, 1, 2) + chrono::Duration::hours(1));
    assert_eq!(expired.days_to_expiry, -2);
    assert!(!expired.expiring_soon);
}

#[tokio::test]
async fn rewrap_reseals_everything_under_the_newest_key_and_reports_progress() {
    let mut p = Parts::new(None);
    p.repo
        .expect_sealed_not_under()
        .withf(|current, _, _| *current == 2)
        .times(2)
        .returning(|_, after, _| {
            Ok(if after.is_none() {
                vec![stored(1)]
            } else {
                vec![]
            })
        });
    p.envelope
        .expect_open()
        .returning(|_, _| Ok(SecretBytes::new(b"plain".to_vec())));
    p.repo
        .expect_replace_envelopes()
        .withf(|c, old| {
            c.key_id == 2 && *old == 1 && c.private_key.as_str() == "sealed:fiscal.private_key:5"
        })
        .times(1)
        .returning(|_, _| Ok(true));
    let mut seen = Vec::new();
    let done = p.build().rewrap(100, |pr| seen.push(pr)).await.unwrap();
    assert_eq!(
        done,
        RewrapProgress {
            rewrapped: 1,
            skipped: 0
        }
    );
    assert_eq!(seen, vec![done]);
}

#[tokio::test]
async fn a_key_in_use_or_the_newest_key_cannot_be_retired() {
    let mut p = Parts::new(None);
    p.repo
        .expect_count_under()
        .returning(|k| Ok(if k == 1 { 3 } else { 0 }));
    let svc = p.build();
    assert!(matches!(
        svc.check_retirable(2).await,
        Err(VaultError::Key(_))
    ));
    let err = svc.check_retirable(1).await.unwrap_err().to_string();
    assert!(err.contains("rewrap"), "{err}");
    svc.check_retirable(3).await.unwrap();
}

/// A company that stores as many credentials as it may gets `LimitReached` before anything is
/// parsed (no key derivation) and nothing is stored; one below the bound uploads.
#[tokio::test]
async fn a_full_vault_refuses_the_next_upload_before_parsing_it() {
    let max = UploadLimits::default().max_credentials;
    let mut p = Parts::new(None);
    p.repo = MockCredentialRepository::new();
    p.repo.expect_count().returning(move |_| Ok(max));
    p.repo.expect_insert().times(0);
    p.inspector.expect_inspect().times(0);
    p.inspector.expect_check_key().times(0);
    let err = upload(&p.build(), &actor(Role::Owner, true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, VaultError::LimitReached { max: 100 }),
        "{err:?}"
    );

    let mut p = Parts::new(None).valid_inspector();
    p.repo = MockCredentialRepository::new();
    p.repo.expect_count().returning(move |_| Ok(max - 1));
    p.repo.expect_insert().times(1).returning(|_, _, _| Ok(()));
    upload(&p.build(), &actor(Role::Owner, true)).await.unwrap();
}

// ---- Expiry notices (VAULT-8) ----

fn now() -> Timestamp {
    t(2026, 11, 21) + chrono::Duration::seconds(30)
}

fn expiring(n: u128, company: u128, valid_to: Timestamp) -> FiscalCredential {
    FiscalCredential {
        id: Uuid::from_u128(n),
        company_id: CompanyId::from_uuid(Uuid::from_u128(company)),
        info: CertificateInfo {
            valid_to,
            certificate_number: format!("3000100000050000{n:04}"),
            ..info()
        },
        created_by: UserId::from_uuid(Uuid::from_u128(1)),
        created_at: t(2025, 1, 1),
    }
}

fn member(n: u128, company: u128, role: Role, active: bool) -> accounts::User {
    accounts::User {
        id: UserId::from_uuid(Uuid::from_u128(n)),
        company_id: CompanyId::from_uuid(Uuid::from_u128(company)),
        email: accounts::Email::parse(&format!("u{n}@example.com")).unwrap(),
        name: accounts::PersonName::parse("Ana", "name").unwrap(),
        role,
        active,
        password_hash: accounts::PasswordHash::new("$argon2id$stored".into()),
        mfa_enabled: false,
        grants: rbac::PermissionSet::empty(),
        revokes: rbac::PermissionSet::empty(),
        created_at: t(2025, 1, 1) + chrono::Duration::seconds(i64::try_from(n).unwrap()),
        updated_at: t(2025, 1, 1),
        password_change_required: false,
    }
}

type Recorded = Arc<std::sync::Mutex<Vec<(CredentialId, u16, Vec<AuditRecord>)>>>;

/// A repository that offers `candidates` in one page and records every notice; the notice of
/// credential `lost` is taken by "another process" (`false`).
fn notice_repo(
    candidates: Vec<ExpiryCandidate>,
    lost: Option<u128>,
) -> (MockCredentialRepository, Recorded) {
    let mut repo = MockCredentialRepository::new();
    let last = candidates.last().map(|c| c.credential.id);
    repo.expect_expiry_candidates()
        .returning(move |_, _, after, _| {
            Ok(if after.is_none() {
                candidates.clone()
            } else {
                assert_eq!(after, last, "the next page starts after the last id");
                Vec::new()
            })
        });
    let recorded: Recorded = Arc::default();
    let sink = recorded.clone();
    repo.expect_record_expiry_notice()
        .returning(move |_, id, stage, audit| {
            sink.lock().unwrap().push((id, stage, audit));
            Ok(lost != Some(id.as_u128()))
        });
    (repo, recorded)
}

#[test]
fn stages_change_at_30_7_and_1_whole_days_and_at_expiry() {
    let n = now();
    let s = chrono::Duration::seconds;
    let d = chrono::Duration::days;
    assert_eq!(crate::expiry_stage(n + d(400), n), None);
    assert_eq!(crate::expiry_stage(n + d(30), n), None);
    assert_eq!(crate::expiry_stage(n + d(30) - s(1), n), Some(30));
    assert_eq!(crate::expiry_stage(n + d(7), n), Some(30));
    assert_eq!(crate::expiry_stage(n + d(7) - s(1), n), Some(7));
    assert_eq!(crate::expiry_stage(n + d(1), n), Some(7));
    assert_eq!(crate::expiry_stage(n + d(1) - s(1), n), Some(1));
    assert_eq!(crate::expiry_stage(n + s(1), n), Some(1));
    assert_eq!(crate::expiry_stage(n, n), Some(0));
    assert_eq!(crate::expiry_stage(n - d(3), n), Some(0));
}

#[tokio::test]
async fn a_pass_sends_each_new_stage_once_to_the_active_credential_managers() {
    let d = chrono::Duration::days;
    let n = now();
    let candidates = vec![
        // Fewer than 30 days, never told: stage 30.
        ExpiryCandidate {
            credential: expiring(1, 7, n + d(20)),
            noticed: None,
        },
        // Told at 30 already, still in that stage: nothing.
        ExpiryCandidate {
            credential: expiring(2, 7, n + d(20)),
            noticed: Some(30),
        },
        // Told at 30, now fewer than 7 days: stage 7.
        ExpiryCandidate {
            credential: expiring(3, 7, n + d(5)),
            noticed: Some(30),
        },
        // Never told (the server was down), hours left: only the latest stage, 1.
        ExpiryCandidate {
            credential: expiring(4, 9, n + chrono::Duration::hours(5)),
            noticed: None,
        },
        // Told at 1, expired since: stage 0.
        ExpiryCandidate {
            credential: expiring(5, 7, n - d(1)),
            noticed: Some(1),
        },
        // Outside the window (the store's filter is not trusted): nothing.
        ExpiryCandidate {
            credential: expiring(6, 7, n + d(45)),
            noticed: None,
        },
    ];
    let (repo, recorded) = notice_repo(candidates, None);
    let mut p = Parts::new(None);
    p.repo = repo;
    let mut granted_vendor = member(15, 7, Role::Vendor, true);
    granted_vendor.grants = rbac::PermissionSet::of(&[Permission::FiscalCredentialsManage]);
    let mut revoked_admin = member(16, 7, Role::Admin, true);
    revoked_admin.revokes = rbac::PermissionSet::of(&[Permission::FiscalCredentialsManage]);
    let company7 = vec![
        member(11, 7, Role::Owner, true),
        member(12, 7, Role::Admin, true),
        member(13, 7, Role::Vendor, true),
        member(14, 7, Role::Admin, false),
        granted_vendor,
        revoked_admin,
    ];
    let company9 = vec![member(21, 9, Role::Owner, true)];
    p.accounts = MockAccountRepository::new();
    p.accounts
        .expect_users()
        .times(2)
        .returning(move |company, after, limit| {
            assert_eq!(after, None);
            assert_eq!(limit, 200);
            Ok(if company.as_uuid().as_u128() == 7 {
                company7.clone()
            } else {
                company9.clone()
            })
        });
    let svc = p.build();

    let done = svc.send_expiry_notices().await.unwrap();

    assert_eq!(
        done,
        ExpiryNotices {
            sent: 4,
            skipped: 0
        }
    );
    let recorded = recorded.lock().unwrap();
    let sent: Vec<(u128, u16)> = recorded
        .iter()
        .map(|(id, s, _)| (id.as_u128(), *s))
        .collect();
    assert_eq!(sent, vec![(1, 30), (3, 7), (4, 1), (5, 0)]);
    let ids = |ns: &[u128]| -> Vec<String> {
        ns.iter().map(|n| Uuid::from_u128(*n).to_string()).collect()
    };
    for (id, stage, audit) in recorded.iter() {
        let [record] = audit.as_slice() else {
            panic!("one record per notice")
        };
        assert_eq!(record.action, Action::FISCAL_CREDENTIAL_EXPIRING);
        assert_eq!(record.outcome, Outcome::Success);
        assert_eq!(record.actor_id, None, "nobody acted: the system noticed");
        assert_eq!(record.at, n);
        assert_eq!(
            record.target.as_deref(),
            Some(format!("fiscal_credential:{id}").as_str())
        );
        assert_eq!(record.details["stage"], serde_json::json!(stage));
        assert_eq!(record.details["rfc"], "TCM970625MB1");
        assert_eq!(record.details["kind"], "csd");
        let recipients: Vec<String> =
            serde_json::from_value(record.details["recipients"].clone()).unwrap();
        if id.as_u128() == 4 {
            assert_eq!(
                record.company_id,
                Some(CompanyId::from_uuid(Uuid::from_u128(9)))
            );
            assert_eq!(recipients, ids(&[21]));
        } else {
            assert_eq!(
                record.company_id,
                Some(CompanyId::from_uuid(Uuid::from_u128(7)))
            );
            // Owner, Admin and the Vendor granted the permission; not the Vendor without it,
            // the deactivated Admin or the Admin whose permission was revoked.
            assert_eq!(recipients, ids(&[11, 12, 15]));
        }
    }
    let days: Vec<i64> = recorded
        .iter()
        .map(|(_, _, a)| a[0].details["days_to_expiry"].as_i64().unwrap())
        .collect();
    assert_eq!(days, vec![20, 5, 0, -1]);
    assert_eq!(recorded[0].2[0].details["valid_to"], "2026-12-11T00:00:30Z");
}

#[tokio::test]
async fn a_pass_asks_for_the_window_and_counts_notices_another_process_sent_first() {
    let d = chrono::Duration::days;
    let n = now();
    let mut repo = MockCredentialRepository::new();
    let pages = Arc::new(std::sync::Mutex::new(vec![
        Vec::new(),
        vec![
            ExpiryCandidate {
                credential: expiring(1, 7, n + d(3)),
                noticed: None,
            },
            ExpiryCandidate {
                credential: expiring(2, 7, n + d(3)),
                noticed: None,
            },
        ],
    ]));
    repo.expect_expiry_candidates()
        .withf(move |expired_after, expiring_before, _, limit| {
            *expired_after == n - d(30) && *expiring_before == n + d(30) && *limit == 200
        })
        .times(2)
        .returning(move |_, _, _, _| Ok(pages.lock().unwrap().pop().unwrap()));
    // Credential 2's notice was recorded by another process first.
    repo.expect_record_expiry_notice()
        .times(2)
        .returning(|_, id, stage, _| {
            assert_eq!(stage, 7);
            Ok(id.as_u128() != 2)
        });
    let mut p = Parts::new(None);
    p.repo = repo;
    p.accounts = MockAccountRepository::new();
    p.accounts
        .expect_users()
        .times(1)
        .returning(|_, _, _| Ok(vec![member(11, 7, Role::Owner, true)]));
    let svc = p.build();

    let done = svc.send_expiry_notices().await.unwrap();

    assert_eq!(
        done,
        ExpiryNotices {
            sent: 1,
            skipped: 1
        }
    );
}

#[tokio::test]
async fn recipients_are_read_page_by_page() {
    let n = now();
    let (repo, recorded) = notice_repo(
        vec![ExpiryCandidate {
            credential: expiring(1, 7, n + chrono::Duration::days(2)),
            noticed: None,
        }],
        None,
    );
    let mut p = Parts::new(None);
    p.repo = repo;
    let first: Vec<accounts::User> = (100..300)
        .map(|i| member(i, 7, Role::Vendor, true))
        .collect();
    let boundary = first.last().unwrap().cursor();
    p.accounts = MockAccountRepository::new();
    p.accounts
        .expect_users()
        .times(2)
        .returning(move |_, after, _| {
            Ok(match after {
                None => first.clone(),
                Some(c) => {
                    assert_eq!(c, boundary);
                    vec![member(300, 7, Role::Owner, true)]
                }
            })
        });
    let svc = p.build();

    assert_eq!(svc.send_expiry_notices().await.unwrap().sent, 1);
    let recorded = recorded.lock().unwrap();
    assert_eq!(
        recorded[0].2[0].details["recipients"],
        serde_json::json!([Uuid::from_u128(300).to_string()])
    );
}

#[tokio::test]
async fn a_store_failure_stops_the_pass_with_an_error() {
    let n = now();
    let mut p = Parts::new(None);
    p.repo
        .expect_expiry_candidates()
        .returning(move |_, _, _, _| {
            Ok(vec![ExpiryCandidate {
                credential: expiring(1, 7, n + chrono::Duration::days(2)),
                noticed: None,
            }])
        });
    p.repo
        .expect_record_expiry_notice()
        .returning(|_, _, _, _| Err(VaultError::internal(std::io::Error::other("down"))));
    p.accounts = MockAccountRepository::new();
    p.accounts
        .expect_users()
        .returning(|_, _, _| Ok(vec![member(11, 7, Role::Owner, true)]));
    let svc = p.build();

    assert!(matches!(
        svc.send_expiry_notices().await,
        Err(VaultError::Internal(_))
    ));
}
