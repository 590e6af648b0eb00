use ::accounts::{AccountRepository, AccountsError, UserField};
use rbac::{Permission, PermissionSet};

use super::*;

#[tokio::test]
async fn signup_is_atomic_and_emails_are_unique_case_insensitively() {
    for (db, store, conn) in stores().await {
        let c1 = company();
        let owner = user(&c1, "Owner@Example.com", Role::Owner);
        store
            .create_company_with_owner(
                &c1,
                &owner,
                vec![record(Action::COMPANY_CREATED, Some(c1.id))],
            )
            .await
            .unwrap();

        // Same email in another case, new company: refused, and neither the company nor the
        // audit record of the attempt is left behind.
        let c2 = company();
        let dup = user(&c2, "OWNER@example.COM", Role::Owner);
        let err = store
            .create_company_with_owner(
                &c2,
                &dup,
                vec![record(Action::COMPANY_CREATED, Some(c2.id))],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::EmailTaken),
            "{}: {err:?}",
            db.backend
        );
        assert!(
            store.company(c2.id).await.unwrap().is_none(),
            "{}",
            db.backend
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM audit_events").await,
            1,
            "{}",
            db.backend
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM companies").await,
            1,
            "{}",
            db.backend
        );

        let found = store
            .user_by_email(&Email::parse("owner@example.com").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, owner.id);
        assert_eq!(found.role, Role::Owner);
    }
}

#[tokio::test]
async fn users_of_another_company_are_invisible() {
    for (db, store, _) in stores().await {
        let (a, b) = (company(), company());
        let owner_a = user(&a, "a@example.com", Role::Owner);
        let owner_b = user(&b, "b@example.com", Role::Owner);
        store
            .create_company_with_owner(&a, &owner_a, vec![])
            .await
            .unwrap();
        store
            .create_company_with_owner(&b, &owner_b, vec![])
            .await
            .unwrap();
        assert!(
            store.user(a.id, owner_b.id).await.unwrap().is_none(),
            "{}",
            db.backend
        );
        assert_eq!(store.users(a.id, None, 10).await.unwrap().len(), 1);
        let mut hijack = owner_b.clone();
        hijack.company_id = a.id;
        hijack.active = false;
        let err = store
            .update_user(&hijack, &hijack, &[UserField::Active], None, vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::NotFound), "{}", db.backend);
        assert!(store.user(b.id, owner_b.id).await.unwrap().unwrap().active);
    }
}

/// A company's users page oldest first from a cursor: users created at one instant are neither
/// skipped nor repeated (ties go by id), and another company's never appear.
#[tokio::test]
async fn users_page_by_cursor_oldest_first() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (c, owner) = company_with_owner(&store, Role::Owner).await;
        let (other, _) = company_with_owner(&store, Role::Owner).await;
        let mut mine = vec![owner];
        for n in 0..5_i64 {
            let mut u = user(&c, &format!("{}@example.com", id().simple()), Role::Vendor);
            // Two share the owner's instant, three a later one a fraction of a second on.
            u.created_at = t0() + chrono::Duration::microseconds((n / 2) * 1_500_001);
            store.insert_user(&u, vec![]).await.unwrap();
            mine.push(u);
        }
        let theirs = user(
            &other,
            &format!("{}@example.com", id().simple()),
            Role::Vendor,
        );
        store.insert_user(&theirs, vec![]).await.unwrap();
        mine.sort_by_key(|u| (u.created_at, u.id));
        let mut seen = Vec::new();
        let mut after = None;
        for page in 0.. {
            assert!(page < 10, "{b}: paging does not end");
            let got = store.users(c.id, after, 4).await.unwrap();
            let Some(last) = got.last() else { break };
            after = Some(last.cursor());
            seen.extend(got.iter().map(|u| u.id));
        }
        assert_eq!(seen, mine.iter().map(|u| u.id).collect::<Vec<_>>(), "{b}");
        let tail = store.users(c.id, Some(mine[4].cursor()), 10).await.unwrap();
        assert_eq!(tail.len(), 1, "{b}");
    }
}

