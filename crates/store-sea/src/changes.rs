//! Changes committed by other server processes (PostgreSQL): the `incrementa_changes` notices of
//! migration m0012 advance this process's change epoch, so its session cache drops what another
//! process revoked or changed at once rather than after the cache's time to live (ACC-1, RBAC-6).

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DbBackend;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::epochs::Epochs;
use crate::{SeaStore, StoreError};

/// The channel the m0012 triggers notify.
pub const CHANNEL: &str = "incrementa_changes";

/// Longest pause between two attempts to listen again while the database is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Following the notices; dropping it stops the task.
#[derive(Debug)]
pub struct ChangeFollower {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ChangeFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SeaStore {
    /// Listens on its own connection to `url` (this store's database) and advances the change
    /// epoch for every notice, and also whenever that connection was lost or cannot be opened
    /// (notices may have been missed then: fail towards an empty cache). Returns once the first
    /// `LISTEN` holds, so a change committed after this call returns is seen. `None` on SQLite,
    /// which has no notices: there the cache's time to live bounds what other processes see.
    ///
    /// # Errors
    /// The first connection or `LISTEN` failed.
    pub async fn follow_changes(&self, url: &str) -> Result<Option<ChangeFollower>, StoreError> {
        if self.backend() != DbBackend::Postgres {
            return Ok(None);
        }
        let options = PgConnectOptions::from_str(url).map_err(conn_err)?;
        let options =
            crate::pg_tls::with_default(options, crate::pg_tls::chosen_by_url_or_env(url));
        // A pool of one, without timeouts, only for reconnecting (as `PgListener::connect`).
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options)
            .await
            .map_err(conn_err)?;
        let mut listener = PgListener::connect_with(&pool).await.map_err(conn_err)?;
        listener.ignore_pool_close_event(true);
        listener.listen(CHANNEL).await.map_err(conn_err)?;
        let epoch = Arc::clone(&self.epoch);
        Ok(Some(ChangeFollower {
            task: tokio::spawn(follow(listener, epoch)),
        }))
    }
}

/// The driver's error as a connection error (its text may name the server; `StoreError`
/// displays none of it).
fn conn_err(e: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Db(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(
        Arc::new(e),
    )))
}

async fn follow(mut listener: PgListener, epoch: Arc<Epochs>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listener.try_recv().await {
            Ok(Some(notice)) => {
                // The changed user's id (m0013); anything else counts for everyone.
                match uuid::Uuid::parse_str(notice.payload()) {
                    Ok(user) => epoch.changed_users(&[kernel::UserId::from_uuid(user)]),
                    Err(_) => epoch.changed_everyone(),
                }
                backoff = Duration::from_millis(100);
            }
            // The connection was lost and opened again (listening anew): what was notified in
            // between is unknown.
            Ok(None) => {
                epoch.changed_everyone();
                tracing::warn!("change notices: connection lost and reopened");
            }
            Err(e) => {
                epoch.changed_everyone();
                // The driver's text may name the server: only whether it looks like an outage.
                tracing::warn!(
                    outage = crate::sqlx_outage(&e),
                    "change notices: cannot listen; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
