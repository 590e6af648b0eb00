//! Vault hot paths: envelope seal/open at 2 KiB and 1 MiB, signing, upload validation.
//! Run with `scripts/bench-vault.sh`, which also measures OpenSSL on the same machine.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crypto::{AesCtrHmacEnvelope, Keyring, MasterKey, SatInspector};
use vault::{AssociatedData, CertificateInspector, Envelope, Purpose};

fn fixture(name: &str, file: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut ring = Keyring::default();
    ring.insert(1, MasterKey::parse(&"42".repeat(32)).unwrap());
    let env = AesCtrHmacEnvelope::new(&ring);
    let ad = AssociatedData {
        company: kernel::CompanyId::from_uuid(uuid::Uuid::from_u128(1)),
        purpose: Purpose::PrivateKey,
        record: uuid::Uuid::from_u128(2),
    };
    let mut g = c.benchmark_group("envelope");
    for size in [2 * 1024, 1024 * 1024] {
        let data = vec![0x5a_u8; size];
        let sealed = env.seal(&data, &ad).unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("encrypt+MAC", size), &data, |b, d| {
            b.iter(|| env.seal_bytes(black_box(d), &ad).unwrap())
        });
        g.bench_with_input(
            BenchmarkId::new("seal (stored text form)", size),
            &data,
            |b, d| b.iter(|| env.seal(black_box(d), &ad).unwrap()),
        );
        g.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| {
            b.iter(|| env.open(black_box(s), &ad).unwrap())
        });
    }
    g.finish();

    let (cer, key, pw) = (
        fixture("csd_valid", "certificate.cer"),
        fixture("csd_valid", "private_key.key"),
        fixture("csd_valid", "password.txt"),
    );
    let cadena = vec![b'|'; 714];
    let mut g = c.benchmark_group("sat");
    g.sample_size(30);
    g.bench_function("sign CFDI cadena (decrypt key + RSA-2048 SHA-256)", |b| {
        b.iter(|| SatInspector.sign(&key, &pw, black_box(&cadena)).unwrap())
    });
    g.bench_function("upload validation (inspect + decrypt + match)", |b| {
        b.iter(|| {
            SatInspector.inspect(black_box(&cer)).unwrap();
            SatInspector.check_key(&cer, &key, &pw).unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
