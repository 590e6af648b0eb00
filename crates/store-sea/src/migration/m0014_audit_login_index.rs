use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// AUD-7: the review asks, for every Owner's or Admin's login, whether that user logged in
/// before at all and from this IP (`AuditLog::prior_logins`). Without an index that meant reading
/// the chain's earlier logins of every user; this partial index holds successful logins only
/// (one small entry per login), keyed so both questions are one index probe whatever the size
/// of the log. The query repeats the index's condition as literals so both databases use it.
/// On PostgreSQL the migration leaves it to `build_online_indexes` ([`super::OnlineIndex`]).
pub(crate) const INDEX: super::OnlineIndex = super::OnlineIndex {
    name: "idx_audit_login_actor",
    definition: |_| {
        "idx_audit_login_actor ON audit_events (chain, actor_id, ip, seq) \
         WHERE action = 'session.login' AND outcome = 'success'"
            .to_owned()
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
