use std::sync::Arc;

use accounts::{Company, CompanyName, MockAccountRepository, Rfc};
use audit::MockAuditSink;
use chrono::TimeZone;
use kernel::{CompanyId, ManualClock, SequentialIds, SessionId, UserId};
use rbac::Role;
use uuid::Uuid;

use super::*;
use crate::{
    CertificateInfo, CredentialKind, MockCertificateInspector, MockCredentialRepository,
    MockEnvelope, Sealed,
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
