use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Companies {
    Table,
    Id,
    Name,
    Rfc,
    SessionLimit,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    CompanyId,
    Email,
    Name,
    Role,
    Active,
    PasswordHash,
    MfaEnabled,
    SessionSeq,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    CompanyId,
    UserId,
    Seq,
    TokenHash,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
    Ip,
    UserAgent,
    RevokedAt,
    RevokedReason,
}

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Key,
    Failures,
    Lockouts,
    LockedUntil,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    CompanyId,
    At,
    ActorId,
    Action,
    Target,
    Outcome,
    Ip,
    UserAgent,
    RequestId,
    Details,
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
                    .table(Companies::Table)
                    .col(pk_uuid(Companies::Id))
                    .col(text(Companies::Name))
                    .col(text_null(Companies::Rfc))
                    .col(small_integer_null(Companies::SessionLimit))
                    .col(timestamp_with_time_zone(Companies::CreatedAt))
                    .col(timestamp_with_time_zone(Companies::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    .col(uuid(Users::CompanyId))
                    .col(text_uniq(Users::Email))
                    .col(text(Users::Name))
                    .col(text(Users::Role))
                    .col(boolean(Users::Active))
                    .col(text(Users::PasswordHash))
                    .col(boolean(Users::MfaEnabled))
                    .col(big_integer(Users::SessionSeq).default(0))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Users::Table, Users::CompanyId)
                            .to(Companies::Table, Companies::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_company")
                    .table(Users::Table)
                    .col(Users::CompanyId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(pk_uuid(Sessions::Id))
                    .col(uuid(Sessions::CompanyId))
                    .col(uuid(Sessions::UserId))
                    .col(big_integer(Sessions::Seq))
                    .col(text_uniq(Sessions::TokenHash))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .col(timestamp_with_time_zone(Sessions::LastSeenAt))
                    .col(timestamp_with_time_zone(Sessions::ExpiresAt))
                    .col(text_null(Sessions::Ip))
                    .col(text_null(Sessions::UserAgent))
                    .col(timestamp_with_time_zone_null(Sessions::RevokedAt))
                    .col(text_null(Sessions::RevokedReason))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sessions::Table, Sessions::CompanyId)
                            .to(Companies::Table, Companies::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_live")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .col(Sessions::RevokedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginThrottle::Table)
                    .col(text(LoginThrottle::Key).primary_key())
                    .col(integer(LoginThrottle::Failures))
                    .col(integer(LoginThrottle::Lockouts))
                    .col(timestamp_with_time_zone_null(LoginThrottle::LockedUntil))
                    .col(timestamp_with_time_zone(LoginThrottle::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(pk_uuid(AuditEvents::Id))
                    .col(uuid_null(AuditEvents::CompanyId))
                    .col(timestamp_with_time_zone(AuditEvents::At))
                    .col(uuid_null(AuditEvents::ActorId))
                    .col(text(AuditEvents::Action))
                    .col(text_null(AuditEvents::Target))
                    .col(text(AuditEvents::Outcome))
                    .col(text_null(AuditEvents::Ip))
                    .col(text_null(AuditEvents::UserAgent))
                    .col(text_null(AuditEvents::RequestId))
                    .col(text(AuditEvents::Details))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_company_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::CompanyId)
                    .col(AuditEvents::At)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
