//! BAK-1: the portable snapshot carries every table, loads into either database, and a load
//! that fails for any reason leaves the target exactly as it was.

use std::collections::BTreeSet;

use ::accounts::AccountRepository as _;
use ::audit::AuditSink as _;
use store_sea::portable;

use super::*;

async fn user_tables(conn: &DatabaseConnection) -> BTreeSet<String> {
    let sql = match conn.get_database_backend() {
        sea_orm::DbBackend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        _ => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        }
    };
    first_column(conn, sql)
        .await
        .into_iter()
        .filter(|t| t != "seaql_migrations")
        .collect()
}

/// The first column of every row of `sql`, as text.
async fn first_column(conn: &DatabaseConnection, sql: &str) -> BTreeSet<String> {
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.try_get_by_index::<String>(0).unwrap())
    .collect()
}

async fn populate(store: &SeaStore) {
    for n in 0..3 {
        let c = company();
        let owner = user(&c, &format!("owner{n}@example.com"), Role::Owner);
        store
            .create_company_with_owner(
                &c,
                &owner,
                vec![record(Action::COMPANY_CREATED, Some(c.id))],
            )
            .await
            .unwrap();
        for _ in 0..5 {
            store
                .record(record(Action::SESSION_LOGIN, Some(c.id)))
                .await
                .unwrap();
        }
    }
    store
        .record(record(Action::BACKUP_CREATED, None))
        .await
        .unwrap();
    assert!(store.claim_daily("backup", "2026-11-21").await.unwrap());
    // A vault row, one of whose columns (`expiry_notice`, m0017) older snapshots lack.
    let (c, owner) = company_with_owner(store, Role::Owner).await;
    let credential = vault::SealedCredential {
        credential: vault::FiscalCredential {
            id: id(),
            company_id: c.id,
            info: vault::CertificateInfo {
                rfc: "TCM970625MB1".into(),
                representative_rfc: None,
                curp: None,
                legal_name: "TACOS CAMPESTRE MX SA DE CV".into(),
                certificate_number: "30001000000500000001".into(),
                issuer: "AC de Pruebas".into(),
                valid_from: t0(),
                valid_to: t0() + chrono::Duration::days(1_460),
                kind: vault::CredentialKind::Csd,
            },
            created_by: owner.id,
            created_at: t0(),
        },
        certificate: vault::Sealed::new("v1.cert".into()),
        private_key: vault::Sealed::new("v1.key".into()),
        password: vault::Sealed::new("v1.password".into()),
        key_id: 1,
    };
    vault::CredentialRepository::insert(store, &credential, 100, vec![])
        .await
        .unwrap();
}

async fn export(conn: &DatabaseConnection) -> (String, portable::Counts) {
    let mut out = Vec::new();
    let counts = portable::export(conn, &mut out, &|_, _| {}).await.unwrap();
    (String::from_utf8(out).unwrap(), counts)
}

async fn import(
    conn: &DatabaseConnection,
    text: &str,
) -> Result<portable::Counts, store_sea::StoreError> {
    let mut input = text.as_bytes();
    portable::import(conn, &mut input, &|_, _| {}).await
}

/// Lines without the header (which names the source backend).
fn body(text: &str) -> Vec<&str> {
    text.lines().skip(1).collect()
}

async fn total_rows(conn: &DatabaseConnection) -> i64 {
    let mut n = 0;
    for t in portable::table_names() {
        n += count(conn, &format!("SELECT COUNT(*) FROM \"{t}\"")).await;
    }
    n
}

/// A connection to a database without any migration applied.
async fn bare(db: &TestDb) -> DatabaseConnection {
    store_sea::connect(&db.url, store_sea::PoolSettings::default())
        .await
        .unwrap()
}

async fn fresh(backend: &str) -> Option<TestDb> {
    match backend {
        "sqlite" => Some(TestDb::sqlite()),
        _ => TestDb::postgres().await,
    }
}

#[tokio::test]
async fn the_portable_snapshot_carries_every_table_of_the_schema() {
    for (db, _store, conn) in stores().await {
        let carried: BTreeSet<String> = portable::table_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            carried,
            user_tables(&conn).await,
            "{}: a table is missing from portable::tables()",
            db.backend
        );
    }
}

