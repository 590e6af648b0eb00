use accounts::{AccountsError, OwnershipRepository, OwnershipTransfer, TransferStatus};
use async_trait::async_trait;
use audit::AuditRecord;
use kernel::{CompanyId, Timestamp, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, SqlErr};
use uuid::Uuid;

use crate::entity::{ownership_transfer as transfer, user};
use crate::{SeaStore, corrupt};

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> AccountsError {
    crate::outage(e).map_or_else(AccountsError::internal, AccountsError::internal)
}

fn to_transfer(m: transfer::Model) -> Result<OwnershipTransfer, AccountsError> {
    Ok(OwnershipTransfer {
        id: m.id,
        company_id: CompanyId::from_uuid(m.company_id),
        from_user_id: UserId::from_uuid(m.from_user_id),
        to_user_id: UserId::from_uuid(m.to_user_id),
        status: TransferStatus::parse(&m.status)
            .ok_or_else(|| internal(corrupt("ownership_transfers", "status")))?,
        created_at: m.created_at,
        expires_at: m.expires_at,
        closed_at: m.closed_at,
    })
}

fn conflict(code: &'static str, message: &'static str) -> AccountsError {
    AccountsError::Conflict { code, message }
}

#[async_trait]
impl OwnershipRepository for SeaStore {
    async fn create_transfer(
        &self,
        t: &OwnershipTransfer,
        audit: Vec<AuditRecord>,
    ) -> Result<(), AccountsError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let row = transfer::ActiveModel {
            id: Set(t.id),
            company_id: Set(t.company_id.as_uuid()),
            from_user_id: Set(t.from_user_id.as_uuid()),
            to_user_id: Set(t.to_user_id.as_uuid()),
            status: Set(t.status.as_str().to_owned()),
            created_at: Set(t.created_at),
            expires_at: Set(t.expires_at),
            closed_at: Set(t.closed_at),
        };
        transfer::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(|e: DbErr| match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => conflict(
                    "transfer_pending",
                    "an ownership transfer is already pending; cancel it first",
                ),
                _ => internal(e),
            })?;
        self.commit_with_audit_as(txn, audit, crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)
    }

    async fn transfer(
        &self,
        company: CompanyId,
        id: Uuid,
    ) -> Result<Option<OwnershipTransfer>, AccountsError> {
        crate::by_key(
            transfer::Entity::find_by_id(id)
                .filter(transfer::Column::CompanyId.eq(company.as_uuid())),
            &self.db,
        )
        .await
        .map_err(internal)?
        .map(to_transfer)
        .transpose()
    }

    async fn complete_transfer(
        &self,
        t: &OwnershipTransfer,
        at: Timestamp,
        audit: Vec<AuditRecord>,
    ) -> Result<(), AccountsError> {
        // Dropping the transaction on any early return rolls everything back.
        let txn = self.write_txn().await.map_err(internal)?;
        // Claim the transfer first: on PostgreSQL this row lock makes a concurrent accept wait and
        // then find it no longer pending.
        let claimed = transfer::Entity::update_many()
            .col_expr(
                transfer::Column::Status,
                Expr::value(TransferStatus::Completed.as_str()),
            )
            .col_expr(transfer::Column::ClosedAt, Expr::value(at))
            .filter(transfer::Column::Id.eq(t.id))
            .filter(transfer::Column::CompanyId.eq(t.company_id.as_uuid()))
            .filter(transfer::Column::Status.eq(TransferStatus::Pending.as_str()))
            .exec(&txn)
            .await
            .map_err(internal)?;
        if claimed.rows_affected != 1 {
            return Err(conflict(
                "transfer_not_pending",
                "the transfer is no longer pending",
            ));
        }
        // Demote first, then promote: the unique index on (company) for owners holds throughout.
        let demoted = user::Entity::update_many()
            .col_expr(user::Column::Role, Expr::value(rbac::Role::Admin.as_str()))
            .col_expr(user::Column::UpdatedAt, Expr::value(at))
            .filter(user::Column::Id.eq(t.from_user_id.as_uuid()))
            .filter(user::Column::CompanyId.eq(t.company_id.as_uuid()))
            .filter(user::Column::Role.eq(rbac::Role::Owner.as_str()))
            .exec(&txn)
            .await
            .map_err(internal)?;
        if demoted.rows_affected != 1 {
            return Err(conflict(
                "transfer_not_pending",
                "the user who started the transfer is no longer the owner",
            ));
        }
        let promoted = user::Entity::update_many()
            .col_expr(user::Column::Role, Expr::value(rbac::Role::Owner.as_str()))
            .col_expr(user::Column::UpdatedAt, Expr::value(at))
            .filter(user::Column::Id.eq(t.to_user_id.as_uuid()))
            .filter(user::Column::CompanyId.eq(t.company_id.as_uuid()))
            .filter(user::Column::Active.eq(true))
            .exec(&txn)
            .await
            .map_err(internal)?;
        if promoted.rows_affected != 1 {
            return Err(conflict(
                "user_inactive",
                "the receiving user is deactivated",
            ));
        }
        self.commit_with_audit_as(
            txn,
            audit,
            crate::Changed::Users(&[t.from_user_id, t.to_user_id]),
        )
        .await
        .map_err(internal)
    }

    async fn close_transfer(
        &self,
        company: CompanyId,
        id: Uuid,
        status: TransferStatus,
        at: Timestamp,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, AccountsError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let closed = transfer::Entity::update_many()
            .col_expr(transfer::Column::Status, Expr::value(status.as_str()))
            .col_expr(transfer::Column::ClosedAt, Expr::value(at))
            .filter(transfer::Column::Id.eq(id))
            .filter(transfer::Column::CompanyId.eq(company.as_uuid()))
            .filter(transfer::Column::Status.eq(TransferStatus::Pending.as_str()))
            .exec(&txn)
            .await
            .map_err(internal)?;
        if closed.rows_affected != 1 {
            return Ok(false);
        }
        self.commit_with_audit_as(txn, audit, crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(true)
    }
}
