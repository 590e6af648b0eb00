//! The portable snapshot (BAK-1): every row of every table as JSON Lines, written from one
//! consistent read and loaded in one transaction, on either database.
//!
//! Rows go through the same SeaORM entities the repositories use, so each backend's column types
//! (UUIDs, timestamps, booleans) are converted by the adapter, not by string surgery: a snapshot
//! taken on SQLite loads into PostgreSQL and the other way round. That makes a backup the
//! migration path from the embedded default to PostgreSQL.
//!
//! Layout, one JSON value per line:
//! ```text
//! {"incrementa_portable":1,"migrations":9,"backend":"sqlite"}
//! {"@table":"companies"}
//! {…one row of companies…}
//! {"@table":"users"}
//! …
//! {"@end":{"companies":3,"users":12,…}}
//! ```
//! Marker keys start with `@`, which no column name can, so a row is never taken for one.
//! Tables are written parents first, so foreign keys hold while loading. The closing line's
//! counts are checked against what was loaded; a missing closing line means a cut snapshot.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use futures_util::TryStreamExt as _;
use sea_orm::{
    AccessMode, ConnectionTrait as _, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, IntoActiveModel, IsolationLevel, Iterable as _, PaginatorTrait as _,
    PrimaryKeyToColumn as _, QueryOrder as _, SqliteTransactionMode, TransactionOptions,
    TransactionTrait as _,
};
use sea_orm_migration::MigratorTrait as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::entity::{
    audit_alert, audit_chain_head, audit_checkpoint, audit_event, audit_review_cursor, company,
    company_change, fiscal_credential, incident, incident_timeline, login_throttle,
    mfa_recovery_code, mfa_totp, outbox_attempt, outbox_message, ownership_transfer, scheduled_job,
    session, user,
};
use crate::{MIGRATION_LOCK_ID, Migrator, StoreError};

/// Version of the line format.
pub const FORMAT: u32 = 1;

/// Rows inserted per statement: far below both databases' limits on bound parameters.
const BATCH: usize = 400;

/// The longest line accepted when loading (a row is a few KiB; a fiscal credential the most).
const MAX_LINE: usize = 8 * 1024 * 1024;

/// Reports progress: (table, rows so far). Called at each table's end and every 10,000 rows.
pub type Progress<'a> = &'a (dyn Fn(&str, u64) + Send + Sync);

/// Rows per table.
pub type Counts = BTreeMap<String, u64>;

#[derive(Serialize, serde::Deserialize)]
struct Header {
    incrementa_portable: u32,
    migrations: usize,
    backend: String,
}

#[async_trait::async_trait]
trait Table: Send + Sync {
    fn name(&self) -> &'static str;
    async fn export(
        &self,
        txn: &DatabaseTransaction,
        out: &mut (dyn AsyncWrite + Unpin + Send),
        progress: Progress<'_>,
    ) -> Result<u64, StoreError>;
    async fn count(&self, txn: &DatabaseTransaction) -> Result<u64, StoreError>;
    async fn insert(
        &self,
        txn: &DatabaseTransaction,
        rows: &[String],
        first_line: u64,
    ) -> Result<(), StoreError>;
}

struct T<E>(PhantomData<fn() -> E>);

#[async_trait::async_trait]
impl<E> Table for T<E>
where
    E: EntityTrait + Default,
    E::Model: Serialize + DeserializeOwned + IntoActiveModel<E::ActiveModel> + Send + Sync,
    E::ActiveModel: Send,
{
    fn name(&self) -> &'static str {
        E::default().table_name()
    }

    async fn export(
        &self,
        txn: &DatabaseTransaction,
        out: &mut (dyn AsyncWrite + Unpin + Send),
        progress: Progress<'_>,
    ) -> Result<u64, StoreError> {
        // In primary-key order: the same data always gives the same snapshot.
        let mut query = E::find();
        for key in E::PrimaryKey::iter() {
            query = query.order_by_asc(key.into_column());
        }
        let mut rows = query.stream(txn).await?;
        let mut n = 0_u64;
        let mut line = Vec::with_capacity(1024);
        while let Some(model) = rows.try_next().await? {
            line.clear();
            serde_json::to_writer(&mut line, &model).map_err(|e| {
                StoreError::Portable(format!("cannot encode a row of {}: {e}", self.name()))
            })?;
            line.push(b'\n');
            out.write_all(&line).await?;
            n += 1;
            if n.is_multiple_of(10_000) {
                progress(self.name(), n);
            }
        }
        Ok(n)
    }

    async fn count(&self, txn: &DatabaseTransaction) -> Result<u64, StoreError> {
        Ok(E::find().count(txn).await?)
    }

    async fn insert(
        &self,
        txn: &DatabaseTransaction,
        rows: &[String],
        first_line: u64,
    ) -> Result<(), StoreError> {
        let mut models = Vec::with_capacity(rows.len());
        for (i, row) in (first_line..).zip(rows) {
            // The row's content is never quoted: it may hold personal data.
            let model: E::Model = serde_json::from_str(row).map_err(|e| {
                StoreError::Portable(format!(
                    "line {i}: not a row of {} ({})",
                    self.name(),
                    serde_error_kind(&e)
                ))
            })?;
            models.push(model.into_active_model());
        }
        E::insert_many(models).exec_without_returning(txn).await?;
        Ok(())
    }
}

