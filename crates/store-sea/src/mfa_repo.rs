use async_trait::async_trait;
use audit::AuditRecord;
use kernel::{CompanyId, Timestamp, UserId};
use mfa::{MfaError, MfaRepository, TotpEnrolment};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect,
};
use vault::Sealed;

use crate::entity::{mfa_recovery_code as code, mfa_totp as totp, user};
use crate::{SeaStore, corrupt};

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> MfaError {
    crate::outage(e).map_or_else(MfaError::internal, MfaError::internal)
}

fn to_enrolment(m: totp::Model) -> Result<TotpEnrolment, MfaError> {
    Ok(TotpEnrolment {
        company_id: CompanyId::from_uuid(m.company_id),
        user_id: UserId::from_uuid(m.user_id),
        secret: Sealed::new(m.secret),
        key_id: u32::try_from(m.key_id).map_err(|_| internal(corrupt("mfa_totp", "key_id")))?,
        confirmed_at: m.confirmed_at,
        last_used_step: m
            .last_used_step
            .map(u64::try_from)
            .transpose()
            .map_err(|_| internal(corrupt("mfa_totp", "last_used_step")))?,
        created_at: m.created_at,
    })
}

fn step_value(step: u64) -> Result<i64, MfaError> {
    i64::try_from(step).map_err(|_| MfaError::InvalidCode)
}

fn key_value(key_id: u32) -> Result<i32, MfaError> {
    i32::try_from(key_id).map_err(|_| internal(corrupt("mfa_totp", "key_id")))
}

fn owned_by(company: CompanyId, user: UserId) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(totp::Column::CompanyId.eq(company.as_uuid()))
        .add(totp::Column::UserId.eq(user.as_uuid()))
}

async fn insert_codes<C: ConnectionTrait>(
    conn: &C,
    company: CompanyId,
    user: UserId,
    digests: &[String],
) -> Result<(), MfaError> {
    code::Entity::delete_many()
        .filter(code::Column::CompanyId.eq(company.as_uuid()))
        .filter(code::Column::UserId.eq(user.as_uuid()))
        .exec(conn)
        .await
        .map_err(internal)?;
    if digests.is_empty() {
        return Ok(());
    }
    code::Entity::insert_many(digests.iter().map(|d| code::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        company_id: Set(company.as_uuid()),
        user_id: Set(user.as_uuid()),
        code_digest: Set(d.clone()),
        used_at: Set(None),
    }))
    .exec_without_returning(conn)
    .await
    .map_err(internal)?;
    Ok(())
}

async fn set_user_mfa<C: ConnectionTrait>(
    conn: &C,
    company: CompanyId,
    user_id: UserId,
    enabled: bool,
    at: Timestamp,
) -> Result<(), MfaError> {
    user::Entity::update_many()
        .col_expr(user::Column::MfaEnabled, Expr::value(enabled))
        .col_expr(user::Column::UpdatedAt, Expr::value(at))
        .filter(user::Column::CompanyId.eq(company.as_uuid()))
        .filter(user::Column::Id.eq(user_id.as_uuid()))
        .exec(conn)
        .await
        .map_err(internal)?;
    Ok(())
}

/// Removes the user's TOTP enrolment created after `after` (pending or confirmed) in `conn`'s
/// transaction; when it was confirmed, also the recovery codes and the user's MFA flag (at
/// `at`). `true` when a confirmed factor went. An enrolment from before `after` stays.
pub(crate) async fn remove_factor_enrolled_after<C: ConnectionTrait>(
    conn: &C,
    company: CompanyId,
    user: UserId,
    after: Timestamp,
    at: Timestamp,
) -> Result<bool, MfaError> {
    let Some(found) = totp::Entity::find()
        .filter(owned_by(company, user))
        .filter(totp::Column::CreatedAt.gt(after))
        .one(conn)
        .await
        .map_err(internal)?
    else {
        return Ok(false);
    };
    totp::Entity::delete_many()
        .filter(owned_by(company, user))
        .filter(totp::Column::CreatedAt.gt(after))
        .exec(conn)
        .await
        .map_err(internal)?;
    if found.confirmed_at.is_none() {
        return Ok(false);
    }
    insert_codes(conn, company, user, &[]).await?;
    set_user_mfa(conn, company, user, false, at).await?;
    Ok(true)
}

#[async_trait]
impl MfaRepository for SeaStore {
    async fn enrolment(
        &self,
        company: CompanyId,
        user: UserId,
    ) -> Result<Option<TotpEnrolment>, MfaError> {
        crate::by_key(
            totp::Entity::find().filter(owned_by(company, user)),
            &self.db,
        )
        .await
        .map_err(internal)?
        .map(to_enrolment)
        .transpose()
    }

