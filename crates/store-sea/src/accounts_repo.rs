use accounts::{
    AccountRepository, AccountsError, Company, CompanyName, CompanyProfile, CompanyUpdate,
    ConfigChange, DecideCompanyUpdate, Email, EmailChange, EmailChangeRepository, EmailRevert,
    FactorRemoval, PasswordHash, PasswordReset, PasswordResetRepository, PersonName, Rfc,
    SessionRevocation, User, UserField,
};
use async_trait::async_trait;
use audit::AuditRecord;
use kernel::{CompanyId, SessionId, Timestamp, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, SqlErr,
};

use crate::entity::{company, company_change, session, user};
use crate::{SeaStore, corrupt};

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> AccountsError {
    crate::outage(e).map_or_else(AccountsError::internal, AccountsError::internal)
}

fn insert_error(e: DbErr) -> AccountsError {
    match e.sql_err() {
        // SQLite names the column (users.email), PostgreSQL the constraint (users_email_key).
        Some(SqlErr::UniqueConstraintViolation(msg)) if msg.contains("email") => {
            AccountsError::EmailTaken
        }
        _ => internal(e),
    }
}

pub(crate) fn to_user(m: user::Model) -> Result<User, AccountsError> {
    Ok(User {
        id: UserId::from_uuid(m.id),
        company_id: CompanyId::from_uuid(m.company_id),
        email: Email::parse(&m.email).map_err(|_| internal(corrupt("users", "email")))?,
        name: PersonName::parse(&m.name, "name").map_err(|_| internal(corrupt("users", "name")))?,
        role: m
            .role
            .parse()
            .map_err(|_| internal(corrupt("users", "role")))?,
        active: m.active,
        password_hash: PasswordHash::new(m.password_hash),
        mfa_enabled: m.mfa_enabled,
        grants: permission_set(&m.permission_grants),
        revokes: permission_set(&m.permission_revokes),
        created_at: m.created_at,
        updated_at: m.updated_at,
        password_change_required: m.password_change_required == Some(true),
    })
}

/// Parses stored permission names. Names this version does not know are ignored, which fails
/// closed: an unknown grant gives nothing, and an unknown revocation concerns nothing that exists.
fn permission_set(names: &str) -> rbac::PermissionSet {
    names
        .split(',')
        .filter_map(|n| n.trim().parse::<rbac::Permission>().ok())
        .collect()
}

fn permission_names(set: rbac::PermissionSet) -> String {
    set.names().join(",")
}

pub(crate) fn to_company(m: company::Model) -> Result<Company, AccountsError> {
    Ok(Company {
        id: CompanyId::from_uuid(m.id),
        name: CompanyName::parse(&m.name).map_err(|_| internal(corrupt("companies", "name")))?,
        rfc: m
            .rfc
            .map(|r| Rfc::parse(&r))
            .transpose()
            .map_err(|_| internal(corrupt("companies", "rfc")))?,
        session_limit: m
            .session_limit
            .map(u16::try_from)
            .transpose()
            .map_err(|_| internal(corrupt("companies", "session_limit")))?,
        profile: CompanyProfile {
            legal_name: m.legal_name,
            tax_regime: m.tax_regime,
            postal_code: m.postal_code,
            mfa_required: m.mfa_required,
            mfa_grace_until: m.mfa_grace_until,
        },
        created_at: m.created_at,
    })
}

fn user_row(u: &User) -> user::ActiveModel {
    user::ActiveModel {
        id: Set(u.id.as_uuid()),
        company_id: Set(u.company_id.as_uuid()),
        email: Set(u.email.as_str().to_owned()),
        name: Set(u.name.as_str().to_owned()),
        role: Set(u.role.as_str().to_owned()),
        active: Set(u.active),
        password_hash: Set(u.password_hash.as_str().to_owned()),
        mfa_enabled: Set(u.mfa_enabled),
        permission_grants: Set(permission_names(u.grants)),
        permission_revokes: Set(permission_names(u.revokes)),
        session_seq: Set(0),
        created_at: Set(u.created_at),
        updated_at: Set(u.updated_at),
        password_change_required: Set(u.password_change_required.then_some(true)),
        password_reset_id: Set(None),
        password_reset_expires_at: Set(None),
        email_change_id: Set(None),
        email_change_to: Set(None),
        email_change_expires_at: Set(None),
        email_revert_id: Set(None),
        email_revert_to: Set(None),
        email_revert_expires_at: Set(None),
    }
}

