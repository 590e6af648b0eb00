//! Contract suite of the storage ports: every test runs on SQLite and, when `TEST_DATABASE_URL`
//! is set, on a fresh PostgreSQL database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod accounts;
mod audit;
mod changes;
mod email_changes;
mod fiscal;
mod incidents;
mod mfa;
mod migrations;
mod ownership;
mod pool;
mod portable;
mod resets;
mod sessions;
mod throttle;

use std::sync::Arc;

use ::accounts::{
    Company, CompanyName, Email, PasswordHash, PersonName, RevocationReason, SessionRevocation,
    User,
};
use ::audit::{Action, AuditRecord, Outcome};
use chrono::TimeZone;
use kernel::{CompanyId, RequestContext, Timestamp, UserId};
use rbac::Role;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use store_sea::SeaStore;
use test_support::TestDb;

pub fn t0() -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
        .unwrap()
}

pub fn id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

pub fn company() -> Company {
    Company {
        id: CompanyId::from_uuid(id()),
        name: CompanyName::parse("Acme").unwrap(),
        rfc: None,
        session_limit: None,
        profile: ::accounts::CompanyProfile::default(),
        created_at: t0(),
    }
}

pub fn user(company: &Company, email: &str, role: Role) -> User {
    User {
        id: UserId::from_uuid(id()),
        company_id: company.id,
        email: Email::parse(email).unwrap(),
        name: PersonName::parse("Ana", "name").unwrap(),
        role,
        active: true,
        password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        mfa_enabled: false,
        grants: rbac::PermissionSet::empty(),
        revokes: rbac::PermissionSet::empty(),
        created_at: t0(),
        updated_at: t0(),
        password_change_required: false,
    }
}

pub fn record(action: Action, company: Option<CompanyId>) -> AuditRecord {
    let mut r = AuditRecord::new(
        id(),
        t0(),
        action,
        Outcome::Success,
        &RequestContext::default(),
    );
    r.company_id = company;
    r
}

pub fn revocation(reason: RevocationReason, keep: Option<kernel::SessionId>) -> SessionRevocation {
    SessionRevocation {
        at: t0(),
        reason,
        keep,
        audit_template: record(Action::SESSION_REVOKED, None),
        ids: std::sync::Arc::new(V7Ids),
    }
}

/// Fresh time-ordered ids, as the production id port gives.
#[derive(Debug)]
pub struct V7Ids;

impl kernel::IdGenerator for V7Ids {
    fn new_id(&self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}

/// The first column of the one row `sql` answers on `db`.
pub async fn scalar<T: sea_orm::TryGetable>(db: &DatabaseConnection, sql: &str) -> T {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<T>(0).unwrap()
}

/// The count `sql` (a `SELECT COUNT(*)`) answers on `db`.
pub async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    scalar(db, sql).await
}

/// The audit chain MAC over a fixed test key.
/// A new company whose owner account has `role` (and a random email), stored through `store`.
pub async fn company_with_owner(store: &SeaStore, role: Role) -> (Company, User) {
    let c = company();
    let u = user(&c, &format!("{}@example.com", id().simple()), role);
    ::accounts::AccountRepository::create_company_with_owner(store, &c, &u, vec![])
        .await
        .unwrap();
    (c, u)
}

/// An Admin of a new company as a use case read them, and the same user after an Owner
/// demoted them to Vendor and deactivated them (committed): what a write from the first read
/// must not undo.
pub async fn admin_read_then_demoted(store: &SeaStore, email: &str) -> (Company, User, User) {
    use ::accounts::AccountRepository as _;
    let (co, _) = company_with_owner(store, Role::Owner).await;
    let read = user(&co, email, Role::Admin);
    store.insert_user(&read, vec![]).await.unwrap();
    let mut demoted = read.clone();
    demoted.role = Role::Vendor;
    demoted.active = false;
    store
        .update_user(
            &read,
            &demoted,
            &[::accounts::UserField::Role, ::accounts::UserField::Active],
            None,
            vec![],
        )
        .await
        .unwrap();
    (co, read, demoted)
}

pub fn chain() -> Arc<dyn ::audit::ChainMac> {
    let mut ring = crypto::Keyring::default();
    ring.insert(1, crypto::MasterKey::parse(&"77".repeat(32)).unwrap());
    Arc::new(crypto::HmacChain::new(&ring))
}

/// A migrated store per backend, with a company and its owner.
pub async fn stores() -> Vec<(TestDb, Arc<SeaStore>, DatabaseConnection)> {
    let mut out = Vec::new();
    for db in TestDb::each().await {
        let conn = db.connect().await;
        out.push((db, Arc::new(SeaStore::new(conn.clone(), chain())), conn));
    }
    out
}
