use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // AUD-4: an append bumps its chain head's `seq` first (the row lock and the sequence
        // numbers), then inserts the records; the head's `mac` follows the record that reaches
        // the head's `seq`, in the same statement as its insert. Before, the store set it with a
        // third statement per append.
        let db = manager.get_connection();
        match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE FUNCTION audit_head_follows() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN \
                       UPDATE audit_chain_heads SET mac = NEW.mac \
                       WHERE chain = NEW.chain AND seq = NEW.seq; \
                       RETURN NULL; \
                     END $$",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_events \
                     FOR EACH ROW WHEN (NEW.chain IS NOT NULL AND NEW.mac IS NOT NULL) \
                     EXECUTE FUNCTION audit_head_follows()",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared(
                    "CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_events \
                     WHEN NEW.chain IS NOT NULL AND NEW.mac IS NOT NULL \
                     BEGIN \
                       UPDATE audit_chain_heads SET mac = NEW.mac \
                       WHERE chain = NEW.chain AND seq = NEW.seq; \
                     END",
                )
                .await?;
            }
        }
        Ok(())
    }
}