#[tokio::test]
async fn insert_and_update_round_trip() {
    for (db, store, conn) in stores().await {
        let c = company();
        let owner = user(&c, "o@example.com", Role::Owner);
        store
            .create_company_with_owner(&c, &owner, vec![])
            .await
            .unwrap();
        let vendor = user(&c, "v@example.com", Role::Vendor);
        store
            .insert_user(&vendor, vec![record(Action::USER_CREATED, Some(c.id))])
            .await
            .unwrap();
        assert!(matches!(
            store
                .insert_user(&user(&c, "V@example.com", Role::Vendor), vec![])
                .await,
            Err(AccountsError::EmailTaken)
        ));
        let mut changed = vendor.clone();
        changed.name = PersonName::parse("Renamed", "name").unwrap();
        changed.active = false;
        store
            .update_user(
                &vendor,
                &changed,
                &[UserField::Name, UserField::Active],
                None,
                vec![record(Action::USER_DEACTIVATED, Some(c.id))],
            )
            .await
            .unwrap();
        let stored = store.user(c.id, vendor.id).await.unwrap().unwrap();
        assert_eq!(stored.name.as_str(), "Renamed", "{}", db.backend);
        assert!(!stored.active);
        assert!(!stored.password_change_required, "{}", db.backend);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM audit_events").await, 2);
        // The demand to change a password the operator handed over is stored and lifted, and
        // read the same way by the login's read.
        for demanded in [true, false] {
            let current = store.user(c.id, vendor.id).await.unwrap().unwrap();
            let mut flagged = current.clone();
            flagged.password_change_required = demanded;
            store
                .update_user(&current, &flagged, &[UserField::Password], None, vec![])
                .await
                .unwrap();
            let again = store.user(c.id, vendor.id).await.unwrap().unwrap();
            assert_eq!(again.password_change_required, demanded, "{}", db.backend);
            let by_email = store.user_by_email(&vendor.email).await.unwrap().unwrap();
            assert_eq!(
                by_email.password_change_required, demanded,
                "{}",
                db.backend
            );
        }
        let mut born_flagged = user(&c, "w@example.com", Role::Vendor);
        born_flagged.password_change_required = true;
        store.insert_user(&born_flagged, vec![]).await.unwrap();
        assert!(
            store
                .user(c.id, born_flagged.id)
                .await
                .unwrap()
                .unwrap()
                .password_change_required,
            "{}",
            db.backend
        );
    }
}

/// A login's rehash replaces only the hash it verified: after a password change (or a role
/// change and deactivation) committed since the login read the user, the rehash either stores
/// nothing or only the hash, and its record is written only when it stored.
#[tokio::test]
async fn a_rehash_at_login_replaces_only_the_hash_it_verified() {
    for (db, store, conn) in stores().await {
        let b = db.backend;
        // Meanwhile the Owner demotes and deactivates the user: the rehash stores the hash only.
        let (co, read, _) = admin_read_then_demoted(&store, "rehash@example.com").await;
        let records = || {
            vec![
                record(Action::USER_PASSWORD_CHANGED, Some(co.id))
                    .details(serde_json::json!({ "reason": "hash_parameters_upgraded" })),
            ]
        };
        let before = count(&conn, "SELECT COUNT(*) FROM audit_events").await;
        let mut upgraded = read.clone();
        upgraded.password_hash = PasswordHash::new("$argon2id$upgraded".into());
        assert!(
            store
                .rehash_password(&upgraded, &read.password_hash, records())
                .await
                .unwrap(),
            "{b}"
        );
        let stored = store.user(co.id, read.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.role, stored.active, stored.password_hash.as_str()),
            (Role::Vendor, false, "$argon2id$upgraded"),
            "{b}"
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM audit_events").await,
            before + 1,
            "{b}"
        );

        // Meanwhile the password changed: the rehash of the old one stores nothing.
        let mut changed = stored.clone();
        changed.password_hash = PasswordHash::new("$argon2id$changed".into());
        store
            .update_user(&stored, &changed, &[UserField::Password], None, vec![])
            .await
            .unwrap();
        assert!(
            !store
                .rehash_password(
                    &upgraded,
                    &PasswordHash::new("$argon2id$upgraded".into()),
                    records()
                )
                .await
                .unwrap(),
            "{b}"
        );
        let stored = store.user(co.id, read.id).await.unwrap().unwrap();
        assert_eq!(stored.password_hash.as_str(), "$argon2id$changed", "{b}");
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM audit_events").await,
            before + 1,
            "{b}: no record of a rehash that did not happen"
        );
    }
}

