//! The e-mail change port: one pending change per user, re-opened only after the resend
//! interval, its code mailed to the new address and a warning to the current one; completed
//! once by compare and set, with the other sessions revoked and the old address told and given
//! an undo window; the undo, once, by compare and set, with every session revoked.

use ::accounts::{
    AccountRepository, AccountsError, EmailChange, EmailChangeRepository, EmailRevert,
    FactorRemoval, PasswordHash, PasswordReset, PasswordResetRepository,
};
use chrono::Duration;
use kernel::SessionId;

use ::accounts::UserField;

use super::*;

fn change(u: &User, to: &str, expires_at: Timestamp) -> EmailChange {
    EmailChange {
        id: id(),
        company_id: u.company_id,
        user_id: u.id,
        to: Email::parse(to).unwrap(),
        expires_at,
    }
}

/// The record the service writes with a change (its id is the change's).
fn requested(u: &User, c: &EmailChange) -> AuditRecord {
    let mut rec = record(Action::USER_EMAIL_CHANGE_REQUESTED, Some(u.company_id))
        .target("user", u.id)
        .details(serde_json::json!({
            "to": c.to.as_str(),
            "expires_at": c.expires_at.to_rfc3339(),
        }));
    rec.id = c.id;
    rec
}

/// Where the queued messages of `template` go.
async fn addressed(conn: &DatabaseConnection, template: &str) -> Vec<String> {
    use sea_orm::ConnectionTrait as _;
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        format!("SELECT to_address FROM outbox_messages WHERE template = '{template}'"),
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get_by_index::<String>(0).unwrap())
    .collect()
}

#[tokio::test]
async fn a_change_opens_once_per_interval_and_mails_both_addresses() {
    for (db, store, conn) in stores().await {
        let b = db.backend;
        let (_, u) = company_with_owner(&store, Role::Admin).await;
        let first = change(&u, "ana@nuevo.mx", t0() + Duration::minutes(60));
        let keep = t0() + Duration::minutes(55);
        assert!(
            store
                .open_email_change(&first, keep, vec![requested(&u, &first)])
                .await
                .unwrap(),
            "{b}"
        );
        assert_eq!(
            store.email_change(u.company_id, u.id).await.unwrap(),
            Some(first.clone()),
            "{b}"
        );
        // The code goes to the new address with its placeholder, caused by the change's record;
        // the warning to the current address.
        assert_eq!(
            addressed(&conn, "email_change_code").await,
            vec!["ana@nuevo.mx".to_owned()],
            "{b}"
        );
        let body: String = scalar(
            &conn,
            "SELECT body FROM outbox_messages WHERE template = 'email_change_code'",
        )
        .await;
        assert!(body.contains(notify::RESET_TOKEN_PLACEHOLDER), "{b}");
        let cause: uuid::Uuid = scalar(
            &conn,
            "SELECT cause FROM outbox_messages WHERE template = 'email_change_code'",
        )
        .await;
        assert_eq!(cause, first.id, "{b}");
        assert_eq!(
            addressed(&conn, "email_change_requested").await,
            vec![u.email.as_str().to_owned()],
            "{b}"
        );

        // Asked again within the interval: the pending change stays, nothing is mailed.
        let again = change(&u, "otra@nuevo.mx", t0() + Duration::minutes(61));
        assert!(
            !store
                .open_email_change(
                    &again,
                    keep + Duration::minutes(1),
                    vec![requested(&u, &again)]
                )
                .await
                .unwrap(),
            "{b}"
        );
        assert_eq!(
            store.email_change(u.company_id, u.id).await.unwrap(),
            Some(first.clone()),
            "{b}"
        );
        assert_eq!(addressed(&conn, "email_change_code").await.len(), 1, "{b}");

        // After it, a new one replaces it.
        let later = change(&u, "otra@nuevo.mx", t0() + Duration::minutes(66));
        assert!(
            store
                .open_email_change(
                    &later,
                    t0() + Duration::minutes(61),
                    vec![requested(&u, &later)]
                )
                .await
                .unwrap(),
            "{b}"
        );
        assert_eq!(
            store.email_change(u.company_id, u.id).await.unwrap(),
            Some(later),
            "{b}"
        );

        // Nobody of another company can be given a change, nor read through it.
        let mut stranger = change(&u, "x@nuevo.mx", t0() + Duration::minutes(60));
        stranger.company_id = company().id;
        let err = store
            .open_email_change(&stranger, keep, vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::NotFound), "{b}: {err:?}");
        assert_eq!(
            store.email_change(stranger.company_id, u.id).await.unwrap(),
            None,
            "{b}"
        );
    }
}

