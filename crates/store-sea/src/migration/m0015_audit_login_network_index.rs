use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// AUD-7: an administrator's login from a new IPv6 address of a network it used before is not
/// a new place (privacy addresses rotate within the /64). A login from an address that is not
/// its own network names the network in its details (`"network"`), and
/// `AuditLog::prior_logins` asks whether any earlier login of the user named it. This partial
/// index holds only such logins, keyed by that value, so the question is one index probe on
/// both databases whatever the size of the log; the query repeats the index's expression and
/// condition literally. It adds no column and changes no row ([`super::ROWS_UNCHANGED`]).
pub(crate) const SQLITE_NETWORK: &str = "json_extract(details, '$.network')";
/// The same expression on PostgreSQL, where `details` is text holding JSON.
pub(crate) const POSTGRES_NETWORK: &str = "((details::json) ->> 'network')";

/// On PostgreSQL the migration leaves it to `build_online_indexes` ([`super::OnlineIndex`]).
pub(crate) const INDEX: super::OnlineIndex = super::OnlineIndex {
    name: "idx_audit_login_network",
    definition: |backend| {
        let network = match backend {
            sea_orm::DbBackend::Postgres => POSTGRES_NETWORK,
            _ => SQLITE_NETWORK,
        };
        format!(
            "idx_audit_login_network ON audit_events (chain, actor_id, {network}, seq) \
             WHERE action = 'session.login' AND outcome = 'success' AND {network} IS NOT NULL"
        )
    },
};

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::create_online_index(manager, &INDEX).await
    }
}
