use std::collections::HashMap;

use ::accounts::AccountRepository;
use ::sessions::{NewSession, SessionStore, TokenHash};
use kernel::{CompanyId, SessionId};

use ::accounts::UserField;

use super::*;

pub(crate) fn new_session(u: &User, at: Timestamp) -> NewSession {
    let sid = id();
    NewSession {
        id: SessionId::from_uuid(sid),
        company_id: u.company_id,
        user_id: u.id,
        token_hash: TokenHash::new(format!("hash-{sid}")),
        created_at: at,
        expires_at: at + chrono::Duration::hours(12),
        ip: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some("curl/8".into()),
        mfa_enrolment_only: false,
    }
}

const IDLE: chrono::Duration = chrono::Duration::minutes(30);

/// The records a login writes, as the sessions service builds them: both in the user's company
/// chain (on PostgreSQL that is the one-call path of migration m0011).
fn login_records(u: &User, keep: SessionId) -> (AuditRecord, SessionRevocation) {
    (
        record(Action::SESSION_LOGIN, Some(u.company_id)),
        SessionRevocation {
            audit_template: record(Action::SESSION_REVOKED, Some(u.company_id)),
            ..revocation(RevocationReason::SessionLimit, Some(keep))
        },
    )
}

/// `u` logs in with `s` under `cap`.
pub(crate) async fn open(
    store: &SeaStore,
    u: &User,
    s: &NewSession,
    cap: u16,
) -> Result<(::sessions::Session, Vec<SessionId>), ::sessions::SessionError> {
    let (login, revocation) = login_records(u, s.id);
    store.create_capped(s, cap, IDLE, login, revocation).await
}

/// Every record of `company`'s chain verifies, and there are `expected` of them.
async fn assert_chain_whole(
    store: &Arc<SeaStore>,
    company: CompanyId,
    expected: u64,
    backend: &str,
) {
    let svc = super::audit::service(store, Arc::new(kernel::ManualClock::new(t0())));
    let report = svc
        .verify_chain(&::audit::chain_name(Some(company)))
        .await
        .unwrap();
    assert!(report.ok, "{backend}: {report:?}");
    assert_eq!(report.checked, expected, "{backend}");
}

#[tokio::test]
async fn the_cap_revokes_the_oldest_and_audits_each_revocation() {
    for (db, store, conn) in stores().await {
        let (_, u) = company_with_owner(&store, Role::Admin).await;
        let mut ids = Vec::new();
        for n in 0..3 {
            let s = new_session(&u, t0() + chrono::Duration::seconds(n));
            let (created, revoked) = open(&store, &u, &s, 2).await.unwrap();
            assert_eq!(created.seq, n + 1, "{}", db.backend);
            ids.push((s.id, revoked));
        }
        assert!(ids[0].1.is_empty() && ids[1].1.is_empty());
        assert_eq!(ids[2].1, vec![ids[0].0], "{}", db.backend);
        let active = store
            .list_active(
                u.company_id,
                u.id,
                t0() + chrono::Duration::seconds(3),
                IDLE,
            )
            .await
            .unwrap();
        assert_eq!(
            active.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![ids[2].0, ids[1].0]
        );
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'session.revoked'"
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'session.login'"
            )
            .await,
            3
        );

        // The revoked session's token still resolves, but as revoked.
        let record = store
            .find_by_token(&TokenHash::new(format!("hash-{}", ids[0].0)))
            .await
            .unwrap()
            .unwrap();
        assert!(record.session.revoked_at.is_some());
        assert_eq!(
            record.session.revoked_reason.as_deref(),
            Some("session_limit")
        );
        assert_eq!(record.session.ip, Some("203.0.113.9".parse().unwrap()));
    }
}

