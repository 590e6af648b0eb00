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

/// The indexes on the audit log and its alerts that PostgreSQL builds after the migrations
/// (`CREATE INDEX CONCURRENTLY`); SQLite builds them in the migrations.
const ONLINE_INDEXES: [&str; 3] = [
    "idx_audit_login_actor",
    "idx_audit_login_network",
    "idx_audit_alerts_listing",
];

/// `(oid, valid)` of PostgreSQL index `name`, if it exists.
async fn pg_index(conn: &DatabaseConnection, name: &str) -> Option<(i64, bool)> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT c.oid::bigint, i.indisvalid FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1",
            [name.into()],
        ))
        .await
        .unwrap()?;
    Some((
        row.try_get_by_index(0).unwrap(),
        row.try_get_by_index(1).unwrap(),
    ))
}

/// Migrating builds every index of the audit log on both databases; on PostgreSQL, an index an
/// interrupted concurrent build left invalid is dropped and built again by the next migration
/// run, and a valid one is left as it is.
#[tokio::test]
async fn the_audit_logs_indexes_are_built_and_an_invalid_one_is_rebuilt() {
    for db in TestDb::each().await {
        let conn = db.connect().await;
        if db.backend != "postgres" {
            for name in ONLINE_INDEXES {
                let sql = format!(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = '{name}'"
                );
                assert_eq!(count(&conn, &sql).await, 1, "{name}");
            }
            continue;
        }
        let mut before = Vec::new();
        for name in ONLINE_INDEXES {
            let (oid, valid) = pg_index(&conn, name).await.unwrap();
            assert!(valid, "{name}");
            before.push(oid);
        }
        // What a build killed half-way leaves: the index exists, marked invalid.
        conn.execute_unprepared(
            "UPDATE pg_index SET indisvalid = false \
             WHERE indexrelid = 'idx_audit_login_network'::regclass",
        )
        .await
        .unwrap();
        store_sea::migrate(&conn).await.unwrap();
        for (name, old) in ONLINE_INDEXES.iter().zip(before) {
            let (oid, valid) = pg_index(&conn, name).await.unwrap();
            assert!(valid, "{name}");
            assert_eq!(oid != old, *name == "idx_audit_login_network", "{name}");
        }
    }
}

/// A start that finds every online index built (every start but the first) neither opens a
/// connection of its own nor takes the builders' lock: while another session holds that lock,
/// migrating still returns at once.
#[tokio::test]
async fn a_start_with_the_indexes_built_does_not_wait_for_the_builders_lock() {
    use sea_orm::TransactionTrait;
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let conn = db.connect().await;
    let holder = conn.begin().await.unwrap();
    // "INCX", the lock `build_online_indexes` polls for (as a transaction lock here).
    holder
        .execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({})",
            0x494E_4358_i64
        ))
        .await
        .unwrap();
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        store_sea::migrate(&conn),
    )
    .await;
    assert!(
        matches!(done, Ok(Ok(()))),
        "migrate waited for the lock: {done:?}"
    );
    holder.rollback().await.unwrap();
}

/// Upgrading a PostgreSQL database whose audit log lacks an index does not stop audit writes:
/// while the build waits for a transaction that is writing to the table, another insert
/// goes through at once (a plain `CREATE INDEX` would queue it behind its lock), and the build
/// completes, valid, once that transaction ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_an_index_on_postgres_lets_audit_writes_through() {
    use sea_orm::TransactionTrait;
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let conn = db.connect().await;
    conn.execute_unprepared("DROP INDEX idx_audit_alerts_listing")
        .await
        .unwrap();
    let insert = || {
        format!(
            "INSERT INTO audit_alerts (id, chain, company_id, at, rule, severity, summary, \
             subject, status, record_id) VALUES ('{}', 'platform', NULL, now(), \
             'ip_login_failures', 'high', 's', 's', 'open', '{}')",
            id(),
            id()
        )
    };
    // A transaction writing to the table, still open.
    let writing = conn.begin().await.unwrap();
    writing.execute_unprepared(&insert()).await.unwrap();
    let upgrade = {
        let conn = conn.clone();
        tokio::spawn(async move { store_sea::migrate(&conn).await })
    };
    // Wait (bounded) until the build is waiting for that transaction.
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND query LIKE 'CREATE INDEX%' AND wait_event_type = 'Lock'";
    let mut seen = false;
    for _ in 0..200 {
        if count(&conn, waiting).await == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "the build never waited for the open transaction");
    let other = conn.begin().await.unwrap();
    other
        .execute_unprepared("SET LOCAL lock_timeout = '5s'")
        .await
        .unwrap();
    other
        .execute_unprepared(&insert())
        .await
        .expect("an insert during the build is not blocked");
    other.commit().await.unwrap();
    assert!(
        !upgrade.is_finished(),
        "the build did not wait for the writer"
    );
    writing.commit().await.unwrap();
    upgrade.await.unwrap().unwrap();
    assert_eq!(
        pg_index(&conn, "idx_audit_alerts_listing")
            .await
            .map(|i| i.1),
        Some(true)
    );
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM audit_alerts").await, 2);
}