#[tokio::test]
async fn completing_a_change_sets_the_address_once_and_closes_an_open_reset() {
    for (db, store, conn) in stores().await {
        let b = db.backend;
        let (_, u) = company_with_owner(&store, Role::Admin).await;
        let c = change(&u, "ana@nuevo.mx", t0() + Duration::minutes(60));
        store
            .open_email_change(&c, t0(), vec![requested(&u, &c)])
            .await
            .unwrap();
        // A reset mailed to the old address is open too.
        let reset = PasswordReset {
            id: id(),
            company_id: u.company_id,
            user_id: u.id,
            expires_at: t0() + Duration::minutes(30),
        };
        store.open_reset(&reset, t0(), vec![]).await.unwrap();
        let mut sessions = Vec::new();
        for n in 0..3 {
            let s = super::sessions::new_session(&u, t0() + Duration::seconds(n));
            super::sessions::open(&store, &u, &s, 5).await.unwrap();
            sessions.push(s.id);
        }
        let current = sessions[2];
        let at = t0() + Duration::minutes(10);
        let mut changed = u.clone();
        changed.email = c.to.clone();
        changed.updated_at = at;
        let records = || {
            let mut rec = record(Action::USER_EMAIL_CHANGED, Some(u.company_id))
                .target("user", u.id)
                .details(serde_json::json!({ "from": u.email.as_str(), "to": "ana@nuevo.mx" }));
            rec.at = at;
            vec![rec]
        };
        let revoke = || SessionRevocation {
            at,
            audit_template: record(Action::SESSION_REVOKED, Some(u.company_id)),
            ..revocation(RevocationReason::EmailChanged, Some(current))
        };
        let window = EmailRevert {
            id: records()[0].id,
            company_id: u.company_id,
            user_id: u.id,
            to: u.email.clone(),
            expires_at: at + Duration::hours(72),
        };
        let mut revoked = store
            .complete_email_change(c.id, &changed, Some(window.clone()), revoke(), records())
            .await
            .unwrap();
        revoked.sort();
        let mut others: Vec<SessionId> = sessions[..2].to_vec();
        others.sort();
        assert_eq!(revoked, others, "{b}: the current session stays");
        let stored = store.user(u.company_id, u.id).await.unwrap().unwrap();
        assert_eq!(stored.email.as_str(), "ana@nuevo.mx", "{b}");
        assert_eq!(
            store
                .user_by_email(&Email::parse("ana@nuevo.mx").unwrap())
                .await
                .unwrap()
                .map(|f| f.id),
            Some(u.id),
            "{b}"
        );
        assert!(
            store.user_by_email(&u.email).await.unwrap().is_none(),
            "{b}"
        );
        assert_eq!(
            store.email_change(u.company_id, u.id).await.unwrap(),
            None,
            "{b}"
        );
        assert!(
            store.reset(reset.id).await.unwrap().is_none(),
            "{b}: the reset closed"
        );
        assert_eq!(
            store.email_revert_of(u.company_id, u.id).await.unwrap(),
            Some(window.clone()),
            "{b}: the undo window opened"
        );
        assert_eq!(
            store.email_revert(window.id).await.unwrap(),
            Some((stored.clone(), window.clone())),
            "{b}"
        );
        assert_eq!(
            addressed(&conn, "email_changed").await,
            vec![u.email.as_str().to_owned()],
            "{b}: the old address is told"
        );

        // The second use finds it closed and changes nothing.
        let mut again = changed.clone();
        again.email = Email::parse("tercera@nuevo.mx").unwrap();
        let err = store
            .complete_email_change(c.id, &again, None, revoke(), records())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::EmailChangeInvalid),
            "{b}: {err:?}"
        );
        let stored = store.user(u.company_id, u.id).await.unwrap().unwrap();
        assert_eq!(stored.email.as_str(), "ana@nuevo.mx", "{b}");
        assert_eq!(addressed(&conn, "email_changed").await.len(), 1, "{b}");
    }
}

