//! The change epoch behind the session cache ([`sessions::ChangeEpoch`]), kept per user where a
//! write says which users it changed.
//!
//! A global sequence advances after every write that may change a session or a user. Each write
//! also records the sequence number it reached: against the users it changed (a login, a logout,
//! a user update), or against everyone when it cannot tell. A cached session is stale once its
//! user's mark, or the everyone mark, passes the sequence read before it was loaded. Users share
//! [`STRIPES`] marks by the last byte of their id (random in a v4 or v7 UUID): a change to one
//! user also empties the entries of the users in its stripe, which costs a reload, never a stale
//! answer.
//!
//! Why not one counter: every login in the process emptied every cached session, so at a few
//! logins a second the cache answered almost nothing in a deployment with many users.

use std::sync::atomic::{AtomicU64, Ordering};

use kernel::UserId;

/// How many per-user marks there are.
pub const STRIPES: usize = 256;

/// The stripe of `user`'s mark.
#[must_use]
pub fn stripe(user: UserId) -> usize {
    usize::from(user.as_uuid().as_bytes().last().copied().unwrap_or(0))
}

#[derive(Debug)]
pub(crate) struct Epochs {
    sequence: AtomicU64,
    everyone: AtomicU64,
    users: Vec<AtomicU64>,
}

impl Default for Epochs {
    fn default() -> Self {
        Self {
            sequence: AtomicU64::new(0),
            everyone: AtomicU64::new(0),
            users: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Epochs {
    pub(crate) fn current(&self) -> u64 {
        self.sequence.load(Ordering::Acquire)
    }

    fn advance(&self) -> u64 {
        self.sequence
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1)
    }

    /// After a write that may have changed any session or user (or whose outcome is unknown).
    pub(crate) fn changed_everyone(&self) {
        let at = self.advance();
        self.everyone.fetch_max(at, Ordering::AcqRel);
    }

    /// After a write that changed only `users` and their sessions.
    pub(crate) fn changed_users(&self, users: &[UserId]) {
        let at = self.advance();
        for user in users {
            match self.users.get(stripe(*user)) {
                Some(mark) => {
                    mark.fetch_max(at, Ordering::AcqRel);
                }
                None => {
                    self.everyone.fetch_max(at, Ordering::AcqRel);
                }
            }
        }
    }

    pub(crate) fn changed_since(&self, user: UserId, since: u64) -> bool {
        self.everyone.load(Ordering::Acquire) > since
            || self
                .users
                .get(stripe(user))
                .is_none_or(|mark| mark.load(Ordering::Acquire) > since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(last_byte: u8) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(0xabc0_0000 | u128::from(last_byte)))
    }

    #[test]
    fn a_users_change_marks_its_stripe_and_an_unattributed_one_marks_everyone() {
        let epochs = Epochs::default();
        let (ana, bea, ana_twin) = (user(1), user(2), user(1));
        let before = epochs.current();
        assert!(!epochs.changed_since(ana, before));
        epochs.changed_users(&[ana]);
        assert!(epochs.changed_since(ana, before));
        assert!(
            epochs.changed_since(ana_twin, before),
            "same stripe: reloaded"
        );
        assert!(!epochs.changed_since(bea, before), "another stripe: kept");
        let later = epochs.current();
        assert!(!epochs.changed_since(ana, later), "loaded after the change");
        epochs.changed_everyone();
        assert!(epochs.changed_since(bea, later));
        assert!(epochs.changed_since(ana, later));
        assert_eq!(stripe(user(255)), 255);
    }
}
