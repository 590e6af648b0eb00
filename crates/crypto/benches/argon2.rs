//! Password hashing at the default (OWASP minimum) parameters: one hash alone, and the
//! throughput of one hash per core at once — the ceiling for logins on this machine (issue 10's
//! "Argon2 bound" assumes hashes on different cores do not slow each other down; this measures
//! whether they do). Run: `cargo bench -p crypto --bench argon2`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use accounts::{Password, PasswordHasher as _};
use criterion::{Criterion, criterion_group, criterion_main};
use crypto::{Argon2Hasher, HashParams};

fn bench(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hasher = Arc::new(Argon2Hasher::new(HashParams::OWASP_MINIMUM, cores).unwrap());
    let password = Password::new("Tlacuache#2026");
    let mut group = c.benchmark_group("argon2id m=19456 t=2 p=1");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    group.bench_function("one hash", |b| {
        b.iter(|| rt.block_on(hasher.hash(&password)).unwrap());
    });
    group.bench_function(format!("{cores} hashes at once (one per core)"), |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    let jobs = (0..cores).map(|_| {
                        let (h, p) = (hasher.clone(), password.clone());
                        tokio::spawn(async move { h.hash(&p).await.unwrap() })
                    });
                    for job in futures_util::future::join_all(jobs).await {
                        job.unwrap();
                    }
                }
            });
            started.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
