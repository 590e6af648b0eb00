use accounts::SessionRevocation;
use async_trait::async_trait;
use audit::AuditRecord;
use kernel::{CompanyId, SessionId, Timestamp, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder};
use sessions::{AuthRecord, NewSession, Session, SessionError, SessionStore, TokenHash};

use crate::accounts_repo::{revoke_sessions, to_user};
use crate::entity::{session, user};
use crate::{SeaStore, corrupt};

/// A storage error as the sessions core sees it (an outage stays recognisable as one).
pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> SessionError {
    crate::outage(e).map_or_else(SessionError::internal, SessionError::internal)
}

fn to_session(m: session::Model) -> Session {
    Session {
        id: SessionId::from_uuid(m.id),
        company_id: CompanyId::from_uuid(m.company_id),
        user_id: UserId::from_uuid(m.user_id),
        seq: m.seq,
        created_at: m.created_at,
        last_seen_at: m.last_seen_at,
        expires_at: m.expires_at,
        // An unparsable address is dropped rather than failing the session.
        ip: m.ip.and_then(|ip| ip.parse().ok()),
        user_agent: m.user_agent,
        revoked_at: m.revoked_at,
        revoked_reason: m.revoked_reason,
        reauthenticated_at: m.reauthenticated_at,
        mfa_enrolment_only: m.mfa_enrolment_only,
    }
}

#[async_trait]
impl SessionStore for SeaStore {
    async fn create_capped(
        &self,
        new: &NewSession,
        cap: u16,
        idle: chrono::Duration,
        login_audit: AuditRecord,
        revocation: SessionRevocation,
    ) -> Result<(Session, Vec<SessionId>), SessionError> {
        let chain = audit::chain_name(Some(new.company_id));
        let one_chain = [&login_audit, &revocation.audit_template]
            .iter()
            .all(|r| audit::chain_name(r.company_id) == chain);
        let (seq, revoked) = if self.backend() == DbBackend::Postgres && one_chain {
            self.open_capped_pg(new, cap, idle, login_audit, &revocation, chain)
                .await?
        } else {
            self.open_capped_portable(new, cap, idle, login_audit, &revocation)
                .await?
        };
        let session = Session {
            id: new.id,
            company_id: new.company_id,
            user_id: new.user_id,
            seq,
            created_at: new.created_at,
            last_seen_at: new.created_at,
            expires_at: new.expires_at,
            ip: new.ip,
            user_agent: new.user_agent.clone(),
            revoked_at: None,
            revoked_reason: None,
            reauthenticated_at: None,
            mfa_enrolment_only: new.mfa_enrolment_only,
        };
        Ok((session, revoked))
    }

    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<AuthRecord>, SessionError> {
        let Some(row) = crate::by_key(
            session::Entity::find().filter(session::Column::TokenHash.eq(hash.as_str())),
            &self.db,
        )
        .await
        .map_err(internal)?
        else {
            return Ok(None);
        };
        let Some(user) = crate::by_key(
            user::Entity::find_by_id(row.user_id)
                .filter(user::Column::CompanyId.eq(row.company_id)),
            &self.db,
        )
        .await
        .map_err(internal)?
        else {
            return Ok(None);
        };
        Ok(Some(AuthRecord {
            session: to_session(row),
            user: to_user(user)?,
        }))
    }

    async fn mark_reauthenticated(
        &self,
        id: SessionId,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<(), SessionError> {
        let txn = self.write_txn().await.map_err(internal)?;
        // The row names its user, so only that user's cached sessions go stale.
        let users: Vec<kernel::UserId> = session::Entity::update_many()
            .col_expr(session::Column::ReauthenticatedAt, Expr::value(at))
            .filter(session::Column::Id.eq(id.as_uuid()))
            .filter(session::Column::RevokedAt.is_null())
            .exec_with_returning(&txn)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|row| kernel::UserId::from_uuid(row.user_id))
            .collect();
        self.commit_with_audit_as(txn, vec![audit], crate::Changed::Users(&users))
            .await
            .map_err(internal)
    }

