use ::accounts::{AccountRepository, AccountsError, UserField};

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
            .update_user(&hijack, &[UserField::Active], None, vec![])
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
            let mut flagged = stored.clone();
            flagged.password_change_required = demanded;
            store
                .update_user(&flagged, &[UserField::Password], None, vec![])
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
        let (co, read, demoted) = admin_read_then_demoted(&store, "rehash@example.com").await;
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
        let mut changed = demoted.clone();
        changed.password_hash = PasswordHash::new("$argon2id$changed".into());
        store
            .update_user(&changed, &[UserField::Password], None, vec![])
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
/// deactivation and a demotion leaves the user deactivated and demoted, and a rename from an
/// older read keeps the new password.
#[tokio::test]
async fn a_write_stores_only_the_fields_it_names() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (co, read, _) = admin_read_then_demoted(&store, "campos@example.com").await;
        let mut new_password = read.clone();
        new_password.password_hash = PasswordHash::new("$argon2id$nueva".into());
        store
            .update_user(&new_password, &[UserField::Password], None, vec![])
            .await
            .unwrap();
        let mut renamed = read.clone();
        renamed.name = PersonName::parse("Otro Nombre", "name").unwrap();
        store
            .update_user(&renamed, &[UserField::Name], None, vec![])
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