/// What went wrong in a line, without echoing the data (serde's messages can quote values).
fn serde_error_kind(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "unreadable".into(),
        Category::Syntax => format!("invalid JSON at column {}", e.column()),
        Category::Data => "a field is missing or has the wrong type".into(),
        Category::Eof => "cut short".into(),
    }
}

fn table<E>() -> Box<dyn Table>
where
    E: EntityTrait + Default,
    E::Model: Serialize + DeserializeOwned + IntoActiveModel<E::ActiveModel> + Send + Sync,
    E::ActiveModel: Send,
{
    Box::new(T::<E>(PhantomData))
}

/// Every table of the schema, parents before children (foreign keys hold while loading).
fn tables() -> Vec<Box<dyn Table>> {
    vec![
        table::<company::Entity>(),
        table::<user::Entity>(),
        table::<session::Entity>(),
        table::<mfa_totp::Entity>(),
        table::<mfa_recovery_code::Entity>(),
        table::<login_throttle::Entity>(),
        table::<company_change::Entity>(),
        table::<ownership_transfer::Entity>(),
        table::<fiscal_credential::Entity>(),
        table::<audit_event::Entity>(),
        table::<audit_chain_head::Entity>(),
        table::<audit_checkpoint::Entity>(),
        table::<audit_review_cursor::Entity>(),
        table::<audit_alert::Entity>(),
        table::<incident::Entity>(),
        table::<incident_timeline::Entity>(),
        table::<outbox_message::Entity>(),
        table::<outbox_attempt::Entity>(),
        table::<scheduled_job::Entity>(),
    ]
}

/// The tables a portable snapshot carries, in load order.
#[must_use]
pub fn table_names() -> Vec<&'static str> {
    tables().iter().map(|t| t.name()).collect()
}

/// Writes every row of every table to `out` from one consistent read (PostgreSQL: a read-only
/// repeatable-read transaction; SQLite: one read transaction, a snapshot in WAL mode). Returns
/// the rows written per table. The writer is flushed, not shut down.
///
/// # Errors
/// The database or the writer failed.
pub async fn export(
    db: &DatabaseConnection,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    progress: Progress<'_>,
) -> Result<Counts, StoreError> {
    let backend = db.get_database_backend();
    let txn = db
        .begin_with_options(TransactionOptions {
            isolation_level: (backend == DbBackend::Postgres)
                .then_some(IsolationLevel::RepeatableRead),
            access_mode: (backend == DbBackend::Postgres).then_some(AccessMode::ReadOnly),
            sqlite_transaction_mode: None,
        })
        .await?;
    let header = Header {
        incrementa_portable: FORMAT,
        migrations: crate::migration_count(),
        backend: match backend {
            DbBackend::Sqlite => "sqlite".into(),
            _ => "postgres".into(),
        },
    };
    write_json_line(out, &header).await?;
    let mut counts = Counts::new();
    for t in tables() {
        write_json_line(out, &serde_json::json!({ "@table": t.name() })).await?;
        let n = t.export(&txn, out, progress).await?;
        progress(t.name(), n);
        counts.insert(t.name().to_owned(), n);
    }
    write_json_line(out, &serde_json::json!({ "@end": counts })).await?;
    out.flush().await?;
    txn.rollback().await?;
    Ok(counts)
}

async fn write_json_line(
    out: &mut (dyn AsyncWrite + Unpin + Send),
    value: &impl Serialize,
) -> Result<(), StoreError> {
    let mut line = serde_json::to_vec(value).map_err(|e| StoreError::Portable(e.to_string()))?;
    line.push(b'\n');
    out.write_all(&line).await?;
    Ok(())
}

