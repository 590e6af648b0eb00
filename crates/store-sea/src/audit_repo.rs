use async_trait::async_trait;
use audit::{AuditError, AuditRecord, AuditSink, ChainMac, ChainedRecord, GENESIS, chain_name};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::SeaStore;
use crate::entity::{audit_chain_head as head, audit_event};

/// Decodes a stored hex MAC.
pub(crate) fn mac_from_hex(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

pub(crate) fn mac_to_hex(mac: &[u8; 32]) -> String {
    hex::encode(mac)
}

/// Microseconds: what both databases keep, so the MAC covers exactly what is stored.
fn truncate_micros(t: kernel::Timestamp) -> kernel::Timestamp {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Appends records to their chains on `conn`: the caller's transaction, so they commit with the
/// change they describe (AUD-2) and concurrent appends to one chain serialize on its head row
/// (AUD-4).
pub(crate) async fn insert_audit<C: ConnectionTrait>(
    conn: &C,
    chain: &dyn ChainMac,
    records: Vec<AuditRecord>,
) -> Result<(), DbErr> {
    for r in records {
        let name = chain_name(r.company_id);
        let bump = || {
            head::Entity::update_many()
                .col_expr(head::Column::Seq, Expr::col(head::Column::Seq).add(1))
                .filter(head::Column::Chain.eq(name.clone()))
        };
        let mut bumped = bump().exec_with_returning(conn).await?;
        if bumped.is_empty() {
            head::Entity::insert(head::ActiveModel {
                chain: Set(name.clone()),
                seq: Set(0),
                mac: Set(mac_to_hex(&GENESIS)),
            })
            .on_conflict(
                OnConflict::column(head::Column::Chain)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
            bumped = bump().exec_with_returning(conn).await?;
        }
        let current = bumped
            .pop()
            .ok_or_else(|| DbErr::Custom("audit chain head missing".into()))?;
        let previous = mac_from_hex(&current.mac)
            .ok_or_else(|| DbErr::Custom("audit chain head is corrupt".into()))?;
        let key_id = chain.current_key_id();
        let mut chained = ChainedRecord {
            seq: current.seq,
            id: r.id,
            company_id: r.company_id,
            at: truncate_micros(r.at),
            actor_id: r.actor_id,
            action: r.action.as_str().to_owned(),
            target: r.target,
            outcome: r.outcome.as_str().to_owned(),
            ip: r.context.ip.map(|ip| ip.to_string()),
            user_agent: r.context.user_agent,
            request_id: r.context.request_id,
            details: r.details.to_string(),
            key_id,
            mac: GENESIS,
        };
        chained.mac = chain
            .mac(key_id, &previous, &chained.canonical_bytes())
            .ok_or_else(|| DbErr::Custom("the audit chain key is not configured".into()))?;
        let mac = mac_to_hex(&chained.mac);
        audit_event::Entity::insert(audit_event::ActiveModel {
            id: Set(chained.id),
            company_id: Set(chained.company_id.map(|c| c.as_uuid())),
            at: Set(chained.at),
            actor_id: Set(chained.actor_id.map(|a| a.as_uuid())),
            action: Set(chained.action),
            target: Set(chained.target),
            outcome: Set(chained.outcome),
            ip: Set(chained.ip),
            user_agent: Set(chained.user_agent),
            request_id: Set(chained.request_id),
            details: Set(chained.details),
            chain: Set(Some(name.clone())),
            seq: Set(Some(chained.seq)),
            key_id: Set(Some(i64::from(key_id))),
            mac: Set(Some(mac.clone())),
        })
        .exec_without_returning(conn)
        .await?;
        head::Entity::update_many()
            .col_expr(head::Column::Mac, Expr::value(mac))
            .filter(head::Column::Chain.eq(name))
            .exec(conn)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl AuditSink for SeaStore {
    async fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        let result = async {
            let txn = self.write_txn().await?;
            insert_audit(&txn, self.chain.as_ref(), vec![record]).await?;
            txn.commit().await
        }
        .await;
        result.map_err(|e| AuditError::Internal(Box::new(e)))
    }
}

fn log_err(e: impl std::error::Error + Send + Sync + 'static) -> AuditError {
    AuditError::Internal(Box::new(e))
}

fn corrupt_chain(what: &'static str) -> AuditError {
    log_err(crate::corrupt("audit_events", what))
}

fn to_chained(m: audit_event::Model) -> Result<ChainedRecord, AuditError> {
    let (Some(seq), Some(key_id), Some(mac)) = (m.seq, m.key_id, m.mac.as_deref()) else {
        return Err(corrupt_chain("record without chain fields"));
    };
    Ok(ChainedRecord {
        seq,
        id: m.id,
        company_id: m.company_id.map(kernel::CompanyId::from_uuid),
        at: m.at,
        actor_id: m.actor_id.map(kernel::UserId::from_uuid),
        action: m.action,
        target: m.target,
        outcome: m.outcome,
        ip: m.ip,
        user_agent: m.user_agent,
        request_id: m.request_id,
        details: m.details,
        key_id: u32::try_from(key_id).map_err(|_| corrupt_chain("key id"))?,
        // An unreadable MAC verifies as altered, which is what it is.
        mac: mac_from_hex(mac).unwrap_or([0xff; 32]),
    })
}

#[async_trait]
impl audit::AuditLog for SeaStore {
    async fn chains(&self) -> Result<Vec<String>, AuditError> {
        Ok(head::Entity::find()
            .all(&self.db)
            .await
            .map_err(log_err)?
            .into_iter()
            .map(|h| h.chain)
            .collect())
    }

    async fn chains_to_review(&self) -> Result<Vec<String>, AuditError> {
        use crate::entity::audit_review_cursor as cursor;
        // Two small reads joined in memory: heads and cursors are one row per company.
        let cursors: std::collections::HashMap<String, i64> = cursor::Entity::find()
            .all(&self.db)
            .await
            .map_err(log_err)?
            .into_iter()
            .map(|c| (c.chain, c.seq))
            .collect();
        Ok(head::Entity::find()
            .all(&self.db)
            .await
            .map_err(log_err)?
            .into_iter()
            .filter(|h| h.seq > cursors.get(&h.chain).copied().unwrap_or(0))
            .map(|h| h.chain)
            .collect())
    }

    async fn checkpoint(&self, chain: &str) -> Result<audit::Checkpoint, AuditError> {
        let row = crate::entity::audit_checkpoint::Entity::find_by_id(chain.to_owned())
            .one(&self.db)
            .await
            .map_err(log_err)?;
        Ok(match row {
            Some(r) => audit::Checkpoint {
                seq: r.seq,
                mac: mac_from_hex(&r.mac).unwrap_or([0xff; 32]),
            },
            None => audit::Checkpoint::default(),
        })
    }

    async fn head(&self, chain: &str) -> Result<Option<(i64, [u8; 32])>, AuditError> {
        let row = head::Entity::find_by_id(chain.to_owned())
            .one(&self.db)
            .await
            .map_err(log_err)?;
        Ok(row.map(|h| (h.seq, mac_from_hex(&h.mac).unwrap_or([0xff; 32]))))
    }

    async fn chain_page(
        &self,
        chain: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<ChainedRecord>, AuditError> {
        use sea_orm::{QueryOrder, QuerySelect};
        audit_event::Entity::find()
            .filter(audit_event::Column::Chain.eq(chain))
            .filter(audit_event::Column::Seq.gt(after))
            .order_by_asc(audit_event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(log_err)?
            .into_iter()
            .map(to_chained)
            .collect()
    }

    async fn unchained(&self, chain: &str) -> Result<Option<uuid::Uuid>, AuditError> {
        let mut q = audit_event::Entity::find().filter(
            audit_event::Column::Seq
                .is_null()
                .or(audit_event::Column::Mac.is_null()),
        );
        q = match chain.parse::<uuid::Uuid>() {
            Ok(company) => q.filter(audit_event::Column::CompanyId.eq(company)),
            Err(_) => q.filter(audit_event::Column::CompanyId.is_null()),
        };
        Ok(q.one(&self.db).await.map_err(log_err)?.map(|m| m.id))
    }

    async fn query(
        &self,
        company: kernel::CompanyId,
        filter: &audit::AuditFilter,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<ChainedRecord>, AuditError> {
        use sea_orm::{QueryOrder, QuerySelect};
        let mut q = audit_event::Entity::find()
            .filter(audit_event::Column::Chain.eq(company.to_string()))
            .filter(audit_event::Column::CompanyId.eq(company.as_uuid()));
        if let Some(actor) = filter.actor_id {
            q = q.filter(audit_event::Column::ActorId.eq(actor.as_uuid()));
        }
        if !filter.actions.is_empty() {
            q = q.filter(audit_event::Column::Action.is_in(filter.actions.clone()));
        }
        if filter.access_only {
            q = q.filter(audit_event::Column::Action.is_in(audit::ACCESS_ACTIONS));
        }
        if let Some(outcome) = &filter.outcome {
            q = q.filter(audit_event::Column::Outcome.eq(outcome.clone()));
        }
        if let Some(from) = filter.from {
            q = q.filter(audit_event::Column::At.gte(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(audit_event::Column::At.lt(to));
        }
        if let Some(before) = before {
            q = q.filter(audit_event::Column::Seq.lt(before));
        }
        q.order_by_desc(audit_event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(log_err)?
            .into_iter()
            .map(to_chained)
            .collect()
    }

    async fn records_under_key(&self, key_id: u32) -> Result<u64, AuditError> {
        use sea_orm::PaginatorTrait;
        audit_event::Entity::find()
            .filter(audit_event::Column::KeyId.eq(i64::from(key_id)))
            .count(&self.db)
            .await
            .map_err(log_err)
    }

    async fn window(
        &self,
        chain: &str,
        action: &str,
        outcome: Option<&'static str>,
        from: kernel::Timestamp,
        up_to: i64,
        limit: u64,
    ) -> Result<Vec<ChainedRecord>, AuditError> {
        use sea_orm::{QueryOrder, QuerySelect};
        let mut q = audit_event::Entity::find()
            .filter(audit_event::Column::Chain.eq(chain))
            .filter(audit_event::Column::Action.eq(action))
            .filter(audit_event::Column::At.gte(from))
            .filter(audit_event::Column::Seq.lte(up_to));
        if let Some(outcome) = outcome {
            q = q.filter(audit_event::Column::Outcome.eq(outcome));
        }
        q.order_by_desc(audit_event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(log_err)?
            .into_iter()
            .map(to_chained)
            .collect()
    }

    async fn review_cursor(&self, chain: &str) -> Result<i64, AuditError> {
        Ok(
            crate::entity::audit_review_cursor::Entity::find_by_id(chain.to_owned())
                .one(&self.db)
                .await
                .map_err(log_err)?
                .map_or(0, |c| c.seq),
        )
    }

    async fn save_review(
        &self,
        chain: &str,
        from: i64,
        to: i64,
        alerts: Vec<audit::Alert>,
    ) -> Result<bool, AuditError> {
        use crate::entity::{audit_alert as alert, audit_review_cursor as cursor};
        let txn = self.write_txn().await.map_err(log_err)?;
        cursor::Entity::insert(cursor::ActiveModel {
            chain: Set(chain.to_owned()),
            seq: Set(0),
        })
        .on_conflict(
            OnConflict::column(cursor::Column::Chain)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(log_err)?;
        // Compare-and-set: only the reviewer that still sees `from` moves the cursor.
        let moved = cursor::Entity::update_many()
            .col_expr(cursor::Column::Seq, Expr::value(to))
            .filter(cursor::Column::Chain.eq(chain))
            .filter(cursor::Column::Seq.eq(from))
            .exec(&txn)
            .await
            .map_err(log_err)?;
        if moved.rows_affected != 1 {
            return Ok(false);
        }
        if !alerts.is_empty() {
            let rows = alerts.into_iter().map(|a| alert::ActiveModel {
                id: Set(a.id),
                chain: Set(chain.to_owned()),
                company_id: Set(a.company_id.map(|c| c.as_uuid())),
                at: Set(a.at),
                rule: Set(a.rule),
                severity: Set(a.severity),
                summary: Set(a.summary),
                subject: Set(a.subject),
                status: Set(a.status),
                record_id: Set(a.record_id),
            });
            alert::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await
                .map_err(log_err)?;
        }
        txn.commit().await.map_err(log_err)?;
        Ok(true)
    }

    async fn open_alert_since(
        &self,
        chain: &str,
        rule: &str,
        subject: &str,
        since: kernel::Timestamp,
    ) -> Result<bool, AuditError> {
        use crate::entity::audit_alert as alert;
        Ok(alert::Entity::find()
            .filter(alert::Column::Chain.eq(chain))
            .filter(alert::Column::Rule.eq(rule))
            .filter(alert::Column::Subject.eq(subject))
            .filter(alert::Column::Status.eq("open"))
            .filter(alert::Column::At.gte(since))
            .one(&self.db)
            .await
            .map_err(log_err)?
            .is_some())
    }

    async fn alerts(
        &self,
        company: kernel::CompanyId,
        status: Option<String>,
        limit: u64,
    ) -> Result<Vec<audit::Alert>, AuditError> {
        use crate::entity::audit_alert as alert;
        use sea_orm::{QueryOrder, QuerySelect};
        let mut q = alert::Entity::find().filter(alert::Column::CompanyId.eq(company.as_uuid()));
        if let Some(status) = status {
            q = q.filter(alert::Column::Status.eq(status));
        }
        Ok(q.order_by_desc(alert::Column::At)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(log_err)?
            .into_iter()
            .map(|m| audit::Alert {
                id: m.id,
                company_id: m.company_id.map(kernel::CompanyId::from_uuid),
                at: m.at,
                rule: m.rule,
                severity: m.severity,
                summary: m.summary,
                subject: m.subject,
                status: m.status,
                record_id: m.record_id,
            })
            .collect())
    }

    async fn purge(
        &self,
        chain: &str,
        before: kernel::Timestamp,
        at: kernel::Timestamp,
    ) -> Result<u64, AuditError> {
        use sea_orm::{QueryOrder, QuerySelect};
        let txn = self.write_txn().await.map_err(log_err)?;
        let last = audit_event::Entity::find()
            .filter(audit_event::Column::Chain.eq(chain))
            .filter(audit_event::Column::At.lt(before))
            .order_by_desc(audit_event::Column::Seq)
            .limit(1)
            .one(&txn)
            .await
            .map_err(log_err)?;
        let Some(last) = last else { return Ok(0) };
        let (Some(seq), Some(mac)) = (last.seq, last.mac) else {
            return Err(corrupt_chain("record without chain fields"));
        };
        let deleted = audit_event::Entity::delete_many()
            .filter(audit_event::Column::Chain.eq(chain))
            .filter(audit_event::Column::Seq.lte(seq))
            .exec(&txn)
            .await
            .map_err(log_err)?;
        use crate::entity::audit_checkpoint as checkpoint;
        checkpoint::Entity::insert(checkpoint::ActiveModel {
            chain: Set(chain.to_owned()),
            seq: Set(seq),
            mac: Set(mac),
            purged_at: Set(at),
        })
        .on_conflict(
            OnConflict::column(checkpoint::Column::Chain)
                .update_columns([
                    checkpoint::Column::Seq,
                    checkpoint::Column::Mac,
                    checkpoint::Column::PurgedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(log_err)?;
        txn.commit().await.map_err(log_err)?;
        Ok(deleted.rows_affected)
    }
}