#[tokio::test]
async fn a_change_fails_whole_when_the_address_was_taken_or_the_code_expired() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (co, u) = company_with_owner(&store, Role::Owner).await;
        let c = change(&u, "libre@nuevo.mx", t0() + Duration::minutes(60));
        store
            .open_email_change(&c, t0(), vec![requested(&u, &c)])
            .await
            .unwrap();
        let s = super::sessions::new_session(&u, t0());
        super::sessions::open(&store, &u, &s, 5).await.unwrap();
        let mut changed = u.clone();
        changed.email = c.to.clone();
        let revoke = |at: Timestamp| SessionRevocation {
            at,
            audit_template: record(Action::SESSION_REVOKED, Some(u.company_id)),
            ..revocation(RevocationReason::EmailChanged, None)
        };

        // Expired: refused, nothing changes.
        let err = store
            .complete_email_change(c.id, &changed, None, revoke(c.expires_at), vec![])
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::EmailChangeInvalid),
            "{b}: {err:?}"
        );

        // Someone registered the address meanwhile: refused, the session and the pending
        // change stay as they were.
        let taker = user(&co, "libre@nuevo.mx", Role::Vendor);
        store.insert_user(&taker, vec![]).await.unwrap();
        let err = store
            .complete_email_change(c.id, &changed, None, revoke(t0()), vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::EmailTaken), "{b}: {err:?}");
        let stored = store.user(u.company_id, u.id).await.unwrap().unwrap();
        assert_eq!(stored.email, u.email, "{b}");
        assert_eq!(
            store.email_change(u.company_id, u.id).await.unwrap(),
            Some(c.clone()),
            "{b}"
        );
        let live = ::sessions::SessionStore::list_active(
            &*store,
            u.company_id,
            u.id,
            t0(),
            Duration::minutes(30),
        )
        .await
        .unwrap();
        assert_eq!(live.len(), 1, "{b}: nothing revoked");

        // A password reset completed meanwhile ends the pending change.
        let reset = PasswordReset {
            id: id(),
            company_id: u.company_id,
            user_id: u.id,
            expires_at: t0() + Duration::minutes(30),
        };
        store.open_reset(&reset, t0(), vec![]).await.unwrap();
        store
            .complete_reset(
                reset.id,
                &u,
                revoke(t0()),
                vec![record(Action::USER_PASSWORD_CHANGED, Some(u.company_id))],
            )
            .await
            .unwrap();
        assert_eq!(
            store.email_change(u.company_id, u.id).await.unwrap(),
            None,
            "{b}"
        );
    }
}

/// What the service asks of an undo for `u` moved at `moved_at`: a factor enrolled since goes.
fn factor(u: &User, moved_at: Timestamp) -> FactorRemoval {
    FactorRemoval {
        enrolled_after: moved_at,
        audit: record(Action::MFA_DISABLED, Some(u.company_id))
            .target("user", u.id)
            .details(serde_json::json!({ "by": "email_revert" })),
    }
}