    async fn purge_ended(
        &self,
        ended_before: Timestamp,
        idle: chrono::Duration,
    ) -> Result<u64, SessionError> {
        use sea_orm::Condition;
        let ended = Condition::any()
            .add(session::Column::RevokedAt.lt(ended_before))
            .add(session::Column::ExpiresAt.lt(ended_before))
            .add(session::Column::LastSeenAt.lt(ended_before - idle));
        let ended = &ended;
        // In batches, each its own statement: no long transaction and no lock held on the
        // table while a large backlog goes. Nothing cached can be among them (a cached session
        // is one that was active moments ago), so no change epoch moves.
        crate::purge_in_batches(|| async move {
            let ids =
                crate::batch_ids::<session::Entity>(&self.db, session::Column::Id, ended.clone())
                    .await
                    .map_err(internal)?;
            let selected = ids.len();
            if selected == 0 {
                return Ok((0, 0));
            }
            let deleted = session::Entity::delete_many()
                .filter(session::Column::Id.is_in(ids))
                .filter(ended.clone())
                .exec(&self.db)
                .await
                .map_err(internal)?
                .rows_affected;
            Ok((selected, deleted))
        })
        .await
    }

    async fn touch(&self, id: SessionId, at: Timestamp) -> Result<(), SessionError> {
        session::Entity::update_many()
            .col_expr(session::Column::LastSeenAt, Expr::value(at))
            .filter(session::Column::Id.eq(id.as_uuid()))
            .filter(session::Column::LastSeenAt.lt(at))
            .exec(&self.db)
            .await
            .map_err(internal)?;
        Ok(())
    }

    async fn list_active(
        &self,
        company: CompanyId,
        user: UserId,
        now: Timestamp,
        idle: chrono::Duration,
    ) -> Result<Vec<Session>, SessionError> {
        Ok(session::Entity::find()
            .filter(session::Column::CompanyId.eq(company.as_uuid()))
            .filter(session::Column::UserId.eq(user.as_uuid()))
            .filter(session::Column::RevokedAt.is_null())
            .order_by_desc(session::Column::Seq)
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(to_session)
            .filter(|s| s.is_active(now, idle))
            .collect())
    }

