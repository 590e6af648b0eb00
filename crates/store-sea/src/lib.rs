//! SeaORM adapter of IncrementaCRM: entities, migrations, and the storage ports of the cores
//! ([`accounts::AccountRepository`], [`sessions::SessionStore`], [`sessions::LoginThrottle`],
//! [`audit::AuditSink`]) on SQLite (embedded default) and PostgreSQL (production, several
//! processes).
//!
//! **Architecture invariant:** entity models never leave this crate; every method maps them to
//! domain types, and every state change is written with its audit records in one transaction.
//! Operations that must be serialized (the session cap, the throttle counter) start a write
//! transaction at once on SQLite (`BEGIN IMMEDIATE`) and take a row lock on PostgreSQL.
#![forbid(unsafe_code)]

mod accounts_repo;
mod audit_repo;
mod changes;
mod entity;
pub mod epochs;
mod incident_repo;
mod login_reads;
mod mfa_repo;
mod migration;
mod outbox_repo;
mod ownership_repo;
mod pg_tls;
pub use pg_tls::default_sslmode_for_tools;
pub mod portable;
mod sessions_repo;
mod throttle_repo;
mod vault_repo;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, QuerySelect, Select, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use changes::{CHANNEL as CHANGE_CHANNEL, ChangeFollower};
pub use migration::{Migrator, NULLABLE_COLUMNS_ADDED, ROWS_UNCHANGED, rows_compatible};

/// Errors of connecting and migrating.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one of `sqlite:` or `postgres:`.
    #[error("unsupported database URL scheme (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// The database refused or failed.
    #[error("database error")]
    Db(#[from] DbErr),
    /// Reading or writing a portable snapshot failed.
    #[error("cannot read or write the snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// A portable snapshot is malformed or cut short.
    #[error("the portable snapshot is invalid: {0}")]
    Portable(String),
    /// A restore target that already holds rows.
    #[error(
        "the target database is not empty (table {0} has rows): restore only into an empty database"
    )]
    NotEmpty(String),
    /// A portable snapshot made by a binary with another schema version.
    #[error(
        "the snapshot has {snapshot} migrations and this binary {binary}: restore it with the version that made it, then upgrade"
    )]
    SchemaVersion {
        /// Migrations in the snapshot.
        snapshot: usize,
        /// Migrations this binary knows.
        binary: usize,
    },
}

/// Pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long a request waits for a connection.
    pub acquire_timeout: Duration,
    /// A pooled connection idle at least this long is pinged before it is handed out (1 s).
    ///
    /// SQLx pings every connection it takes back, so one that broke while in use is discarded
    /// then; pinging every connection it hands out as well would add a round trip (on SQLite,
    /// two thread wake-ups) to every acquire. A connection used within this time that broke
    /// since (the database restarted in between) fails one request as an outage (503), and the
    /// ping on release discards it. `Duration::ZERO` pings on every acquire.
    pub ping_when_idle_for: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            ping_when_idle_for: Duration::from_secs(1),
        }
    }
}

/// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`). SQLite gets WAL, foreign keys,
/// a busy timeout and `synchronous=NORMAL` (in WAL mode a process crash loses nothing committed;
/// a power loss may lose the last commits, `docs/security-testing.md`). PostgreSQL gets TLS
/// required for a server across the network and none on this host, unless the URL's `sslmode`
/// (or `PGSSLMODE`) says otherwise (`pg_tls`).
///
/// # Errors
/// [`StoreError::UnsupportedUrl`] or the connection error.
pub async fn connect(url: &str, pool: PoolSettings) -> Result<DatabaseConnection, StoreError> {
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres:")
        || url.starts_with("postgresql:"))
    {
        return Err(StoreError::UnsupportedUrl);
    }
    let tls_chosen = pg_tls::chosen_by_url_or_env(url);
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(pool.max_connections)
        .min_connections(1)
        .acquire_timeout(pool.acquire_timeout)
        .test_before_acquire_if_idle_for(pool.ping_when_idle_for)
        .sqlx_logging(false)
        .map_sqlx_postgres_opts(move |o| pg_tls::with_default(o, tls_chosen))
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .create_if_missing(true)
                // 512 KiB of page cache per connection instead of 2 MiB, so the caches stay
                // small however large the file grows; the operating system caches it anyway.
                .pragma("cache_size", "-512")
        });
    let sqlite = url.starts_with("sqlite:");
    let deadline = std::time::Instant::now() + SQLITE_OPEN_PATIENCE;
    let mut delay = Duration::from_millis(5);
    loop {
        match Database::connect(options.clone()).await {
            Ok(db) => return Ok(db),
            // Switching a fresh file to WAL takes an exclusive lock for which SQLite does not
            // always call the busy handler, so several processes opening the same new database
            // at once can see SQLITE_BUSY while connecting: wait and try again, within bounds.
            Err(e) if sqlite && is_sqlite_busy(&e) && std::time::Instant::now() < deadline => {
                tracing::debug!("database busy while connecting; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(250));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How long [`connect`] keeps retrying an SQLite database that another process holds locked.
const SQLITE_OPEN_PATIENCE: Duration = Duration::from_secs(30);

/// `SQLITE_BUSY` or `SQLITE_LOCKED` (also their extended codes).
fn is_sqlite_busy(e: &DbErr) -> bool {
    let (DbErr::Conn(sea_orm::RuntimeErr::SqlxError(inner))
    | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(inner))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(inner))) = e
    else {
        return false;
    };
    let sea_orm::sqlx::Error::Database(db) = inner.as_ref() else {
        return false;
    };
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// Applies pending migrations, serialized across processes: everything runs in one transaction
/// that holds the write lock on SQLite (`BEGIN IMMEDIATE`) or an advisory lock on PostgreSQL, so
/// several servers starting at once on an empty database neither race nor fail.
///
/// # Errors
/// A failed migration (nothing of it is kept).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"
        ))
        .await?;
    }
    Migrator::up(&txn, None).await?;
    txn.commit().await?;
    build_online_indexes(db).await
}

/// The PostgreSQL advisory lock that serializes [`build_online_indexes`] ("INCX").
const ONLINE_INDEX_LOCK_ID: i64 = 0x494E_4358;

/// How often [`build_online_indexes`] asks again for its lock while another process builds.
const ONLINE_INDEX_LOCK_POLL: Duration = Duration::from_millis(200);

/// Builds on PostgreSQL every index the migrations left to it ([`migration::OnlineIndex`]) that
/// is missing, with `CREATE INDEX CONCURRENTLY`, so inserts into the audit log go on meanwhile
/// (in this process's other connections and in other processes). An index an interrupted build
/// left invalid is dropped and built again. One process builds at a time, under a session
/// advisory lock asked for with `pg_try_advisory_lock`: a session waiting in
/// `pg_advisory_lock` holds a snapshot, which the builder's `CONCURRENTLY` would wait for in
/// turn. Nothing on SQLite, whose migrations built them.
///
/// # Errors
/// The database failed or refused a build (a migration error: the server does not start).
async fn build_online_indexes(db: &DatabaseConnection) -> Result<(), StoreError> {
    use sea_orm::sqlx;
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let exec_err = |e: sqlx::Error| {
        StoreError::Db(DbErr::Exec(sea_orm::RuntimeErr::SqlxError(
            std::sync::Arc::new(e),
        )))
    };
    // Every start after the first finds them built: one catalog query on a pooled connection,
    // no connection of its own, no lock.
    let names: Vec<&str> = migration::ONLINE_INDEXES.iter().map(|i| i.name).collect();
    let valid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname = ANY($1) AND i.indisvalid AND pg_table_is_visible(c.oid)",
    )
    .bind(&names)
    .fetch_one(db.get_postgres_connection_pool())
    .await
    .map_err(exec_err)?;
    if usize::try_from(valid).is_ok_and(|n| n == names.len()) {
        return Ok(());
    }
    // A connection of its own, outside the pool: the session lock lives and dies with it, also
    // when a build fails half-way (closing it releases the lock).
    let mut conn = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(exec_err)?
        .detach();
    while !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
        .bind(ONLINE_INDEX_LOCK_ID)
        .fetch_one(&mut conn)
        .await
        .map_err(exec_err)?
    {
        tokio::time::sleep(ONLINE_INDEX_LOCK_POLL).await;
    }
    for index in migration::ONLINE_INDEXES {
        let valid: Option<bool> = sqlx::query_scalar(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = $1 AND pg_table_is_visible(c.oid)",
        )
        .bind(index.name)
        .fetch_optional(&mut conn)
        .await
        .map_err(exec_err)?;
        match valid {
            Some(true) => continue,
            Some(false) => {
                tracing::warn!(
                    index = index.name,
                    "an interrupted build left this index invalid: building it again"
                );
                let drop = format!("DROP INDEX CONCURRENTLY {}", index.name);
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                    .execute(&mut conn)
                    .await
                    .map_err(exec_err)?;
            }
            None => {}
        }
        tracing::info!(
            index = index.name,
            "building an index without blocking writes"
        );
        let create = format!(
            "CREATE INDEX CONCURRENTLY {}",
            (index.definition)(DbBackend::Postgres)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut conn)
            .await
            .map_err(exec_err)?;
    }
    // Closing the connection releases the lock.
    sqlx::Connection::close(conn).await.map_err(exec_err)
}