/// The revocations' audit records take their ids from the caller's id port (time and
/// randomness come through ports), one fresh id per revoked session.
#[tokio::test]
async fn revocation_records_take_their_ids_from_the_callers_port() {
    for (db, store, _) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Admin).await;
        for n in 0..3 {
            let s = new_session(&u, t0() + chrono::Duration::seconds(n));
            open(&store, &u, &s, 5).await.unwrap();
        }
        // Ids 1, 2, 3… never come from the production generator, so finding them proves the
        // store used this one.
        let ids = std::sync::Arc::new(kernel::SequentialIds::default());
        let last = new_session(&u, t0() + chrono::Duration::seconds(3));
        let (_, revoked) = store
            .create_capped(
                &last,
                1,
                IDLE,
                record(Action::SESSION_LOGIN, Some(c.id)),
                SessionRevocation {
                    ids: ids.clone(),
                    audit_template: record(Action::SESSION_REVOKED, Some(c.id)),
                    ..revocation(RevocationReason::SessionLimit, Some(last.id))
                },
            )
            .await
            .unwrap();
        assert_eq!(revoked.len(), 3, "{}", db.backend);
        let page =
            ::audit::AuditLog::chain_page(store.as_ref(), &::audit::chain_name(Some(c.id)), 0, 100)
                .await
                .unwrap();
        let mut revocation_ids: Vec<u128> = page
            .iter()
            .filter(|r| r.action == Action::SESSION_REVOKED.as_str())
            .map(|r| r.id.as_u128())
            .collect();
        revocation_ids.sort_unstable();
        assert_eq!(revocation_ids, vec![1, 2, 3], "{}", db.backend);
    }
}

#[tokio::test]
async fn expired_and_idle_sessions_do_not_count_against_the_cap() {
    for (db, store, _) in stores().await {
        let (_, u) = company_with_owner(&store, Role::Admin).await;
        for n in 0..2 {
            let s = new_session(&u, t0() + chrono::Duration::seconds(n));
            open(&store, &u, &s, 2).await.unwrap();
        }
        // An hour later both are idle: a new login revokes nothing.
        let s = new_session(&u, t0() + chrono::Duration::hours(1));
        let (_, revoked) = open(&store, &u, &s, 2).await.unwrap();
        assert!(revoked.is_empty(), "{}", db.backend);
    }
}

/// SES-2: any number of simultaneous logins end with exactly `cap` active sessions, the newest,
/// and every other session is named as revoked exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_logins_leave_exactly_the_two_newest() {
    for (db, store, conn) in stores().await {
        let (_, u) = company_with_owner(&store, Role::Admin).await;
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let store = store.clone();
            let u = u.clone();
            tasks.push(tokio::spawn(async move {
                let s = new_session(&u, t0());
                open(&store, &u, &s, 2).await
            }));
        }
        let mut created = Vec::new();
        let mut revoked_count: HashMap<SessionId, usize> = HashMap::new();
        for t in tasks {
            let (session, revoked) = t
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e:?}", db.backend));
            created.push(session);
            for r in revoked {
                *revoked_count.entry(r).or_default() += 1;
            }
        }
        let active = store
            .list_active(u.company_id, u.id, t0(), IDLE)
            .await
            .unwrap();
        assert_eq!(active.len(), 2, "{}", db.backend);
        created.sort_by_key(|s| s.seq);
        let seqs: Vec<i64> = created.iter().map(|s| s.seq).collect();
        assert_eq!(
            seqs,
            (1..=50).collect::<Vec<_>>(),
            "{}: every login got its own sequence number",
            db.backend
        );
        let newest: Vec<SessionId> = created.iter().rev().take(2).map(|s| s.id).collect();
        assert_eq!(
            active.iter().map(|s| s.id).collect::<Vec<_>>(),
            newest,
            "{}",
            db.backend
        );
        assert_eq!(revoked_count.len(), 48, "{}", db.backend);
        assert!(revoked_count.values().all(|n| *n == 1));
        assert!(newest.iter().all(|id| !revoked_count.contains_key(id)));
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL"
            )
            .await,
            2
        );
        // 50 logins and 48 revocations, chained without a gap or a fork.
        assert_chain_whole(&store, u.company_id, 98, db.backend).await;
    }
}

