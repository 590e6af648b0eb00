//! The connection pool across a broken connection: PostgreSQL only (an SQLite file cannot drop
//! a connection), with one connection so the same one is handed out again.

use std::time::Duration;

use store_sea::PoolSettings;

use super::*;

async fn backend_pid(db: &DatabaseConnection) -> Result<i32, sea_orm::DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT pg_backend_pid()".to_owned(),
        ))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no row".into()))?;
    row.try_get_by_index::<i32>(0)
}

/// Ends the backend `pid` from another connection and waits until it has exited.
async fn terminate(url: &str, pid: i32) {
    let admin = sea_orm::Database::connect(url.to_owned()).await.unwrap();
    let row = admin
        .query_one_raw(Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT pg_terminate_backend({pid}, 10000)"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.try_get_by_index::<bool>(0).unwrap(),
        "backend {pid} did not exit"
    );
    admin.close().await.ok();
}

async fn one_connection(url: &str, ping_when_idle_for: Duration) -> DatabaseConnection {
    store_sea::connect(
        url,
        PoolSettings {
            max_connections: 1,
            ping_when_idle_for,
            ..PoolSettings::default()
        },
    )
    .await
    .unwrap()
}

/// A connection idle for at least `ping_when_idle_for` is pinged before it is handed out: one
/// whose server process went away is replaced, and the request never sees it.
#[tokio::test]
async fn an_idle_connection_that_broke_is_replaced_before_use() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let pool = one_connection(&db.url, Duration::ZERO).await;
    let first = backend_pid(&pool).await.unwrap();
    terminate(&db.url, first).await;
    let second = backend_pid(&pool)
        .await
        .expect("the broken connection is pinged and replaced, not handed out");
    assert_ne!(first, second);
}

/// A connection used more recently than `ping_when_idle_for` is handed out without a ping: if
/// it broke in between, one request fails as an outage and the pool then discards it (the ping
/// on release), so the next request gets a new connection.
#[tokio::test]
async fn a_busy_connection_that_broke_fails_one_request_then_is_replaced() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let pool = one_connection(&db.url, Duration::from_secs(3600)).await;
    let first = backend_pid(&pool).await.unwrap();
    terminate(&db.url, first).await;
    let failed = backend_pid(&pool).await;
    assert!(
        failed.is_err(),
        "without a ping the broken connection is used: {failed:?}"
    );
    let second = backend_pid(&pool)
        .await
        .expect("the broken connection was discarded");
    assert_ne!(first, second);
}

/// Whether the backend `which` (an SQL expression of its pid) talks over TLS (`pg_stat_ssl`).
async fn over_tls(db: &DatabaseConnection, which: &str) -> bool {
    scalar(
        db,
        &format!("SELECT ssl FROM pg_stat_ssl WHERE pid = {which}"),
    )
    .await
}

/// `url` with one more query parameter.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// TLS to PostgreSQL follows where the server is unless the URL says: a server on this host
/// gets none (pool and change follower alike), and `sslmode=require` still encrypts.
#[tokio::test]
async fn tls_to_a_server_on_this_host_is_off_unless_the_url_asks_for_it() {
    use std::str::FromStr as _;

    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let options = sea_orm::sqlx::postgres::PgConnectOptions::from_str(&db.url).unwrap();
    let host = options.get_host();
    if std::env::var_os("PGSSLMODE").is_some()
        || db.url.contains("sslmode")
        || !(host.starts_with('/') || host == "localhost" || host.starts_with("127."))
    {
        eprintln!("TEST_DATABASE_URL chooses TLS or is not on this host: nothing to check here");
        return;
    }
    let pool = one_connection(&db.url, Duration::ZERO).await;
    assert!(!over_tls(&pool, "pg_backend_pid()").await, "the pool");

    let store = SeaStore::new(pool.clone(), chain());
    let _following = store.follow_changes(&db.url).await.unwrap().unwrap();
    assert!(
        !over_tls(
            &pool,
            "(SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND query LIKE 'LISTEN %')"
        )
        .await,
        "the change follower"
    );

    let offers: String = scalar(&pool, "SHOW ssl").await;
    if offers == "on" {
        let encrypted =
            one_connection(&with_param(&db.url, "sslmode=require"), Duration::ZERO).await;
        assert!(
            over_tls(&encrypted, "pg_backend_pid()").await,
            "sslmode=require"
        );
    } else {
        eprintln!("this PostgreSQL does not offer TLS: sslmode=require not checked");
    }
}
