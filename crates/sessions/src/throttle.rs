use chrono::Duration;
use kernel::Timestamp;

/// Per-account login throttling (OPS-4): after `threshold` failures in a row the account is locked
/// for `base_lock`, doubling with every further lockout up to `max_lock`. A success resets it.
/// It cannot be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures in a row that trigger a lock.
    pub threshold: u32,
    /// First lock.
    pub base_lock: Duration,
    /// Longest lock.
    pub max_lock: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            threshold: 5,
            base_lock: Duration::minutes(1),
            max_lock: Duration::hours(1),
        }
    }
}

/// What the store keeps per throttle key (the normalized email).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleState {
    /// Failures since the last success or lock.
    pub failures: u32,
    /// Locks so far since the last success.
    pub lockouts: u32,
    /// Locked until then.
    pub locked_until: Option<Timestamp>,
}

impl ThrottlePolicy {
    /// The state after one more failure at `now`. Pure, so every store applies the same rule.
    ///
    /// ```
    /// use chrono::{Duration, TimeZone as _, Utc};
    /// use sessions::{ThrottlePolicy, ThrottleState};
    ///
    /// let policy = ThrottlePolicy::default();
    /// let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    /// let mut state = ThrottleState::default();
    /// for _ in 0..5 {
    ///     state = policy.after_failure(state, now);
    /// }
    /// // The fifth failure in a row locks the account for a minute.
    /// assert_eq!(ThrottlePolicy::remaining(&state, now), Some(Duration::minutes(1)));
    /// assert_eq!(ThrottlePolicy::remaining(&state, now + Duration::minutes(1)), None);
    /// ```
    #[must_use]
    pub fn after_failure(&self, state: ThrottleState, now: Timestamp) -> ThrottleState {
        let failures = state.failures.saturating_add(1);
        if failures < self.threshold.max(1) {
            return ThrottleState { failures, ..state };
        }
        let lockouts = state.lockouts.saturating_add(1);
        let factor = 1_i32
            .checked_shl(lockouts.saturating_sub(1).min(20))
            .unwrap_or(i32::MAX);
        let lock = (self.base_lock * factor).min(self.max_lock);
        ThrottleState {
            failures: 0,
            lockouts,
            locked_until: Some(now + lock),
        }
    }

    /// How long `state` stays locked after `now`, if it is locked.
    #[must_use]
    pub fn remaining(state: &ThrottleState, now: Timestamp) -> Option<Duration> {
        state
            .locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn locks_after_five_in_a_row_and_grows() {
        let policy = ThrottlePolicy::default();
        let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut state = ThrottleState::default();
        for _ in 0..4 {
            state = policy.after_failure(state, now);
            assert_eq!(ThrottlePolicy::remaining(&state, now), None);
        }
        state = policy.after_failure(state, now);
        assert_eq!(
            ThrottlePolicy::remaining(&state, now),
            Some(Duration::minutes(1))
        );
        for _ in 0..5 {
            state = policy.after_failure(state, now);
        }
        assert_eq!(
            ThrottlePolicy::remaining(&state, now),
            Some(Duration::minutes(2))
        );
        for _ in 0..50 {
            state = policy.after_failure(state, now);
        }
        assert_eq!(
            ThrottlePolicy::remaining(&state, now),
            Some(Duration::hours(1)),
            "capped"
        );
        assert_eq!(
            ThrottlePolicy::remaining(&state, now + Duration::hours(2)),
            None
        );
    }
}