/// Records outside the user's company chain (a caller other than the sessions service) are
/// written too, each in its own chain: on PostgreSQL they take the statement-by-statement path,
/// since the one-call path bumps only the company's head.
#[tokio::test]
async fn records_of_other_chains_are_appended_to_their_own_chains() {
    for (db, store, _) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Admin).await;
        for n in 0..3 {
            let s = new_session(&u, t0() + chrono::Duration::seconds(n));
            let (created, revoked) = store
                .create_capped(
                    &s,
                    2,
                    IDLE,
                    record(Action::SESSION_LOGIN, None),
                    revocation(RevocationReason::SessionLimit, Some(s.id)),
                )
                .await
                .unwrap();
            assert_eq!(created.seq, n + 1, "{}", db.backend);
            assert_eq!(revoked.len(), usize::from(n == 2), "{}", db.backend);
        }
        let svc = super::audit::service(&store, Arc::new(kernel::ManualClock::new(t0())));
        let system = svc.verify_chain(&::audit::chain_name(None)).await.unwrap();
        assert!(system.ok, "{}: {system:?}", db.backend);
        assert_eq!(system.checked, 4, "{}: 3 logins, 1 revocation", db.backend);
        // A login in the company's chain after them continues it from genesis.
        let s = new_session(&u, t0() + chrono::Duration::seconds(3));
        let (_, revoked) = open(&store, &u, &s, 2).await.unwrap();
        assert_eq!(revoked.len(), 1, "{}", db.backend);
        assert_chain_whole(&store, c.id, 2, db.backend).await;
    }
}

/// On PostgreSQL a login's write is the m0011 function: without it the call fails (and leaves
/// nothing behind), so the contract tests above prove the function, not the portable path.
#[tokio::test]
async fn on_postgres_a_login_is_one_function_call() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let conn = db.connect().await;
    let store = Arc::new(SeaStore::new(conn.clone(), chain()));
    let (_, u) = company_with_owner(&store, Role::Admin).await;
    let first = new_session(&u, t0());
    open(&store, &u, &first, 2).await.unwrap();
    conn.execute_unprepared("DROP FUNCTION session_open_capped")
        .await
        .unwrap();
    let second = new_session(&u, t0() + chrono::Duration::seconds(1));
    assert!(open(&store, &u, &second, 2).await.is_err());
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM sessions").await,
        1,
        "the failed call rolled back"
    );
    assert_eq!(count(&conn, "SELECT MAX(session_seq) FROM users").await, 1);
    assert_chain_whole(&store, u.company_id, 1, db.backend).await;
}

#[tokio::test]
async fn deactivation_revokes_everything_and_password_change_keeps_one() {
    for (db, store, conn) in stores().await {
        let (_, u) = company_with_owner(&store, Role::Admin).await;
        let mut ids = Vec::new();
        for n in 0..2 {
            let s = new_session(&u, t0() + chrono::Duration::seconds(n));
            ids.push(s.id);
            open(&store, &u, &s, 5).await.unwrap();
        }
        let revoked = store
            .update_user(
                &u,
                &u,
                &[UserField::Password],
                Some(revocation(RevocationReason::PasswordChanged, Some(ids[1]))),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(revoked, vec![ids[0]], "{}", db.backend);
        let mut off = u.clone();
        off.active = false;
        let revoked = store
            .update_user(
                &u,
                &off,
                &[UserField::Active],
                Some(revocation(RevocationReason::UserDeactivated, None)),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(revoked, vec![ids[1]], "{}", db.backend);
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL"
            )
            .await,
            0
        );
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'session.revoked'"
            )
            .await,
            2
        );
    }
}

