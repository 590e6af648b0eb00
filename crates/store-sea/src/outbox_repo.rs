//! The notification outbox (INC-2): messages inserted in the transaction of the audit record or
//! alert that causes them, claimed with a lease, every delivery attempt recorded.

use async_trait::async_trait;
use kernel::{CompanyId, Timestamp, UserId};
use notify::{Notice, NotifyError, OutboxMessage, OutboxStore};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::SeaStore;
use crate::entity::{outbox_attempt as attempt, outbox_message as message, user};

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> NotifyError {
    crate::outage(e).map_or_else(NotifyError::internal, NotifyError::internal)
}

/// Renders `notices` for their recipients and queues them on `conn` (the caller's transaction).
/// A recipient that is not a user of the notice's company is skipped: notices name users by id,
/// and only an e-mail change's notices carry an address (from the user's own change record).
pub(crate) async fn enqueue_notices<C: ConnectionTrait>(
    conn: &C,
    notices: Vec<Notice>,
) -> Result<(), DbErr> {
    if notices.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = notices.iter().map(|n| n.user_id.as_uuid()).collect();
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(conn)
        .await?;
    let rows: Vec<message::ActiveModel> = notices
        .into_iter()
        .filter_map(|n| {
            let u = users
                .iter()
                .find(|u| u.id == n.user_id.as_uuid() && u.company_id == n.company_id.as_uuid())?;
            let rendered = notify::render(&n.template, &u.name);
            Some(message::ActiveModel {
                id: Set(Uuid::now_v7()),
                company_id: Set(n.company_id.as_uuid()),
                user_id: Set(n.user_id.as_uuid()),
                // An e-mail change's own notices name their address (the new one for the
                // code, the old one once changed); every other notice goes to the user's.
                to_address: Set(n.address.unwrap_or_else(|| u.email.clone())),
                to_name: Set(u.name.clone()),
                template: Set(n.template.name().to_owned()),
                subject: Set(rendered.subject),
                body: Set(rendered.body),
                cause: Set(n.cause),
                created_at: Set(n.at),
                attempts: Set(0),
                next_attempt_at: Set(Some(n.at)),
                delivered_at: Set(None),
                gave_up_at: Set(None),
                last_error: Set(None),
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    message::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

fn to_message(m: message::Model) -> OutboxMessage {
    OutboxMessage {
        id: m.id,
        company_id: CompanyId::from_uuid(m.company_id),
        user_id: UserId::from_uuid(m.user_id),
        to: m.to_address,
        to_name: m.to_name,
        template: m.template,
        subject: m.subject,
        body: m.body,
        cause: m.cause,
        created_at: m.created_at,
        attempts: u32::try_from(m.attempts).unwrap_or(u32::MAX),
    }
}

/// Longest stored delivery error.
const MAX_ERROR_CHARS: usize = 500;

#[async_trait]
impl OutboxStore for SeaStore {
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, NotifyError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let mut query = message::Entity::find()
            .filter(message::Column::NextAttemptAt.lte(now))
            .order_by_asc(message::Column::NextAttemptAt)
            .limit(u64::from(limit));
        if self.backend() == DbBackend::Postgres {
            // Another worker's claimed rows are skipped rather than waited for.
            query = query.lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            );
        }
        let due = query.all(&txn).await.map_err(internal)?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        message::Entity::update_many()
            .col_expr(message::Column::NextAttemptAt, Expr::value(lease_until))
            .filter(message::Column::Id.is_in(due.iter().map(|m| m.id)))
            .exec(&txn)
            .await
            .map_err(internal)?;
        self.commit_as(txn, crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(due.into_iter().map(to_message).collect())
    }

    async fn record_attempt(
        &self,
        id: Uuid,
        at: Timestamp,
        error: Option<String>,
        retry_at: Option<Timestamp>,
    ) -> Result<(), NotifyError> {
        let error: Option<String> = error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect());
        let outcome = match (&error, retry_at) {
            (None, _) => "delivered",
            (Some(_), Some(_)) => "failed",
            (Some(_), None) => "gave_up",
        };
        let txn = self.write_txn().await.map_err(internal)?;
        attempt::Entity::insert(attempt::ActiveModel {
            id: Set(Uuid::now_v7()),
            message_id: Set(id),
            at: Set(at),
            outcome: Set(outcome.to_owned()),
            error: Set(error.clone()),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(internal)?;
        let mut update = message::Entity::update_many()
            .col_expr(
                message::Column::Attempts,
                Expr::col(message::Column::Attempts).add(1),
            )
            .filter(message::Column::Id.eq(id));
        update = match outcome {
            "delivered" => update
                .col_expr(message::Column::DeliveredAt, Expr::value(at))
                .col_expr(
                    message::Column::NextAttemptAt,
                    Expr::value(None::<Timestamp>),
                ),
            "failed" => update
                .col_expr(message::Column::LastError, Expr::value(error))
                .col_expr(message::Column::NextAttemptAt, Expr::value(retry_at)),
            _ => update
                .col_expr(message::Column::LastError, Expr::value(error))
                .col_expr(message::Column::GaveUpAt, Expr::value(at))
                .col_expr(
                    message::Column::NextAttemptAt,
                    Expr::value(None::<Timestamp>),
                ),
        };
        update.exec(&txn).await.map_err(internal)?;
        self.commit_as(txn, crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(())
    }

    async fn purge_finished(&self, before: Timestamp) -> Result<u64, NotifyError> {
        use sea_orm::Condition;
        let finished = Condition::all()
            .add(message::Column::CreatedAt.lt(before))
            .add(message::Column::NextAttemptAt.is_null())
            .add(
                Condition::any()
                    .add(message::Column::DeliveredAt.is_not_null())
                    .add(message::Column::GaveUpAt.is_not_null()),
            );
        let finished = &finished;
        // In batches, each a short transaction of its own (attempts first: they point at their
        // message); a message being delivered right now has a lease and is not finished.
        crate::purge_in_batches(|| async move {
            let ids = crate::batch_ids::<message::Entity>(
                &self.db,
                message::Column::Id,
                finished.clone(),
            )
            .await
            .map_err(internal)?;
            let selected = ids.len();
            if selected == 0 {
                return Ok((0, 0));
            }
            let txn = self.write_txn().await.map_err(internal)?;
            attempt::Entity::delete_many()
                .filter(attempt::Column::MessageId.is_in(ids.iter().copied()))
                .exec(&txn)
                .await
                .map_err(internal)?;
            let deleted = message::Entity::delete_many()
                .filter(message::Column::Id.is_in(ids))
                .filter(finished.clone())
                .exec(&txn)
                .await
                .map_err(internal)?
                .rows_affected;
            self.commit_as(txn, crate::Changed::NoSessionOrUser)
                .await
                .map_err(internal)?;
            Ok((selected, deleted))
        })
        .await
    }

    async fn backlog(&self) -> Result<u64, NotifyError> {
        message::Entity::find()
            .filter(message::Column::NextAttemptAt.is_not_null())
            .count(&self.db)
            .await
            .map_err(internal)
    }
}
