//! A cap on the requests one client has in flight at once.
//!
//! The per-IP limits of OPS-4 count events over an hour (failed logins, sign-ups, unknown
//! tokens); none bounds how many requests one address keeps open at the same moment. Without
//! such a bound one client can hold every hashing slot's queue, every pooled database
//! connection and every worker's attention with a few hundred parallel requests while its
//! per-hour counters still look innocent. [`InFlight`] counts, per client network
//! ([`kernel::ClientNet`]: an IPv4 address, an IPv6 /64), the requests whose response has not
//! yet been fully sent; past [`crate::ApiState::in_flight`]'s limit a request is answered 429
//! `rate_limited` with `Retry-After: 1` before anything else runs. A request counts from its
//! head until its response body is finished or dropped, so a streaming response counts for as
//! long as it streams.
//!
//! Requests that compute a password hash ([`crate::routes::hashes_password`]: a login, a
//! re-authentication, a sign-up, a new user, a password change or reset) are also counted
//! against a much smaller cap, [`crate::ApiState::hashing`]. The hashing threads serve
//! requests in the order they come: a client that keeps 64 logins waiting would put every
//! other client's login behind 64 hashes (a second and more on two cores), so one address may
//! have only a few of them in flight at once, and everyone else's wait stays a few hashes long.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{ResponseError as _, web};
use kernel::ClientNet;

use crate::ApiState;

/// The default cap on one client's requests in flight: far above what a browser or an office
/// behind one address sends at once (a browser opens at most six connections to a host, and a
/// request here takes milliseconds), far below what it takes to crowd everyone else out.
pub const DEFAULT_IN_FLIGHT_PER_IP: u32 = 64;

/// The default cap on one client's requests in flight that compute a password hash: an office
/// behind one address whose users all log in at nine gets four hashed at once (over a hundred
/// a second here), and a client flooding the hashing threads holds at most four of their jobs.
pub const DEFAULT_HASHING_PER_IP: u32 = 4;

/// The requests each client has in flight, and the cap on them.
///
/// Memory is bounded by the requests in flight: a client's entry goes when its last request
/// ends. A request without a peer address (none arrives so over TCP; tests build them) counts
/// under one shared key, so it is capped too.
#[derive(Debug)]
pub struct InFlight {
    limit: u32,
    counts: Mutex<HashMap<Option<ClientNet>, u32>>,
}

impl InFlight {
    /// At most `limit` requests in flight per client network; 0 turns the cap off.
    #[must_use]
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// The cap (0: off).
    #[must_use]
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// Takes a slot for a request of `client`, or `None` when it already has `limit` requests
    /// in flight (or the counts cannot be read: refused, failing closed). The slot is given
    /// back when dropped. With the cap off every request gets a slot that counts nothing.
    #[must_use]
    pub fn enter(self: &Arc<Self>, client: Option<ClientNet>) -> Option<Slot> {
        if self.limit == 0 {
            return Some(Slot { held: None });
        }
        let mut counts = self.counts.lock().ok()?;
        let count = counts.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            held: Some((Arc::clone(self), client)),
        })
    }

    /// The requests `client` has in flight now.
    #[must_use]
    pub fn current(&self, client: Option<ClientNet>) -> u32 {
        self.counts
            .lock()
            .ok()
            .and_then(|counts| counts.get(&client).copied())
            .unwrap_or(0)
    }

    /// How many clients have requests in flight now (the size of the map).
    #[must_use]
    pub fn clients(&self) -> usize {
        self.counts.lock().map_or(0, |counts| counts.len())
    }

    fn leave(&self, client: Option<ClientNet>) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        if let Some(count) = counts.get_mut(&client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&client);
            }
        }
    }
}

/// Which cap refused a request (the `kind` label of
/// `incrementa_requests_refused_in_flight_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refused {
    /// [`crate::ApiState::in_flight`]: requests of any kind.
    Requests,
    /// [`crate::ApiState::hashing`]: requests that hash a password.
    PasswordHashing,
}

impl Refused {
    /// The label value.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::PasswordHashing => "password_hashing",
        }
    }
}

/// One request's place in its client's count, given back when dropped.
#[derive(Debug)]
#[must_use = "the request stops counting once its slot is dropped"]
pub struct Slot {
    held: Option<(Arc<InFlight>, Option<ClientNet>)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((set, client)) = self.held.take() {
            set.leave(client);
        }
    }
}

/// A response body that keeps its request's [`Slot`] until the body has been sent or dropped.
pub(crate) struct Counted {
    body: BoxBody,
    _slot: Slot,
    _hashing: Option<Slot>,
}

