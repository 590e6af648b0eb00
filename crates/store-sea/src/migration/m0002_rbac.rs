use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    PermissionGrants,
    PermissionRevokes,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    ReauthenticatedAt,
}

#[derive(DeriveIden)]
enum OwnershipTransfers {
    Table,
    Id,
    CompanyId,
    FromUserId,
    ToUserId,
    Status,
    CreatedAt,
    ExpiresAt,
    ClosedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(text(Users::PermissionGrants).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(text(Users::PermissionRevokes).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(timestamp_with_time_zone_null(Sessions::ReauthenticatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OwnershipTransfers::Table)
                    .col(pk_uuid(OwnershipTransfers::Id))
                    .col(uuid(OwnershipTransfers::CompanyId))
                    .col(uuid(OwnershipTransfers::FromUserId))
                    .col(uuid(OwnershipTransfers::ToUserId))
                    .col(text(OwnershipTransfers::Status))
                    .col(timestamp_with_time_zone(OwnershipTransfers::CreatedAt))
                    .col(timestamp_with_time_zone(OwnershipTransfers::ExpiresAt))
                    .col(timestamp_with_time_zone_null(OwnershipTransfers::ClosedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // RBAC-4 in the schema itself: at most one Owner and one pending transfer per company.
        // Partial unique indexes have the same syntax on SQLite and PostgreSQL.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX uq_users_one_owner ON users (company_id) WHERE role = 'owner'",
        )
        .await?;
        db.execute_unprepared("CREATE UNIQUE INDEX uq_transfers_one_pending ON ownership_transfers (company_id) WHERE status = 'pending'").await?;
        Ok(())
    }
}