/// Each write stores only the fields it names: a password change from a user read before a
/// deactivation leaves the user deactivated, and a rename from a read older than the password
/// change keeps the new password.
#[tokio::test]
async fn a_write_stores_only_the_fields_it_names() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (co, _) = company_with_owner(&store, Role::Owner).await;
        let read = user(&co, "campos@example.com", Role::Vendor);
        store.insert_user(&read, vec![]).await.unwrap();
        let mut off = read.clone();
        off.active = false;
        store
            .update_user(&read, &off, &[UserField::Active], None, vec![])
            .await
            .unwrap();
        let mut new_password = read.clone();
        new_password.password_hash = PasswordHash::new("$argon2id$nueva".into());
        store
            .update_user(&read, &new_password, &[UserField::Password], None, vec![])
            .await
            .unwrap();
        let mut renamed = read.clone();
        renamed.name = PersonName::parse("Otro Nombre", "name").unwrap();
        store
            .update_user(&read, &renamed, &[UserField::Name], None, vec![])
            .await
            .unwrap();
        let stored = store.user(co.id, read.id).await.unwrap().unwrap();
        assert_eq!(
            (
                stored.role,
                stored.active,
                stored.password_hash.as_str(),
                stored.name.as_str()
            ),
            (Role::Vendor, false, "$argon2id$nueva", "Otro Nombre"),
            "{b}"
        );
    }
}

/// A write decided on a read that no longer holds stores nothing and says so: the role changed
/// (an Admin read, demoted since), or a field it writes changed (grants another write
/// replaced, a password another write set). No record is written, no session revoked; an
/// unknown user is still `NotFound`.
#[tokio::test]
async fn a_write_from_a_read_that_no_longer_holds_stores_nothing() {
    for (db, store, conn) in stores().await {
        let b = db.backend;
        let (co, read, demoted) = admin_read_then_demoted(&store, "vieja@example.com").await;
        let session = super::sessions::new_session(&demoted, t0());
        super::sessions::open(&store, &demoted, &session, 5)
            .await
            .unwrap();
        let records = count(&conn, "SELECT COUNT(*) FROM audit_events").await;
        let stale = |result: Result<Vec<kernel::SessionId>, AccountsError>, what: &str| {
            assert!(
                matches!(result, Err(AccountsError::Stale)),
                "{b}: {what}: {result:?}"
            );
        };
        // The role it was decided on is gone: even a field nobody else wrote is refused.
        let mut renamed = read.clone();
        renamed.name = PersonName::parse("Otro Nombre", "name").unwrap();
        stale(
            store
                .update_user(
                    &read,
                    &renamed,
                    &[UserField::Name],
                    Some(revocation(RevocationReason::PasswordChanged, None)),
                    vec![record(Action::USER_UPDATED, Some(co.id))],
                )
                .await,
            "a rename decided on the Admin",
        );
        // Grants computed from grants another write replaced.
        let mut granted = demoted.clone();
        granted.grants = PermissionSet::of(&[Permission::AuditRead]);
        store
            .update_user(&demoted, &granted, &[UserField::Permissions], None, vec![])
            .await
            .unwrap();
        let mut other_grant = demoted.clone();
        other_grant.grants = PermissionSet::of(&[Permission::CustomersReadAll]);
        stale(
            store
                .update_user(
                    &demoted,
                    &other_grant,
                    &[UserField::Permissions],
                    None,
                    vec![record(Action::USER_PERMISSIONS_CHANGED, Some(co.id))],
                )
                .await,
            "grants from replaced grants",
        );
        // A password set from a hash another write replaced.
        let mut reset = granted.clone();
        reset.password_hash = PasswordHash::new("$argon2id$reset".into());
        store
            .update_user(&granted, &reset, &[UserField::Password], None, vec![])
            .await
            .unwrap();
        let mut changed = granted.clone();
        changed.password_hash = PasswordHash::new("$argon2id$changed".into());
        stale(
            store
                .update_user(
                    &granted,
                    &changed,
                    &[UserField::Password],
                    Some(revocation(RevocationReason::PasswordChanged, None)),
                    vec![record(Action::USER_PASSWORD_CHANGED, Some(co.id))],
                )
                .await,
            "a password from a replaced hash",
        );
        let stored = store.user(co.id, read.id).await.unwrap().unwrap();
        assert_eq!(
            (
                stored.role,
                stored.name.as_str(),
                stored.grants,
                stored.password_hash.as_str()
            ),
            (
                Role::Vendor,
                read.name.as_str(),
                PermissionSet::of(&[Permission::AuditRead]),
                "$argon2id$reset"
            ),
            "{b}"
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM audit_events").await,
            records,
            "{b}: no record of a write that did not happen"
        );
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL"
            )
            .await,
            0,
            "{b}: no session revoked"
        );
        let mut stranger = read.clone();
        stranger.id = kernel::UserId::from_uuid(id());
        assert!(
            matches!(
                store
                    .update_user(&stranger, &stranger, &[UserField::Name], None, vec![])
                    .await,
                Err(AccountsError::NotFound)
            ),
            "{b}"
        );
    }
}

