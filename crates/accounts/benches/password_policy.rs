//! The password policy check (PWD-1, PWD-2, PWD-4) on every sign-up, user creation and password
//! change: length, classes, confirmation, the common-password list and the email rule.
//! Run: `cargo bench -p accounts --bench password_policy`.
#![allow(clippy::unwrap_used, missing_docs)]

use accounts::{Email, Password, PasswordPolicy};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let policy = PasswordPolicy::default();
    let email = Email::parse("ana.lopez@example.com").unwrap();
    let strong = Password::new("Tlacuache#2026-Güero");
    let common = Password::new("Password123!");
    let long = Password::new(&"Aa1!".repeat(32));
    c.bench_function("password policy: strong (accepted)", |b| {
        b.iter(|| policy.check(&strong, &strong, Some(&email)));
    });
    c.bench_function("password policy: common (refused)", |b| {
        b.iter(|| policy.check(&common, &common, Some(&email)));
    });
    c.bench_function("password policy: 128 characters", |b| {
        b.iter(|| policy.check(&long, &long, Some(&email)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
