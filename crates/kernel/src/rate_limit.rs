use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use chrono::Duration;

use crate::Timestamp;

/// The network a per-IP limit counts a client by: an IPv4 address as it is, an IPv6 address by
/// the /64 it belongs to, an IPv4-mapped IPv6 address as its IPv4 address.
///
/// Why the /64: it is the smallest network an IPv6 subscriber is given, and every host on it
/// picks its own addresses (privacy extensions make new ones all day). Counted address by address,
/// one client could step around every per-IP limit with 2^64 addresses to spare, and push
/// everyone else's windows out of the limiter's bounded memory while at it. The full address
/// still goes to the audit log; only the limits count by network.
///
/// ```
/// use kernel::ClientNet;
///
/// let a: std::net::IpAddr = "2001:db8:1:2::a".parse().unwrap();
/// let b: std::net::IpAddr = "2001:db8:1:2:ffff::b".parse().unwrap();
/// assert_eq!(ClientNet::from(a), ClientNet::from(b));
/// assert_eq!(ClientNet::from(a).to_string(), "2001:db8:1:2::/64");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientNet(IpAddr);

impl From<IpAddr> for ClientNet {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(
                || {
                    let prefix = v6.to_bits() & !u128::from(u64::MAX);
                    Self(IpAddr::V6(Ipv6Addr::from_bits(prefix)))
                },
                |v4| Self(IpAddr::V4(v4)),
            ),
        }
    }
}

impl std::fmt::Display for ClientNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A fixed-window counter per key (an IP address, say), kept in process memory: "at most `limit`
/// events per `window`". Used for the per-IP limits of OPS-4, which may live in one process; the
/// per-account login throttle lives in the database instead.
///
/// Memory is bounded: past `max_keys` keys, expired windows are dropped first and, if that is not
/// enough, the oldest eighth of the keys.
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
            self.make_room(&mut windows, now);
        }
        let entry = windows.entry(key.clone()).or_insert((now, 0));
        if entry.0 + self.window <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// Drops the expired windows and, if that frees too little, the oldest eighth of the rest:
    /// a full limiter then takes `max_keys / 8` new keys before it scans its map again, so a
    /// client that keeps it full (many sources, one attempt each) cannot make every attempt
    /// pay for a scan of the whole map under the lock.
    fn make_room(&self, windows: &mut HashMap<K, (Timestamp, u32)>, now: Timestamp) {
        let window = self.window;
        windows.retain(|_, (start, _)| *start + window > now);
        let room = (self.max_keys / 8).max(1);
        if windows.len() + room <= self.max_keys {
            return;
        }
        let excess = windows.len() + room - self.max_keys;
        let mut starts: Vec<Timestamp> = windows.values().map(|(start, _)| *start).collect();
        // `excess <= windows.len()` since `room <= max_keys`; the guard keeps it obvious.
        let nth = excess.saturating_sub(1);
        if nth >= starts.len() {
            return;
        }
        let cut = *starts.select_nth_unstable(nth).1;
        // Windows that started at `cut` or before: at least `excess` of them (more on ties).
        windows.retain(|_, (start, _)| *start > cut);
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
    fn an_ipv6_client_is_counted_by_its_64_and_an_ipv4_mapped_one_by_its_ipv4() {
        let net = |s: &str| ClientNet::from(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            net("2001:db8:1:2::1"),
            net("2001:db8:1:2:abcd:ef01:2345:6789")
        );
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_eq!(net("::ffff:203.0.113.7"), net("203.0.113.7"));
        assert_ne!(net("203.0.113.7"), net("203.0.113.8"));
        assert_eq!(net("::1").to_string(), "::/64");
        assert_eq!(net("203.0.113.7").to_string(), "203.0.113.7");

        // One client rotating through its /64 meets the limit after `limit` attempts.
        let limiter = RateLimiter::new(3, Duration::hours(1), 10);
        for i in 0..3_u16 {
            let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, i, i, i));
            assert!(limiter.retry_after(&ClientNet::from(ip), t0()).is_none());
            limiter.hit(&ClientNet::from(ip), t0());
        }
        let fresh = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9));
        assert!(limiter.retry_after(&ClientNet::from(fresh), t0()).is_some());
        let neighbour = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 9, 9, 9, 9));
        assert!(
            limiter
                .retry_after(&ClientNet::from(neighbour), t0())
                .is_none()
        );
    }

    #[test]
    fn a_full_limiter_drops_the_oldest_eighth_at_once_and_keeps_counting_the_rest() {
        let limiter = RateLimiter::new(1, Duration::hours(1), 80);
        for key in 0..80 {
            limiter.hit(&key, t0() + Duration::seconds(key));
        }
        assert_eq!(limiter.windows.lock().unwrap().len(), 80);
        // The 81st key makes room for ten: the ten oldest go, the new one comes in.
        limiter.hit(&80, t0() + Duration::seconds(80));
        assert_eq!(limiter.windows.lock().unwrap().len(), 71);
        let later = t0() + Duration::seconds(81);
        assert!(limiter.retry_after(&9, later).is_none(), "dropped");
        assert!(limiter.retry_after(&10, later).is_some(), "kept");
        assert!(limiter.retry_after(&80, later).is_some(), "kept");
        // The next nine fit without dropping anything.
        for key in 81..90 {
            limiter.hit(&key, t0() + Duration::seconds(key));
        }
        assert_eq!(limiter.windows.lock().unwrap().len(), 80);
        assert!(limiter.retry_after(&10, later).is_some());
        // Expired windows go first; when they make room enough, no live one goes.
        let next_hour = t0() + Duration::seconds(30) + Duration::hours(1);
        limiter.hit(&1000, next_hour);
        let windows = limiter.windows.lock().unwrap();
        assert!(!windows.contains_key(&30), "expired at {next_hour}");
        assert!(windows.contains_key(&31) && windows.contains_key(&1000));
        assert_eq!(windows.len(), 60, "keys 31..=89 and the new one");
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
