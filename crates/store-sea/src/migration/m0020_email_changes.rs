use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    EmailChangeId,
    EmailChangeTo,
    EmailChangeExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The user's pending change of e-mail address, if any: its id (the id of the audit
        // record that asked for it; the code is a MAC of it, never stored), the address asked
        // for and when the code stops working. NULL meaning none, so older snapshots load.
        for column in [
            ColumnDef::new(Users::EmailChangeId).uuid(),
            ColumnDef::new(Users::EmailChangeTo).string(),
            ColumnDef::new(Users::EmailChangeExpiresAt).timestamp_with_time_zone(),
        ]
        .iter_mut()
        {
            super::add_nullable_column(manager, Users::Table, column).await?;
        }
        Ok(())
    }
}