/// Revokes the user's live sessions (except `keep`) on `conn` and writes one audit record each.
/// Shared by deactivation, password change and the session cap.
pub(crate) async fn revoke_sessions<C: ConnectionTrait>(
    conn: &C,
    company: CompanyId,
    user: UserId,
    ids: &[SessionId],
    revocation: &SessionRevocation,
) -> Result<Vec<audit::AuditRecord>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(revocation.at))
        .col_expr(
            session::Column::RevokedReason,
            Expr::value(revocation.reason.as_str()),
        )
        .filter(session::Column::CompanyId.eq(company.as_uuid()))
        .filter(session::Column::UserId.eq(user.as_uuid()))
        .filter(session::Column::Id.is_in(ids.iter().map(SessionId::as_uuid)))
        .filter(session::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(ids.iter().map(|id| revocation.record_for(*id)).collect())
}

/// The ids of the user's sessions that are not revoked and not past their absolute expiry.
async fn live_session_ids<C: ConnectionTrait>(
    conn: &C,
    company: CompanyId,
    user: UserId,
    at: kernel::Timestamp,
) -> Result<Vec<SessionId>, DbErr> {
    let rows = session::Entity::find()
        .filter(session::Column::CompanyId.eq(company.as_uuid()))
        .filter(session::Column::UserId.eq(user.as_uuid()))
        .filter(session::Column::RevokedAt.is_null())
        .order_by_asc(session::Column::Seq)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|s| s.expires_at > at)
        .map(|s| SessionId::from_uuid(s.id))
        .collect())
}

