use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ScheduledJobs {
    Table,
    Name,
    LastRun,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // BAK-2: which day a daily job last ran, claimed by compare-and-set so that of several
        // servers sharing the database exactly one runs it.
        manager
            .create_table(
                Table::create()
                    .table(ScheduledJobs::Table)
                    .col(text(ScheduledJobs::Name).primary_key())
                    .col(text(ScheduledJobs::LastRun))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
