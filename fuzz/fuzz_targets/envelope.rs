//! Any text as a stored envelope: it opens only if it is a genuine seal of this record.
#![no_main]
use vault::{AssociatedData, Envelope, Purpose, Sealed};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut ring = crypto::Keyring::default();
    ring.insert(1, crypto::MasterKey::parse(&"11".repeat(32)).unwrap());
    let env = crypto::AesCtrHmacEnvelope::new(&ring);
    let ad = AssociatedData {
        company: kernel::CompanyId::from_uuid(uuid::Uuid::from_u128(1)),
        purpose: Purpose::PrivateKey,
        record: uuid::Uuid::from_u128(2),
    };
    let text = String::from_utf8_lossy(data).into_owned();
    assert!(env.open(&Sealed::new(text), &ad).is_err(), "a forged envelope opened");
});
