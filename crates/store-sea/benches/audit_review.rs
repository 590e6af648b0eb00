//! The automated review (AUD-7) of one company's chain: 1,000 failed logins (20 accounts, 50
//! addresses), 200 logins of four Admins (three addresses each) and 10 exports. Each iteration
//! reviews the whole chain from the start (cursor and alerts reset in between). SQLite always;
//! PostgreSQL when `TEST_DATABASE_URL` is set.
//! Run: `cargo bench -p store-sea --bench audit_review`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{Action, AuditRecord, AuditService, AuditSink, Outcome, chain_name};
use criterion::{Criterion, criterion_group, criterion_main};
use kernel::{CompanyId, ManualClock, RequestContext, SequentialIds, UserId};
use sea_orm::ConnectionTrait as _;

mod common;

use common::{chain_mac, databases, runtime, store};

fn at(n: u32) -> kernel::Timestamp {
    chrono::DateTime::from_timestamp(1_790_000_000 + i64::from(n), 0).unwrap()
}

fn record(company: CompanyId, n: u32, action: Action, outcome: Outcome, ip: String) -> AuditRecord {
    let ctx = RequestContext::new(Some(ip.parse().unwrap()), Some("bench/1"), None);
    AuditRecord::new(uuid::Uuid::now_v7(), at(n), action, outcome, &ctx).company(company)
}

/// The chain's records, in order.
fn records(company: CompanyId) -> Vec<AuditRecord> {
    let admins: Vec<UserId> = (0..4)
        .map(|_| UserId::from_uuid(uuid::Uuid::now_v7()))
        .collect();
    let mut out = Vec::new();
    for n in 0..1_210u32 {
        let r = if n % 121 == 120 {
            record(
                company,
                n,
                Action::AUDIT_EXPORTED,
                Outcome::Success,
                "192.0.2.1".into(),
            )
            .actor(admins[0])
        } else if n % 6 == 5 {
            let admin = admins[usize::try_from(n / 6 % 4).unwrap()];
            record(
                company,
                n,
                Action::SESSION_LOGIN,
                Outcome::Success,
                format!("198.51.100.{}", n % 3),
            )
            .actor(admin)
            .details(serde_json::json!({ "role": "admin" }))
        } else {
            record(
                company,
                n,
                Action::SESSION_LOGIN,
                Outcome::Failure,
                format!("203.0.113.{}", n % 50),
            )
            .details(serde_json::json!({
                "reason": "invalid_credentials",
                "email": format!("user{}@example.com", n % 20),
            }))
        };
        out.push(r);
    }
    out
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let dbs = databases(&rt);
    for db in &dbs {
        let s = store(&rt, db);
        let company = CompanyId::from_uuid(uuid::Uuid::now_v7());
        rt.block_on(async {
            for r in records(company) {
                s.record(r).await.unwrap();
            }
        });
        let service = AuditService::new(
            s.clone(),
            s.clone(),
            chain_mac(),
            Arc::new(ManualClock::new(at(0))),
            Arc::new(SequentialIds::default()),
        );
        let chain = chain_name(Some(company));
        let mut g = c.benchmark_group(format!("audit_review/{}", db.backend));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(20));
        g.bench_function("review 1,210 records", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    rt.block_on(async {
                        for sql in [
                            "DELETE FROM audit_alerts",
                            "DELETE FROM audit_review_cursors",
                        ] {
                            s.connection().execute_unprepared(sql).await.unwrap();
                        }
                    });
                    let start = Instant::now();
                    let raised = rt.block_on(service.review_chain(&chain)).unwrap();
                    total += start.elapsed();
                    assert!(!raised.is_empty(), "the chain raises alerts");
                }
                total
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
