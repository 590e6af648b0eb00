//! The MFA repository: pending and confirmed enrolments, the user's flag kept in step, replay
//! protection and one-time recovery codes that hold under concurrent requests, key rotation.

use ::accounts::AccountRepository;
use ::mfa::{MfaRepository, TotpEnrolment};
use vault::Sealed;

use ::accounts::UserField;

use super::*;

pub(crate) fn pending(u: &User, secret: &str, key_id: u32) -> TotpEnrolment {
    TotpEnrolment {
        company_id: u.company_id,
        user_id: u.id,
        secret: Sealed::new(secret.into()),
        key_id,
        confirmed_at: None,
        last_used_step: None,
        created_at: t0(),
    }
}

pub(crate) fn digests(prefix: &str) -> Vec<String> {
    (0..10).map(|n| format!("{prefix}-{n}")).collect()
}

async fn confirmed(store: &SeaStore, u: &User) {
    confirmed_since(store, u, t0()).await;
}

/// Enrols and confirms a TOTP factor for `u`, started and confirmed at `at`.
pub(crate) async fn confirmed_since(store: &SeaStore, u: &User, at: Timestamp) {
    let enrolment = TotpEnrolment {
        created_at: at,
        ..pending(u, "ev1.s1", 1)
    };
    assert!(
        store
            .save_pending(
                &enrolment,
                record(Action::MFA_ENROLMENT_STARTED, Some(u.company_id))
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .confirm(
                u.company_id,
                u.id,
                &Sealed::new("ev1.s1".into()),
                100,
                at,
                &digests("d"),
                record(Action::MFA_ENABLED, Some(u.company_id)),
            )
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn enrolment_is_pending_until_confirmed_and_the_user_flag_follows() {
    for (db, store, conn) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        let audit = |a| record(a, Some(c.id));
        assert!(
            store
                .save_pending(
                    &pending(&u, "ev1.first", 1),
                    audit(Action::MFA_ENROLMENT_STARTED)
                )
                .await
                .unwrap()
        );
        // A second start replaces the pending secret.
        assert!(
            store
                .save_pending(
                    &pending(&u, "ev1.second", 1),
                    audit(Action::MFA_ENROLMENT_STARTED)
                )
                .await
                .unwrap()
        );
        let e = store.enrolment(c.id, u.id).await.unwrap().unwrap();
        assert_eq!(e.secret.as_str(), "ev1.second");
        assert!(e.confirmed_at.is_none());
        // Confirming the replaced secret fails: the code was for the other one.
        assert!(
            !store
                .confirm(
                    c.id,
                    u.id,
                    &Sealed::new("ev1.first".into()),
                    5,
                    t0(),
                    &digests("x"),
                    audit(Action::MFA_ENABLED)
                )
                .await
                .unwrap(),
            "{}",
            db.backend
        );
        assert!(!store.user(c.id, u.id).await.unwrap().unwrap().mfa_enabled);
        assert!(
            store
                .confirm(
                    c.id,
                    u.id,
                    &Sealed::new("ev1.second".into()),
                    5,
                    t0(),
                    &digests("x"),
                    audit(Action::MFA_ENABLED)
                )
                .await
                .unwrap()
        );
        assert!(store.user(c.id, u.id).await.unwrap().unwrap().mfa_enabled);
        let e = store.enrolment(c.id, u.id).await.unwrap().unwrap();
        assert_eq!((e.confirmed_at, e.last_used_step), (Some(t0()), Some(5)));
        assert_eq!(
            store.recovery_codes_remaining(c.id, u.id).await.unwrap(),
            10
        );
        // A confirmed enrolment is never replaced by a new start.
        assert!(
            !store
                .save_pending(
                    &pending(&u, "ev1.third", 1),
                    audit(Action::MFA_ENROLMENT_STARTED)
                )
                .await
                .unwrap()
        );
        // Another company's id finds nothing.
        let other = CompanyId::from_uuid(id());
        assert!(store.enrolment(other, u.id).await.unwrap().is_none());
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM audit_events WHERE action LIKE 'mfa.%'"
            )
            .await,
            3,
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn of_concurrent_uses_of_one_step_exactly_one_wins() {
    for (db, store, _conn) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        confirmed(&store, &u).await;
        assert!(
            !store.use_step(c.id, u.id, 100).await.unwrap(),
            "the confirmation's step"
        );
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.use_step(c.id, u.id, 101).await.unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "{}", db.backend);
        assert!(!store.use_step(c.id, u.id, 99).await.unwrap());
        assert!(store.use_step(c.id, u.id, 102).await.unwrap());
    }
}

#[tokio::test]
async fn a_recovery_code_is_spent_once_even_concurrently_and_regeneration_voids_the_rest() {
    for (db, store, conn) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        confirmed(&store, &u).await;
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .use_recovery_code(
                        c.id,
                        u.id,
                        "d-3",
                        t0(),
                        record(Action::MFA_RECOVERY_CODE_USED, Some(c.id)),
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "{}", db.backend);
        assert_eq!(store.recovery_codes_remaining(c.id, u.id).await.unwrap(), 9);
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'mfa.recovery_code_used'"
            )
            .await,
            1
        );
        assert!(
            store
                .replace_recovery_codes(
                    c.id,
                    u.id,
                    &digests("n"),
                    record(Action::MFA_RECOVERY_CODES_REGENERATED, Some(c.id))
                )
                .await
                .unwrap()
        );
        assert_eq!(
            store.recovery_codes_remaining(c.id, u.id).await.unwrap(),
            10
        );
        assert!(
            !store
                .use_recovery_code(
                    c.id,
                    u.id,
                    "d-4",
                    t0(),
                    record(Action::MFA_RECOVERY_CODE_USED, Some(c.id))
                )
                .await
                .unwrap()
        );
        assert!(
            store
                .use_recovery_code(
                    c.id,
                    u.id,
                    "n-4",
                    t0(),
                    record(Action::MFA_RECOVERY_CODE_USED, Some(c.id))
                )
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn disabling_deletes_secret_and_codes_and_clears_the_flag() {
    for (db, store, conn) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        assert!(
            !store
                .disable(c.id, u.id, record(Action::MFA_DISABLED, Some(c.id)))
                .await
                .unwrap()
        );
        assert!(
            !store
                .replace_recovery_codes(
                    c.id,
                    u.id,
                    &digests("n"),
                    record(Action::MFA_RECOVERY_CODES_REGENERATED, Some(c.id))
                )
                .await
                .unwrap()
        );
        confirmed(&store, &u).await;
        assert!(
            store
                .disable(c.id, u.id, record(Action::MFA_DISABLED, Some(c.id)))
                .await
                .unwrap()
        );
        assert!(store.enrolment(c.id, u.id).await.unwrap().is_none());
        assert!(!store.user(c.id, u.id).await.unwrap().unwrap().mfa_enabled);
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM mfa_recovery_codes").await,
            0,
            "{}",
            db.backend
        );
        assert!(!store.use_step(c.id, u.id, 500).await.unwrap());
    }
}

