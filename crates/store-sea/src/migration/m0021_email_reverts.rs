use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    EmailRevertId,
    EmailRevertTo,
    EmailRevertExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // After a change of e-mail address, the window in which the previous address can undo
        // it: its id (the id of the `user.email_changed` record; the code mailed to the previous
        // address is a MAC of it, never stored), the address to restore and when the window
        // closes. NULL meaning none, so older snapshots load.
        for column in [
            ColumnDef::new(Users::EmailRevertId).uuid(),
            ColumnDef::new(Users::EmailRevertTo).string(),
            ColumnDef::new(Users::EmailRevertExpiresAt).timestamp_with_time_zone(),
        ]
        .iter_mut()
        {
            super::add_nullable_column(manager, Users::Table, column).await?;
        }
        // While a window is open its address stays reserved: every write that gives a user an
        // address looks it up here (users is small next to the audit log: a plain build).
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX idx_users_email_revert_to ON users (email_revert_to) \
                 WHERE email_revert_to IS NOT NULL",
            )
            .await?;
        Ok(())
    }
}