/// How many migrations this binary knows (the schema version recorded in backups).
#[must_use]
pub fn migration_count() -> usize {
    Migrator::migrations().len()
}

/// The PostgreSQL advisory lock that serializes migrations ("INCR" in ASCII).
const MIGRATION_LOCK_ID: i64 = 0x494E_4352;

/// `true` when every migration this binary knows has been applied.
///
/// # Errors
/// The database is unreachable.
pub async fn migrations_current(db: &DatabaseConnection) -> Result<bool, StoreError> {
    Ok(Migrator::get_pending_migrations_read_only(db)
        .await?
        .is_empty())
}

/// Round trip to the database, for `/readyz`.
///
/// # Errors
/// The database is unreachable.
pub async fn ping(db: &DatabaseConnection) -> Result<(), StoreError> {
    db.ping().await?;
    Ok(())
}

/// The SeaORM implementation of every storage port. Cheap to clone.
#[derive(Clone)]
pub struct SeaStore {
    db: DatabaseConnection,
    chain: std::sync::Arc<dyn audit::ChainMac>,
    audit_queues: std::sync::Arc<audit_repo::AuditQueues>,
    /// Advanced after every write transaction that may change a session or a user ends
    /// ([`sessions::ChangeEpoch`]).
    epoch: std::sync::Arc<epochs::Epochs>,
}

impl std::fmt::Debug for SeaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaStore")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl SeaStore {
    /// Wraps a connected, migrated database; `chain` computes the audit chain's MACs (AUD-4).
    #[must_use]
    pub fn new(db: DatabaseConnection, chain: std::sync::Arc<dyn audit::ChainMac>) -> Self {
        let audit_queues = std::sync::Arc::new(audit_repo::AuditQueues::for_backend(
            db.get_database_backend(),
        ));
        Self {
            db,
            chain,
            audit_queues,
            epoch: std::sync::Arc::default(),
        }
    }

    /// The connection.
    #[must_use]
    pub const fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The database kind.
    #[must_use]
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Appends `audit` to its chains inside `txn` and commits: the last step of every change,
    /// so the change and the records describing it land together (AUD-2). `changed` says what
    /// the write changed, for the session cache ([`Self::commit_as`]).
    async fn commit_with_audit_as(
        &self,
        txn: DatabaseTransaction,
        audit: Vec<audit::AuditRecord>,
        changed: Changed<'_>,
    ) -> Result<(), DbErr> {
        audit_repo::insert_audit(&txn, self.chain.as_ref(), audit).await?;
        self.commit_as(txn, changed).await
    }

    /// Commits a write transaction, then advances the change epoch as `changed` says (also when
    /// the commit failed: its outcome may be unknown), so no cached session outlives a change it
    /// missed.
    async fn commit_as(&self, txn: DatabaseTransaction, changed: Changed<'_>) -> Result<(), DbErr> {
        let result = txn.commit().await;
        match changed {
            Changed::Users(users) => self.epoch.changed_users(users),
            Changed::NoSessionOrUser => {}
        }
        result
    }

    /// `query` as read by a write transaction that acts on what it reads: on PostgreSQL the
    /// rows it returns stay locked (`FOR UPDATE`) until the transaction ends, so concurrent
    /// writers take turns; SQLite's write transaction ([`Self::write_txn`]) already excludes
    /// every other writer, and its SQL has no such clause.
    pub(crate) fn for_update<E: EntityTrait>(&self, query: Select<E>) -> Select<E> {
        if self.backend() == DbBackend::Postgres {
            query.lock_exclusive()
        } else {
            query
        }
    }

    /// A transaction that holds the write lock from its first statement on SQLite, so two
    /// writers never deadlock upgrading read locks; on PostgreSQL an ordinary READ COMMITTED
    /// transaction (callers lock the rows they serialize on).
    async fn write_txn(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
    }
}