#[tokio::test]
async fn secrets_are_found_and_replaced_by_key_version() {
    for (db, store, _conn) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        confirmed(&store, &u).await;
        assert_eq!(store.count_under(1).await.unwrap(), 1, "{}", db.backend);
        assert!(
            store
                .sealed_not_under(1, 10)
                .await
                .unwrap()
                .iter()
                .all(|e| e.user_id != u.id)
        );
        let stale = store.sealed_not_under(2, 10).await.unwrap();
        assert!(stale.iter().any(|e| e.user_id == u.id));
        let old = Sealed::new("ev1.s1".into());
        let new = Sealed::new("ev1.s1-rewrapped".into());
        assert!(
            !store
                .replace_secret(c.id, u.id, &new, &new, 2)
                .await
                .unwrap()
        );
        assert!(
            store
                .replace_secret(c.id, u.id, &old, &new, 2)
                .await
                .unwrap()
        );
        assert_eq!(store.count_under(1).await.unwrap(), 0);
        let e = store.enrolment(c.id, u.id).await.unwrap().unwrap();
        assert_eq!((e.secret.as_str(), e.key_id), ("ev1.s1-rewrapped", 2));
        assert!(
            e.confirmed_at.is_some(),
            "rewrap keeps the enrolment confirmed"
        );
    }
}

/// A user read before MFA was turned on and stored back afterwards (a rename here; a reset or a
/// change of address alike) keeps MFA on: the flag is the MFA store's alone.
#[tokio::test]
async fn storing_a_user_read_before_mfa_was_turned_on_leaves_it_on() {
    for (db, store, _conn) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        assert!(!u.mfa_enabled);
        confirmed(&store, &u).await;
        let mut renamed = u.clone();
        renamed.name = ::accounts::PersonName::parse("Otra", "name").unwrap();
        store
            .update_user(&u, &renamed, &[UserField::Name], None, vec![])
            .await
            .unwrap();
        let stored = store.user(c.id, u.id).await.unwrap().unwrap();
        assert_eq!(stored.name.as_str(), "Otra", "{}", db.backend);
        assert!(stored.mfa_enabled, "{}", db.backend);
    }
}
