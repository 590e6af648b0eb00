//! The per-client cap on requests in flight (`http_api::in_flight`), which every request passes:
//! taking a slot and giving it back, for a lone client and with many others in flight, and the
//! refusal of a client at its cap.
//!
//! Run: `cargo bench -p http-api --bench in_flight`. Figures go to docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use http_api::in_flight::InFlight;
use kernel::ClientNet;

fn client(n: u32) -> Option<ClientNet> {
    Some(ClientNet::from(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("in_flight");
    let set = InFlight::new(64);
    group.bench_function("enter_and_leave_alone", |b| {
        b.iter(|| drop(black_box(set.enter(black_box(client(1))))));
    });

    // 10,000 other clients with a request each in flight: the map is that large throughout.
    let crowd = InFlight::new(64);
    let held: Vec<_> = (2..10_002)
        .map(|n| crowd.enter(client(n)).unwrap())
        .collect();
    group.bench_function("enter_and_leave_among_10000_clients", |b| {
        b.iter(|| drop(black_box(crowd.enter(black_box(client(1))))));
    });

    // A client already at its cap: refused without counting.
    let full = InFlight::new(64);
    let at_cap: Vec<_> = (0..64).map(|_| full.enter(client(1)).unwrap()).collect();
    group.bench_function("refused_at_the_cap", |b| {
        b.iter(|| assert!(black_box(full.enter(black_box(client(1)))).is_none()));
    });

    let off = InFlight::new(0);
    group.bench_function("cap_off", |b| {
        b.iter(|| drop(black_box(off.enter(black_box(client(1))))));
    });
    group.finish();
    drop((held, at_cap));
}

criterion_group!(benches, bench);
criterion_main!(benches);
