use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MfaTotp {
    Table,
    UserId,
    CompanyId,
    Secret,
    KeyId,
    ConfirmedAt,
    LastUsedStep,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MfaRecoveryCodes {
    Table,
    Id,
    CompanyId,
    UserId,
    CodeDigest,
    UsedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    MfaEnrolmentOnly,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One enrolment per user; the secret only sealed (MFA-4).
        manager
            .create_table(
                Table::create()
                    .table(MfaTotp::Table)
                    .col(pk_uuid(MfaTotp::UserId))
                    .col(uuid(MfaTotp::CompanyId))
                    .col(text(MfaTotp::Secret))
                    .col(integer(MfaTotp::KeyId))
                    .col(timestamp_with_time_zone_null(MfaTotp::ConfirmedAt))
                    .col(big_integer_null(MfaTotp::LastUsedStep))
                    .col(timestamp_with_time_zone(MfaTotp::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(MfaTotp::Table, MfaTotp::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_mfa_totp_key")
                    .table(MfaTotp::Table)
                    .col(MfaTotp::KeyId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaRecoveryCodes::Table)
                    .col(pk_uuid(MfaRecoveryCodes::Id))
                    .col(uuid(MfaRecoveryCodes::CompanyId))
                    .col(uuid(MfaRecoveryCodes::UserId))
                    .col(text(MfaRecoveryCodes::CodeDigest))
                    .col(timestamp_with_time_zone_null(MfaRecoveryCodes::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(MfaRecoveryCodes::Table, MfaRecoveryCodes::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_mfa_recovery_codes_user")
                    .table(MfaRecoveryCodes::Table)
                    .col(MfaRecoveryCodes::UserId)
                    .col(MfaRecoveryCodes::CodeDigest)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // MFA-2: a session opened by an Owner or Admin who must enrol first.
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(
                        boolean(Sessions::MfaEnrolmentOnly)
                            .default(false)
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
