use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// ACC-1, RBAC-6: m0012's triggers notified every server process of every write to `sessions`
/// and `users`, and each notice empties a process's whole session cache. Most of those writes
/// cannot change a cached session: a login's new row (no cache holds a token nobody has
/// presented yet), its `session_seq` bump on the user, a request's `last_seen_at` touch (a
/// process that holds an older `last_seen_at` reloads it within the cache's time to live, far
/// inside the idle timeout). So every login and every touch emptied every cache.
///
/// Now an update notifies unless the **only** columns it changed are `sessions.last_seen_at` or
/// `users.session_seq` (compared as whole rows without that one column, so a column added later
/// notifies by default), a delete always notifies, and an insert never does. A revocation,
/// a step-up, a role, permission, password, MFA or deactivation change still reach every
/// process at once.
///
/// The notice's payload is the changed user's id (the session's owner), so a follower empties
/// that user's cached sessions rather than all of them (`store_sea::epochs`); PostgreSQL still
/// folds identical notices of one transaction into one. A follower treats any other payload as
/// a change for everyone.
const REPLACE: [&str; 8] = [
    "CREATE FUNCTION incrementa_notify_user_change() RETURNS trigger LANGUAGE plpgsql AS $$ \
     DECLARE changed record; \
     BEGIN \
       IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF; \
       IF TG_TABLE_NAME = 'users' THEN \
         PERFORM pg_notify('incrementa_changes', changed.id::text); \
       ELSE \
         PERFORM pg_notify('incrementa_changes', changed.user_id::text); \
       END IF; \
       RETURN NULL; \
     END $$",
    "DROP TRIGGER sessions_notify_change ON sessions",
    "DROP TRIGGER users_notify_change ON users",
    "CREATE TRIGGER sessions_notify_change AFTER UPDATE ON sessions FOR EACH ROW \
     WHEN ((to_jsonb(OLD) - 'last_seen_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_seen_at')) \
     EXECUTE FUNCTION incrementa_notify_user_change()",
    "CREATE TRIGGER sessions_notify_removal AFTER DELETE ON sessions \
     FOR EACH ROW EXECUTE FUNCTION incrementa_notify_user_change()",
    "CREATE TRIGGER users_notify_change AFTER UPDATE ON users FOR EACH ROW \
     WHEN ((to_jsonb(OLD) - 'session_seq') IS DISTINCT FROM (to_jsonb(NEW) - 'session_seq')) \
     EXECUTE FUNCTION incrementa_notify_user_change()",
    "CREATE TRIGGER users_notify_removal AFTER DELETE ON users \
     FOR EACH ROW EXECUTE FUNCTION incrementa_notify_user_change()",
    "DROP FUNCTION incrementa_notify_change()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::on_postgres(manager, &REPLACE).await
    }
}