impl MessageBody for Counted {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// Middleware: refuses a request with 429 when its client already has
/// [`ApiState::in_flight`]'s limit of requests in flight, or, for a request that hashes a
/// password, [`ApiState::hashing`]'s limit of those; else counts it until its response body
/// ends.
pub(crate) async fn limit_in_flight(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<Counted, BoxBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<ApiState>>().cloned() else {
        let res = next.call(req).await?;
        return Ok(res.map_body(|_, body| {
            EitherBody::left(Counted {
                body: BoxBody::new(body),
                _slot: Slot { held: None },
                _hashing: None,
            })
        }));
    };
    let client = crate::auth::client_ip(req.request()).map(ClientNet::from);
    let Some(slot) = state.in_flight.enter(client) else {
        state.metrics.in_flight_refused(Refused::Requests);
        let refused = crate::error::too_many_at_once("requests").error_response();
        return Ok(req.into_response(refused).map_into_right_body());
    };
    let hashing = if crate::routes::hashes_password(req.method(), req.path()) {
        let Some(hashing) = state.hashing.enter(client) else {
            state.metrics.in_flight_refused(Refused::PasswordHashing);
            let refused = crate::error::too_many_at_once("password checks").error_response();
            return Ok(req.into_response(refused).map_into_right_body());
        };
        Some(hashing)
    } else {
        None
    };
    let res = next.call(req).await?;
    Ok(res.map_body(|_, body| {
        EitherBody::left(Counted {
            body: BoxBody::new(body),
            _slot: slot,
            _hashing: hashing,
        })
    }))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn net(s: &str) -> Option<ClientNet> {
        Some(ClientNet::from(s.parse::<IpAddr>().unwrap()))
    }

    #[test]
    fn a_client_gets_at_most_its_limit_and_a_slot_back_when_one_ends() {
        let set = InFlight::new(2);
        let a = net("192.0.2.1");
        let first = set.enter(a).unwrap();
        let second = set.enter(a).unwrap();
        assert!(set.enter(a).is_none(), "a third request at once is refused");
        assert_eq!(set.current(a), 2);
        // Another client is not affected.
        let other = set.enter(net("192.0.2.2")).unwrap();
        assert_eq!(set.clients(), 2);
        drop(first);
        assert_eq!(set.current(a), 1);
        let third = set.enter(a).unwrap();
        assert!(set.enter(a).is_none());
        drop((second, third, other));
        assert_eq!(set.current(a), 0);
        assert_eq!(
            set.clients(),
            0,
            "no entry outlives its client's last request"
        );
    }

    #[test]
    fn an_ipv6_client_counts_by_its_network_and_a_mapped_address_as_ipv4() {
        let set = InFlight::new(1);
        let _held = set.enter(net("2001:db8:1:2::a")).unwrap();
        assert!(
            set.enter(net("2001:db8:1:2:ffff::b")).is_none(),
            "a new address in the same /64 is the same client"
        );
        assert!(set.enter(net("2001:db8:1:3::a")).is_some());
        let _v4 = set.enter(net("198.51.100.7")).unwrap();
        assert!(set.enter(net("::ffff:198.51.100.7")).is_none());
    }

    #[actix_web::test]
    async fn a_response_counts_until_its_body_is_done() {
        let set = InFlight::new(1);
        let a = net("192.0.2.1");
        let chunks = futures_util::stream::iter([
            Ok::<_, std::io::Error>(Bytes::from_static(b"first,")),
            Ok(Bytes::from_static(b"second")),
        ]);
        let body = Counted {
            body: BoxBody::new(actix_web::body::BodyStream::new(chunks)),
            _slot: set.enter(a).unwrap(),
            _hashing: None,
        };
        assert!(
            set.enter(a).is_none(),
            "a response not yet sent still counts"
        );
        let sent = actix_web::body::to_bytes(body).await.unwrap();
        assert_eq!(sent, "first,second");
        assert_eq!(set.current(a), 0);
        assert!(set.enter(a).is_some());
    }

    #[test]
    fn requests_without_an_address_share_one_count() {
        let set = InFlight::new(1);
        let _held = set.enter(None).unwrap();
        assert!(set.enter(None).is_none());
    }

    #[test]
    fn a_limit_of_zero_counts_nothing() {
        let set = InFlight::new(0);
        let held: Vec<Slot> = (0..1_000)
            .map(|_| set.enter(net("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(set.current(net("192.0.2.1")), 0);
        assert_eq!(set.clients(), 0);
        drop(held);
    }
}