/// Loads a portable snapshot into `db`, all or nothing: in one transaction it applies the
/// migrations, checks that every table is empty, inserts every row, and checks the closing
/// counts. A database that has rows in any table is refused and left untouched; so is a
/// snapshot from a newer binary, or from an older one when a later migration changed a table
/// (migrations that change no table, [`crate::ROWS_UNCHANGED`], do not count).
///
/// # Errors
/// [`StoreError::NotEmpty`], [`StoreError::SchemaVersion`], [`StoreError::Portable`] for a
/// malformed or cut snapshot, or the database's error. Nothing is kept in any case.
pub async fn import(
    db: &DatabaseConnection,
    input: &mut (dyn AsyncBufRead + Unpin + Send),
    progress: Progress<'_>,
) -> Result<Counts, StoreError> {
    let mut lines = Lines {
        input,
        buf: Vec::new(),
        number: 0,
    };
    let header = lines
        .next()
        .await?
        .ok_or_else(|| StoreError::Portable("the snapshot is empty".into()))?;
    let header: Header = serde_json::from_str(&header)
        .map_err(|_| StoreError::Portable("not a portable snapshot (bad first line)".into()))?;
    if header.incrementa_portable != FORMAT {
        return Err(StoreError::Portable(format!(
            "unknown portable format {}",
            header.incrementa_portable
        )));
    }
    if !crate::migration::rows_compatible(header.migrations) {
        return Err(StoreError::SchemaVersion {
            snapshot: header.migrations,
            binary: crate::migration_count(),
        });
    }
    let backend = db.get_database_backend();
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    if backend == DbBackend::Postgres {
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"
        ))
        .await?;
    }
    Migrator::up(&txn, None).await?;
    let all = tables();
    for t in &all {
        if t.count(&txn).await? > 0 {
            return Err(StoreError::NotEmpty(t.name().to_owned()));
        }
    }
    let mut loaded = Counts::new();
    let mut current: Option<&dyn Table> = None;
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    let mut batch_first_line = 0_u64;
    let mut expected: Option<Counts> = None;
    while let Some(line) = lines.next().await? {
        if expected.is_some() {
            return Err(StoreError::Portable(format!(
                "line {}: data after the closing line",
                lines.number
            )));
        }
        if line.starts_with("{\"@") {
            let marker: Marker = serde_json::from_str(&line).map_err(|e| {
                StoreError::Portable(format!("line {}: {}", lines.number, serde_error_kind(&e)))
            })?;
            if let Some(t) = current {
                flush(t, &txn, &mut batch, batch_first_line).await?;
                progress(t.name(), loaded.get(t.name()).copied().unwrap_or(0));
            }
            match marker {
                Marker::Table { table } => {
                    let t = all
                        .iter()
                        .find(|t| t.name() == table)
                        .ok_or_else(|| {
                            StoreError::Portable(format!(
                                "line {}: unknown table {table:?}",
                                lines.number
                            ))
                        })?
                        .as_ref();
                    if loaded.insert(table.clone(), 0).is_some() {
                        return Err(StoreError::Portable(format!(
                            "line {}: table {table} appears twice",
                            lines.number
                        )));
                    }
                    current = Some(t);
                }
                Marker::End { end } => {
                    current = None;
                    expected = Some(end);
                }
            }
            continue;
        }
        let Some(t) = current else {
            return Err(StoreError::Portable(format!(
                "line {}: a row outside any table",
                lines.number
            )));
        };
        if batch.is_empty() {
            batch_first_line = lines.number;
        }
        batch.push(line);
        let n = loaded.entry(t.name().to_owned()).or_insert(0);
        *n += 1;
        if (*n).is_multiple_of(10_000) {
            progress(t.name(), *n);
        }
        if batch.len() >= BATCH {
            flush(t, &txn, &mut batch, batch_first_line).await?;
        }
    }
    let Some(expected) = expected else {
        return Err(StoreError::Portable(
            "the snapshot is cut short (no closing line)".into(),
        ));
    };
    if expected != loaded {
        return Err(StoreError::Portable(
            "the rows loaded differ from the snapshot's closing counts".into(),
        ));
    }
    txn.commit().await?;
    // The audit log's indexes, which PostgreSQL builds after the migrations (now, on the rows
    // just loaded, if the migrations ran here).
    crate::build_online_indexes(db).await?;
    Ok(loaded)
}

async fn flush(
    t: &dyn Table,
    txn: &DatabaseTransaction,
    batch: &mut Vec<String>,
    first_line: u64,
) -> Result<(), StoreError> {
    if !batch.is_empty() {
        t.insert(txn, batch, first_line).await?;
        batch.clear();
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Marker {
    Table {
        #[serde(rename = "@table")]
        table: String,
    },
    End {
        #[serde(rename = "@end")]
        end: Counts,
    },
}

/// Reads lines with a bound on their length.
struct Lines<'a> {
    input: &'a mut (dyn AsyncBufRead + Unpin + Send),
    buf: Vec<u8>,
    /// 1-based number of the line last returned.
    number: u64,
}

impl Lines<'_> {
    async fn next(&mut self) -> Result<Option<String>, StoreError> {
        self.buf.clear();
        loop {
            let available = self.input.fill_buf().await?;
            if available.is_empty() {
                break;
            }
            let (take, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            self.buf
                .extend_from_slice(available.get(..take).unwrap_or_default());
            self.input.consume(take);
            if self.buf.len() > MAX_LINE {
                return Err(StoreError::Portable(format!(
                    "line {}: longer than {MAX_LINE} bytes",
                    self.number + 1
                )));
            }
            if done {
                break;
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        let line = String::from_utf8(std::mem::take(&mut self.buf))
            .map_err(|_| StoreError::Portable(format!("line {}: not UTF-8", self.number)))?;
        Ok(Some(line))
    }
}
