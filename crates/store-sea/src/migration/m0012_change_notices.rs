use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// ACC-1, RBAC-6 across processes on PostgreSQL: a committed change to a session or a user
/// notifies channel `incrementa_changes`, and every server process that follows it
/// (`SeaStore::follow_changes`) drops its cached sessions at once instead of after the cache's
/// time to live. Row triggers, so a statement that changes nothing notifies nobody;
/// PostgreSQL folds the notices of one transaction into one and delivers it at commit, never
/// for a rollback. The session cache holds exactly these two tables' rows.
const CREATE: [&str; 3] = [
    "CREATE FUNCTION incrementa_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN PERFORM pg_notify('incrementa_changes', ''); RETURN NULL; END $$",
    "CREATE TRIGGER sessions_notify_change AFTER INSERT OR UPDATE OR DELETE ON sessions \
     FOR EACH ROW EXECUTE FUNCTION incrementa_notify_change()",
    "CREATE TRIGGER users_notify_change AFTER INSERT OR UPDATE OR DELETE ON users \
     FOR EACH ROW EXECUTE FUNCTION incrementa_notify_change()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite has no notices: other processes there see changes within the cache's time.
        super::on_postgres(manager, &CREATE).await
    }
}
