//! Shared vocabulary of the IncrementaCRM security core.
//!
//! Ids of tenants, users and sessions, the request context every use case receives, and the two
//! ports every core needs: [`Clock`] (time) and [`IdGenerator`] (fresh ids). Nothing here knows a
//! database, a web framework or a cryptographic library, and nothing here ever may: every other
//! crate depends on this one.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod context;
mod cursor;
mod ids;
mod rate_limit;
mod text;
mod unavailable;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use context::RequestContext;
pub use cursor::{TimeCursor, cut_page};
pub use ids::{CompanyId, IdGenerator, SequentialIds, SessionId, UserId};
pub use rate_limit::{ClientNet, RateLimiter};
pub use text::{TextProblem, clean_text};
pub use unavailable::{Unavailable, is_unavailable};

/// Re-exported so users of the ports name the same duration type.
pub use chrono::Duration;

#[cfg(any(test, feature = "mocks"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use ids::MockIdGenerator;
