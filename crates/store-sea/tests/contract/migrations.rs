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
