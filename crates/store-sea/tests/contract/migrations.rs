use super::*;

/// Several servers starting at once on an empty database: every migration run succeeds and the
/// schema is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_on_an_empty_database_all_succeed() {
    for db in TestDb::each().await {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let url = db.url.clone();
            tasks.push(tokio::spawn(async move {
                let conn = store_sea::connect(&url, store_sea::PoolSettings::default())
                    .await
                    .unwrap();
                store_sea::migrate(&conn).await
            }));
        }
        for t in tasks {
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e:?}", db.backend));
        }
        let conn = db.connect().await;
        assert!(store_sea::migrations_current(&conn).await.unwrap());
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM seaql_migrations").await,
            i64::try_from(
                <store_sea::Migrator as sea_orm_migration::MigratorTrait>::migrations().len()
            )
            .unwrap(),
            "{}",
            db.backend
        );
    }
}

/// BAK-2: a daily job scheduled in every server is claimed by exactly one per day.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_job_is_claimed_once_per_day_across_callers() {
    for (db, store, _conn) in stores().await {
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.claim_daily("backup", "2026-11-21").await.unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "{}", db.backend);
        assert!(!store.claim_daily("backup", "2026-11-21").await.unwrap());
        assert!(
            !store.claim_daily("backup", "2026-11-20").await.unwrap(),
            "never backwards"
        );
        assert!(store.claim_daily("backup", "2026-11-22").await.unwrap());
        assert!(
            store
                .claim_daily("another-job", "2026-11-21")
                .await
                .unwrap()
        );
    }
}
