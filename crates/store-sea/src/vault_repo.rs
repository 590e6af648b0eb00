use async_trait::async_trait;
use audit::AuditRecord;
use kernel::{CompanyId, Timestamp, UserId};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DerivePartialModel, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr,
};
use vault::{
    CertificateInfo, CredentialId, CredentialKind, CredentialRepository, ExpiryCandidate,
    FiscalCredential, Sealed, SealedCredential, VaultError,
};

use crate::entity::fiscal_credential as row;
use crate::{SeaStore, corrupt};

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> VaultError {
    crate::outage(e).map_or_else(VaultError::internal, VaultError::internal)
}

/// A credential's row without its envelopes: what lists, views, deletions and the expiry pass
/// read (the three envelopes are several KiB a row and only signing and re-wrapping open them).
#[derive(Debug, DerivePartialModel)]
#[sea_orm(entity = "row::Entity")]
struct Meta {
    id: uuid::Uuid,
    company_id: uuid::Uuid,
    kind: String,
    rfc: String,
    representative_rfc: Option<String>,
    curp: Option<String>,
    legal_name: String,
    certificate_number: String,
    issuer: String,
    valid_from: Timestamp,
    valid_to: Timestamp,
    created_by: uuid::Uuid,
    created_at: Timestamp,
    expiry_notice: Option<i32>,
}

impl Meta {
    fn credential(self) -> Result<FiscalCredential, VaultError> {
        Ok(FiscalCredential {
            id: self.id,
            company_id: CompanyId::from_uuid(self.company_id),
            info: CertificateInfo {
                kind: CredentialKind::parse(&self.kind)
                    .ok_or_else(|| internal(corrupt("fiscal_credentials", "kind")))?,
                rfc: self.rfc,
                representative_rfc: self.representative_rfc,
                curp: self.curp,
                legal_name: self.legal_name,
                certificate_number: self.certificate_number,
                issuer: self.issuer,
                valid_from: self.valid_from,
                valid_to: self.valid_to,
            },
            created_by: UserId::from_uuid(self.created_by),
            created_at: self.created_at,
        })
    }
}

fn to_sealed(m: row::Model) -> Result<SealedCredential, VaultError> {
    let meta = Meta {
        id: m.id,
        company_id: m.company_id,
        kind: m.kind,
        rfc: m.rfc,
        representative_rfc: m.representative_rfc,
        curp: m.curp,
        legal_name: m.legal_name,
        certificate_number: m.certificate_number,
        issuer: m.issuer,
        valid_from: m.valid_from,
        valid_to: m.valid_to,
        created_by: m.created_by,
        created_at: m.created_at,
        expiry_notice: m.expiry_notice,
    };
    Ok(SealedCredential {
        credential: meta.credential()?,
        key_id: u32::try_from(m.key_id)
            .map_err(|_| internal(corrupt("fiscal_credentials", "key_id")))?,
        certificate: Sealed::new(m.certificate),
        private_key: Sealed::new(m.private_key),
        password: Sealed::new(m.password),
    })
}

/// One page of a pass over every company's credentials: `query`'s rows after `after` by id, at
/// most `limit` (re-wrapping, expiry notices).
fn id_page(
    query: sea_orm::Select<row::Entity>,
    after: Option<CredentialId>,
    limit: u64,
) -> sea_orm::Select<row::Entity> {
    let query = match after {
        Some(after) => query.filter(row::Column::Id.gt(after)),
        None => query,
    };
    query.order_by_asc(row::Column::Id).limit(limit)
}

impl SeaStore {
    /// Stored credentials of every company, for the metrics gauges: how many are valid for fewer
    /// than `soon_days` more days at `now`, and how many have expired (they cannot sign). Two
    /// range counts on the `valid_to` index (m0017).
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn credentials_by_expiry(
        &self,
        now: Timestamp,
        soon_days: u16,
    ) -> Result<(u64, u64), sea_orm::DbErr> {
        let soon = now + chrono::Duration::days(i64::from(soon_days));
        let expiring = row::Entity::find()
            .filter(row::Column::ValidTo.gt(now))
            .filter(row::Column::ValidTo.lt(soon))
            .count(&self.db)
            .await?;
        let expired = row::Entity::find()
            .filter(row::Column::ValidTo.lte(now))
            .count(&self.db)
            .await?;
        Ok((expiring, expired))
    }
}