    async fn revoke(
        &self,
        company: CompanyId,
        user: UserId,
        id: SessionId,
        revocation: SessionRevocation,
    ) -> Result<bool, SessionError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let found = crate::by_key(
            session::Entity::find_by_id(id.as_uuid())
                .filter(session::Column::CompanyId.eq(company.as_uuid()))
                .filter(session::Column::UserId.eq(user.as_uuid()))
                .filter(session::Column::RevokedAt.is_null()),
            &txn,
        )
        .await
        .map_err(internal)?;
        match found {
            Some(row) if row.expires_at > revocation.at => {
                let records = revoke_sessions(&txn, company, user, &[id], &revocation)
                    .await
                    .map_err(internal)?;
                self.commit_with_audit_as(txn, records, crate::Changed::Users(&[user]))
                    .await
                    .map_err(internal)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl SeaStore {
    /// [`SessionStore::create_capped`] statement by statement (SQLite, and PostgreSQL when the
    /// records span several chains): returns the session number and the revoked ids.
    async fn open_capped_portable(
        &self,
        new: &NewSession,
        cap: u16,
        idle: chrono::Duration,
        login_audit: AuditRecord,
        revocation: &SessionRevocation,
    ) -> Result<(i64, Vec<SessionId>), SessionError> {
        let txn = self.write_txn().await.map_err(internal)?;
        // Serialize on the user: on PostgreSQL this UPDATE takes the row lock that every
        // concurrent login of the user waits for until the commit; on SQLite the IMMEDIATE
        // transaction already holds the database's write lock. Its RETURNING hands out the
        // session's sequence number in the same statement.
        let seq = user::Entity::update_many()
            .col_expr(
                user::Column::SessionSeq,
                Expr::col(user::Column::SessionSeq).add(1),
            )
            .filter(user::Column::Id.eq(new.user_id.as_uuid()))
            .filter(user::Column::CompanyId.eq(new.company_id.as_uuid()))
            .exec_with_returning(&txn)
            .await
            .map_err(internal)?
            .pop()
            .ok_or_else(|| internal(corrupt("users", "session owner vanished")))?
            .session_seq;

        let live: Vec<session::Model> = session::Entity::find()
            .filter(session::Column::UserId.eq(new.user_id.as_uuid()))
            .filter(session::Column::RevokedAt.is_null())
            .order_by_desc(session::Column::Seq)
            .all(&txn)
            .await
            .map_err(internal)?;
        let keep = usize::from(Ord::max(cap, 1)).saturating_sub(1);
        let mut active: Vec<Session> = live
            .into_iter()
            .map(to_session)
            .filter(|s| s.is_active(new.created_at, idle))
            .collect();
        // Newest first; everything past the newest `cap - 1` goes, oldest first in the answer.
        let mut revoked: Vec<SessionId> = if active.len() > keep {
            active.split_off(keep).into_iter().map(|s| s.id).collect()
        } else {
            Vec::new()
        };
        revoked.reverse();
        let mut records = revoke_sessions(&txn, new.company_id, new.user_id, &revoked, revocation)
            .await
            .map_err(internal)?;

        let row = session::ActiveModel {
            id: Set(new.id.as_uuid()),
            company_id: Set(new.company_id.as_uuid()),
            user_id: Set(new.user_id.as_uuid()),
            seq: Set(seq),
            token_hash: Set(new.token_hash.as_str().to_owned()),
            created_at: Set(new.created_at),
            last_seen_at: Set(new.created_at),
            expires_at: Set(new.expires_at),
            ip: Set(new.ip.map(|ip| ip.to_string())),
            user_agent: Set(new.user_agent.clone()),
            revoked_at: Set(None),
            revoked_reason: Set(None),
            reauthenticated_at: Set(None),
            mfa_enrolment_only: Set(new.mfa_enrolment_only),
        };
        session::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(internal)?;
        // The revocations' records and the login's, chained in one append.
        records.push(login_audit);
        self.commit_with_audit_as(txn, records, crate::Changed::Users(&[new.user_id]))
            .await
            .map_err(internal)?;
        Ok((seq, revoked))
    }

    /// [`SessionStore::create_capped`] on PostgreSQL: `BEGIN`, one call of
    /// `session_open_capped` (migration m0011: the row lock, the live sessions in a fresh
    /// snapshot, the revocations, the insert and the chain head's bump), the audit rows chained
    /// onto the bumped head, `COMMIT`. Four round trips where the portable path takes eight.
    async fn open_capped_pg(
        &self,
        new: &NewSession,
        cap: u16,
        idle: chrono::Duration,
        login_audit: AuditRecord,
        revocation: &SessionRevocation,
        chain: String,
    ) -> Result<(i64, Vec<SessionId>), SessionError> {
        use sea_orm::ConnectionTrait as _;
        let keep = i64::from(Ord::max(cap, 1)) - 1;
        // `now < last_seen_at + idle`, as `Session::is_active` has it.
        let idle_since = new
            .created_at
            .checked_sub_signed(idle)
            .ok_or_else(|| internal(corrupt("sessions", "idle timeout out of range")))?;
        let values: [sea_orm::Value; 16] = [
            new.id.as_uuid().into(),
            new.company_id.as_uuid().into(),
            new.user_id.as_uuid().into(),
            new.token_hash.as_str().into(),
            new.created_at.into(),
            new.expires_at.into(),
            new.ip.map(|ip| ip.to_string()).into(),
            new.user_agent.clone().into(),
            new.mfa_enrolment_only.into(),
            keep.into(),
            idle_since.into(),
            revocation.at.into(),
            revocation.reason.as_str().into(),
            chain.clone().into(),
            1_i64.into(),
            crate::audit_repo::mac_to_hex(&audit::GENESIS).into(),
        ];
        let txn = self.write_txn().await.map_err(internal)?;
        let rows = txn
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT session_seq, head_seq, head_mac, revoked FROM session_open_capped(\
                 $1::uuid, $2::uuid, $3::uuid, $4::text, $5::timestamptz, $6::timestamptz, \
                 $7::text, $8::text, $9::boolean, $10::bigint, $11::timestamptz, \
                 $12::timestamptz, $13::text, $14::text, $15::bigint, $16::text)",
                values,
            ))
            .await
            .map_err(internal)?;
        let mut seq = None;
        let mut head = None;
        let mut revoked = Vec::new();
        for row in &rows {
            seq = Some(row.try_get::<i64>("", "session_seq").map_err(internal)?);
            head = Some(crate::entity::audit_chain_head::Model {
                chain: chain.clone(),
                seq: row.try_get::<i64>("", "head_seq").map_err(internal)?,
                mac: row.try_get::<String>("", "head_mac").map_err(internal)?,
            });
            if let Some(id) = row
                .try_get::<Option<uuid::Uuid>>("", "revoked")
                .map_err(internal)?
            {
                revoked.push(SessionId::from_uuid(id));
            }
        }
        let (Some(seq), Some(head)) = (seq, head) else {
            return Err(internal(corrupt(
                "sessions",
                "no row from session_open_capped",
            )));
        };
        // The revocations' records and the login's, in the order the head was bumped for.
        let mut records: Vec<AuditRecord> = revoked
            .iter()
            .map(|id| revocation.record_for(*id))
            .collect();
        records.push(login_audit);
        crate::audit_repo::insert_onto_bumped(&txn, self.chain.as_ref(), &head, records)
            .await
            .map_err(internal)?;
        self.commit_as(txn, crate::Changed::Users(&[new.user_id]))
            .await
            .map_err(internal)?;
        Ok((seq, revoked))
    }

    /// Sessions not revoked and within their absolute lifetime at `now` (for the metrics gauge;
    /// idle ones are counted until they are next looked at).
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn active_sessions(&self, now: kernel::Timestamp) -> Result<u64, sea_orm::DbErr> {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
        session::Entity::find()
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(now))
            .count(&self.db)
            .await
    }

