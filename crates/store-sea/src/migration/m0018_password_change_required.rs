use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    PasswordChangeRequired,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `true` after the operator's reset (`incrementa users reset-password`): the user's
        // sessions may only change the password until they do. Nullable, NULL meaning false, so
        // a portable snapshot made before this migration loads (its users had no such demand).
        super::add_nullable_column(
            manager,
            Users::Table,
            ColumnDef::new(Users::PasswordChangeRequired).boolean(),
        )
        .await
    }
}