#[async_trait]
impl CredentialRepository for SeaStore {
    async fn insert(
        &self,
        c: &SealedCredential,
        max: u64,
        audit: Vec<AuditRecord>,
    ) -> Result<(), VaultError> {
        use sea_orm::PaginatorTrait as _;
        let info = &c.credential.info;
        let model = row::ActiveModel {
            id: Set(c.credential.id),
            company_id: Set(c.credential.company_id.as_uuid()),
            kind: Set(info.kind.as_str().to_owned()),
            rfc: Set(info.rfc.clone()),
            representative_rfc: Set(info.representative_rfc.clone()),
            curp: Set(info.curp.clone()),
            legal_name: Set(info.legal_name.clone()),
            certificate_number: Set(info.certificate_number.clone()),
            issuer: Set(info.issuer.clone()),
            valid_from: Set(info.valid_from),
            valid_to: Set(info.valid_to),
            created_by: Set(c.credential.created_by.as_uuid()),
            created_at: Set(c.credential.created_at),
            key_id: Set(i64::from(c.key_id)),
            certificate: Set(c.certificate.as_str().to_owned()),
            private_key: Set(c.private_key.as_str().to_owned()),
            password: Set(c.password.as_str().to_owned()),
            expiry_notice: Set(None),
        };
        let txn = self.write_txn().await.map_err(internal)?;
        // The bound, counted under the company's row lock on PostgreSQL (SQLite's write
        // transaction already excludes every other writer): concurrent uploads count in turn.
        let company = c.credential.company_id.as_uuid();
        self.for_update(crate::entity::company::Entity::find_by_id(company))
            .one(&txn)
            .await
            .map_err(internal)?;
        let stored = row::Entity::find()
            .filter(row::Column::CompanyId.eq(company))
            .count(&txn)
            .await
            .map_err(internal)?;
        if stored >= max {
            return Err(VaultError::LimitReached { max });
        }
        row::Entity::insert(model)
            .exec_without_returning(&txn)
            .await
            .map_err(|e| match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => VaultError::Duplicate,
                _ => internal(e),
            })?;
        self.commit_with_audit_as(txn, audit, crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)
    }

    async fn list(&self, company: CompanyId) -> Result<Vec<FiscalCredential>, VaultError> {
        row::Entity::find()
            .filter(row::Column::CompanyId.eq(company.as_uuid()))
            .order_by_desc(row::Column::CreatedAt)
            .order_by_desc(row::Column::Id)
            .into_partial_model::<Meta>()
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(Meta::credential)
            .collect()
    }

    async fn count(&self, company: CompanyId) -> Result<u64, VaultError> {
        use sea_orm::PaginatorTrait as _;
        row::Entity::find()
            .filter(row::Column::CompanyId.eq(company.as_uuid()))
            .count(&self.db)
            .await
            .map_err(internal)
    }

    async fn credential(
        &self,
        company: CompanyId,
        id: CredentialId,
    ) -> Result<Option<FiscalCredential>, VaultError> {
        let mut rows = row::Entity::find_by_id(id)
            .filter(row::Column::CompanyId.eq(company.as_uuid()))
            .into_partial_model::<Meta>()
            .all(&self.db)
            .await
            .map_err(internal)?;
        if rows.len() > 1 {
            return Err(internal(corrupt("fiscal_credentials", "id")));
        }
        rows.pop().map(Meta::credential).transpose()
    }

    async fn sealed(
        &self,
        company: CompanyId,
        id: CredentialId,
    ) -> Result<Option<SealedCredential>, VaultError> {
        crate::by_key(
            row::Entity::find_by_id(id).filter(row::Column::CompanyId.eq(company.as_uuid())),
            &self.db,
        )
        .await
        .map_err(internal)?
        .map(to_sealed)
        .transpose()
    }

    async fn delete(
        &self,
        company: CompanyId,
        id: CredentialId,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, VaultError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let deleted = row::Entity::delete_many()
            .filter(row::Column::Id.eq(id))
            .filter(row::Column::CompanyId.eq(company.as_uuid()))
            .exec(&txn)
            .await
            .map_err(internal)?;
        if deleted.rows_affected != 1 {
            return Ok(false);
        }
        self.commit_with_audit_as(txn, audit, crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(true)
    }

    async fn sealed_not_under(
        &self,
        current: u32,
        after: Option<CredentialId>,
        limit: u64,
    ) -> Result<Vec<SealedCredential>, VaultError> {
        id_page(
            row::Entity::find().filter(row::Column::KeyId.ne(i64::from(current))),
            after,
            limit,
        )
        .all(&self.db)
        .await
        .map_err(internal)?
        .into_iter()
        .map(to_sealed)
        .collect()
    }

    async fn replace_envelopes(
        &self,
        c: &SealedCredential,
        old_key_id: u32,
    ) -> Result<bool, VaultError> {
        let updated = row::Entity::update_many()
            .col_expr(
                row::Column::Certificate,
                Expr::value(c.certificate.as_str()),
            )
            .col_expr(row::Column::PrivateKey, Expr::value(c.private_key.as_str()))
            .col_expr(row::Column::Password, Expr::value(c.password.as_str()))
            .col_expr(row::Column::KeyId, Expr::value(i64::from(c.key_id)))
            .filter(row::Column::Id.eq(c.credential.id))
            .filter(row::Column::KeyId.eq(i64::from(old_key_id)))
            .exec(&self.db)
            .await
            .map_err(internal)?;
        Ok(updated.rows_affected == 1)
    }

    async fn count_under(&self, key_id: u32) -> Result<u64, VaultError> {
        row::Entity::find()
            .filter(row::Column::KeyId.eq(i64::from(key_id)))
            .count(&self.db)
            .await
            .map_err(internal)
    }

    async fn expiry_candidates(
        &self,
        expired_after: Timestamp,
        expiring_before: Timestamp,
        after: Option<CredentialId>,
        limit: u64,
    ) -> Result<Vec<ExpiryCandidate>, VaultError> {
        let window = row::Entity::find()
            .filter(row::Column::ValidTo.gt(expired_after))
            .filter(row::Column::ValidTo.lt(expiring_before))
            .filter(
                row::Column::ExpiryNotice
                    .is_null()
                    .or(row::Column::ExpiryNotice.gt(0)),
            );
        id_page(window, after, limit)
            .into_partial_model::<Meta>()
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|m| {
                let noticed = m
                    .expiry_notice
                    .map(|stage| {
                        u16::try_from(stage)
                            .map_err(|_| internal(corrupt("fiscal_credentials", "expiry_notice")))
                    })
                    .transpose()?;
                Ok(ExpiryCandidate {
                    credential: m.credential()?,
                    noticed,
                })
            })
            .collect()
    }

    async fn record_expiry_notice(
        &self,
        company: CompanyId,
        id: CredentialId,
        stage: u16,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, VaultError> {
        let txn = self.write_txn().await.map_err(internal)?;
        // Compare-and-set: only a later stage than the one recorded moves it, so of two
        // processes noticing the same stage one updates a row and the other none.
        let updated = row::Entity::update_many()
            .col_expr(row::Column::ExpiryNotice, Expr::value(i32::from(stage)))
            .filter(row::Column::Id.eq(id))
            .filter(row::Column::CompanyId.eq(company.as_uuid()))
            .filter(
                row::Column::ExpiryNotice
                    .is_null()
                    .or(row::Column::ExpiryNotice.gt(i32::from(stage))),
            )
            .exec(&txn)
            .await
            .map_err(internal)?;
        if updated.rows_affected != 1 {
            return Ok(false);
        }
        self.commit_with_audit_as(txn, audit, crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(true)
    }

    async fn record_use(&self, audit: AuditRecord, _at: Timestamp) -> Result<(), VaultError> {
        // Chain appends always run in a write transaction: the head update must be atomic.
        let txn = self.write_txn().await.map_err(internal)?;
        self.commit_with_audit_as(txn, vec![audit], crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)
    }
}
