//! A deadline on reading a request's body.
//!
//! actix-web bounds the time a client may take to send a request's head
//! (`client_request_timeout`), not its body: a client that announces a body and then sends it a
//! byte at a time, or never, keeps its connection and the handler waiting for as long as it
//! likes, and enough such clients exhaust the server's connections. Every request's body is
//! therefore read through [`Deadline`]: once [`crate::ApiState::body_timeout`] has passed since
//! the head arrived, reading fails, nothing the handler decided on a partial body is written,
//! and the answer is 408 `request_timeout` with `Connection: close` (the rest of the body is
//! never read).

use std::cell::Cell;
use std::future::Future as _;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{CONNECTION, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{ResponseError as _, web};
use futures_util::Stream;

use crate::ApiState;

/// A request body as actix-web boxes it (`actix_http::BoxedPayloadStream`, not re-exported).
type BoxedPayloadStream = Pin<Box<dyn Stream<Item = Result<web::Bytes, PayloadError>>>>;

/// A request body that fails once its deadline has passed while the handler still waits for
/// more of it.
struct Deadline {
    inner: Payload,
    timer: Pin<Box<actix_web::rt::time::Sleep>>,
    /// Set when the deadline cut the body short; read by [`limit_body_time`].
    expired: Rc<Cell<bool>>,
}

impl Stream for Deadline {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.expired.get() {
            return Poll::Ready(None);
        }
        // What has arrived is handed on even after the deadline; only waiting is cut short.
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.expired.set(true);
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request body did not arrive in time",
        )))))
    }
}

/// Middleware: reads the body through a [`Deadline`] of [`ApiState::body_timeout`] and answers
/// 408 when it expired, whatever the handler made of the failed read.
pub(crate) async fn limit_body_time(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(timeout) = req
        .app_data::<web::Data<ApiState>>()
        .map(|state| state.body_timeout)
    else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let body = req.parts_mut().1.take();
    if matches!(body, Payload::None) {
        // No body (a GET, a Content-Length of 0): nothing to wait for, nothing to allocate.
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let expired = Rc::new(Cell::new(false));
    req.set_payload(within(body, timeout, Rc::clone(&expired)));
    let res = next.call(req).await;
    if !expired.get() {
        return Ok(res?.map_into_left_body());
    }
    let mut timed_out = crate::error::request_timeout().error_response();
    timed_out
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    let res = match res {
        Ok(res) => res.into_response(timed_out),
        Err(e) => {
            // The handler's error carries no request; rebuild the response around ours.
            return Err(actix_web::error::InternalError::from_response(e, timed_out).into());
        }
    };
    Ok(res.map_into_right_body())
}

/// `body`, failing once `timeout` has passed; `expired` is set when it does.
fn within(body: Payload, timeout: Duration, expired: Rc<Cell<bool>>) -> Payload {
    let stream: BoxedPayloadStream = Box::pin(Deadline {
        inner: body,
        timer: Box::pin(actix_web::rt::time::sleep(timeout)),
        expired,
    });
    Payload::from(stream)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    /// A body whose next chunk never comes.
    fn stalled(first: &'static [u8]) -> Payload {
        let stream: BoxedPayloadStream = Box::pin(
            futures_util::stream::iter([Ok(web::Bytes::from_static(first))])
                .chain(futures_util::stream::pending()),
        );
        Payload::from(stream)
    }

    #[actix_web::test]
    async fn a_stalled_body_fails_at_its_deadline_after_what_arrived() {
        let expired = Rc::new(Cell::new(false));
        let mut body = within(
            stalled(b"{\"email\":"),
            Duration::from_millis(20),
            Rc::clone(&expired),
        );
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"{\"email\":");
        assert!(!expired.get());
        let Some(Err(PayloadError::Io(e))) = body.next().await else {
            panic!("the stalled body must fail")
        };
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(expired.get());
        assert!(body.next().await.is_none(), "nothing after the failure");
    }

    #[actix_web::test]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let expired = Rc::new(Cell::new(false));
        let whole: BoxedPayloadStream = Box::pin(futures_util::stream::iter([
            Ok(web::Bytes::from_static(b"{\"a\":")),
            Ok(web::Bytes::from_static(b"1}")),
        ]));
        let mut body = within(
            Payload::from(whole),
            Duration::from_secs(60),
            Rc::clone(&expired),
        );
        let mut read = Vec::new();
        while let Some(chunk) = body.next().await {
            read.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(read, b"{\"a\":1}");
        assert!(!expired.get());
    }
}
