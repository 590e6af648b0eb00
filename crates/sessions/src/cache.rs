//! A short-lived, process-local cache of authenticated sessions (issue 10: an authenticated
//! request should cost little more than an unauthenticated one).
//!
//! Correctness rests on two rules:
//! - **Local changes are seen at once.** Every entry remembers the [`ChangeEpoch`] value read
//!   *before* its record was loaded; an entry is used only while the epoch is unchanged. The
//!   storage adapter advances the epoch after every committed write that may change a session or
//!   a user, so a logout, a revocation, a role change or a deactivation made by this process
//!   invalidates every entry it could affect before the writing request returns.
//! - **Other processes' changes are seen within the time to live** (default 1 s in the server;
//!   0 turns the cache off). Each entry is used at most that long after it was loaded.
//!
//! The cache holds no secret: it is keyed by the token's SHA-256, not by the token.
//!
//! [`ChangeEpoch`]: crate::ChangeEpoch

use std::collections::HashMap;
use std::sync::Mutex;

use kernel::{Duration, Timestamp};

use crate::model::AuthRecord;

#[derive(Debug)]
struct Entry {
    record: AuthRecord,
    loaded_at: Timestamp,
    epoch: u64,
}

/// The cache; all methods are cheap and never hold the lock across an await.
#[derive(Debug)]
pub(crate) struct AuthCache {
    entries: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    capacity: usize,
}

impl AuthCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity,
        }
    }

    fn enabled(&self) -> bool {
        self.ttl > Duration::zero() && self.capacity > 0
    }

    /// The record cached under `key`, if it was loaded under `epoch` less than the time to live
    /// before `now`.
    pub(crate) fn get(&self, key: &str, now: Timestamp, epoch: u64) -> Option<AuthRecord> {
        if !self.enabled() {
            return None;
        }
        // A poisoned lock only means a panic elsewhere: fall back to the database.
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        let fresh =
            entry.epoch == epoch && now >= entry.loaded_at && now - entry.loaded_at < self.ttl;
        fresh.then(|| entry.record.clone())
    }

    /// Keeps `record`, loaded after reading `epoch`, as of `now`.
    pub(crate) fn put(&self, key: &str, record: &AuthRecord, now: Timestamp, epoch: u64) {
        if !self.enabled() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            let ttl = self.ttl;
            entries.retain(|_, e| e.epoch == epoch && now - e.loaded_at < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            key.to_owned(),
            Entry {
                record: record.clone(),
                loaded_at: now,
                epoch,
            },
        );
    }

    /// Records that the session under `key` was seen at `at` (its `last_seen_at` was written).
    pub(crate) fn touched(&self, key: &str, at: Timestamp) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(key)
            && entry.record.session.last_seen_at < at
        {
            entry.record.session.last_seen_at = at;
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }
}
