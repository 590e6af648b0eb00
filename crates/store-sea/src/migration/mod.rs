//! Schema migrations, applied in order at start (`incrementa serve`) or by `incrementa migrate`.

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_rbac;
mod m0003_vault;
mod m0004_audit_chain;
mod m0005_company_config;
mod m0006_audit_alerts;
mod m0007_mfa;
mod m0008_incidents_outbox;
mod m0009_scheduled_jobs;
mod m0010_audit_head_follows;
mod m0011_session_open_capped;
mod m0012_change_notices;
mod m0013_change_notices_narrowed;
mod m0014_audit_login_index;
pub(crate) mod m0015_audit_login_network_index;
mod m0016_audit_alerts_listing_index;
mod m0017_vault_expiry_notices;
mod m0018_password_change_required;
mod m0019_password_resets;
mod m0020_email_changes;
mod m0021_email_reverts;

/// Runs `statements` in order on PostgreSQL and nothing on SQLite: the migrations that add
/// PostgreSQL-only functions and triggers (m0011 to m0013).
async fn on_postgres(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
        for sql in statements {
            manager.get_connection().execute_unprepared(sql).await?;
        }
    }
    Ok(())
}

/// Adds `column` to `table` as a nullable column: the step of every migration in
/// [`NULLABLE_COLUMNS_ADDED`] (NULL must mean what a row from before the migration meant).
async fn add_nullable_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    column: &mut ColumnDef,
) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(table)
                .add_column(column.null())
                .to_owned(),
        )
        .await
}

/// An index on a table that grows without bound (the audit log and its alerts). SQLite builds it
/// in its migration. On PostgreSQL the migration leaves it to `build_online_indexes`, which
/// runs after the migrations commit and builds it with `CREATE INDEX CONCURRENTLY`: a plain
/// `CREATE INDEX` takes a lock that stops every insert into the table (every audit record of
/// every process still serving during an upgrade) until the migrations' transaction commits,
/// which on a large log takes minutes. Only performance depends on these indexes, never a
/// result, so a query is right while one is being built.
pub(crate) struct OnlineIndex {
    /// Its name.
    pub name: &'static str,
    /// What follows `CREATE INDEX [CONCURRENTLY]` on this backend: `name ON table (…) [WHERE …]`.
    pub definition: fn(sea_orm::DbBackend) -> String,
}

/// Every [`OnlineIndex`], in migration order.
pub(crate) const ONLINE_INDEXES: &[OnlineIndex] = &[
    m0014_audit_login_index::INDEX,
    m0015_audit_login_network_index::INDEX,
    m0016_audit_alerts_listing_index::INDEX,
];

/// The migration step of `index`: builds it on SQLite; nothing on PostgreSQL, where
/// `build_online_indexes` builds it once the migrations have committed.
async fn create_online_index(
    manager: &SchemaManager<'_>,
    index: &OnlineIndex,
) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    if backend != sea_orm::DbBackend::Postgres {
        let sql = format!("CREATE INDEX {}", (index.definition)(backend));
        manager.get_connection().execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// Migrations that add, drop or alter no table or column and change no row (triggers,
/// functions, indexes): a portable snapshot made before them holds exactly the rows one made after them
/// would, so it loads into a binary that has them. A migration that rewrites rows must never be
/// listed, even if it changes no column. A migration belongs here only if the contract test
/// `listed_migrations_leave_every_table_as_it_was` shows that every table's columns are the same
/// before and after it on both databases.
pub const ROWS_UNCHANGED: &[&str] = &[
    "m0010_audit_head_follows",
    "m0011_session_open_capped",
    "m0012_change_notices",
    "m0013_change_notices_narrowed",
    "m0014_audit_login_index",
    "m0015_audit_login_network_index",
    "m0016_audit_alerts_listing_index",
];

/// Migrations that only add nullable columns, each to a table whose entity reads a missing
/// field as `None`: a row of a portable snapshot made before them loads with NULL there, which is
/// what such a row meant (nothing recorded yet). Guarded by the contract test
/// `listed_migrations_only_add_nullable_columns` on both databases.
pub const NULLABLE_COLUMNS_ADDED: &[&str] = &[
    "m0017_vault_expiry_notices",
    "m0018_password_change_required",
    "m0019_password_resets",
    "m0020_email_changes",
    "m0021_email_reverts",
];

/// Whether a portable snapshot made by a binary with `snapshot` migrations loads into this
/// binary's schema: the same number, or fewer when every migration after the snapshot's is in
/// [`ROWS_UNCHANGED`] or [`NULLABLE_COLUMNS_ADDED`]. A snapshot from a newer binary never loads.
#[must_use]
pub fn rows_compatible(snapshot: usize) -> bool {
    let all = Migrator::migrations();
    snapshot >= 1
        && snapshot <= all.len()
        && all.iter().skip(snapshot).all(|m| {
            ROWS_UNCHANGED.contains(&m.name()) || NULLABLE_COLUMNS_ADDED.contains(&m.name())
        })
}

/// The list of migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_rbac::Migration),
            Box::new(m0003_vault::Migration),
            Box::new(m0004_audit_chain::Migration),
            Box::new(m0005_company_config::Migration),
            Box::new(m0006_audit_alerts::Migration),
            Box::new(m0007_mfa::Migration),
            Box::new(m0008_incidents_outbox::Migration),
            Box::new(m0009_scheduled_jobs::Migration),
            Box::new(m0010_audit_head_follows::Migration),
            Box::new(m0011_session_open_capped::Migration),
            Box::new(m0012_change_notices::Migration),
            Box::new(m0013_change_notices_narrowed::Migration),
            Box::new(m0014_audit_login_index::Migration),
            Box::new(m0015_audit_login_network_index::Migration),
            Box::new(m0016_audit_alerts_listing_index::Migration),
            Box::new(m0017_vault_expiry_notices::Migration),
            Box::new(m0018_password_change_required::Migration),
            Box::new(m0019_password_resets::Migration),
            Box::new(m0020_email_changes::Migration),
            Box::new(m0021_email_reverts::Migration),
        ]
    }
}