#[tokio::test]
async fn a_user_revokes_only_its_own_sessions_and_touch_moves_last_seen() {
    for (db, store, _) in stores().await {
        let (_, alice) = company_with_owner(&store, Role::Admin).await;
        let (_, bob) = company_with_owner(&store, Role::Admin).await;
        let s = new_session(&alice, t0());
        open(&store, &alice, &s, 2).await.unwrap();
        assert!(
            !store
                .revoke(
                    bob.company_id,
                    bob.id,
                    s.id,
                    revocation(RevocationReason::UserRevoked, None)
                )
                .await
                .unwrap(),
            "{}",
            db.backend
        );
        store
            .touch(s.id, t0() + chrono::Duration::minutes(10))
            .await
            .unwrap();
        let listed = store
            .list_active(
                alice.company_id,
                alice.id,
                t0() + chrono::Duration::minutes(35),
                IDLE,
            )
            .await
            .unwrap();
        assert_eq!(
            listed.len(),
            1,
            "{}: touched 10 min in, still alive at 35",
            db.backend
        );
        assert!(
            store
                .revoke(
                    alice.company_id,
                    alice.id,
                    s.id,
                    revocation(RevocationReason::Logout, None)
                )
                .await
                .unwrap()
        );
        assert!(
            !store
                .revoke(
                    alice.company_id,
                    alice.id,
                    s.id,
                    revocation(RevocationReason::Logout, None)
                )
                .await
                .unwrap(),
            "twice is not found"
        );
        assert!(
            store
                .list_active(alice.company_id, alice.id, t0(), IDLE)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// A session of `u` created at `created`, expiring at `expires`, last seen at `seen`, revoked
/// at `revoked` if given.
async fn session_of(
    store: &SeaStore,
    u: &User,
    created: Timestamp,
    expires: Timestamp,
    seen: Timestamp,
    revoked: Option<Timestamp>,
) -> SessionId {
    let s = NewSession {
        expires_at: expires,
        ..new_session(u, created)
    };
    open(store, u, &s, 2_000).await.unwrap();
    if seen > created {
        store.touch(s.id, seen).await.unwrap();
    }
    if let Some(at) = revoked {
        let revocation = SessionRevocation {
            at,
            ..revocation(RevocationReason::Logout, None)
        };
        assert!(
            store
                .revoke(u.company_id, u.id, s.id, revocation)
                .await
                .unwrap()
        );
    }
    s.id
}

/// Sessions that ended (revoked, expired or idle) before the cut-off are deleted, also past
/// one batch of a thousand; live ones and those that ended after it stay. A second run finds
/// nothing.
#[tokio::test]
async fn sessions_that_ended_before_the_cut_off_are_purged() {
    for (db, store, conn) in stores().await {
        let (_, u) = company_with_owner(&store, Role::Owner).await;
        let cut = t0() - chrono::Duration::days(30);
        let (hour, day) = (chrono::Duration::hours(1), chrono::Duration::days(1));
        let later = t0() + day;
        // Expired long before the cut-off: one, and 1,049 copies of it (a login each would
        // only make the test slow).
        let created = cut - day * 40;
        let template = session_of(&store, &u, created, created + hour * 12, created, None).await;
        let columns = "company_id, user_id, seq, created_at, last_seen_at, expires_at, ip, \
                       user_agent, revoked_at, revoked_reason, reauthenticated_at, \
                       mfa_enrolment_only";
        let copies = match db.backend {
            "postgres" => format!(
                "INSERT INTO sessions (id, token_hash, {columns}) \
                 SELECT gen_random_uuid(), token_hash || '-' || g, {columns} \
                 FROM sessions, generate_series(1, 1049) AS g WHERE id = '{}'",
                template.as_uuid()
            ),
            _ => format!(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1049) \
                 INSERT INTO sessions (id, token_hash, {columns}) \
                 SELECT randomblob(16), token_hash || '-' || n, {columns} \
                 FROM sessions, g WHERE id = X'{}'",
                template.as_uuid().simple()
            ),
        };
        conn.execute_unprepared(&copies).await.unwrap();
        // Ended before it by one cause only: revoked; idle.
        session_of(&store, &u, cut - day, later, t0(), Some(cut - hour)).await;
        session_of(&store, &u, cut - day, later, cut - day, None).await;
        // Ended after it, or live.
        let kept = [
            session_of(&store, &u, cut - day, later, t0(), Some(cut + hour)).await,
            session_of(&store, &u, cut - day, later, cut, None).await,
            session_of(&store, &u, cut - hour * 11, cut + hour, cut, None).await,
            session_of(&store, &u, t0(), t0() + hour * 12, t0(), None).await,
        ];

        let b = db.backend;
        assert_eq!(store.purge_ended(cut, IDLE).await.unwrap(), 1_052, "{b}");
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM sessions").await,
            4,
            "{b}"
        );
        for id in kept {
            let sql = format!(
                "SELECT COUNT(*) FROM sessions WHERE id = {}",
                match b {
                    "postgres" => format!("'{}'", id.as_uuid()),
                    _ => format!("X'{}'", id.as_uuid().simple()),
                }
            );
            assert_eq!(count(&conn, &sql).await, 1, "{b}: {id:?} was purged");
        }
        assert_eq!(store.purge_ended(cut, IDLE).await.unwrap(), 0, "{b}");
    }
}
