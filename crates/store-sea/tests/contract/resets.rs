//! The password-reset port: one open reset per user, re-opened only after the resend interval,
//! completed once by compare and set with the password change, its revocations and its records.

use ::accounts::{AccountRepository, AccountsError, PasswordReset, PasswordResetRepository};
use chrono::Duration;

use super::*;

fn reset(u: &User, expires_at: Timestamp) -> PasswordReset {
    PasswordReset {
        id: id(),
        company_id: u.company_id,
        user_id: u.id,
        expires_at,
    }
}

fn requested(u: &User, r: &PasswordReset) -> AuditRecord {
    let mut rec = record(Action::USER_PASSWORD_RESET_REQUESTED, Some(u.company_id))
        .target("user", u.id)
        .details(serde_json::json!({ "expires_at": r.expires_at.to_rfc3339() }));
    rec.id = r.id;
    rec
}

async fn outbox(conn: &DatabaseConnection, template: &str) -> i64 {
    count(
        conn,
        &format!("SELECT COUNT(*) FROM outbox_messages WHERE template = '{template}'"),
    )
    .await
}

#[tokio::test]
async fn a_reset_opens_once_per_interval_and_queues_its_mail_without_a_token() {
    for (db, store, conn) in stores().await {
        let (_, u) = company_with_owner(&store, Role::Owner).await;
        let first = reset(&u, t0() + Duration::minutes(30));
        let keep = t0() + Duration::minutes(25);
        assert!(
            store
                .open_reset(&first, keep, vec![requested(&u, &first)])
                .await
                .unwrap(),
            "{}",
            db.backend
        );
        let (found, open) = store.reset(first.id).await.unwrap().unwrap();
        assert_eq!(found.id, u.id, "{}", db.backend);
        assert_eq!(open, first, "{}", db.backend);
        // The mail is queued with its placeholder, and caused by the reset's record.
        let body: String = scalar(
            &conn,
            "SELECT body FROM outbox_messages WHERE template = 'password_reset'",
        )
        .await;
        let cause: uuid::Uuid = scalar(
            &conn,
            "SELECT cause FROM outbox_messages WHERE template = 'password_reset'",
        )
        .await;
        assert_eq!(cause, first.id, "{}", db.backend);
        assert!(
            body.contains(notify::RESET_TOKEN_PLACEHOLDER),
            "{}",
            db.backend
        );

        // Asked again a minute later: the open reset stays, nothing is written.
        let again = reset(&u, t0() + Duration::minutes(31));
        assert!(
            !store
                .open_reset(
                    &again,
                    keep + Duration::minutes(1),
                    vec![requested(&u, &again)]
                )
                .await
                .unwrap(),
            "{}",
            db.backend
        );
        assert!(
            store.reset(again.id).await.unwrap().is_none(),
            "{}",
            db.backend
        );
        assert!(
            store.reset(first.id).await.unwrap().is_some(),
            "{}",
            db.backend
        );
        assert_eq!(outbox(&conn, "password_reset").await, 1, "{}", db.backend);

        // After the interval a new one replaces it: the first no longer names the user.
        let later = reset(&u, t0() + Duration::minutes(36));
        assert!(
            store
                .open_reset(
                    &later,
                    t0() + Duration::minutes(31),
                    vec![requested(&u, &later)]
                )
                .await
                .unwrap(),
            "{}",
            db.backend
        );
        assert!(
            store.reset(first.id).await.unwrap().is_none(),
            "{}",
            db.backend
        );
        assert_eq!(store.reset(later.id).await.unwrap().unwrap().1, later);
        assert_eq!(outbox(&conn, "password_reset").await, 2, "{}", db.backend);

        // A user of another company (or nobody) cannot be given a reset.
        let mut stranger = reset(&u, t0() + Duration::minutes(30));
        stranger.company_id = company().id;
        let err = store.open_reset(&stranger, keep, vec![]).await.unwrap_err();
        assert!(
            matches!(err, AccountsError::NotFound),
            "{}: {err:?}",
            db.backend
        );
    }
}