    /// Alerts of the review that nobody has triaged yet (status `open`), for the metrics
    /// gauges: the companies' (`platform` false), which their Owners and Admins triage, or the
    /// platform's (failed logins for emails of no company), which only the operator's command
    /// reaches. Kept apart so that neither keeps the other's page up.
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn open_alerts(&self, platform: bool) -> Result<u64, sea_orm::DbErr> {
        use crate::entity::audit_alert as alert;
        use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
        let company = if platform {
            alert::Column::CompanyId.is_null()
        } else {
            alert::Column::CompanyId.is_not_null()
        };
        alert::Entity::find()
            .filter(alert::Column::Status.eq(audit::Alert::OPEN))
            .filter(company)
            .count(&self.db)
            .await
    }

    /// Audit records ever appended to the chains, by every process (the sum of the chain heads'
    /// sequence numbers: committed appends only; retention purges do not lower it). One row per
    /// chain is read, so it is cheap at scrape time.
    ///
    /// # Errors
    /// The database error.
    pub async fn audit_appends(&self) -> Result<u64, sea_orm::DbErr> {
        use sea_orm::ConnectionTrait as _;
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                backend,
                "SELECT CAST(COALESCE(SUM(seq), 0) AS BIGINT) FROM audit_chain_heads".to_owned(),
            ))
            .await?;
        let total = row
            .map(|r| r.try_get_by_index::<i64>(0))
            .transpose()?
            .unwrap_or(0);
        Ok(u64::try_from(total).unwrap_or(0))
    }
}
