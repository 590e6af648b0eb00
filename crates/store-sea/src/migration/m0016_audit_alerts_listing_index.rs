use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// AUD-7: `GET /v1/audit/alerts` pages a company's alerts newest first (ties by id) from a
/// cursor. Without an index every page read every company's alerts and sorted the company's;
/// with it a page is one range scan, however many alerts the platform holds.
/// On PostgreSQL the migration leaves it to `build_online_indexes` ([`super::OnlineIndex`]).
pub(crate) const INDEX: super::OnlineIndex = super::OnlineIndex {
    name: "idx_audit_alerts_listing",
    definition: |_| "idx_audit_alerts_listing ON audit_alerts (company_id, at, id)".to_owned(),
};

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::create_online_index(manager, &INDEX).await
    }
}
