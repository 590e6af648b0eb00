use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FiscalCredentials {
    Table,
    ValidTo,
    ExpiryNotice,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // VAULT-8: the stage (30, 7, 1 or 0 days) of the last expiry notice sent for a
        // credential; NULL while none was. Nullable, so a portable snapshot made before this
        // migration loads (its rows had none: NULL is what they mean).
        super::add_nullable_column(
            manager,
            FiscalCredentials::Table,
            ColumnDef::new(FiscalCredentials::ExpiryNotice).integer(),
        )
        .await?;
        // The hourly pass looks for credentials whose validity ends within a window. The
        // table holds at most 100 rows per company and is small next to the audit log, so a
        // plain index built in the migration's transaction is fine.
        manager
            .create_index(
                Index::create()
                    .name("fiscal_credentials_valid_to")
                    .table(FiscalCredentials::Table)
                    .col(FiscalCredentials::ValidTo)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
