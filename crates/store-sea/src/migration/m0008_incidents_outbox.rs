use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Incidents {
    Table,
    Id,
    CompanyId,
    Kind,
    Severity,
    Summary,
    Status,
    AffectedUserIds,
    AlertId,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IncidentTimeline {
    Table,
    Id,
    IncidentId,
    CompanyId,
    Seq,
    At,
    ActorId,
    Kind,
    FromStatus,
    ToStatus,
    Recipients,
    Note,
}

#[derive(DeriveIden)]
enum OutboxMessages {
    Table,
    Id,
    CompanyId,
    UserId,
    ToAddress,
    ToName,
    Template,
    Subject,
    Body,
    Cause,
    CreatedAt,
    Attempts,
    NextAttemptAt,
    DeliveredAt,
    GaveUpAt,
    LastError,
}

#[derive(DeriveIden)]
enum OutboxAttempts {
    Table,
    Id,
    MessageId,
    At,
    Outcome,
    Error,
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
                    .table(Incidents::Table)
                    .col(pk_uuid(Incidents::Id))
                    .col(uuid(Incidents::CompanyId))
                    .col(text(Incidents::Kind))
                    .col(text(Incidents::Severity))
                    .col(text(Incidents::Summary))
                    .col(text(Incidents::Status))
                    .col(text(Incidents::AffectedUserIds))
                    .col(uuid_null(Incidents::AlertId))
                    .col(uuid(Incidents::CreatedBy))
                    .col(timestamp_with_time_zone(Incidents::CreatedAt))
                    .col(timestamp_with_time_zone(Incidents::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_incidents_company")
                    .table(Incidents::Table)
                    .col(Incidents::CompanyId)
                    .col(Incidents::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IncidentTimeline::Table)
                    .col(pk_uuid(IncidentTimeline::Id))
                    .col(uuid(IncidentTimeline::IncidentId))
                    .col(uuid(IncidentTimeline::CompanyId))
                    .col(big_integer(IncidentTimeline::Seq))
                    .col(timestamp_with_time_zone(IncidentTimeline::At))
                    .col(uuid(IncidentTimeline::ActorId))
                    .col(text(IncidentTimeline::Kind))
                    .col(text_null(IncidentTimeline::FromStatus))
                    .col(text_null(IncidentTimeline::ToStatus))
                    .col(integer_null(IncidentTimeline::Recipients))
                    .col(text_null(IncidentTimeline::Note))
                    .foreign_key(
                        ForeignKey::create()
                            .from(IncidentTimeline::Table, IncidentTimeline::IncidentId)
                            .to(Incidents::Table, Incidents::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_incident_timeline_order")
                    .table(IncidentTimeline::Table)
                    .col(IncidentTimeline::IncidentId)
                    .col(IncidentTimeline::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // INC-2: messages written with the audit record that causes them.
        manager
            .create_table(
                Table::create()
                    .table(OutboxMessages::Table)
                    .col(pk_uuid(OutboxMessages::Id))
                    .col(uuid(OutboxMessages::CompanyId))
                    .col(uuid(OutboxMessages::UserId))
                    .col(text(OutboxMessages::ToAddress))
                    .col(text(OutboxMessages::ToName))
                    .col(text(OutboxMessages::Template))
                    .col(text(OutboxMessages::Subject))
                    .col(text(OutboxMessages::Body))
                    .col(uuid(OutboxMessages::Cause))
                    .col(timestamp_with_time_zone(OutboxMessages::CreatedAt))
                    .col(integer(OutboxMessages::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(OutboxMessages::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(OutboxMessages::DeliveredAt))
                    .col(timestamp_with_time_zone_null(OutboxMessages::GaveUpAt))
                    .col(text_null(OutboxMessages::LastError))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_due")
                    .table(OutboxMessages::Table)
                    .col(OutboxMessages::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OutboxAttempts::Table)
                    .col(pk_uuid(OutboxAttempts::Id))
                    .col(uuid(OutboxAttempts::MessageId))
                    .col(timestamp_with_time_zone(OutboxAttempts::At))
                    .col(text(OutboxAttempts::Outcome))
                    .col(text_null(OutboxAttempts::Error))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OutboxAttempts::Table, OutboxAttempts::MessageId)
                            .to(OutboxMessages::Table, OutboxMessages::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_attempts_message")
                    .table(OutboxAttempts::Table)
                    .col(OutboxAttempts::MessageId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
