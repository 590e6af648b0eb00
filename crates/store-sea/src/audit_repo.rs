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

/// Rows per multi-row `INSERT`: 15 columns each stays far below SQLite's bound-parameter limit.
const INSERT_CHUNK: usize = 256;

/// Appends records to their chains on `conn`: the caller's transaction, so they commit with the
/// change they describe (AUD-2) and concurrent appends to one chain serialize on its head row
/// (AUD-4). Each chain is bumped once for all its records, chains in name order (one lock order
/// for every transaction on PostgreSQL, so no deadlocks); then one multi-row insert and one head
/// update for all chains. Order within a chain is the order in `records`.
pub(crate) async fn insert_audit<C: ConnectionTrait>(
    conn: &C,
    chain: &dyn ChainMac,
    records: Vec<AuditRecord>,
) -> Result<(), DbErr> {
    enqueue_notices_for(conn, &records).await?;
    let mut groups: std::collections::BTreeMap<String, Vec<AuditRecord>> =
        std::collections::BTreeMap::new();
    for r in records {
        groups.entry(chain_name(r.company_id)).or_default().push(r);
    }
    let mut rows = Vec::new();
    for (name, group) in groups {
        chain_rows(conn, chain, &name, group, &mut rows).await?;
    }
    insert_rows(conn, rows).await
}

/// INC-2: the notices `records` cause, queued in the same transaction.
async fn enqueue_notices_for<C: ConnectionTrait>(
    conn: &C,
    records: &[AuditRecord],
) -> Result<(), DbErr> {
    let notices: Vec<notify::Notice> = records
        .iter()
        .flat_map(notify::notices_for_record)
        .collect();
    crate::outbox_repo::enqueue_notices(conn, notices).await
}