/// The user `u` moved to `to` at `at` through a completed change, with the undo window the
/// service opens (its id the `user.email_changed` record's); returns the moved user and the
/// window.
async fn moved(store: &SeaStore, u: &User, to: &str, at: Timestamp) -> (User, EmailRevert) {
    let c = change(u, to, at + Duration::minutes(60));
    store
        .open_email_change(&c, at, vec![requested(u, &c)])
        .await
        .unwrap();
    let mut changed = u.clone();
    changed.email = c.to.clone();
    let mut rec = record(Action::USER_EMAIL_CHANGED, Some(u.company_id))
        .target("user", u.id)
        .details(serde_json::json!({ "from": u.email.as_str(), "to": to }));
    rec.at = at;
    let window = EmailRevert {
        id: rec.id,
        company_id: u.company_id,
        user_id: u.id,
        to: u.email.clone(),
        expires_at: at + Duration::hours(72),
    };
    store
        .complete_email_change(
            c.id,
            &changed,
            Some(window.clone()),
            SessionRevocation {
                at,
                audit_template: record(Action::SESSION_REVOKED, Some(u.company_id)),
                ..revocation(RevocationReason::EmailChanged, None)
            },
            vec![rec],
        )
        .await
        .unwrap();
    (changed, window)
}

#[tokio::test]
async fn an_undo_restores_the_address_once_and_ends_every_session_and_whatever_was_pending() {
    for (db, store, conn) in stores().await {
        let b = db.backend;
        let (_, u) = company_with_owner(&store, Role::Admin).await;
        let (held, window) = moved(&store, &u, "ana@atacante.mx", t0()).await;
        // Whoever holds the account logs in, asks for a reset to their mailbox and for
        // another move.
        let mut sessions = Vec::new();
        for n in 0..2 {
            let s = super::sessions::new_session(&held, t0() + Duration::seconds(n));
            super::sessions::open(&store, &held, &s, 5).await.unwrap();
            sessions.push(s.id);
        }
        let reset = PasswordReset {
            id: id(),
            company_id: u.company_id,
            user_id: u.id,
            expires_at: t0() + Duration::minutes(30),
        };
        store.open_reset(&reset, t0(), vec![]).await.unwrap();
        let next = change(&held, "otra@atacante.mx", t0() + Duration::minutes(60));
        store
            .open_email_change(&next, t0(), vec![requested(&held, &next)])
            .await
            .unwrap();

        let at = t0() + Duration::minutes(5);
        let mut restored = held.clone();
        restored.email = u.email.clone();
        restored.password_hash = PasswordHash::new("$argon2id$nobody-knows".into());
        restored.updated_at = at;
        let records = || {
            let mut rec = record(Action::USER_EMAIL_CHANGE_REVERTED, Some(u.company_id))
                .target("user", u.id)
                .details(serde_json::json!({
                    "from": "ana@atacante.mx",
                    "to": u.email.as_str(),
                }));
            rec.at = at;
            vec![rec]
        };
        let revoke = || SessionRevocation {
            at,
            audit_template: record(Action::SESSION_REVOKED, Some(u.company_id)),
            ..revocation(RevocationReason::EmailChangeReverted, None)
        };
        let mut revoked = store
            .complete_email_revert(window.id, &restored, revoke(), factor(&u, t0()), records())
            .await
            .unwrap();
        revoked.sort();
        sessions.sort();
        assert_eq!(revoked, sessions, "{b}: every session ends");
        let stored = store.user(u.company_id, u.id).await.unwrap().unwrap();
        assert_eq!(stored.email, u.email, "{b}");
        assert_eq!(
            stored.password_hash.as_str(),
            "$argon2id$nobody-knows",
            "{b}"
        );
        assert!(store.reset(reset.id).await.unwrap().is_none(), "{b}");
        assert_eq!(
            store.email_change(u.company_id, u.id).await.unwrap(),
            None,
            "{b}"
        );
        assert_eq!(
            store.email_revert_of(u.company_id, u.id).await.unwrap(),
            None,
            "{b}: the window closed"
        );
        assert_eq!(store.email_revert(window.id).await.unwrap(), None, "{b}");
        assert_eq!(
            addressed(&conn, "email_change_reverted").await,
            vec![u.email.as_str().to_owned()],
            "{b}: the restored address is told"
        );
        assert_eq!(
            addressed(&conn, "email_change_undone").await,
            vec!["ana@atacante.mx".to_owned()],
            "{b}: so is the address undone"
        );

        // The second use finds the window closed and changes nothing.
        let err = store
            .complete_email_revert(window.id, &restored, revoke(), factor(&u, t0()), records())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::EmailChangeInvalid),
            "{b}: {err:?}"
        );
        assert_eq!(
            addressed(&conn, "email_change_reverted").await.len(),
            1,
            "{b}"
        );
    }
}