#[tokio::test]
async fn a_portable_snapshot_loads_into_either_database_row_for_row() {
    for (source, store, conn) in stores().await {
        populate(&store).await;
        let (text, counts) = export(&conn).await;
        assert_eq!(counts["users"], 4);
        assert_eq!(counts["fiscal_credentials"], 1);
        assert_eq!(counts["audit_events"], 19);
        assert_eq!(counts["scheduled_jobs"], 1);
        // The same data gives the same snapshot.
        assert_eq!(export(&conn).await.0, text, "{}", source.backend);
        for target_backend in ["sqlite", "postgres"] {
            let Some(target) = fresh(target_backend).await else {
                continue;
            };
            let target_conn = bare(&target).await;
            let loaded = import(&target_conn, &text).await.unwrap();
            assert_eq!(loaded, counts, "{} → {}", source.backend, target.backend);
            let (again, _) = export(&target_conn).await;
            assert_eq!(
                body(&again),
                body(&text),
                "{} → {}",
                source.backend,
                target.backend
            );
            // The loaded database is a working store: the chains continue where they stopped.
            let loaded_store = SeaStore::new(target_conn.clone(), chain());
            loaded_store
                .record(record(Action::BACKUP_CREATED, None))
                .await
                .unwrap();
            assert!(
                !loaded_store
                    .claim_daily("backup", "2026-11-21")
                    .await
                    .unwrap()
            );
            assert!(store_sea::migrations_current(&target_conn).await.unwrap());
            // The audit log's indexes, which PostgreSQL builds after the migrations, are there.
            let indexes = if target.backend == "postgres" {
                "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 WHERE i.indisvalid AND c.relname IN \
                 ('idx_audit_login_actor', 'idx_audit_login_network', 'idx_audit_alerts_listing')"
            } else {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN \
                 ('idx_audit_login_actor', 'idx_audit_login_network', 'idx_audit_alerts_listing')"
            };
            assert_eq!(count(&target_conn, indexes).await, 3, "{}", target.backend);
        }
    }
}

