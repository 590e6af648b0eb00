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
        store.insert(&first, vec![]).await.unwrap();
        store
            .insert(&sealed(a.id, ua.id, "30001000000500000002"), vec![])
            .await
            .unwrap();
        store
            .insert(&sealed(other.id, uo.id, "30001000000500000001"), vec![])
            .await
            .unwrap();
        let again = store
            .insert(&sealed(a.id, ua.id, "30001000000500000002"), vec![])
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