#[tokio::test]
async fn an_undo_fails_whole_when_the_window_closed_or_the_old_address_was_taken() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (co, u) = company_with_owner(&store, Role::Owner).await;
        let (held, window) = moved(&store, &u, "ana@atacante.mx", t0()).await;
        let s = super::sessions::new_session(&held, t0());
        super::sessions::open(&store, &held, &s, 5).await.unwrap();
        let mut restored = held.clone();
        restored.email = u.email.clone();
        restored.password_hash = PasswordHash::new("$argon2id$nobody-knows".into());
        let revoke = |at: Timestamp| SessionRevocation {
            at,
            audit_template: record(Action::SESSION_REVOKED, Some(u.company_id)),
            ..revocation(RevocationReason::EmailChangeReverted, None)
        };
        let unchanged = |what: &'static str| {
            let store = store.clone();
            let held = held.clone();
            let window = window.clone();
            async move {
                let stored = store.user(held.company_id, held.id).await.unwrap().unwrap();
                assert_eq!(stored, held, "{b}: {what}");
                assert_eq!(
                    store
                        .email_revert_of(held.company_id, held.id)
                        .await
                        .unwrap(),
                    Some(window),
                    "{b}: {what}"
                );
                let live = ::sessions::SessionStore::list_active(
                    &*store,
                    held.company_id,
                    held.id,
                    t0(),
                    Duration::minutes(30),
                )
                .await
                .unwrap();
                assert_eq!(live.len(), 1, "{b}: {what}: nothing revoked");
            }
        };

        // The window closed: refused.
        let err = store
            .complete_email_revert(
                window.id,
                &restored,
                revoke(window.expires_at),
                factor(&u, t0()),
                vec![],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::EmailChangeInvalid),
            "{b}: {err:?}"
        );
        unchanged("closed window").await;

        // Someone registered the old address meanwhile (only possible once the window had
        // closed, see below): refused as taken.
        let taker = User {
            created_at: window.expires_at,
            ..user(&co, u.email.as_str(), Role::Vendor)
        };
        store.insert_user(&taker, vec![]).await.unwrap();
        let err = store
            .complete_email_revert(window.id, &restored, revoke(t0()), factor(&u, t0()), vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::EmailTaken), "{b}: {err:?}");
        unchanged("address taken").await;

        // Another window's id, or this one restoring another address: refused.
        let mut elsewhere = restored.clone();
        elsewhere.email = Email::parse("otra@example.com").unwrap();
        for (id, who) in [(id(), &restored), (window.id, &elsewhere)] {
            let err = store
                .complete_email_revert(id, who, revoke(t0()), factor(&u, t0()), vec![])
                .await
                .unwrap_err();
            assert!(
                matches!(err, AccountsError::EmailChangeInvalid),
                "{b}: {err:?}"
            );
        }
        unchanged("wrong window").await;
    }
}

