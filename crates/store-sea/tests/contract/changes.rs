//! Change notices across processes (PostgreSQL, migrations m0012 and m0013): a store following
//! them sees another store's committed session and user changes at once, and a lost listening connection
//! counts as a change (notices may have been missed) before listening resumes.

use std::time::{Duration, Instant};

use ::accounts::AccountRepository as _;
use ::sessions::{ChangeEpoch as _, SessionStore as _};

use ::accounts::UserField;

use super::*;

/// Waits (up to 10 s, far beyond a notice's milliseconds) until `store`'s epoch passes `after`.
async fn epoch_passes(store: &SeaStore, after: u64, what: &str) -> u64 {
    let started = Instant::now();
    loop {
        let now = store.current();
        if now > after {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: the follower's epoch stayed at {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An id in another stripe of the change epochs than `user`'s.
fn elsewhere(user: kernel::UserId) -> kernel::UserId {
    loop {
        let other = kernel::UserId::from_uuid(id());
        if store_sea::epochs::stripe(other) != store_sea::epochs::stripe(user) {
            return other;
        }
    }
}

/// Waits for the next notice and checks it is the only one since `after`: notices arrive in
/// commit order, so anything committed before the write that sent it did not notify.
async fn exactly_one_more(store: &SeaStore, after: u64, what: &str) -> u64 {
    let now = epoch_passes(store, after, what).await;
    assert_eq!(now, after + 1, "{what}: an earlier write notified too");
    now
}

/// A login to `s` under `cap`, its records in `c`'s chain.
async fn login(
    store: &SeaStore,
    c: &Company,
    s: &::sessions::NewSession,
    cap: u16,
) -> (::sessions::Session, Vec<kernel::SessionId>) {
    store
        .create_capped(
            s,
            cap,
            chrono::Duration::minutes(30),
            record(Action::SESSION_LOGIN, Some(c.id)),
            revocation(RevocationReason::SessionLimit, Some(s.id)),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_processs_session_and_user_writes_reach_the_follower() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // Two stores with their own pools: two server processes as far as the database can tell.
    let writer = SeaStore::new(db.connect().await, chain());
    let follower = SeaStore::new(db.connect().await, chain());
    let _following = follower
        .follow_changes(&db.url)
        .await
        .unwrap()
        .expect("PostgreSQL follows notices");
    let start = follower.current();

    // None of these can change a cached session (migration m0013): a new user, a login below
    // the cap (a new row, and the user's session counter), a request's touch.
    let (c, u) = company_with_owner(&writer, Role::Owner).await;
    let first = super::sessions::new_session(&u, t0());
    login(&writer, &c, &first, 2).await;
    writer
        .touch(first.id, t0() + chrono::Duration::minutes(1))
        .await
        .unwrap();

    // These can, and each reaches the follower once.
    let mut admin = u.clone();
    admin.role = Role::Admin;
    writer
        .update_user(&u, &admin, &[UserField::Role], None, vec![])
        .await
        .unwrap();
    let after_role = exactly_one_more(&follower, start, "a role change").await;
    // The notice names the user: other users' cached sessions stay.
    assert!(follower.changed_since(u.id, start));
    assert!(!follower.changed_since(elsewhere(u.id), start));

    let second = super::sessions::new_session(&u, t0() + chrono::Duration::minutes(2));
    let (_, revoked) = login(&writer, &c, &second, 1).await;
    assert_eq!(revoked, vec![first.id]);
    let after_cap = exactly_one_more(&follower, after_role, "a login that revoked one").await;

    assert!(
        writer
            .revoke(
                c.id,
                u.id,
                second.id,
                revocation(RevocationReason::Logout, None)
            )
            .await
            .unwrap()
    );
    exactly_one_more(&follower, after_cap, "a logout").await;
}

/// The store's own epoch (both databases) moves after every write that may change a session or
/// a user, marking only the users a write names where it can, and stays for writes that cannot
/// change either: audit records, the login throttle (every failed login and every denial write
/// them) and company settings.
#[tokio::test]
async fn the_epoch_moves_for_session_and_user_writes_only() {
    for db in TestDb::each().await {
        let store = SeaStore::new(db.connect().await, chain());
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        let before = store.current();
        ::audit::AuditSink::record(&store, record(Action::SESSION_LOGIN, Some(c.id)))
            .await
            .unwrap();
        ::audit::AuditSink::record(&store, record(Action::SESSION_LOGIN, None))
            .await
            .unwrap();
        ::sessions::LoginThrottle::record_failure(
            &store,
            "ana@example.com",
            t0(),
            ::sessions::ThrottlePolicy::default(),
        )
        .await
        .unwrap();
        let logged = record(Action::SESSION_LOGIN, Some(c.id));
        store
            .update_company(
                c.id,
                Box::new(move |current| {
                    Ok(Some(::accounts::CompanyUpdate {
                        company: Company {
                            name: ::accounts::CompanyName::parse("Renamed").unwrap(),
                            ..current.clone()
                        },
                        changes: vec![],
                        audit: vec![logged],
                    }))
                }),
            )
            .await
            .unwrap();
        assert_eq!(store.current(), before, "{}", db.backend);

        let s = super::sessions::new_session(&u, t0());
        login(&store, &c, &s, 2).await;
        let after_login = store.current();
        assert!(after_login > before, "{}", db.backend);
        // A login, a user change and a logout mark their user only.
        let other = elsewhere(u.id);
        assert!(store.changed_since(u.id, before), "{}", db.backend);
        assert!(!store.changed_since(other, before), "{}", db.backend);
        let mut off = u.clone();
        off.active = false;
        store
            .update_user(&u, &off, &[UserField::Active], None, vec![])
            .await
            .unwrap();
        assert!(store.changed_since(u.id, after_login), "{}", db.backend);
        let after_update = store.current();
        store
            .revoke(c.id, u.id, s.id, revocation(RevocationReason::Logout, None))
            .await
            .unwrap();
        assert!(store.changed_since(u.id, after_update), "{}", db.backend);
        assert!(!store.changed_since(other, before), "{}", db.backend);
    }
}

/// Asserts that the write `what` made since `before` marked exactly `marked` of `users` and
/// returns the epoch after it.
fn marked_only(
    store: &SeaStore,
    before: u64,
    users: &[&User],
    marked: &[&User],
    what: &str,
) -> u64 {
    for u in users {
        let expected = marked.iter().any(|m| m.id == u.id);
        assert_eq!(
            store.changed_since(u.id, before),
            expected,
            "{what}: {} {}",
            u.email.as_str(),
            if expected { "not marked" } else { "marked" }
        );
    }
    assert_eq!(store.current() > before, !marked.is_empty(), "{what}");
    store.current()
}

/// Reauthentication, MFA changes and ownership transfers name the users they touch, so only
/// those users' cached sessions go stale; starting an enrolment, spending a recovery code,
/// replacing the codes and opening a transfer touch neither table and mark no one.
#[tokio::test]
async fn writes_that_name_their_users_mark_only_them() {
    use ::accounts::{OwnershipRepository as _, TransferStatus};
    use ::mfa::MfaRepository as _;
    use vault::Sealed;

    for db in TestDb::each().await {
        let store = SeaStore::new(db.connect().await, chain());
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        // Three users in three stripes of the epochs.
        let mut v = user(&c, &format!("v{}@example.com", id().simple()), Role::Admin);
        v.id = elsewhere(u.id);
        store.insert_user(&v, vec![]).await.unwrap();
        let mut w = user(&c, &format!("w{}@example.com", id().simple()), Role::Vendor);
        w.id = loop {
            let candidate = elsewhere(u.id);
            if store_sea::epochs::stripe(candidate) != store_sea::epochs::stripe(v.id) {
                break candidate;
            }
        };
        store.insert_user(&w, vec![]).await.unwrap();
        let all = [&u, &v, &w];
        let s = super::sessions::new_session(&u, t0());
        login(&store, &c, &s, 2).await;
        let audit = |action| record(action, Some(c.id));

        let at = store.current();
        store
            .mark_reauthenticated(s.id, t0(), audit(Action::SESSION_LOGIN))
            .await
            .unwrap();
        let at = marked_only(&store, at, &all, &[&u], "reauthentication");

        assert!(
            store
                .save_pending(
                    &super::mfa::pending(&v, "ev1.s1", 1),
                    audit(Action::MFA_ENROLMENT_STARTED)
                )
                .await
                .unwrap()
        );
        let at = marked_only(&store, at, &all, &[], "an enrolment started");
        let codes = super::mfa::digests("d");
        assert!(
            store
                .confirm(
                    c.id,
                    v.id,
                    &Sealed::new("ev1.s1".into()),
                    100,
                    t0(),
                    &codes,
                    audit(Action::MFA_ENABLED),
                )
                .await
                .unwrap()
        );
        let at = marked_only(&store, at, &all, &[&v], "MFA confirmed");
        assert!(
            store
                .use_recovery_code(c.id, v.id, &codes[0], t0(), audit(Action::MFA_ENABLED))
                .await
                .unwrap()
        );
        let at = marked_only(&store, at, &all, &[], "a recovery code spent");
        assert!(
            store
                .replace_recovery_codes(
                    c.id,
                    v.id,
                    &super::mfa::digests("e"),
                    audit(Action::MFA_ENABLED)
                )
                .await
                .unwrap()
        );
        let at = marked_only(&store, at, &all, &[], "recovery codes replaced");
        assert!(
            store
                .disable(c.id, v.id, audit(Action::MFA_ENABLED))
                .await
                .unwrap()
        );
        let at = marked_only(&store, at, &all, &[&v], "MFA disabled");

        let t = super::ownership::transfer(&c, &u, &v);
        store.create_transfer(&t, vec![]).await.unwrap();
        let at = marked_only(&store, at, &all, &[], "a transfer opened");
        store.complete_transfer(&t, t0(), vec![]).await.unwrap();
        let at = marked_only(&store, at, &all, &[&u, &v], "a transfer completed");
        let t = super::ownership::transfer(&c, &v, &u);
        store.create_transfer(&t, vec![]).await.unwrap();
        assert!(
            store
                .close_transfer(c.id, t.id, TransferStatus::Cancelled, t0(), vec![])
                .await
                .unwrap()
        );
        marked_only(&store, at, &all, &[], "a transfer cancelled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listening_connection_counts_as_a_change_and_listening_resumes() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let writer = SeaStore::new(db.connect().await, chain());
    let follower = SeaStore::new(db.connect().await, chain());
    let (_, u) = company_with_owner(&writer, Role::Owner).await;
    let _following = follower.follow_changes(&db.url).await.unwrap().unwrap();
    let admin = db.connect().await;
    let start = follower.current();
    let ended = count(
        &admin,
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN %') AS t",
    )
    .await;
    assert_eq!(ended, 1, "the follower's one listening connection");
    let after_loss = epoch_passes(&follower, start, "the lost connection").await;

    // Listening again: once the epoch has settled (no more retries counting), a write still
    // arrives.
    let mut settled = after_loss;
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the follower keeps failing to listen again"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = follower.current();
        if now == settled {
            break;
        }
        settled = now;
    }
    let mut admin = u.clone();
    admin.role = Role::Admin;
    writer
        .update_user(&u, &admin, &[UserField::Role], None, vec![])
        .await
        .unwrap();
    epoch_passes(&follower, settled, "a write after the loss").await;
}

/// SQLite has no notices: nothing to follow, and saying so is not an error.
#[tokio::test]
async fn sqlite_has_nothing_to_follow() {
    let db = TestDb::sqlite();
    let store = SeaStore::new(db.connect().await, chain());
    assert!(store.follow_changes(&db.url).await.unwrap().is_none());
}
