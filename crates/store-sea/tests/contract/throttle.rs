use ::sessions::{LoginThrottle, ThrottlePolicy};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_all_count_and_success_resets() {
    for (db, store, _) in stores().await {
        let policy = ThrottlePolicy::default();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.record_failure("ana@example.com", t0(), policy).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let state = store.state("ana@example.com").await.unwrap();
        // Ten failures with a threshold of five: two lockouts, the second twice as long.
        assert_eq!(state.lockouts, 2, "{}: {state:?}", db.backend);
        assert_eq!(state.failures, 0);
        assert_eq!(
            ThrottlePolicy::remaining(&state, t0()),
            Some(chrono::Duration::minutes(2))
        );
        assert_eq!(
            store.state("other@example.com").await.unwrap(),
            Default::default()
        );
        store.reset("ana@example.com").await.unwrap();
        assert_eq!(
            store.state("ana@example.com").await.unwrap(),
            Default::default()
        );
    }
}

#[tokio::test]
async fn stale_unlocked_throttle_state_is_purged_and_locks_are_kept() {
    for (db, store, _) in stores().await {
        let policy = ThrottlePolicy {
            threshold: 1,
            base_lock: chrono::Duration::hours(48),
            max_lock: chrono::Duration::hours(48),
        };
        store
            .record_failure("old@example.com", t0(), ThrottlePolicy::default())
            .await
            .unwrap();
        store
            .record_failure("locked@example.com", t0(), policy)
            .await
            .unwrap();
        store
            .record_failure(
                "fresh@example.com",
                t0() + chrono::Duration::hours(30),
                ThrottlePolicy::default(),
            )
            .await
            .unwrap();
        let now = t0() + chrono::Duration::hours(36);
        let removed = store
            .purge_stale(now - chrono::Duration::days(1), now)
            .await
            .unwrap();
        assert_eq!(removed, 1, "{}", db.backend);
        assert_eq!(
            store.state("old@example.com").await.unwrap(),
            Default::default()
        );
        assert!(
            store
                .state("locked@example.com")
                .await
                .unwrap()
                .locked_until
                .is_some(),
            "a lock in force survives"
        );
        assert_eq!(store.state("fresh@example.com").await.unwrap().failures, 1);
    }
}

/// `LoginReads` answers exactly what the three separate reads answer: throttle state, user by
/// email and the user's company, with and without a throttle row, a user or a company policy.
#[tokio::test]
async fn the_combined_login_read_matches_the_three_reads() {
    use ::accounts::AccountRepository;
    use ::sessions::LoginReads;
    for (db, store, _) in stores().await {
        let mut c = company();
        c.session_limit = Some(3);
        let email = format!("{}@example.com", id().simple());
        let u = user(&c, &email, Role::Vendor);
        store
            .create_company_with_owner(&c, &u, vec![])
            .await
            .unwrap();
        let policy = ThrottlePolicy {
            threshold: 2,
            ..ThrottlePolicy::default()
        };
        for _ in 0..3 {
            store.record_failure(&email, t0(), policy).await.unwrap();
        }
        store
            .record_failure("nobody@example.com", t0(), policy)
            .await
            .unwrap();
        for key in [email.as_str(), "nobody@example.com", "never@example.com"] {
            let parsed = Email::parse(key).unwrap();
            let combined = store.login_reads(key, &parsed).await.unwrap();
            let user = store.user_by_email(&parsed).await.unwrap();
            let company = match &user {
                Some(u) => store.company(u.company_id).await.unwrap(),
                None => None,
            };
            assert_eq!(
                combined.throttle,
                store.state(key).await.unwrap(),
                "{}: {key}",
                db.backend
            );
            assert_eq!(combined.user, user, "{}: {key}", db.backend);
            assert_eq!(combined.company, company, "{}: {key}", db.backend);
        }
        // The cases are what they claim to be.
        let known = store
            .login_reads(&email, &Email::parse(&email).unwrap())
            .await
            .unwrap();
        assert!(known.throttle.lockouts >= 1 && known.throttle.locked_until.is_some());
        assert_eq!(known.user.map(|u| u.id), Some(u.id));
        assert_eq!(known.company.and_then(|c| c.session_limit), Some(3));
        let stranger = store
            .login_reads(
                "never@example.com",
                &Email::parse("never@example.com").unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(stranger, ::sessions::LoginSubject::default());
    }
}