#[tokio::test]
async fn an_open_undo_window_keeps_its_address_from_everyone_but_its_user() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (co, u) = company_with_owner(&store, Role::Owner).await;
        let (held, window) = moved(&store, &u, "ana@atacante.mx", t0()).await;
        let old = u.email.as_str();
        let during = t0() + Duration::hours(71);

        // Nobody is created with it, signs up with it, or moves to it.
        let taker = User {
            created_at: during,
            ..user(&co, old, Role::Vendor)
        };
        let err = store.insert_user(&taker, vec![]).await.unwrap_err();
        assert!(matches!(err, AccountsError::EmailTaken), "{b}: {err:?}");
        assert!(store.user(co.id, taker.id).await.unwrap().is_none(), "{b}");
        let other = company();
        let founder = User {
            created_at: during,
            ..user(&other, old, Role::Owner)
        };
        let err = store
            .create_company_with_owner(&other, &founder, vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::EmailTaken), "{b}: {err:?}");
        assert!(store.company(other.id).await.unwrap().is_none(), "{b}");
        let (_, v) = company_with_owner(&store, Role::Admin).await;
        let c = change(&v, old, during + Duration::minutes(60));
        store
            .open_email_change(&c, during, vec![requested(&v, &c)])
            .await
            .unwrap();
        let mut moving = v.clone();
        moving.email = c.to.clone();
        let revoke = |who: &User| SessionRevocation {
            at: during,
            audit_template: record(Action::SESSION_REVOKED, Some(who.company_id)),
            ..revocation(RevocationReason::EmailChanged, None)
        };
        let err = store
            .complete_email_change(c.id, &moving, None, revoke(&v), vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::EmailTaken), "{b}: {err:?}");
        assert_eq!(
            store.user(v.company_id, v.id).await.unwrap().unwrap().email,
            v.email,
            "{b}"
        );

        // Its own user may move back to it (the window stays).
        let back = change(&held, old, during + Duration::minutes(60));
        store
            .open_email_change(&back, during, vec![requested(&held, &back)])
            .await
            .unwrap();
        let mut returning = held.clone();
        returning.email = u.email.clone();
        store
            .complete_email_change(back.id, &returning, None, revoke(&held), vec![])
            .await
            .unwrap();
        assert_eq!(
            store.email_revert_of(u.company_id, u.id).await.unwrap(),
            Some(window),
            "{b}"
        );
    }
}

#[tokio::test]
async fn an_undo_takes_away_a_factor_enrolled_since_the_move_and_keeps_an_older_one() {
    use ::mfa::MfaRepository as _;
    for (db, store, conn) in stores().await {
        let b = db.backend;
        // The mover puts their own authenticator on the account after the move.
        let (_, u) = company_with_owner(&store, Role::Owner).await;
        let (_, window) = moved(&store, &u, "uno@atacante.mx", t0()).await;
        super::mfa::confirmed_since(&store, &u, t0() + Duration::minutes(1)).await;
        // The other user's factor is their own, from before the move.
        let (_, v) = company_with_owner(&store, Role::Owner).await;
        super::mfa::confirmed_since(&store, &v, t0() - Duration::days(1)).await;
        // (`v` as read before its factor: storing it back leaves the flag alone.)
        let (_, v_window) = moved(&store, &v, "dos@atacante.mx", t0()).await;

        let at = t0() + Duration::minutes(5);
        for (who, w, from) in [
            (&u, &window, "uno@atacante.mx"),
            (&v, &v_window, "dos@atacante.mx"),
        ] {
            // What the service reads and stores back: the user as the store has them now.
            let mut restored = store.user(who.company_id, who.id).await.unwrap().unwrap();
            restored.email = who.email.clone();
            restored.updated_at = at;
            let mut rec = record(Action::USER_EMAIL_CHANGE_REVERTED, Some(who.company_id))
                .target("user", who.id)
                .details(serde_json::json!({ "from": from, "to": who.email.as_str() }));
            rec.at = at;
            store
                .complete_email_revert(
                    w.id,
                    &restored,
                    SessionRevocation {
                        at,
                        audit_template: record(Action::SESSION_REVOKED, Some(who.company_id)),
                        ..revocation(RevocationReason::EmailChangeReverted, None)
                    },
                    factor(who, t0()),
                    vec![rec],
                )
                .await
                .unwrap();
        }

        assert!(
            store.enrolment(u.company_id, u.id).await.unwrap().is_none(),
            "{b}"
        );
        assert_eq!(
            store
                .recovery_codes_remaining(u.company_id, u.id)
                .await
                .unwrap(),
            0,
            "{b}"
        );
        assert!(
            !store
                .user(u.company_id, u.id)
                .await
                .unwrap()
                .unwrap()
                .mfa_enabled,
            "{b}: the mover's factor is gone"
        );
        assert!(
            store.enrolment(v.company_id, v.id).await.unwrap().is_some(),
            "{b}"
        );
        assert!(
            store
                .user(v.company_id, v.id)
                .await
                .unwrap()
                .unwrap()
                .mfa_enabled,
            "{b}: the owner's own factor stays"
        );
        assert_eq!(
            store
                .recovery_codes_remaining(v.company_id, v.id)
                .await
                .unwrap(),
            10,
            "{b}"
        );
        // One removal recorded and told, for the user whose factor went.
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'mfa.disabled'"
            )
            .await,
            1,
            "{b}"
        );
        assert_eq!(
            addressed(&conn, "mfa_disabled").await,
            vec![u.email.as_str().to_owned()],
            "{b}"
        );
    }
}