#[tokio::test]
async fn completing_a_reset_changes_the_password_once_and_revokes_every_session() {
    for (db, store, conn) in stores().await {
        let (_, u) = company_with_owner(&store, Role::Owner).await;
        let r = reset(&u, t0() + Duration::minutes(30));
        store
            .open_reset(&r, t0(), vec![requested(&u, &r)])
            .await
            .unwrap();
        let mut sessions = Vec::new();
        for n in 0..2 {
            let s = super::sessions::new_session(&u, t0() + Duration::seconds(n));
            super::sessions::open(&store, &u, &s, 5).await.unwrap();
            sessions.push(s.id);
        }
        let mut changed = u.clone();
        changed.password_hash = PasswordHash::new("$argon2id$new".into());
        changed.password_change_required = true;
        let at = t0() + Duration::minutes(10);
        let change = || {
            let mut rec =
                record(Action::USER_PASSWORD_CHANGED, Some(u.company_id)).target("user", u.id);
            rec.at = at;
            vec![rec]
        };
        let revoke = || SessionRevocation {
            at,
            audit_template: record(Action::SESSION_REVOKED, Some(u.company_id)),
            ..revocation(RevocationReason::PasswordChanged, None)
        };
        let mut revoked = store
            .complete_reset(r.id, &changed, revoke(), change())
            .await
            .unwrap();
        revoked.sort();
        sessions.sort();
        assert_eq!(revoked, sessions, "{}", db.backend);
        let stored = store.user(u.company_id, u.id).await.unwrap().unwrap();
        assert_eq!(
            stored.password_hash.as_str(),
            "$argon2id$new",
            "{}",
            db.backend
        );
        assert!(stored.password_change_required, "{}", db.backend);
        assert!(store.reset(r.id).await.unwrap().is_none(), "{}", db.backend);
        assert_eq!(outbox(&conn, "password_changed").await, 1, "{}", db.backend);

        // The second use finds it closed and changes nothing.
        let mut again = u.clone();
        again.password_hash = PasswordHash::new("$argon2id$other".into());
        let err = store
            .complete_reset(r.id, &again, revoke(), change())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::ResetTokenInvalid),
            "{}: {err:?}",
            db.backend
        );
        let stored = store.user(u.company_id, u.id).await.unwrap().unwrap();
        assert_eq!(
            stored.password_hash.as_str(),
            "$argon2id$new",
            "{}",
            db.backend
        );
        assert_eq!(outbox(&conn, "password_changed").await, 1, "{}", db.backend);
    }
}

#[tokio::test]
async fn an_expired_or_replaced_reset_cannot_complete() {
    for (db, store, conn) in stores().await {
        let (_, u) = company_with_owner(&store, Role::Admin).await;
        let r = reset(&u, t0() + Duration::minutes(30));
        store.open_reset(&r, t0(), vec![]).await.unwrap();
        let s = super::sessions::new_session(&u, t0());
        super::sessions::open(&store, &u, &s, 5).await.unwrap();
        let mut changed = u.clone();
        changed.password_hash = PasswordHash::new("$argon2id$new".into());
        // At its expiry it no longer works.
        let late = SessionRevocation {
            at: r.expires_at,
            ..revocation(RevocationReason::PasswordChanged, None)
        };
        let err = store
            .complete_reset(
                r.id,
                &changed,
                late,
                vec![record(Action::USER_PASSWORD_CHANGED, Some(u.company_id))],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::ResetTokenInvalid),
            "{}: {err:?}",
            db.backend
        );
        // A newer request replaced it: the old one no longer works even in time.
        let newer = reset(&u, t0() + Duration::minutes(40));
        assert!(
            store
                .open_reset(&newer, r.expires_at, vec![])
                .await
                .unwrap()
        );
        let err = store
            .complete_reset(
                r.id,
                &changed,
                revocation(RevocationReason::PasswordChanged, None),
                vec![],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::ResetTokenInvalid),
            "{}: {err:?}",
            db.backend
        );
        let stored = store.user(u.company_id, u.id).await.unwrap().unwrap();
        assert_eq!(
            stored.password_hash.as_str(),
            u.password_hash.as_str(),
            "{}",
            db.backend
        );
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL"
            )
            .await,
            1,
            "{}: the session stays",
            db.backend
        );
        assert_eq!(outbox(&conn, "password_changed").await, 0, "{}", db.backend);
    }
}
