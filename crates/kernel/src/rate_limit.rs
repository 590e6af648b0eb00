use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use chrono::Duration;

use crate::Timestamp;

/// A fixed-window counter per key (an IP address, say), kept in process memory: "at most `limit`
/// events per `window`". Used for the per-IP limits of OPS-4, which may live in one process; the
/// per-account login throttle lives in the database instead.
///
/// Memory is bounded: past `max_keys` keys, expired windows are dropped first and, if that is not
/// enough, the key with the oldest window is dropped.
#[derive(Debug)]
pub struct RateLimiter<K> {
    limit: u32,
    window: Duration,
    max_keys: usize,
    windows: Mutex<HashMap<K, (Timestamp, u32)>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `limit` events per `window`; `limit == 0` turns the limiter off.
    #[must_use]
    ///
    /// ```
    /// use kernel::{Clock as _, Duration, ManualClock, RateLimiter};
    ///
    /// let clock = ManualClock::new(chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap());
    /// let limiter = RateLimiter::new(2, Duration::hours(1), 10_000);
    /// let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    /// limiter.hit(&ip, clock.now());
    /// assert_eq!(limiter.retry_after(&ip, clock.now()), None);
    /// limiter.hit(&ip, clock.now());
    /// assert!(limiter.retry_after(&ip, clock.now()).is_some(), "two hits: limited");
    /// clock.advance(Duration::hours(1));
    /// assert_eq!(limiter.retry_after(&ip, clock.now()), None, "the window moved on");
    /// ```
    pub fn new(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            max_keys: max_keys.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `true` when the limiter is off.
    #[must_use]
    pub const fn is_disabled(&self) -> bool {
        self.limit == 0
    }

    /// When `key` has used up its window: how long until it may try again.
    #[must_use]
    pub fn retry_after(&self, key: &K, now: Timestamp) -> Option<Duration> {
        if self.is_disabled() {
            return None;
        }
        let windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (start, count) = windows.get(key)?;
        let end = *start + self.window;
        (now < end && *count >= self.limit).then(|| end - now)
    }

    /// Counts one event for `key`.
    pub fn hit(&self, key: &K, now: Timestamp) {
        if self.is_disabled() {
            return;
        }
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !windows.contains_key(key) && windows.len() >= self.max_keys {
            let window = self.window;
            windows.retain(|_, (start, _)| *start + window > now);
            let oldest = (windows.len() >= self.max_keys)
                .then(|| {
                    windows
                        .iter()
                        .min_by_key(|(_, (start, _))| *start)
                        .map(|(k, _)| k.clone())
                })
                .flatten();
            if let Some(oldest) = oldest {
                windows.remove(&oldest);
            }
        }
        let entry = windows.entry(key.clone()).or_insert((now, 0));
        if entry.0 + self.window <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// Forgets `key`.
    pub fn clear(&self, key: &K) {
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let limiter = RateLimiter::new(3, Duration::hours(1), 10);
        for _ in 0..3 {
            assert!(limiter.retry_after(&"ip", t0()).is_none());
            limiter.hit(&"ip", t0());
        }
        assert_eq!(
            limiter.retry_after(&"ip", t0() + Duration::minutes(10)),
            Some(Duration::minutes(50))
        );
        assert!(limiter.retry_after(&"other", t0()).is_none());
        assert!(
            limiter
                .retry_after(&"ip", t0() + Duration::hours(1))
                .is_none()
        );
        limiter.hit(&"ip", t0() + Duration::hours(1));
        assert!(
            limiter
                .retry_after(&"ip", t0() + Duration::hours(1))
                .is_none()
        );
    }

    #[test]
    fn zero_disables() {
        let limiter = RateLimiter::new(0, Duration::hours(1), 10);
        for _ in 0..100 {
            limiter.hit(&1, t0());
        }
        assert!(limiter.retry_after(&1, t0()).is_none());
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = RateLimiter::new(1, Duration::hours(1), 4);
        for key in 0..100 {
            limiter.hit(&key, t0() + Duration::seconds(key));
        }
        assert!(limiter.windows.lock().unwrap().len() <= 4);
        // The newest keys are kept.
        assert!(
            limiter
                .retry_after(&99, t0() + Duration::seconds(100))
                .is_some()
        );
    }
}
