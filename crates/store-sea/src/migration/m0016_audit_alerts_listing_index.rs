use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// AUD-7: `GET /v1/audit/alerts` pages a company's alerts newest first (ties by id) from a
/// cursor. Without an index every page read every company's alerts and sorted the company's;
/// with it a page is one range scan, however many alerts the platform holds.
const CREATE: &str = "CREATE INDEX idx_audit_alerts_listing ON audit_alerts (company_id, at, id)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(CREATE).await?;
        Ok(())
    }
}