    async fn save_pending(&self, e: &TotpEnrolment, audit: AuditRecord) -> Result<bool, MfaError> {
        let txn = self.write_txn().await.map_err(internal)?;
        // Only a pending enrolment may be replaced: a confirmed one stays until disabled.
        totp::Entity::delete_many()
            .filter(owned_by(e.company_id, e.user_id))
            .filter(totp::Column::ConfirmedAt.is_null())
            .exec(&txn)
            .await
            .map_err(internal)?;
        let inserted = totp::Entity::insert(totp::ActiveModel {
            user_id: Set(e.user_id.as_uuid()),
            company_id: Set(e.company_id.as_uuid()),
            secret: Set(e.secret.as_str().to_owned()),
            key_id: Set(key_value(e.key_id)?),
            confirmed_at: Set(None),
            last_used_step: Set(None),
            created_at: Set(e.created_at),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(totp::Column::UserId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(internal)?;
        if inserted == 0 {
            return Ok(false);
        }
        self.commit_with_audit_as(txn, vec![audit], crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(true)
    }

    async fn confirm(
        &self,
        company: CompanyId,
        user: UserId,
        secret: &Sealed,
        step: u64,
        at: Timestamp,
        code_digests: &[String],
        audit: AuditRecord,
    ) -> Result<bool, MfaError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let updated = totp::Entity::update_many()
            .col_expr(totp::Column::ConfirmedAt, Expr::value(at))
            .col_expr(totp::Column::LastUsedStep, Expr::value(step_value(step)?))
            .filter(owned_by(company, user))
            .filter(totp::Column::ConfirmedAt.is_null())
            .filter(totp::Column::Secret.eq(secret.as_str()))
            .exec(&txn)
            .await
            .map_err(internal)?;
        if updated.rows_affected != 1 {
            return Ok(false);
        }
        insert_codes(&txn, company, user, code_digests).await?;
        set_user_mfa(&txn, company, user, true, at).await?;
        self.commit_with_audit_as(txn, vec![audit], crate::Changed::Users(&[user]))
            .await
            .map_err(internal)?;
        Ok(true)
    }

    async fn use_step(
        &self,
        company: CompanyId,
        user: UserId,
        step: u64,
    ) -> Result<bool, MfaError> {
        let step = step_value(step)?;
        // One conditional statement: of two requests with the same code, one wins.
        let updated = totp::Entity::update_many()
            .col_expr(totp::Column::LastUsedStep, Expr::value(step))
            .filter(owned_by(company, user))
            .filter(totp::Column::ConfirmedAt.is_not_null())
            .filter(
                totp::Column::LastUsedStep
                    .is_null()
                    .or(totp::Column::LastUsedStep.lt(step)),
            )
            .exec(&self.db)
            .await
            .map_err(internal)?;
        Ok(updated.rows_affected == 1)
    }

    async fn use_recovery_code(
        &self,
        company: CompanyId,
        user: UserId,
        digest: &str,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<bool, MfaError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let updated = code::Entity::update_many()
            .col_expr(code::Column::UsedAt, Expr::value(at))
            .filter(code::Column::CompanyId.eq(company.as_uuid()))
            .filter(code::Column::UserId.eq(user.as_uuid()))
            .filter(code::Column::CodeDigest.eq(digest))
            .filter(code::Column::UsedAt.is_null())
            .exec(&txn)
            .await
            .map_err(internal)?;
        if updated.rows_affected != 1 {
            return Ok(false);
        }
        self.commit_with_audit_as(txn, vec![audit], crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(true)
    }

    async fn recovery_codes_remaining(
        &self,
        company: CompanyId,
        user: UserId,
    ) -> Result<u32, MfaError> {
        let n = code::Entity::find()
            .filter(code::Column::CompanyId.eq(company.as_uuid()))
            .filter(code::Column::UserId.eq(user.as_uuid()))
            .filter(code::Column::UsedAt.is_null())
            .count(&self.db)
            .await
            .map_err(internal)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn replace_recovery_codes(
        &self,
        company: CompanyId,
        user: UserId,
        code_digests: &[String],
        audit: AuditRecord,
    ) -> Result<bool, MfaError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let query = self.for_update(
            totp::Entity::find()
                .filter(owned_by(company, user))
                .filter(totp::Column::ConfirmedAt.is_not_null()),
        );
        if query.one(&txn).await.map_err(internal)?.is_none() {
            return Ok(false);
        }
        insert_codes(&txn, company, user, code_digests).await?;
        self.commit_with_audit_as(txn, vec![audit], crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(true)
    }

    async fn disable(
        &self,
        company: CompanyId,
        user: UserId,
        audit: AuditRecord,
    ) -> Result<bool, MfaError> {
        let at = audit.at;
        let txn = self.write_txn().await.map_err(internal)?;
        let deleted = totp::Entity::delete_many()
            .filter(owned_by(company, user))
            .filter(totp::Column::ConfirmedAt.is_not_null())
            .exec(&txn)
            .await
            .map_err(internal)?;
        if deleted.rows_affected != 1 {
            return Ok(false);
        }
        insert_codes(&txn, company, user, &[]).await?;
        set_user_mfa(&txn, company, user, false, at).await?;
        self.commit_with_audit_as(txn, vec![audit], crate::Changed::Users(&[user]))
            .await
            .map_err(internal)?;
        Ok(true)
    }

    async fn sealed_not_under(
        &self,
        key_id: u32,
        limit: u32,
    ) -> Result<Vec<TotpEnrolment>, MfaError> {
        totp::Entity::find()
            .filter(totp::Column::KeyId.ne(key_value(key_id)?))
            .limit(u64::from(limit))
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(to_enrolment)
            .collect()
    }

    async fn replace_secret(
        &self,
        company: CompanyId,
        user: UserId,
        old: &Sealed,
        new: &Sealed,
        key_id: u32,
    ) -> Result<bool, MfaError> {
        let updated = totp::Entity::update_many()
            .col_expr(totp::Column::Secret, Expr::value(new.as_str()))
            .col_expr(totp::Column::KeyId, Expr::value(key_value(key_id)?))
            .filter(owned_by(company, user))
            .filter(totp::Column::Secret.eq(old.as_str()))
            .exec(&self.db)
            .await
            .map_err(internal)?;
        Ok(updated.rows_affected == 1)
    }

    async fn count_under(&self, key_id: u32) -> Result<u64, MfaError> {
        totp::Entity::find()
            .filter(totp::Column::KeyId.eq(key_value(key_id)?))
            .count(&self.db)
            .await
            .map_err(internal)
    }
}
