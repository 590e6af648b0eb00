//! Session validation's storage half (issue 10): hashing a presented token (SHA-256, SES-3) and
//! loading its session with the user (`SessionStore::find_by_token`), the work of every
//! authenticated request that the session cache does not answer; and a login's write
//! transaction at the session cap (`SessionStore::create_capped`: sequence number, live sessions,
//! one revocation, the new session, two audit records), on PostgreSQL both through the one-call
//! function of migration m0011 and statement by statement. SQLite always; PostgreSQL when
//! `TEST_DATABASE_URL` is set. Run: `cargo bench -p store-sea --bench session_lookup`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;

use accounts::{
    AccountRepository as _, Company, CompanyName, Email, PasswordHash, PersonName,
    RevocationReason, SessionRevocation, User,
};
use audit::{Action, AuditRecord, Outcome};
use criterion::{Criterion, criterion_group, criterion_main};
use kernel::{CompanyId, RequestContext, SessionId, UserId};
use sessions::{NewSession, SessionStore as _, TokenIssuer as _};
use store_sea::SeaStore;
use test_support::TestDb;

mod common;

/// Fresh time-ordered ids, as the production id port gives.
struct V7Ids;

impl kernel::IdGenerator for V7Ids {
    fn new_id(&self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}

fn record(action: Action, company: Option<CompanyId>) -> AuditRecord {
    let mut r = AuditRecord::new(
        uuid::Uuid::now_v7(),
        kernel::Clock::now(&kernel::SystemClock),
        action,
        Outcome::Success,
        &RequestContext::default(),
    );
    r.company_id = company;
    r
}

/// A new session of `user` opened now.
fn new_session(company: CompanyId, user: UserId) -> NewSession {
    let now = kernel::Clock::now(&kernel::SystemClock);
    NewSession {
        id: SessionId::from_uuid(uuid::Uuid::now_v7()),
        company_id: company,
        user_id: user,
        token_hash: crypto::RandomTokens.issue().1,
        created_at: now,
        expires_at: now + chrono::Duration::hours(12),
        ip: None,
        user_agent: None,
        mfa_enrolment_only: false,
    }
}

/// Opens `session` with a cap of 2 sessions, as a login does, its records in the company's
/// chain (as the sessions service writes them) or, with `own_chain` false, in the system chain:
/// on PostgreSQL that takes the statement-by-statement path the one-call function replaced.
async fn open(store: &SeaStore, session: &NewSession, own_chain: bool) {
    let chain = own_chain.then_some(session.company_id);
    store
        .create_capped(
            session,
            2,
            chrono::Duration::minutes(30),
            record(Action::SESSION_LOGIN, chain),
            SessionRevocation {
                at: session.created_at,
                reason: RevocationReason::SessionLimit,
                keep: None,
                audit_template: record(Action::SESSION_REVOKED, chain),
                ids: std::sync::Arc::new(V7Ids),
            },
        )
        .await
        .unwrap();
}

/// A store with one company, one user and one live session; returns the store, the session's
/// token and the user.
fn setup(
    rt: &tokio::runtime::Runtime,
    db: &TestDb,
) -> (Arc<SeaStore>, String, (CompanyId, UserId)) {
    rt.block_on(async {
        let store = Arc::new(SeaStore::new(db.connect().await, common::chain_mac()));
        let now = kernel::Clock::now(&kernel::SystemClock);
        let company = Company {
            id: CompanyId::from_uuid(uuid::Uuid::now_v7()),
            name: CompanyName::parse("Acme").unwrap(),
            rfc: None,
            session_limit: None,
            profile: accounts::CompanyProfile::default(),
            created_at: now,
        };
        let user = User {
            id: UserId::from_uuid(uuid::Uuid::now_v7()),
            company_id: company.id,
            email: Email::parse("ana@example.com").unwrap(),
            name: PersonName::parse("Ana", "name").unwrap(),
            role: rbac::Role::Admin,
            active: true,
            password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            mfa_enabled: false,
            grants: rbac::PermissionSet::empty(),
            revokes: rbac::PermissionSet::empty(),
            created_at: now,
            updated_at: now,
            password_change_required: false,
        };
        store
            .create_company_with_owner(&company, &user, vec![])
            .await
            .unwrap();
        let (token, hash) = crypto::RandomTokens.issue();
        let session = NewSession {
            token_hash: hash,
            ..new_session(company.id, user.id)
        };
        open(&store, &session, true).await;
        (store, token.expose().to_owned(), (company.id, user.id))
    })
}

fn bench(c: &mut Criterion) {
    let rt = common::runtime();
    let token = "Q2hvcml6byBjb24gaHVldm8geSB0b3J0aWxsYXMgZGUgaGFyaW5h";
    c.bench_function("token hash (SHA-256, hex)", |b| {
        b.iter(|| crypto::RandomTokens.hash(std::hint::black_box(token)));
    });
    let dbs = common::databases(&rt);
    for db in &dbs {
        let (store, token, (company, user)) = setup(&rt, db);
        let hash = crypto::RandomTokens.hash(&token);
        c.bench_function(&format!("find_by_token ({})", db.backend), |b| {
            // `block_on` adds about a microsecond per call; the lookup is far slower.
            b.iter(|| rt.block_on(store.find_by_token(&hash)).unwrap().unwrap());
        });
        // From the second iteration on, every login finds two live sessions and revokes one.
        c.bench_function(&format!("create_capped at the cap ({})", db.backend), |b| {
            b.iter(|| rt.block_on(open(&store, &new_session(company, user), true)));
        });
        if db.backend == "postgres" {
            c.bench_function(
                "create_capped at the cap, statement by statement (postgres)",
                |b| {
                    b.iter(|| rt.block_on(open(&store, &new_session(company, user), false)));
                },
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);
