use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditAlerts {
    Table,
    Id,
    Chain,
    CompanyId,
    At,
    Rule,
    Severity,
    Summary,
    Subject,
    Status,
    RecordId,
}

#[derive(DeriveIden)]
enum AuditReviewCursors {
    Table,
    Chain,
    Seq,
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
                    .table(AuditAlerts::Table)
                    .col(pk_uuid(AuditAlerts::Id))
                    .col(text(AuditAlerts::Chain))
                    .col(uuid_null(AuditAlerts::CompanyId))
                    .col(timestamp_with_time_zone(AuditAlerts::At))
                    .col(text(AuditAlerts::Rule))
                    .col(text(AuditAlerts::Severity))
                    .col(text(AuditAlerts::Summary))
                    .col(text(AuditAlerts::Subject))
                    .col(text(AuditAlerts::Status))
                    .col(uuid(AuditAlerts::RecordId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_alerts_rule")
                    .table(AuditAlerts::Table)
                    .col(AuditAlerts::Chain)
                    .col(AuditAlerts::Rule)
                    .col(AuditAlerts::Subject)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditReviewCursors::Table)
                    .col(text(AuditReviewCursors::Chain).primary_key())
                    .col(big_integer(AuditReviewCursors::Seq))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
