use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Companies {
    Table,
    LegalName,
    TaxRegime,
    PostalCode,
    MfaRequired,
    MfaGraceUntil,
}

#[derive(DeriveIden)]
enum CompanyChanges {
    Table,
    Id,
    CompanyId,
    At,
    ActorId,
    Field,
    OldValue,
    NewValue,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            text_null(Companies::LegalName),
            text_null(Companies::TaxRegime),
            text_null(Companies::PostalCode),
            boolean(Companies::MfaRequired).default(true).to_owned(),
            timestamp_with_time_zone_null(Companies::MfaGraceUntil),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Companies::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(CompanyChanges::Table)
                    .col(pk_uuid(CompanyChanges::Id))
                    .col(uuid(CompanyChanges::CompanyId))
                    .col(timestamp_with_time_zone(CompanyChanges::At))
                    .col(uuid(CompanyChanges::ActorId))
                    .col(text(CompanyChanges::Field))
                    .col(text_null(CompanyChanges::OldValue))
                    .col(text_null(CompanyChanges::NewValue))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_company_changes")
                    .table(CompanyChanges::Table)
                    .col(CompanyChanges::CompanyId)
                    .col(CompanyChanges::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