/// A configuration change is decided on the company as stored, inside the write: what the
/// decision returns lands with its change records and audit records; a refusal or a decision
/// to change nothing writes nothing; an unknown company is `NotFound` without a decision.
#[tokio::test]
async fn a_company_change_is_decided_on_the_configuration_as_stored() {
    for (db, store, conn) in stores().await {
        let b = db.backend;
        let (c, owner) = company_with_owner(&store, Role::Owner).await;
        let records = count(&conn, "SELECT COUNT(*) FROM audit_events").await;
        let renaming = |to: &'static str| -> ::accounts::DecideCompanyUpdate {
            let by = owner.id;
            Box::new(move |current: &Company| {
                let old = current.name.as_str().to_owned();
                Ok(Some(::accounts::CompanyUpdate {
                    company: Company {
                        name: ::accounts::CompanyName::parse(to).unwrap(),
                        ..current.clone()
                    },
                    changes: vec![::accounts::ConfigChange {
                        id: id(),
                        at: t0(),
                        actor_id: by,
                        field: "name".to_owned(),
                        old_value: Some(old),
                        new_value: Some(to.to_owned()),
                    }],
                    audit: vec![record(Action::COMPANY_CONFIG_CHANGED, Some(current.id))],
                }))
            })
        };
        let renamed = store
            .update_company(c.id, renaming("Tacos Ana"))
            .await
            .unwrap();
        assert_eq!(renamed.name.as_str(), "Tacos Ana", "{b}");
        assert_eq!(
            store.company(c.id).await.unwrap(),
            Some(renamed.clone()),
            "{b}"
        );
        let log = store.company_changes(c.id, None, 10).await.unwrap();
        assert_eq!(
            (log.len(), log[0].old_value.as_deref()),
            (1, Some("Acme")),
            "{b}"
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM audit_events").await,
            records + 1,
            "{b}"
        );

        // A refusal, and a decision that changes nothing, write nothing.
        let err = store
            .update_company(
                c.id,
                Box::new(|_: &Company| Err(AccountsError::Validation(vec![]))),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::Validation(_)), "{b}: {err:?}");
        let same = store
            .update_company(c.id, Box::new(|_: &Company| Ok(None)))
            .await
            .unwrap();
        assert_eq!(same, renamed, "{b}");
        assert_eq!(
            store.company_changes(c.id, None, 10).await.unwrap().len(),
            1
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM audit_events").await,
            records + 1,
            "{b}"
        );

        let err = store
            .update_company(
                CompanyId::from_uuid(id()),
                Box::new(|_: &Company| panic!("no company, no decision")),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::NotFound), "{b}: {err:?}");
    }
}

/// Simultaneous configuration changes take turns: each decides on what the one before it
/// stored, so appending to a field loses no append, and each change record's old value is the
/// value the change replaced.
#[tokio::test]
async fn simultaneous_company_changes_take_turns() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (c, owner) = company_with_owner(&store, Role::Owner).await;
        let appending = |n: usize| -> ::accounts::DecideCompanyUpdate {
            let by = owner.id;
            Box::new(move |current: &Company| {
                let old = current.profile.legal_name.clone();
                let new = format!("{}{n}", old.as_deref().unwrap_or(""));
                let mut next = current.clone();
                next.profile.legal_name = Some(new.clone());
                Ok(Some(::accounts::CompanyUpdate {
                    company: next,
                    changes: vec![::accounts::ConfigChange {
                        id: id(),
                        at: t0(),
                        actor_id: by,
                        field: "legal_name".to_owned(),
                        old_value: old,
                        new_value: Some(new),
                    }],
                    audit: vec![],
                }))
            })
        };
        let writes = (0..8).map(|n| {
            let store = Arc::clone(&store);
            let decide = appending(n);
            tokio::spawn(async move { store.update_company(c.id, decide).await })
        });
        for write in futures_util::future::join_all(writes).await {
            write.unwrap().unwrap();
        }
        let stored = store.company(c.id).await.unwrap().unwrap();
        let mut digits: Vec<char> = stored.profile.legal_name.unwrap().chars().collect();
        digits.sort_unstable();
        assert_eq!(digits.into_iter().collect::<String>(), "01234567", "{b}");
        let log = store.company_changes(c.id, None, 10).await.unwrap();
        assert_eq!(log.len(), 8, "{b}");
        // Newest first: each record's old value is the next older record's new value.
        for pair in log.windows(2) {
            assert_eq!(pair[0].old_value, pair[1].new_value, "{b}");
        }
        assert_eq!(log[7].old_value, None, "{b}");
    }
}
