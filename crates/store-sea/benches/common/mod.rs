//! What the store's benchmarks share: a two-thread runtime, the databases to measure (SQLite
//! always, PostgreSQL when `TEST_DATABASE_URL` is set) and a store on one of them.
// Each benchmark uses part of this.
#![allow(dead_code)]

use std::sync::Arc;

use store_sea::SeaStore;
use test_support::TestDb;

/// A runtime with two worker threads, as many as the machine's cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh SQLite database, and a fresh PostgreSQL one when `TEST_DATABASE_URL` is set.
pub fn databases(rt: &tokio::runtime::Runtime) -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite()];
    if let Some(pg) = rt.block_on(TestDb::postgres()) {
        dbs.push(pg);
    }
    dbs
}

/// The audit chain's MAC under a fixed benchmark key.
pub fn chain_mac() -> Arc<crypto::HmacChain> {
    let mut ring = crypto::Keyring::default();
    ring.insert(1, crypto::MasterKey::parse(&"42".repeat(32)).unwrap());
    Arc::new(crypto::HmacChain::new(&ring))
}

/// A store on `db` with [`chain_mac`].
pub fn store(rt: &tokio::runtime::Runtime, db: &TestDb) -> Arc<SeaStore> {
    rt.block_on(async { Arc::new(SeaStore::new(db.connect().await, chain_mac())) })
}
