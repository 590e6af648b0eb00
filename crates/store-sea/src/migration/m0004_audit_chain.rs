use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Chain,
    Seq,
    KeyId,
    Mac,
}

#[derive(DeriveIden)]
enum AuditChainHeads {
    Table,
    Chain,
    Seq,
    Mac,
}

#[derive(DeriveIden)]
enum AuditCheckpoints {
    Table,
    Chain,
    Seq,
    Mac,
    PurgedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Rows written before the chain existed keep NULLs; verification reports them as unchained.
        for col in [
            text_null(AuditEvents::Chain),
            big_integer_null(AuditEvents::Seq),
            big_integer_null(AuditEvents::KeyId),
            text_null(AuditEvents::Mac),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditEvents::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("uq_audit_chain_seq")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::Chain)
                    .col(AuditEvents::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditChainHeads::Table)
                    .col(text(AuditChainHeads::Chain).primary_key())
                    .col(big_integer(AuditChainHeads::Seq))
                    .col(text(AuditChainHeads::Mac))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditCheckpoints::Table)
                    .col(text(AuditCheckpoints::Chain).primary_key())
                    .col(big_integer(AuditCheckpoints::Seq))
                    .col(text(AuditCheckpoints::Mac))
                    .col(timestamp_with_time_zone(AuditCheckpoints::PurgedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