/// What a write changed, as far as the session cache cares (it holds `sessions` and `users`
/// rows only; see [`epochs`]). Every write names the users whose rows or sessions it may have
/// touched; one that cannot would have to mark every user ([`epochs::Epochs::changed_everyone`],
/// as the change follower does for a notice it cannot read).
#[derive(Debug, Clone, Copy)]
enum Changed<'a> {
    /// These users' rows or sessions, and no one else's: the cached sessions of other users
    /// stay.
    Users(&'a [kernel::UserId]),
    /// Neither table (audit records, the login throttle, company settings, the vault, incidents,
    /// the outbox): nothing cached went stale, so every failed login, denial or configuration
    /// change no longer empties the cache.
    NoSessionOrUser,
}

impl sessions::ChangeEpoch for SeaStore {
    fn current(&self) -> u64 {
        self.epoch.current()
    }

    fn changed_since(&self, user: kernel::UserId, since: u64) -> bool {
        self.epoch.changed_since(user, since)
    }
}

impl SeaStore {
    /// Claims the run of daily job `name` for `day` (e.g. `2026-11-21`): `true` for exactly one
    /// caller per day, across processes, so a job scheduled in every server runs once (BAK-2).
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn claim_daily(&self, name: &str, day: &str) -> Result<bool, DbErr> {
        let backend = self.backend();
        let insert = match backend {
            DbBackend::Postgres => {
                "INSERT INTO scheduled_jobs (name, last_run) VALUES ($1, '') ON CONFLICT (name) DO NOTHING"
            }
            _ => {
                "INSERT INTO scheduled_jobs (name, last_run) VALUES (?, '') ON CONFLICT (name) DO NOTHING"
            }
        };
        self.db
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                insert,
                [name.into()],
            ))
            .await?;
        let update = match backend {
            DbBackend::Postgres => {
                "UPDATE scheduled_jobs SET last_run = $1 WHERE name = $2 AND last_run < $1"
            }
            _ => "UPDATE scheduled_jobs SET last_run = ?1 WHERE name = ?2 AND last_run < ?1",
        };
        let done = self
            .db
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                update,
                [day.into(), name.into()],
            ))
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// A stored value that does not map back to a domain value: the database was edited by hand or
/// by a newer version.
#[derive(Debug, thiserror::Error)]
#[error("corrupt row in {table}: {what}")]
pub(crate) struct CorruptRow {
    table: &'static str,
    what: &'static str,
}

pub(crate) const fn corrupt(table: &'static str, what: &'static str) -> CorruptRow {
    CorruptRow { table, what }
}

/// Rows one batch of a retention purge selects and deletes at most.
pub(crate) const PURGE_BATCH: u64 = 1_000;

/// Which way a list ordered by time runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeOrder {
    /// Alerts, incidents.
    NewestFirst,
    /// Users.
    OldestFirst,
}

/// One page's worth of `query` in keyset order: ordered by `at`, ties by `id`, in `order`, and
/// only the rows after `after` (a [`kernel::TimeCursor`]) in that order, so rows added meanwhile
/// never shift a walk. The caller adds the limit.
pub(crate) fn time_keyset<E: EntityTrait>(
    query: sea_orm::Select<E>,
    at: E::Column,
    id: E::Column,
    after: Option<kernel::TimeCursor>,
    order: TimeOrder,
) -> sea_orm::Select<E> {
    use sea_orm::{
        ColumnTrait as _, Condition, QueryFilter as _, QueryOrder as _, sea_query::Order,
    };
    let mut query = query;
    if let Some(c) = after {
        let (past_at, past_id) = match order {
            TimeOrder::NewestFirst => (at.lt(c.at), id.lt(c.id)),
            TimeOrder::OldestFirst => (at.gt(c.at), id.gt(c.id)),
        };
        query = query.filter(
            Condition::any()
                .add(past_at)
                .add(Condition::all().add(at.eq(c.at)).add(past_id)),
        );
    }
    let direction = match order {
        TimeOrder::NewestFirst => Order::Desc,
        TimeOrder::OldestFirst => Order::Asc,
    };
    query
        .order_by(at, direction.clone())
        .order_by(id, direction)
}

/// A retention purge in batches: each call of `batch` deletes up to [`PURGE_BATCH`] rows in a
/// statement or a short transaction of its own (no purge holds locks while a large backlog goes)
/// and answers how many rows it selected and how many it removed. Batches run until one selects
/// fewer than a full batch; the total removed is returned.
pub(crate) async fn purge_in_batches<E, Fut>(mut batch: impl FnMut() -> Fut) -> Result<u64, E>
where
    Fut: std::future::Future<Output = Result<(usize, u64), E>>,
{
    let mut removed = 0;
    loop {
        let (selected, deleted) = batch().await?;
        removed += deleted;
        if !u64::try_from(selected).is_ok_and(|n| n >= PURGE_BATCH) {
            return Ok(removed);
        }
    }
}

