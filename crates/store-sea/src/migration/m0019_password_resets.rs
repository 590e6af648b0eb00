use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    PasswordResetId,
    PasswordResetExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The user's open password reset, if any (its id is the id of the audit record that
        // asked for it; the token is a MAC of it, never stored). Nullable, NULL meaning none,
        // so a portable snapshot made before this migration loads.
        super::add_nullable_column(
            manager,
            Users::Table,
            ColumnDef::new(Users::PasswordResetId).uuid(),
        )
        .await?;
        super::add_nullable_column(
            manager,
            Users::Table,
            ColumnDef::new(Users::PasswordResetExpiresAt).timestamp_with_time_zone(),
        )
        .await?;
        // A token names its reset: found by this index, and never two users for one reset.
        manager
            .create_index(
                Index::create()
                    .name("idx_users_password_reset")
                    .table(Users::Table)
                    .col(Users::PasswordResetId)
                    .unique()
                    .to_owned(),
            )
            .await
    }
}
