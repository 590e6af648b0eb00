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
