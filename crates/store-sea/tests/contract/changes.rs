//! Change notices across processes (PostgreSQL, migration m0012): a store following them sees
//! another store's committed session and user writes at once, and a lost listening connection
//! counts as a change (notices may have been missed) before listening resumes.

use std::time::{Duration, Instant};

use ::accounts::AccountRepository as _;
use ::sessions::{ChangeEpoch as _, SessionStore as _};

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

    let c = company();
    let u = user(&c, "ana@example.com", Role::Owner);
    let start = follower.current();
    writer
        .create_company_with_owner(&c, &u, vec![])
        .await
        .unwrap();
    let after_user = epoch_passes(&follower, start, "a new user").await;

    let s = super::sessions::new_session(&u, t0());
    writer
        .create_capped(
            &s,
            2,
            chrono::Duration::minutes(30),
            record(Action::SESSION_LOGIN, Some(c.id)),
            revocation(RevocationReason::SessionLimit, Some(s.id)),
        )
        .await
        .unwrap();
    let after_login = epoch_passes(&follower, after_user, "a login").await;

    assert!(
        writer
            .revoke(c.id, u.id, s.id, revocation(RevocationReason::Logout, None))
            .await
            .unwrap()
    );
    epoch_passes(&follower, after_login, "a logout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listening_connection_counts_as_a_change_and_listening_resumes() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let writer = SeaStore::new(db.connect().await, chain());
    let follower = SeaStore::new(db.connect().await, chain());
    let _following = follower.follow_changes(&db.url).await.unwrap().unwrap();
    let admin = db.connect().await;
    let start = follower.current();
    let ended = admin
        .query_one_raw(Statement::from_string(
            admin.get_database_backend(),
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN %') AS t"
                .to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
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
    let c = company();
    let u = user(&c, "ana@example.com", Role::Owner);
    writer
        .create_company_with_owner(&c, &u, vec![])
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
