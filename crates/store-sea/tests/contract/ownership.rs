use ::accounts::{
    AccountRepository, AccountsError, OwnershipRepository, OwnershipTransfer, TransferStatus,
};
use rbac::{Permission, PermissionSet};

use ::accounts::UserField;

use super::*;

pub(crate) fn transfer(c: &Company, from: &User, to: &User) -> OwnershipTransfer {
    OwnershipTransfer {
        id: id(),
        company_id: c.id,
        from_user_id: from.id,
        to_user_id: to.id,
        status: TransferStatus::Pending,
        created_at: t0(),
        expires_at: t0() + chrono::Duration::hours(24),
        closed_at: None,
    }
}

async fn company_with_admin(store: &SeaStore) -> (Company, User, User) {
    let c = company();
    let owner = user(&c, &format!("o{}@example.com", id().simple()), Role::Owner);
    let admin = user(&c, &format!("a{}@example.com", id().simple()), Role::Admin);
    store
        .create_company_with_owner(&c, &owner, vec![])
        .await
        .unwrap();
    store.insert_user(&admin, vec![]).await.unwrap();
    (c, owner, admin)
}

#[tokio::test]
async fn one_pending_transfer_per_company_and_completion_swaps_roles() {
    for (db, store, conn) in stores().await {
        let (c, owner, admin) = company_with_admin(&store).await;
        let t = transfer(&c, &owner, &admin);
        store
            .create_transfer(
                &t,
                vec![record(Action::OWNERSHIP_TRANSFER_STARTED, Some(c.id))],
            )
            .await
            .unwrap();
        let err = store
            .create_transfer(&transfer(&c, &owner, &admin), vec![])
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AccountsError::Conflict {
                    code: "transfer_pending",
                    ..
                }
            ),
            "{}: {err:?}",
            db.backend
        );
        assert_eq!(
            store.transfer(c.id, t.id).await.unwrap().unwrap().status,
            TransferStatus::Pending
        );
        assert!(
            store.transfer(company().id, t.id).await.unwrap().is_none(),
            "another company sees nothing"
        );

        store
            .complete_transfer(
                &t,
                t0(),
                vec![record(Action::OWNERSHIP_TRANSFER_COMPLETED, Some(c.id))],
            )
            .await
            .unwrap();
        assert_eq!(
            store.user(c.id, owner.id).await.unwrap().unwrap().role,
            Role::Admin
        );
        assert_eq!(
            store.user(c.id, admin.id).await.unwrap().unwrap().role,
            Role::Owner
        );
        assert_eq!(
            store.transfer(c.id, t.id).await.unwrap().unwrap().status,
            TransferStatus::Completed
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM users WHERE role = 'owner'").await,
            1,
            "{}",
            db.backend
        );
        // Completed: it can be neither completed nor cancelled again.
        assert!(matches!(
            store.complete_transfer(&t, t0(), vec![]).await,
            Err(AccountsError::Conflict { .. })
        ));
        assert!(
            !store
                .close_transfer(c.id, t.id, TransferStatus::Cancelled, t0(), vec![])
                .await
                .unwrap()
        );
        // A new transfer may start now.
        store
            .create_transfer(&transfer(&c, &admin, &owner), vec![])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_accepts_complete_exactly_once_and_leave_one_owner() {
    for (db, store, conn) in stores().await {
        let (c, owner, admin) = company_with_admin(&store).await;
        let t = transfer(&c, &owner, &admin);
        store.create_transfer(&t, vec![]).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (store, t) = (store.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .complete_transfer(
                        &t,
                        t0(),
                        vec![record(
                            Action::OWNERSHIP_TRANSFER_COMPLETED,
                            Some(t.company_id),
                        )],
                    )
                    .await
            }));
        }
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => ok += 1,
                Err(AccountsError::Conflict { .. }) => {}
                Err(e) => panic!("{}: {e:?}", db.backend),
            }
        }
        assert_eq!(ok, 1, "{}", db.backend);
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM users WHERE role = 'owner'").await,
            1
        );
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'ownership.transfer_completed'"
            )
            .await,
            1,
            "the losers' audit records rolled back"
        );
    }
}

#[tokio::test]
async fn the_schema_refuses_a_second_owner_and_an_inactive_receiver() {
    for (db, store, _) in stores().await {
        let (c, owner, admin) = company_with_admin(&store).await;
        let second = user(&c, &format!("x{}@example.com", id().simple()), Role::Owner);
        let err = store.insert_user(&second, vec![]).await.unwrap_err();
        assert!(
            matches!(err, AccountsError::Internal(_)),
            "{}: {err:?}",
            db.backend
        );

        let mut off = admin.clone();
        off.active = false;
        store
            .update_user(&admin, &off, &[UserField::Active], None, vec![])
            .await
            .unwrap();
        let t = transfer(&c, &owner, &admin);
        store.create_transfer(&t, vec![]).await.unwrap();
        let err = store.complete_transfer(&t, t0(), vec![]).await.unwrap_err();
        assert!(
            matches!(
                err,
                AccountsError::Conflict {
                    code: "user_inactive",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            store.user(c.id, owner.id).await.unwrap().unwrap().role,
            Role::Owner,
            "{}: nothing changed",
            db.backend
        );
        assert_eq!(
            store.transfer(c.id, t.id).await.unwrap().unwrap().status,
            TransferStatus::Pending
        );
        assert!(
            store
                .close_transfer(c.id, t.id, TransferStatus::Cancelled, t0(), vec![])
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn permission_deltas_round_trip() {
    for (db, store, _) in stores().await {
        let (c, _, admin) = company_with_admin(&store).await;
        let mut changed = admin.clone();
        changed.grants = PermissionSet::of(&[Permission::CustomersReadAll]);
        changed.revokes = PermissionSet::of(&[Permission::FiscalSign, Permission::AuditRead]);
        store
            .update_user(&admin, &changed, &[UserField::Permissions], None, vec![])
            .await
            .unwrap();
        let stored = store.user(c.id, admin.id).await.unwrap().unwrap();
        assert_eq!(stored.grants, changed.grants, "{}", db.backend);
        assert_eq!(stored.revokes, changed.revokes);
        assert!(!stored.permissions().contains(Permission::FiscalSign));
    }
}