#[tokio::test]
async fn a_load_that_fails_leaves_the_target_untouched() {
    for (source, store, conn) in stores().await {
        populate(&store).await;
        let (text, _) = export(&conn).await;
        let lines: Vec<&str> = text.lines().collect();
        let users_at = lines
            .iter()
            .position(|l| *l == r#"{"@table":"users"}"#)
            .unwrap();
        let end = lines.len() - 1;
        let with = |i: usize, replacement: &str| {
            let mut l = lines.clone();
            l[i] = replacement;
            l.join("\n") + "\n"
        };
        let without = |i: usize| {
            let mut l = lines.clone();
            l.remove(i);
            l.join("\n") + "\n"
        };
        let header = lines[0].replace(
            &format!("\"migrations\":{}", store_sea::migration_count()),
            "\"migrations\":3",
        );
        let doubled = {
            let mut l = lines.clone();
            l.insert(end, r#"{"@table":"users"}"#);
            l.join("\n") + "\n"
        };
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "a damaged row",
                with(users_at + 2, r#"{"id":"not a uuid"}"#),
                "line",
            ),
            ("no closing line", without(end), "cut short"),
            ("a lost row", without(users_at + 1), "closing counts"),
            (
                "an unknown table",
                with(users_at, r#"{"@table":"passwords"}"#),
                "unknown table",
            ),
            ("a table twice", doubled, "appears twice"),
            ("another schema version", with(0, &header), "migrations"),
            (
                "not a snapshot",
                "hello\n".to_owned(),
                "not a portable snapshot",
            ),
            ("nothing", String::new(), "empty"),
        ];
        for (what, snapshot, expected) in cases {
            let Some(target) = fresh(source.backend).await else {
                continue;
            };
            let target_conn = bare(&target).await;
            let err = import(&target_conn, &snapshot).await.unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(expected),
                "{}, {what}: {message}",
                source.backend
            );
            // No personal data in the message.
            assert!(!message.contains("example.com"), "{what}: {message}");
            // Everything rolled back, migrations included; a good snapshot then loads.
            assert!(
                user_tables(&target_conn).await.is_empty(),
                "{}, {what}",
                source.backend
            );
            import(&target_conn, &text).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_database_with_rows_is_refused_and_left_as_it_was() {
    for (db, store, conn) in stores().await {
        populate(&store).await;
        let (text, _) = export(&conn).await;
        let before = total_rows(&conn).await;
        let err = import(&conn, &text).await.unwrap_err();
        assert!(
            matches!(err, store_sea::StoreError::NotEmpty(_)),
            "{}: {err}",
            db.backend
        );
        assert!(
            err.to_string()
                .contains("restore only into an empty database")
        );
        assert_eq!(total_rows(&conn).await, before, "{}", db.backend);
        // A migrated but empty database is fine (a server was started once).
        let Some(target) = fresh(db.backend).await else {
            continue;
        };
        let migrated = target.connect().await;
        import(&migrated, &text).await.unwrap();
        assert_eq!(total_rows(&migrated).await, before);
    }
}

/// Every column of every table (name, type, nullability), as the database describes it.
async fn columns(conn: &DatabaseConnection) -> BTreeSet<String> {
    let sql = match conn.get_database_backend() {
        sea_orm::DbBackend::Sqlite => {
            "SELECT m.name || '.' || p.name || ':' || p.type || ':' || p.\"notnull\" \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> 'seaql_migrations'"
        }
        _ => {
            "SELECT (table_name || '.' || column_name || ':' || data_type || ':' || is_nullable)::text \
             FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> 'seaql_migrations'"
        }
    };
    first_column(conn, sql).await
}

/// The guard on `store_sea::ROWS_UNCHANGED`: applying the migrations one at a time, each one
/// listed there leaves every table's columns exactly as they were, on both databases.
#[tokio::test]
async fn listed_migrations_leave_every_table_as_it_was() {
    use sea_orm_migration::MigratorTrait as _;
    for db in TestDb::each().await {
        let conn = bare(&db).await;
        let mut before = columns(&conn).await;
        assert!(before.is_empty(), "{}", db.backend);
        for m in store_sea::Migrator::migrations() {
            store_sea::Migrator::up(&conn, Some(1)).await.unwrap();
            let after = columns(&conn).await;
            if store_sea::ROWS_UNCHANGED.contains(&m.name()) {
                assert_eq!(before, after, "{}: {}", db.backend, m.name());
            }
            // The reading sees tables (a migration that only moves data may still change no
            // column, and then must not be listed: its rows differ).
            assert!(!after.is_empty(), "{}: {}", db.backend, m.name());
            before = after;
        }
    }
}

/// The guard on `store_sea::NULLABLE_COLUMNS_ADDED`: applying the migrations one at a time,
/// each one listed there keeps every column as it was and adds only nullable ones, on both
/// databases.
#[tokio::test]
async fn listed_migrations_only_add_nullable_columns() {
    use sea_orm_migration::MigratorTrait as _;
    for db in TestDb::each().await {
        let conn = bare(&db).await;
        let mut before = columns(&conn).await;
        let mut checked = 0;
        for m in store_sea::Migrator::migrations() {
            store_sea::Migrator::up(&conn, Some(1)).await.unwrap();
            let after = columns(&conn).await;
            if store_sea::NULLABLE_COLUMNS_ADDED.contains(&m.name()) {
                assert!(before.is_subset(&after), "{}: {}", db.backend, m.name());
                let added: Vec<&String> = after.difference(&before).collect();
                assert!(!added.is_empty(), "{}: {}", db.backend, m.name());
                for column in added {
                    // SQLite: `table.column:type:0` (notnull 0); PostgreSQL: `…:YES`.
                    assert!(
                        column.ends_with(":0") || column.ends_with(":YES"),
                        "{}: {} adds {column}, which is NOT NULL",
                        db.backend,
                        m.name()
                    );
                }
                checked += 1;
            }
            before = after;
        }
        assert_eq!(
            checked,
            store_sea::NULLABLE_COLUMNS_ADDED.len(),
            "{}",
            db.backend
        );
    }
}

/// A snapshot from a binary that lacked only migrations which change no table, or only add
/// nullable columns, loads (its rows without the new columns get NULL there); one from before a
/// migration that changed a table otherwise, or from a newer binary, is refused.
#[tokio::test]
async fn a_snapshot_from_before_compatible_migrations_loads() {
    let migrations = <store_sea::Migrator as sea_orm_migration::MigratorTrait>::migrations();
    let current = store_sea::migration_count();
    let compatible_tail = migrations
        .iter()
        .rev()
        .take_while(|m| {
            store_sea::ROWS_UNCHANGED.contains(&m.name())
                || store_sea::NULLABLE_COLUMNS_ADDED.contains(&m.name())
        })
        .count();
    assert!(compatible_tail >= 2, "m0010 and m0011 change no table");
    let oldest = current - compatible_tail;
    // Snapshots made before m0017 have no `expiry_notice` in their vault rows.
    let m0017 = migrations
        .iter()
        .position(|m| m.name() == "m0017_vault_expiry_notices")
        .unwrap()
        + 1;
    for (db, store, conn) in stores().await {
        populate(&store).await;
        let (text, counts) = export(&conn).await;
        assert!(text.contains(",\"expiry_notice\":null"), "{}", db.backend);
        let as_of = |n: usize| {
            let text = text.replacen(
                &format!("\"migrations\":{current}"),
                &format!("\"migrations\":{n}"),
                1,
            );
            if n < m0017 {
                text.replace(",\"expiry_notice\":null", "")
            } else {
                text
            }
        };
        for n in [oldest - 1, current + 1] {
            let Some(target) = fresh(db.backend).await else {
                continue;
            };
            let target_conn = bare(&target).await;
            let err = import(&target_conn, &as_of(n)).await.unwrap_err();
            assert!(
                matches!(err, store_sea::StoreError::SchemaVersion { snapshot, .. } if snapshot == n),
                "{}, {n}: {err}",
                db.backend
            );
            assert!(user_tables(&target_conn).await.is_empty(), "{}", db.backend);
        }
        for n in oldest..=current {
            let Some(target) = fresh(db.backend).await else {
                continue;
            };
            let target_conn = bare(&target).await;
            let loaded = import(&target_conn, &as_of(n)).await.unwrap();
            assert_eq!(loaded, counts, "{}, {n}", db.backend);
            assert_eq!(total_rows(&target_conn).await, total_rows(&conn).await);
        }
    }
}
