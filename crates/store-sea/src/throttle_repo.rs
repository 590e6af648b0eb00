use async_trait::async_trait;
use kernel::Timestamp;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait};
use sessions::{LoginThrottle, SessionError, ThrottlePolicy, ThrottleState};

use crate::SeaStore;
use crate::entity::login_throttle;
use crate::sessions_repo::internal;

pub(crate) fn to_state(m: &login_throttle::Model) -> ThrottleState {
    ThrottleState {
        failures: u32::try_from(m.failures).unwrap_or(0),
        lockouts: u32::try_from(m.lockouts).unwrap_or(0),
        locked_until: m.locked_until,
    }
}

#[async_trait]
impl LoginThrottle for SeaStore {
    async fn state(&self, key: &str) -> Result<ThrottleState, SessionError> {
        Ok(
            crate::by_key(login_throttle::Entity::find_by_id(key.to_owned()), &self.db)
                .await
                .map_err(internal)?
                .map(|m| to_state(&m))
                .unwrap_or_default(),
        )
    }

    async fn record_failure(
        &self,
        key: &str,
        now: Timestamp,
        policy: ThrottlePolicy,
    ) -> Result<ThrottleState, SessionError> {
        let txn = self.write_txn().await.map_err(internal)?;
        // Make sure the row exists, then lock it (PostgreSQL) so concurrent failures all count.
        login_throttle::Entity::insert(login_throttle::ActiveModel {
            key: Set(key.to_owned()),
            failures: Set(0),
            lockouts: Set(0),
            locked_until: Set(None),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(login_throttle::Column::Key)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(internal)?;
        let query = self.for_update(login_throttle::Entity::find_by_id(key.to_owned()));
        let current = crate::by_key(query, &txn)
            .await
            .map_err(internal)?
            .map(|m| to_state(&m))
            .unwrap_or_default();
        let next = policy.after_failure(current, now);
        login_throttle::Entity::update(login_throttle::ActiveModel {
            key: Set(key.to_owned()),
            failures: Set(i32::try_from(next.failures).unwrap_or(i32::MAX)),
            lockouts: Set(i32::try_from(next.lockouts).unwrap_or(i32::MAX)),
            locked_until: Set(next.locked_until),
            updated_at: Set(now),
        })
        .exec(&txn)
        .await
        .map_err(internal)?;
        self.commit_as(txn, crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(next)
    }

    async fn purge_stale(&self, before: Timestamp, now: Timestamp) -> Result<u64, SessionError> {
        use sea_orm::sea_query::ExprTrait as _;
        use sea_orm::{ColumnTrait, QueryFilter};
        let deleted = login_throttle::Entity::delete_many()
            .filter(login_throttle::Column::UpdatedAt.lt(before))
            .filter(
                login_throttle::Column::LockedUntil
                    .is_null()
                    .or(login_throttle::Column::LockedUntil.lte(now)),
            )
            .exec(&self.db)
            .await
            .map_err(internal)?;
        Ok(deleted.rows_affected)
    }

    async fn reset(&self, key: &str) -> Result<(), SessionError> {
        login_throttle::Entity::delete_by_id(key.to_owned())
            .exec(&self.db)
            .await
            .map_err(internal)?;
        Ok(())
    }
}