/// A reset, a change of address and an undo store back only what they change: a role change
/// and a deactivation committed after the user was read stay, and a user deactivated meanwhile
/// gets no password from a reset.
#[tokio::test]
async fn completions_store_back_only_what_they_change() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        // Read for a reset; meanwhile an Owner demotes and deactivates the user.
        let (co, read, demoted) = admin_read_then_demoted(&store, "leida@example.com").await;
        let at = t0() + Duration::minutes(1);
        let revoke = || SessionRevocation {
            at,
            audit_template: record(Action::SESSION_REVOKED, Some(co.id)),
            ..revocation(RevocationReason::PasswordChanged, None)
        };
        let reset = PasswordReset {
            id: id(),
            company_id: co.id,
            user_id: read.id,
            expires_at: t0() + Duration::minutes(30),
        };
        store.open_reset(&reset, t0(), vec![]).await.unwrap();
        let mut new_password = read.clone();
        new_password.password_hash = PasswordHash::new("$argon2id$new".into());
        let err = store
            .complete_reset(reset.id, &new_password, revoke(), vec![])
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::ResetTokenInvalid),
            "{b}: {err:?}"
        );
        let stored = store.user(co.id, read.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.role, stored.active, stored.password_hash.as_str()),
            (Role::Vendor, false, read.password_hash.as_str()),
            "{b}"
        );

        // Active again (still a Vendor): a change of address and its undo, both from the
        // Admin read, leave the role alone.
        let mut active = demoted.clone();
        active.active = true;
        store
            .update_user(&demoted, &active, &[UserField::Active], None, vec![])
            .await
            .unwrap();
        let (_, window) = moved(&store, &read, "leida@nuevo.mx", at).await;
        let stored = store.user(co.id, read.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.role, stored.email.as_str()),
            (Role::Vendor, "leida@nuevo.mx"),
            "{b}"
        );
        let mut restored = read.clone();
        restored.password_hash = PasswordHash::new("$argon2id$nobody".into());
        store
            .complete_email_revert(
                window.id,
                &restored,
                SessionRevocation {
                    reason: RevocationReason::EmailChangeReverted,
                    ..revoke()
                },
                factor(&read, at),
                vec![],
            )
            .await
            .unwrap();
        let stored = store.user(co.id, read.id).await.unwrap().unwrap();
        assert_eq!(
            (
                stored.role,
                stored.email.as_str(),
                stored.password_hash.as_str()
            ),
            (Role::Vendor, "leida@example.com", "$argon2id$nobody"),
            "{b}"
        );
    }
}
