//! Chained audit appends (AUD-4) per second: each record in its own write transaction, as an
//! audited action writes it. SQLite always; PostgreSQL when `TEST_DATABASE_URL` is set.
//! Run: `cargo bench -p store-sea --bench audit_append`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{Action, AuditRecord, AuditSink, Outcome};
use criterion::{Criterion, criterion_group, criterion_main};
use kernel::{CompanyId, RequestContext};
use store_sea::SeaStore;

mod common;

use common::{databases, runtime, store};

fn record(company: CompanyId) -> AuditRecord {
    let ctx = RequestContext::new(
        Some("203.0.113.7".parse().unwrap()),
        Some("bench/1"),
        Some("req-1".into()),
    );
    AuditRecord::new(
        uuid::Uuid::now_v7(),
        chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        Action::USER_UPDATED,
        Outcome::Success,
        &ctx,
    )
    .company(company)
    .details(serde_json::json!({ "fields": ["name"] }))
}

/// Appends `total` records from `tasks` concurrent tasks, each to its own company or all to one.
fn throughput(
    rt: &tokio::runtime::Runtime,
    s: &Arc<SeaStore>,
    tasks: usize,
    total: usize,
    shared_chain: bool,
) -> f64 {
    let one = CompanyId::from_uuid(uuid::Uuid::now_v7());
    let start = Instant::now();
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let s = s.clone();
            let company = if shared_chain {
                one
            } else {
                CompanyId::from_uuid(uuid::Uuid::now_v7())
            };
            handles.push(tokio::spawn(async move {
                for _ in 0..total / tasks {
                    s.record(record(company)).await.unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let dbs = databases(&rt);
    for db in &dbs {
        let s = store(&rt, db);
        let company = CompanyId::from_uuid(uuid::Uuid::now_v7());
        let mut g = c.benchmark_group(format!("audit_append/{}", db.backend));
        g.measurement_time(Duration::from_secs(5));
        g.bench_function("floor: empty write transaction", |b| {
            b.iter(|| {
                rt.block_on(async {
                    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
                    let txn = s.connection().begin().await.unwrap();
                    txn.execute_unprepared(
                        "UPDATE audit_chain_heads SET seq = seq WHERE chain = 'none'",
                    )
                    .await
                    .unwrap();
                    txn.commit().await.unwrap();
                })
            });
        });
        g.bench_function("one chained record per transaction", |b| {
            b.iter(|| rt.block_on(s.record(record(company))).unwrap());
        });
        g.finish();
        for (tasks, shared) in [(1, true), (8, true), (8, false)] {
            let rate = throughput(&rt, &s, tasks, 8_000, shared);
            let chains = if shared { "one company" } else { "8 companies" };
            println!(
                "audit_append/{}: {tasks} task(s), {chains}: {rate:.0} records/s",
                db.backend
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