#[async_trait]
impl AccountRepository for SeaStore {
    async fn create_company_with_owner(
        &self,
        company: &Company,
        owner: &User,
        audit: Vec<AuditRecord>,
    ) -> Result<(), AccountsError> {
        let txn = self.write_txn().await.map_err(internal)?;
        company::Entity::insert(company::ActiveModel {
            id: Set(company.id.as_uuid()),
            name: Set(company.name.as_str().to_owned()),
            rfc: Set(company.rfc.as_ref().map(|r| r.as_str().to_owned())),
            session_limit: Set(company.session_limit.and_then(|l| i16::try_from(l).ok())),
            legal_name: Set(company.profile.legal_name.clone()),
            tax_regime: Set(company.profile.tax_regime.clone()),
            postal_code: Set(company.profile.postal_code.clone()),
            mfa_required: Set(company.profile.mfa_required),
            mfa_grace_until: Set(company.profile.mfa_grace_until),
            created_at: Set(company.created_at),
            updated_at: Set(company.created_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(internal)?;
        user::Entity::insert(user_row(owner))
            .exec_without_returning(&txn)
            .await
            .map_err(insert_error)?;
        refuse_reserved(&txn, &owner.email, owner.id, owner.created_at).await?;
        self.commit_with_audit_as(txn, audit, crate::Changed::Users(&[owner.id]))
            .await
            .map_err(internal)
    }

    async fn insert_user(&self, user: &User, audit: Vec<AuditRecord>) -> Result<(), AccountsError> {
        let txn = self.write_txn().await.map_err(internal)?;
        user::Entity::insert(user_row(user))
            .exec_without_returning(&txn)
            .await
            .map_err(insert_error)?;
        refuse_reserved(&txn, &user.email, user.id, user.created_at).await?;
        self.commit_with_audit_as(txn, audit, crate::Changed::Users(&[user.id]))
            .await
            .map_err(internal)
    }

    async fn company(&self, id: CompanyId) -> Result<Option<Company>, AccountsError> {
        crate::by_key(company::Entity::find_by_id(id.as_uuid()), &self.db)
            .await
            .map_err(internal)?
            .map(to_company)
            .transpose()
    }

    async fn update_company(
        &self,
        id: CompanyId,
        decide: DecideCompanyUpdate,
    ) -> Result<Company, AccountsError> {
        // Dropping the transaction on any early return (a refusal included) rolls it back.
        let txn = self.write_txn().await.map_err(internal)?;
        let stored = self
            .for_update(company::Entity::find_by_id(id.as_uuid()))
            .one(&txn)
            .await
            .map_err(internal)?
            .ok_or(AccountsError::NotFound)?;
        let current = to_company(stored)?;
        let Some(CompanyUpdate {
            company: c,
            changes,
            audit,
        }) = decide(&current)?
        else {
            return Ok(current);
        };
        let updated = company::Entity::update_many()
            .col_expr(company::Column::Name, Expr::value(c.name.as_str()))
            .col_expr(
                company::Column::Rfc,
                Expr::value(c.rfc.as_ref().map(|r| r.as_str().to_owned())),
            )
            .col_expr(
                company::Column::SessionLimit,
                Expr::value(c.session_limit.and_then(|l| i16::try_from(l).ok())),
            )
            .col_expr(
                company::Column::LegalName,
                Expr::value(c.profile.legal_name.clone()),
            )
            .col_expr(
                company::Column::TaxRegime,
                Expr::value(c.profile.tax_regime.clone()),
            )
            .col_expr(
                company::Column::PostalCode,
                Expr::value(c.profile.postal_code.clone()),
            )
            .col_expr(
                company::Column::MfaRequired,
                Expr::value(c.profile.mfa_required),
            )
            .col_expr(
                company::Column::MfaGraceUntil,
                Expr::value(c.profile.mfa_grace_until),
            )
            .col_expr(
                company::Column::UpdatedAt,
                Expr::value(changes.first().map_or(c.created_at, |ch| ch.at)),
            )
            .filter(company::Column::Id.eq(id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(internal)?;
        if updated.rows_affected != 1 {
            return Err(AccountsError::NotFound);
        }
        if !changes.is_empty() {
            let rows = changes.into_iter().map(|ch| company_change::ActiveModel {
                id: Set(ch.id),
                company_id: Set(id.as_uuid()),
                at: Set(ch.at),
                actor_id: Set(ch.actor_id.as_uuid()),
                field: Set(ch.field),
                old_value: Set(ch.old_value),
                new_value: Set(ch.new_value),
            });
            company_change::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await
                .map_err(internal)?;
        }
        self.commit_with_audit_as(txn, audit, crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(c)
    }

    async fn company_changes(
        &self,
        company_id: CompanyId,
        before: Option<uuid::Uuid>,
        limit: u64,
    ) -> Result<Vec<ConfigChange>, AccountsError> {
        use sea_orm::QuerySelect;
        let mut q = company_change::Entity::find()
            .filter(company_change::Column::CompanyId.eq(company_id.as_uuid()));
        if let Some(before) = before {
            q = q.filter(company_change::Column::Id.lt(before));
        }
        Ok(q.order_by_desc(company_change::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|m| ConfigChange {
                id: m.id,
                at: m.at,
                actor_id: UserId::from_uuid(m.actor_id),
                field: m.field,
                old_value: m.old_value,
                new_value: m.new_value,
            })
            .collect())
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, AccountsError> {
        crate::by_key(
            user::Entity::find().filter(user::Column::Email.eq(email.as_str())),
            &self.db,
        )
        .await
        .map_err(internal)?
        .map(to_user)
        .transpose()
    }

    async fn user(&self, company: CompanyId, id: UserId) -> Result<Option<User>, AccountsError> {
        crate::by_key(
            user::Entity::find_by_id(id.as_uuid())
                .filter(user::Column::CompanyId.eq(company.as_uuid())),
            &self.db,
        )
        .await
        .map_err(internal)?
        .map(to_user)
        .transpose()
    }

    async fn users(
        &self,
        company: CompanyId,
        after: Option<kernel::TimeCursor>,
        limit: u64,
    ) -> Result<Vec<User>, AccountsError> {
        use sea_orm::QuerySelect as _;
        crate::time_keyset(
            user::Entity::find().filter(user::Column::CompanyId.eq(company.as_uuid())),
            user::Column::CreatedAt,
            user::Column::Id,
            after,
            crate::TimeOrder::OldestFirst,
        )
        .limit(limit)
        .all(&self.db)
        .await
        .map_err(internal)?
        .into_iter()
        .map(to_user)
        .collect()
    }

    async fn rehash_password(
        &self,
        user: &User,
        old: &PasswordHash,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, AccountsError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let result = in_row(user)
            .col_expr(
                user::Column::PasswordHash,
                Expr::value(user.password_hash.as_str()),
            )
            .col_expr(user::Column::UpdatedAt, Expr::value(user.updated_at))
            .filter(user::Column::PasswordHash.eq(old.as_str()))
            .exec(&txn)
            .await
            .map_err(internal)?;
        if result.rows_affected == 0 {
            return Ok(false);
        }
        self.commit_with_audit_as(txn, audit, crate::Changed::Users(&[user.id]))
            .await
            .map_err(internal)?;
        Ok(true)
    }

    async fn update_user(
        &self,
        before: &User,
        user: &User,
        fields: &[UserField],
        revoke: Option<SessionRevocation>,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, AccountsError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let stored = self
            .for_update(
                user::Entity::find_by_id(user.id.as_uuid())
                    .filter(user::Column::CompanyId.eq(user.company_id.as_uuid())),
            )
            .one(&txn)
            .await
            .map_err(internal)?
            .ok_or(AccountsError::NotFound)?;
        if !UserField::unchanged_since(before, &to_user(stored)?, fields) {
            return Err(AccountsError::Stale);
        }
        let result = user_update(user, fields)
            .exec(&txn)
            .await
            .map_err(internal)?;
        if result.rows_affected == 0 {
            return Err(AccountsError::NotFound);
        }
        self.finish_user_update(txn, user, revoke, audit).await
    }
}

/// An update of `user`'s row in its company, setting nothing yet.
fn in_row(user: &User) -> sea_orm::UpdateMany<user::Entity> {
    user::Entity::update_many()
        .filter(user::Column::Id.eq(user.id.as_uuid()))
        .filter(user::Column::CompanyId.eq(user.company_id.as_uuid()))
}

/// The statement that stores `fields` of `user` and its `updated_at`, and nothing else: what
/// another write committed to the other columns after `user` was read stays (a password
/// change does not undo a deactivation that landed while the new password was hashed). Never
/// the MFA flag: only the MFA store's own writes move it, in the transaction that adds or
/// removes the factor.
fn user_update(user: &User, fields: &[UserField]) -> sea_orm::UpdateMany<user::Entity> {
    let update = in_row(user).col_expr(user::Column::UpdatedAt, Expr::value(user.updated_at));
    fields.iter().fold(update, |update, field| match field {
        UserField::Name => update.col_expr(user::Column::Name, Expr::value(user.name.as_str())),
        UserField::Role => update.col_expr(user::Column::Role, Expr::value(user.role.as_str())),
        UserField::Active => update.col_expr(user::Column::Active, Expr::value(user.active)),
        UserField::Permissions => update
            .col_expr(
                user::Column::PermissionGrants,
                Expr::value(permission_names(user.grants)),
            )
            .col_expr(
                user::Column::PermissionRevokes,
                Expr::value(permission_names(user.revokes)),
            ),
        UserField::Password => update
            .col_expr(
                user::Column::PasswordHash,
                Expr::value(user.password_hash.as_str()),
            )
            .col_expr(
                user::Column::PasswordChangeRequired,
                Expr::value(user.password_change_required.then_some(true)),
            ),
    })
}

/// The statement that stores only `user`'s password and the time: a reset or an undo changes
/// nothing else.
fn password_update(user: &User) -> sea_orm::UpdateMany<user::Entity> {
    user_update(user, &[UserField::Password])
}

/// The statement that stores only `user`'s address and the time (see [`user_update`]).
fn address_update(user: &User) -> sea_orm::UpdateMany<user::Entity> {
    in_row(user)
        .col_expr(user::Column::Email, Expr::value(user.email.as_str()))
        .col_expr(user::Column::UpdatedAt, Expr::value(user.updated_at))
}

impl SeaStore {
    /// After `user`'s row was updated in `txn`: revokes its sessions when asked, writes the
    /// records (the revocations' first, then `audit`: one append) and commits.
    async fn finish_user_update(
        &self,
        txn: sea_orm::DatabaseTransaction,
        user: &User,
        revoke: Option<SessionRevocation>,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, AccountsError> {
        let mut revoked = Vec::new();
        let mut records = Vec::new();
        if let Some(revocation) = revoke {
            revoked = live_session_ids(&txn, user.company_id, user.id, revocation.at)
                .await
                .map_err(internal)?
                .into_iter()
                .filter(|id| Some(*id) != revocation.keep)
                .collect();
            records = revoke_sessions(&txn, user.company_id, user.id, &revoked, &revocation)
                .await
                .map_err(internal)?;
        }
        records.extend(audit);
        self.commit_with_audit_as(txn, records, crate::Changed::Users(&[user.id]))
            .await
            .map_err(internal)?;
        Ok(revoked)
    }

    /// Starts completing a user's pending reset, change of address or undo: runs `update`, a
    /// compare and set on the user's row, in a new write transaction, and returns that
    /// transaction; `refused` when it matched nothing (used, replaced or expired). When
    /// `sets_address`, the update gave the user `user.email`, which the unique index and
    /// [`refuse_reserved`] (at `at`) must both allow. The caller finishes with
    /// [`Self::finish_user_update`]; on any refusal nothing changes.
    async fn compare_and_set(
        &self,
        update: sea_orm::UpdateMany<user::Entity>,
        user: &User,
        sets_address: bool,
        refused: AccountsError,
        at: Timestamp,
    ) -> Result<sea_orm::DatabaseTransaction, AccountsError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let result = update.exec(&txn).await.map_err(insert_error)?;
        if result.rows_affected == 0 {
            return Err(refused);
        }
        if sets_address {
            refuse_reserved(&txn, &user.email, user.id, at).await?;
        }
        Ok(txn)
    }
}

/// `update`, also setting `columns` to NULL.
fn clearing<const N: usize>(
    update: sea_orm::UpdateMany<user::Entity>,
    columns: [user::Column; N],
) -> sea_orm::UpdateMany<user::Entity> {
    columns
        .into_iter()
        .fold(update, |u, column| u.col_expr(column, Expr::cust("NULL")))
}

/// `update`, also closing the user's open password reset.
fn closing_reset(update: sea_orm::UpdateMany<user::Entity>) -> sea_orm::UpdateMany<user::Entity> {
    use user::Column::{PasswordResetExpiresAt, PasswordResetId};
    clearing(update, [PasswordResetId, PasswordResetExpiresAt])
}

/// `update`, also closing the user's pending change of e-mail address.
fn closing_email_change(
    update: sea_orm::UpdateMany<user::Entity>,
) -> sea_orm::UpdateMany<user::Entity> {
    use user::Column::{EmailChangeExpiresAt, EmailChangeId, EmailChangeTo};
    clearing(update, [EmailChangeId, EmailChangeTo, EmailChangeExpiresAt])
}

/// `update`, also closing the user's undo window.
fn closing_email_revert(
    update: sea_orm::UpdateMany<user::Entity>,
) -> sea_orm::UpdateMany<user::Entity> {
    use user::Column::{EmailRevertExpiresAt, EmailRevertId, EmailRevertTo};
    clearing(update, [EmailRevertId, EmailRevertTo, EmailRevertExpiresAt])
}

/// Whether a user other than `owner` has an undo window open at `at` that would restore `email`.
async fn reserved<C: ConnectionTrait>(
    conn: &C,
    email: &Email,
    owner: UserId,
    at: Timestamp,
) -> Result<bool, AccountsError> {
    let holders = user::Entity::find()
        .filter(user::Column::EmailRevertTo.eq(email.as_str()))
        .filter(user::Column::EmailRevertExpiresAt.gt(at))
        .filter(user::Column::Id.ne(owner.as_uuid()))
        .count(conn)
        .await
        .map_err(internal)?;
    Ok(holders > 0)
}

/// Refuses, as taken, `email` given to `owner` in `conn`'s transaction while another user's
/// open undo window (at `at`) would restore it: an address a move vacated stays its user's
/// until the window closes, or whoever moved the account could register it and make the undo
/// fail. Run after the write, so that on PostgreSQL it sees a window a concurrent move
/// committed while the write waited on the address's unique index.
async fn refuse_reserved<C: ConnectionTrait>(
    conn: &C,
    email: &Email,
    owner: UserId,
    at: Timestamp,
) -> Result<(), AccountsError> {
    if reserved(conn, email, owner, at).await? {
        return Err(AccountsError::EmailTaken);
    }
    Ok(())
}

/// The undo window stored in `m`, if any.
fn revert_window(m: &user::Model) -> Result<Option<EmailRevert>, AccountsError> {
    let (Some(id), Some(to), Some(expires_at)) = (
        m.email_revert_id,
        m.email_revert_to.as_deref(),
        m.email_revert_expires_at,
    ) else {
        return Ok(None);
    };
    Ok(Some(EmailRevert {
        id,
        company_id: CompanyId::from_uuid(m.company_id),
        user_id: UserId::from_uuid(m.id),
        to: Email::parse(to).map_err(|_| internal(corrupt("users", "email_revert_to")))?,
        expires_at,
    }))
}

impl SeaStore {
    /// Opens a pending reset or change: runs `update` (which sets it, unless the one there is
    /// too recent) on the user's row in its company and commits `audit` with it. `false` when
    /// the one there stays; `NotFound` when there is no such user.
    async fn open_pending(
        &self,
        update: sea_orm::UpdateMany<user::Entity>,
        company: CompanyId,
        user_id: UserId,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, AccountsError> {
        let in_company = || {
            Condition::all()
                .add(user::Column::Id.eq(user_id.as_uuid()))
                .add(user::Column::CompanyId.eq(company.as_uuid()))
        };
        let txn = self.write_txn().await.map_err(internal)?;
        let result = update
            .filter(in_company())
            .exec(&txn)
            .await
            .map_err(internal)?;
        if result.rows_affected == 0 {
            let exists = user::Entity::find()
                .filter(in_company())
                .count(&txn)
                .await
                .map_err(internal)?;
            return if exists == 0 {
                Err(AccountsError::NotFound)
            } else {
                Ok(false)
            };
        }
        self.commit_with_audit_as(txn, audit, crate::Changed::Users(&[user_id]))
            .await
            .map_err(internal)?;
        Ok(true)
    }
}

#[async_trait]
impl PasswordResetRepository for SeaStore {
    async fn open_reset(
        &self,
        reset: &PasswordReset,
        keep_if_expires_after: Timestamp,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, AccountsError> {
        let update = user::Entity::update_many()
            .col_expr(user::Column::PasswordResetId, Expr::value(reset.id))
            .col_expr(
                user::Column::PasswordResetExpiresAt,
                Expr::value(reset.expires_at),
            )
            .filter(
                Condition::any()
                    .add(user::Column::PasswordResetExpiresAt.is_null())
                    .add(user::Column::PasswordResetExpiresAt.lte(keep_if_expires_after)),
            );
        self.open_pending(update, reset.company_id, reset.user_id, audit)
            .await
    }

    async fn reset(&self, id: uuid::Uuid) -> Result<Option<(User, PasswordReset)>, AccountsError> {
        let Some(m) = user::Entity::find()
            .filter(user::Column::PasswordResetId.eq(id))
            .one(&self.db)
            .await
            .map_err(internal)?
        else {
            return Ok(None);
        };
        let Some(expires_at) = m.password_reset_expires_at else {
            return Ok(None);
        };
        let user = to_user(m)?;
        let reset = PasswordReset {
            id,
            company_id: user.company_id,
            user_id: user.id,
            expires_at,
        };
        Ok(Some((user, reset)))
    }

    async fn complete_reset(
        &self,
        id: uuid::Uuid,
        user: &User,
        revoke: SessionRevocation,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, AccountsError> {
        // Compare and set: only while the reset is still this user's open, unexpired one.
        // The new password ends a pending change of address too: whoever asked for it may not
        // be the one who just proved the mailbox.
        // A user deactivated since the reset was read gets no password.
        let update = closing_email_change(closing_reset(password_update(user)))
            .filter(user::Column::Active.eq(true))
            .filter(user::Column::PasswordResetId.eq(id))
            .filter(user::Column::PasswordResetExpiresAt.gt(revoke.at));
        let refused = AccountsError::ResetTokenInvalid;
        let txn = self
            .compare_and_set(update, user, false, refused, revoke.at)
            .await?;
        self.finish_user_update(txn, user, Some(revoke), audit)
            .await
    }
}

#[async_trait]
impl EmailChangeRepository for SeaStore {
    async fn open_email_change(
        &self,
        change: &EmailChange,
        keep_if_expires_after: Timestamp,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, AccountsError> {
        let update = user::Entity::update_many()
            .col_expr(user::Column::EmailChangeId, Expr::value(change.id))
            .col_expr(user::Column::EmailChangeTo, Expr::value(change.to.as_str()))
            .col_expr(
                user::Column::EmailChangeExpiresAt,
                Expr::value(change.expires_at),
            )
            .filter(
                Condition::any()
                    .add(user::Column::EmailChangeExpiresAt.is_null())
                    .add(user::Column::EmailChangeExpiresAt.lte(keep_if_expires_after)),
            );
        self.open_pending(update, change.company_id, change.user_id, audit)
            .await
    }

    async fn email_change(
        &self,
        company: CompanyId,
        user: UserId,
    ) -> Result<Option<EmailChange>, AccountsError> {
        let Some(m) = crate::by_key(
            user::Entity::find()
                .filter(user::Column::Id.eq(user.as_uuid()))
                .filter(user::Column::CompanyId.eq(company.as_uuid())),
            &self.db,
        )
        .await
        .map_err(internal)?
        else {
            return Ok(None);
        };
        let (Some(id), Some(to), Some(expires_at)) = (
            m.email_change_id,
            m.email_change_to,
            m.email_change_expires_at,
        ) else {
            return Ok(None);
        };
        Ok(Some(EmailChange {
            id,
            company_id: company,
            user_id: user,
            to: Email::parse(&to).map_err(|_| internal(corrupt("users", "email_change_to")))?,
            expires_at,
        }))
    }

    async fn complete_email_change(
        &self,
        id: uuid::Uuid,
        user: &User,
        revert: Option<EmailRevert>,
        revoke: SessionRevocation,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, AccountsError> {
        // Compare and set: only while the change is still this user's pending, unexpired one
        // and asks for this address. An open password reset was mailed to the old address:
        // it closes with the change.
        let mut update = closing_reset(closing_email_change(address_update(user)));
        if let Some(window) = revert {
            update = update
                .col_expr(user::Column::EmailRevertId, Expr::value(window.id))
                .col_expr(user::Column::EmailRevertTo, Expr::value(window.to.as_str()))
                .col_expr(
                    user::Column::EmailRevertExpiresAt,
                    Expr::value(window.expires_at),
                );
        }
        let update = update
            .filter(user::Column::EmailChangeId.eq(id))
            .filter(user::Column::EmailChangeTo.eq(user.email.as_str()))
            .filter(user::Column::EmailChangeExpiresAt.gt(revoke.at));
        let refused = AccountsError::EmailChangeInvalid;
        let txn = self
            .compare_and_set(update, user, true, refused, revoke.at)
            .await?;
        self.finish_user_update(txn, user, Some(revoke), audit)
            .await
    }

    async fn address_reserved(
        &self,
        email: &Email,
        except: UserId,
        at: Timestamp,
    ) -> Result<bool, AccountsError> {
        reserved(&self.db, email, except, at).await
    }

    async fn email_revert_of(
        &self,
        company: CompanyId,
        user: UserId,
    ) -> Result<Option<EmailRevert>, AccountsError> {
        let found = crate::by_key(
            user::Entity::find()
                .filter(user::Column::Id.eq(user.as_uuid()))
                .filter(user::Column::CompanyId.eq(company.as_uuid())),
            &self.db,
        )
        .await
        .map_err(internal)?;
        found.as_ref().map_or(Ok(None), revert_window)
    }

    async fn email_revert(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<(User, EmailRevert)>, AccountsError> {
        let Some(m) = user::Entity::find()
            .filter(user::Column::EmailRevertId.eq(id))
            .one(&self.db)
            .await
            .map_err(internal)?
        else {
            return Ok(None);
        };
        let Some(window) = revert_window(&m)? else {
            return Ok(None);
        };
        Ok(Some((to_user(m)?, window)))
    }

    async fn complete_email_revert(
        &self,
        id: uuid::Uuid,
        user: &User,
        revoke: SessionRevocation,
        factor: FactorRemoval,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, AccountsError> {
        // Compare and set: only while the window is still this user's, open, and restores this
        // address. Whatever was pending was asked for by whoever held the account: it closes.
        let update =
            closing_email_revert(closing_reset(closing_email_change(password_update(user))))
                .col_expr(user::Column::Email, Expr::value(user.email.as_str()))
                .filter(user::Column::EmailRevertId.eq(id))
                .filter(user::Column::EmailRevertTo.eq(user.email.as_str()))
                .filter(user::Column::EmailRevertExpiresAt.gt(revoke.at));
        let refused = AccountsError::EmailChangeInvalid;
        let txn = self
            .compare_and_set(update, user, true, refused, revoke.at)
            .await?;
        // After the user's row: the flag it wrote back is turned off with the factor.
        let mut audit = audit;
        if crate::mfa_repo::remove_factor_enrolled_after(
            &txn,
            user.company_id,
            user.id,
            factor.enrolled_after,
            revoke.at,
        )
        .await
        .map_err(AccountsError::internal)?
        {
            audit.push(factor.audit);
        }
        self.finish_user_update(txn, user, Some(revoke), audit)
            .await
    }
}