/// Inserts chained rows in multi-row statements. Each head's MAC follows the record that
/// reaches its `seq`, set by the `audit_head_follows` trigger as that row is inserted
/// (migration m0010): no third statement per append.
async fn insert_rows<C: ConnectionTrait>(
    conn: &C,
    mut rows: Vec<audit_event::ActiveModel>,
) -> Result<(), DbErr> {
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(INSERT_CHUNK));
        audit_event::Entity::insert_many(std::mem::replace(&mut rows, rest))
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Bumps the head of chain `name` past `group`, chains the records onto it and adds their rows
/// to `rows`.
async fn chain_rows<C: ConnectionTrait>(
    conn: &C,
    chain: &dyn ChainMac,
    name: &str,
    group: Vec<AuditRecord>,
    rows: &mut Vec<audit_event::ActiveModel>,
) -> Result<(), DbErr> {
    let count = i64::try_from(group.len())
        .map_err(|_| DbErr::Custom("too many audit records in one transaction".into()))?;
    let bump = || {
        head::Entity::update_many()
            .col_expr(head::Column::Seq, Expr::col(head::Column::Seq).add(count))
            .filter(head::Column::Chain.eq(name))
    };
    let mut bumped = bump().exec_with_returning(conn).await?;
    if bumped.is_empty() {
        head::Entity::insert(head::ActiveModel {
            chain: Set(name.to_owned()),
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
    chain_onto(chain, &current, group, rows)
}

/// Appends `records`, all of chain `bumped.chain`, whose head the caller's transaction has
/// already bumped past them (holding its row lock): `bumped` is the head as that bump returned
/// it. Same rows, notices and head MAC as [`insert_audit`].
pub(crate) async fn insert_onto_bumped<C: ConnectionTrait>(
    conn: &C,
    chain: &dyn ChainMac,
    bumped: &head::Model,
    records: Vec<AuditRecord>,
) -> Result<(), DbErr> {
    if records
        .iter()
        .any(|r| chain_name(r.company_id) != bumped.chain)
    {
        return Err(DbErr::Custom(
            "an audit record of another chain than the bumped head".into(),
        ));
    }
    enqueue_notices_for(conn, &records).await?;
    let mut rows = Vec::new();
    chain_onto(chain, bumped, records, &mut rows)?;
    insert_rows(conn, rows).await
}

/// Chains `group` onto `current`, a head already bumped past it, adding their rows to `rows`.
fn chain_onto(
    chain: &dyn ChainMac,
    current: &head::Model,
    group: Vec<AuditRecord>,
    rows: &mut Vec<audit_event::ActiveModel>,
) -> Result<(), DbErr> {
    let name = current.chain.as_str();
    let count = i64::try_from(group.len())
        .map_err(|_| DbErr::Custom("too many audit records in one transaction".into()))?;
    // The bump moved the sequence past this group; the MAC is still the previous record's.
    let mut previous = mac_from_hex(&current.mac)
        .ok_or_else(|| DbErr::Custom("audit chain head is corrupt".into()))?;
    let key_id = chain.current_key_id();
    let first = current.seq - count + 1;
    rows.reserve(group.len());
    for (seq, r) in (first..).zip(group) {
        let mut chained = ChainedRecord {
            seq,
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
        previous = chained.mac;
        rows.push(audit_event::ActiveModel {
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
            chain: Set(Some(name.to_owned())),
            seq: Set(Some(chained.seq)),
            key_id: Set(Some(i64::from(key_id))),
            mac: Set(Some(mac_to_hex(&chained.mac))),
        });
    }
    Ok(())
}

/// Group commit of standalone audit records ([`AuditSink::record`]: failed logins, denials,
/// reads): concurrent callers queue their records; whoever holds the writer lock appends every
/// queued record in one transaction, and each caller returns once its own record is committed,
/// so nothing is weakened: no caller returns before its record is durable. SQLite serializes
/// writers anyway, so it gets one queue; PostgreSQL writes different chains in parallel, so it
/// gets one queue per shard of chains and groups only appends that would wait on the same
/// chain heads.
pub(crate) struct AuditQueues(Vec<std::sync::Arc<AuditQueue>>);

impl AuditQueues {
    pub(crate) fn for_backend(backend: sea_orm::DbBackend) -> Self {
        let shards = if backend == sea_orm::DbBackend::Sqlite {
            1
        } else {
            32
        };
        Self((0..shards).map(|_| std::sync::Arc::default()).collect())
    }

    fn for_chain(&self, name: &str) -> Option<std::sync::Arc<AuditQueue>> {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        let shard = usize::try_from(h.finish() % u64::try_from(self.0.len().max(1)).ok()?).ok()?;
        self.0.get(shard).cloned()
    }
}

#[derive(Default)]
pub(crate) struct AuditQueue {
    pending: std::sync::Mutex<Vec<Queued>>,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// The answer to a queued record, if there is one yet; a writer that vanished without answering
/// is an error, never a silent success.
fn answered(
    rx: &mut tokio::sync::oneshot::Receiver<Result<(), DbErr>>,
) -> Option<Result<(), AuditError>> {
    match rx.try_recv() {
        Ok(result) => Some(result.map_err(log_err)),
        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => None,
        Err(tokio::sync::oneshot::error::TryRecvError::Closed) => Some(Err(log_err(
            DbErr::Custom("the audit writer stopped before answering".into()),
        ))),
    }
}

type Queued = (AuditRecord, tokio::sync::oneshot::Sender<Result<(), DbErr>>);

/// Most records one group-commit transaction takes; the rest wait for the next.
const MAX_GROUP: usize = 512;

impl SeaStore {
    async fn write_group(&self, batch: Vec<Queued>) {
        if batch.is_empty() {
            return;
        }
        let (records, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let single = records.len() == 1;
        let result = self.append_in_own_txn(records.clone()).await;
        match result {
            Ok(()) => {
                for tx in senders {
                    let _ = tx.send(Ok(()));
                }
            }
            Err(e) if single => {
                for tx in senders {
                    let _ = tx.send(Err(e.clone()));
                }
            }
            // Nothing of the group was written: give every record its own chance, so one
            // failing record cannot fail the others.
            Err(_) => {
                for (record, tx) in records.into_iter().zip(senders) {
                    let _ = tx.send(self.append_in_own_txn(vec![record]).await);
                }
            }
        }
    }

    async fn append_in_own_txn(&self, records: Vec<AuditRecord>) -> Result<(), DbErr> {
        let txn = self.write_txn().await?;
        insert_audit(&txn, self.chain.as_ref(), records).await?;
        self.commit_as(txn, crate::Changed::NoSessionOrUser).await
    }
}

#[async_trait]
impl AuditSink for SeaStore {
    async fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        let queue = self
            .audit_queues
            .for_chain(&chain_name(record.company_id))
            .ok_or_else(|| log_err(DbErr::Custom("no audit queue".into())))?;
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        queue
            .pending
            .lock()
            .map_err(|_| log_err(DbErr::Custom("audit queue poisoned".into())))?
            .push((record, tx));
        loop {
            let writer = queue.writer.clone().lock_owned().await;
            // A writer before us may already have committed our record.
            if let Some(result) = answered(&mut rx) {
                return result;
            }
            let batch: Vec<Queued> = {
                let mut pending = queue
                    .pending
                    .lock()
                    .map_err(|_| log_err(DbErr::Custom("audit queue poisoned".into())))?;
                let take = pending.len().min(MAX_GROUP);
                pending.drain(..take).collect()
            };
            // The write runs in its own task: if this caller is cancelled (its client went
            // away), the records of the others in the group are still written and answered.
            let store = self.clone();
            let handle = tokio::spawn(async move {
                store.write_group(batch).await;
                drop(writer);
            });
            if handle.await.is_err() {
                return Err(log_err(DbErr::Custom("audit writer task failed".into())));
            }
            if let Some(result) = answered(&mut rx) {
                return result;
            }
            // Our record was beyond MAX_GROUP in the queue: take the lock again.
        }
    }
}

fn log_err(e: impl std::error::Error + Send + Sync + 'static) -> AuditError {
    match crate::outage(e) {
        Ok(lost) => AuditError::Internal(Box::new(lost)),
        Err(e) => AuditError::Internal(Box::new(e)),
    }
}

/// `column` holds `company`'s id, or is NULL for the platform (`None`).
fn of_company(
    column: impl sea_orm::ColumnTrait,
    company: Option<kernel::CompanyId>,
) -> sea_orm::sea_query::SimpleExpr {
    company.map_or_else(|| column.is_null(), |c| column.eq(c.as_uuid()))
}

fn to_alert(m: crate::entity::audit_alert::Model) -> audit::Alert {
    audit::Alert {
        id: m.id,
        company_id: m.company_id.map(kernel::CompanyId::from_uuid),
        at: m.at,
        rule: m.rule,
        severity: m.severity,
        summary: m.summary,
        subject: m.subject,
        status: m.status,
        record_id: m.record_id,
    }
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
        let row = crate::by_key(
            crate::entity::audit_checkpoint::Entity::find_by_id(chain.to_owned()),
            &self.db,
        )
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
        let row = crate::by_key(head::Entity::find_by_id(chain.to_owned()), &self.db)
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

    async fn prior_logins(
        &self,
        chain: &str,
        actor: kernel::UserId,
        ip: Option<String>,
        network: Option<String>,
        before: i64,
    ) -> Result<(bool, bool), AuditError> {
        use crate::migration::m0015_audit_login_network_index::{POSTGRES_NETWORK, SQLITE_NETWORK};
        let backend = self.backend();
        // `+seq` on SQLite: without statistics its planner would rather range over the whole
        // chain by `(chain, seq)` than probe the user's logins; the unary plus keeps `seq` out
        // of index constraints there. PostgreSQL picks the login index either way.
        let (param, any_seq, network_of): (fn(usize) -> String, _, _) = match backend {
            sea_orm::DbBackend::Postgres => (|n| format!("${n}"), "seq", POSTGRES_NETWORK),
            _ => (|n| format!("?{n}"), "+seq", SQLITE_NETWORK),
        };
        // The condition of the partial index `idx_audit_login_actor` (m0014) as literals, so
        // that both planners may use it; the values are bound.
        let logins = format!(
            "SELECT 1 FROM audit_events WHERE action = 'session.login' AND outcome = 'success' \
             AND chain = {} AND actor_id = {}",
            param(1),
            param(2)
        );
        let earlier = format!("seq < {}", param(3));
        let mut values: Vec<sea_orm::Value> =
            vec![chain.into(), actor.as_uuid().into(), before.into()];
        let mut same = Vec::new();
        match ip {
            Some(ip) => {
                values.push(ip.into());
                same.push(format!(
                    "EXISTS ({logins} AND ip = {} AND {earlier})",
                    param(values.len())
                ));
            }
            None => same.push(format!("EXISTS ({logins} AND ip IS NULL AND {earlier})")),
        }
        if let Some(network) = network {
            values.push(network.into());
            let n = param(values.len());
            // A login from the network's own address (an IPv4 client of a mapped one), and one
            // whose details name the network: the partial index `idx_audit_login_network`
            // (m0015), its expression and condition repeated literally.
            same.push(format!("EXISTS ({logins} AND ip = {n} AND {earlier})"));
            same.push(format!(
                "EXISTS ({logins} AND {network_of} IS NOT NULL AND {network_of} = {n} \
                 AND {earlier})"
            ));
        }
        let sql = format!(
            "SELECT CASE WHEN EXISTS ({logins} AND {any_seq} < {}) THEN 1 ELSE 0 END, \
             CASE WHEN {} THEN 1 ELSE 0 END",
            param(3),
            same.join(" OR ")
        );
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                backend, sql, values,
            ))
            .await
            .map_err(log_err)?
            .ok_or_else(|| corrupt_chain("prior logins answered no row"))?;
        let any = row.try_get_by_index::<i32>(0).map_err(log_err)?;
        let from_ip = row.try_get_by_index::<i32>(1).map_err(log_err)?;
        Ok((any == 1, from_ip == 1))
    }

    async fn review_cursor(&self, chain: &str) -> Result<i64, AuditError> {
        Ok(crate::by_key(
            crate::entity::audit_review_cursor::Entity::find_by_id(chain.to_owned()),
            &self.db,
        )
        .await
        .map_err(log_err)?
        .map_or(0, |c| c.seq))
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
            let notices: Vec<notify::Notice> =
                alerts.iter().filter_map(notify::notice_for_alert).collect();
            crate::outbox_repo::enqueue_notices(&txn, notices)
                .await
                .map_err(log_err)?;
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
        self.commit_as(txn, crate::Changed::NoSessionOrUser)
            .await
            .map_err(log_err)?;
        Ok(true)
    }

    async fn alert_since(
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
            .filter(alert::Column::At.gte(since))
            .one(&self.db)
            .await
            .map_err(log_err)?
            .is_some())
    }

    async fn record_actor(
        &self,
        company: Option<kernel::CompanyId>,
        id: uuid::Uuid,
    ) -> Result<Option<kernel::UserId>, AuditError> {
        use sea_orm::QuerySelect;
        let actor: Option<Option<uuid::Uuid>> = audit_event::Entity::find_by_id(id)
            .filter(of_company(audit_event::Column::CompanyId, company))
            .select_only()
            .column(audit_event::Column::ActorId)
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(log_err)?;
        Ok(actor.flatten().map(kernel::UserId::from_uuid))
    }

    async fn alert(
        &self,
        company: Option<kernel::CompanyId>,
        id: uuid::Uuid,
    ) -> Result<Option<audit::Alert>, AuditError> {
        use crate::entity::audit_alert as alert;
        Ok(crate::by_key(
            alert::Entity::find_by_id(id).filter(of_company(alert::Column::CompanyId, company)),
            &self.db,
        )
        .await
        .map_err(log_err)?
        .map(to_alert))
    }

    async fn set_alert_status(
        &self,
        company: Option<kernel::CompanyId>,
        id: uuid::Uuid,
        from: &str,
        to: &str,
        record: AuditRecord,
    ) -> Result<bool, AuditError> {
        use crate::entity::audit_alert as alert;
        let txn = self.write_txn().await.map_err(log_err)?;
        let moved = alert::Entity::update_many()
            .col_expr(alert::Column::Status, sea_orm::sea_query::Expr::value(to))
            .filter(alert::Column::Id.eq(id))
            .filter(of_company(alert::Column::CompanyId, company))
            .filter(alert::Column::Status.eq(from))
            .exec(&txn)
            .await
            .map_err(log_err)?
            .rows_affected;
        if moved != 1 {
            txn.rollback().await.map_err(log_err)?;
            return Ok(false);
        }
        self.commit_with_audit_as(txn, vec![record], crate::Changed::NoSessionOrUser)
            .await
            .map_err(log_err)?;
        Ok(true)
    }

    async fn alerts(
        &self,
        company: Option<kernel::CompanyId>,
        status: Option<String>,
        after: Option<kernel::TimeCursor>,
        limit: u64,
    ) -> Result<Vec<audit::Alert>, AuditError> {
        use crate::entity::audit_alert as alert;
        use sea_orm::QuerySelect as _;
        let mut q = alert::Entity::find().filter(of_company(alert::Column::CompanyId, company));
        if let Some(status) = status {
            q = q.filter(alert::Column::Status.eq(status));
        }
        Ok(crate::time_keyset(
            q,
            alert::Column::At,
            alert::Column::Id,
            after,
            crate::TimeOrder::NewestFirst,
        )
        .limit(limit)
        .all(&self.db)
        .await
        .map_err(log_err)?
        .into_iter()
        .map(to_alert)
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
        // The alerts those records raised go with them: they name accounts and addresses, and
        // point at records that no longer exist.
        crate::entity::audit_alert::Entity::delete_many()
            .filter(crate::entity::audit_alert::Column::Chain.eq(chain))
            .filter(crate::entity::audit_alert::Column::At.lt(before))
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
        self.commit_as(txn, crate::Changed::NoSessionOrUser)
            .await
            .map_err(log_err)?;
        Ok(deleted.rows_affected)
    }
}
