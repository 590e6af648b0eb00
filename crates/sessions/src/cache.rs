//! A short-lived, process-local cache of authenticated sessions (issue 10: an authenticated
//! request should cost little more than an unauthenticated one).
//!
//! Correctness rests on two rules:
//! - **Local changes are seen at once.** Every entry remembers the [`ChangeEpoch`] value read
//!   *before* its record was loaded; an entry is used only while no write that may change its
//!   user or the user's sessions advanced the epoch since ([`ChangeEpoch::changed_since`]). The
//!   storage adapter advances the epoch after every committed write that may change a session or
//!   a user, so a logout, a revocation, a role change or a deactivation made by this process
//!   invalidates every entry it could affect before the writing request returns, and only those
//!   when it can tell which user a write changed.
//! - **Other processes' changes are seen within the time to live** (default 1 s in the server;
//!   0 turns the cache off). Each entry is used at most that long after it was loaded.
//!
//! The cache holds no secret: it is keyed by the token's SHA-256, not by the token.
//!
//! [`ChangeEpoch`]: crate::ChangeEpoch
//! [`ChangeEpoch::changed_since`]: crate::ChangeEpoch::changed_since

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kernel::{Duration, Timestamp};

use crate::ChangeEpoch;
use crate::model::AuthRecord;

#[derive(Debug)]
struct Entry {
    record: AuthRecord,
    loaded_at: Timestamp,
    epoch: u64,
}

/// How often the cache answered, since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Authenticated requests answered from the cache.
    pub hits: u64,
    /// Requests that asked the store (nothing cached, stale, or past the time to live); 0 while
    /// the cache is off.
    pub misses: u64,
}

/// The cache; all methods are cheap and never hold the lock across an await.
#[derive(Debug)]
pub(crate) struct AuthCache {
    entries: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl AuthCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Hits and misses so far.
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn enabled(&self) -> bool {
        self.ttl > Duration::zero() && self.capacity > 0
    }

    /// The record cached under `key`, if nothing that may change it was written since it was
    /// loaded (per `epochs`) and it was loaded less than the time to live before `now`.
    pub(crate) fn get(
        &self,
        key: &str,
        now: Timestamp,
        epochs: &dyn ChangeEpoch,
    ) -> Option<AuthRecord> {
        if !self.enabled() {
            return None;
        }
        let found = self.lookup(key, now, epochs);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn lookup(&self, key: &str, now: Timestamp, epochs: &dyn ChangeEpoch) -> Option<AuthRecord> {
        // A poisoned lock only means a panic elsewhere: fall back to the database.
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        let fresh = self.fresh(entry, now, epochs);
        fresh.then(|| entry.record.clone())
    }

    fn fresh(&self, entry: &Entry, now: Timestamp, epochs: &dyn ChangeEpoch) -> bool {
        now >= entry.loaded_at
            && now - entry.loaded_at < self.ttl
            && !epochs.changed_since(entry.record.session.user_id, entry.epoch)
    }

    /// Keeps `record`, loaded after reading `epoch` from `epochs`, as of `now`.
    pub(crate) fn put(
        &self,
        key: &str,
        record: &AuthRecord,
        now: Timestamp,
        epoch: u64,
        epochs: &dyn ChangeEpoch,
    ) {
        if !self.enabled() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            entries.retain(|_, e| self.fresh(e, now, epochs));
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