/// The ids (column `id`) of up to [`PURGE_BATCH`] rows of `E` that match `cond`: one batch of a
/// [`purge_in_batches`].
pub(crate) async fn batch_ids<E: EntityTrait>(
    db: &DatabaseConnection,
    id: E::Column,
    cond: sea_orm::Condition,
) -> Result<Vec<uuid::Uuid>, DbErr> {
    use sea_orm::{QueryFilter as _, QuerySelect as _};
    E::find()
        .select_only()
        .column(id)
        .filter(cond)
        .limit(PURGE_BATCH)
        .into_tuple()
        .all(db)
        .await
}

/// The row that `select` picks by a primary or unique key, read without a `LIMIT`.
///
/// Why not `Select::one`: it renders `LIMIT ?` with 1 bound to it, and SQLite (3.51, bundled)
/// marks a statement whose LIMIT is a bound parameter to be prepared again whenever that
/// parameter is bound (`computeLimitRegisters` → `sqlite3ExprIsInteger` → the statement's
/// expmask). Every `.one()` was therefore parsed and planned afresh on each execution, past
/// sqlx's statement cache: 8% of the server's non-hashing time under a login storm, measured
/// with `perf`. A key needs no LIMIT. Two rows for a key mean a missing unique index: reported
/// as corrupt data, never answered with an arbitrary one of them.
pub(crate) async fn by_key<E, C>(select: Select<E>, conn: &C) -> Result<Option<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let mut rows = select.all(conn).await?;
    if rows.len() > 1 {
        return Err(DbErr::Custom(format!(
            "corrupt data in {}: more than one row for a unique key",
            E::default().table_name()
        )));
    }
    Ok(rows.pop())
}

/// Sorts a storage error: a lost or refused database connection becomes a
/// [`kernel::Unavailable`] (the HTTP adapter answers 503 and the client retries), everything
/// else stays as it is (500).
pub(crate) fn outage<E: std::error::Error + Send + Sync + 'static>(
    e: E,
) -> Result<kernel::Unavailable, E> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut lost = false;
    for _ in 0..16 {
        let Some(err) = current else { break };
        if let Some(db) = err.downcast_ref::<DbErr>()
            && db_outage(db)
        {
            lost = true;
            break;
        }
        if let Some(sqlx) = err.downcast_ref::<sea_orm::sqlx::Error>()
            && sqlx_outage(sqlx)
        {
            lost = true;
            break;
        }
        current = err.source();
    }
    if lost {
        Ok(kernel::Unavailable::new(e))
    } else {
        Err(e)
    }
}

fn db_outage(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => {
            sqlx_outage(s)
        }
        _ => false,
    }
}

fn sqlx_outage(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        // PostgreSQL: connection exceptions (08…) and operator intervention (57P01 shutdown,
        // 57P02 crash shutdown, 57P03 cannot connect now).
        E::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sea_orm::{ActiveValue::Set, EntityTrait as _};

    use crate::entity::audit_chain_head as head;

    /// A key finds its row or nothing, on every backend; a "key" that matches two rows is an
    /// error naming the table, never one of the rows picked at random.
    #[tokio::test]
    async fn by_key_reads_one_row_or_none_and_refuses_two() {
        for db in test_support::TestDb::each().await {
            let conn = db.connect().await;
            let row = |chain: &str| head::ActiveModel {
                chain: Set(chain.to_owned()),
                seq: Set(7),
                mac: Set("00".repeat(32)),
            };
            head::Entity::insert_many([row("a"), row("b")])
                .exec_without_returning(&conn)
                .await
                .unwrap();
            let found = super::by_key(head::Entity::find_by_id("a".to_owned()), &conn)
                .await
                .unwrap();
            assert_eq!(found.map(|m| (m.chain, m.seq)), Some(("a".into(), 7)));
            let missing = super::by_key(head::Entity::find_by_id("z".to_owned()), &conn)
                .await
                .unwrap();
            assert!(missing.is_none(), "{}", db.backend);
            let err = super::by_key(head::Entity::find(), &conn)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("audit_chain_heads") && err.contains("more than one row"),
                "{}: {err}",
                db.backend
            );
        }
    }
}
