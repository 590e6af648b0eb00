use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FiscalCredentials {
    Table,
    Id,
    CompanyId,
    Kind,
    Rfc,
    RepresentativeRfc,
    Curp,
    LegalName,
    CertificateNumber,
    Issuer,
    ValidFrom,
    ValidTo,
    CreatedBy,
    CreatedAt,
    KeyId,
    Certificate,
    PrivateKey,
    Password,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FiscalCredentials::Table)
                    .col(pk_uuid(FiscalCredentials::Id))
                    .col(uuid(FiscalCredentials::CompanyId))
                    .col(text(FiscalCredentials::Kind))
                    .col(text(FiscalCredentials::Rfc))
                    .col(text_null(FiscalCredentials::RepresentativeRfc))
                    .col(text_null(FiscalCredentials::Curp))
                    .col(text(FiscalCredentials::LegalName))
                    .col(text(FiscalCredentials::CertificateNumber))
                    .col(text(FiscalCredentials::Issuer))
                    .col(timestamp_with_time_zone(FiscalCredentials::ValidFrom))
                    .col(timestamp_with_time_zone(FiscalCredentials::ValidTo))
                    .col(uuid(FiscalCredentials::CreatedBy))
                    .col(timestamp_with_time_zone(FiscalCredentials::CreatedAt))
                    .col(big_integer(FiscalCredentials::KeyId))
                    .col(text(FiscalCredentials::Certificate))
                    .col(text(FiscalCredentials::PrivateKey))
                    .col(text(FiscalCredentials::Password))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_fiscal_credentials_number")
                    .table(FiscalCredentials::Table)
                    .col(FiscalCredentials::CompanyId)
                    .col(FiscalCredentials::CertificateNumber)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_fiscal_credentials_key")
                    .table(FiscalCredentials::Table)
                    .col(FiscalCredentials::KeyId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
