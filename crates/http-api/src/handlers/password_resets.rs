use accounts::{Password, ResetConfirmation};
use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;

use crate::dto::{PasswordResetBody, PasswordResetConfirmBody};
use crate::error::Body;
use crate::{ApiError, ApiState, ClientContext};

#[utoipa::path(
    post, path = "/v1/password-resets", tag = "accounts", operation_id = "request_password_reset",
    summary = "Ask for a password-reset e-mail",
    description = "For a user who forgot the password. The answer is the same whether or not the \
                   address is registered; if it is, and the user is active, the user is e-mailed a \
                   code that sets a new password with `POST /v1/password-resets/confirm` within 30 \
                   minutes, once. A new request within 5 minutes of the last sends nothing (the \
                   first code still works). Limited per client address.",
    request_body = PasswordResetBody,
    responses((status = 202, description = "Accepted: an e-mail goes out if the address belongs to an active user.")),
)]
pub(crate) async fn request(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: Body<PasswordResetBody>,
) -> Result<HttpResponse, ApiError> {
    let accepted = state
        .password_resets
        .accept(&body.into_inner().email, &ctx.0)?;
    // The look-up and the reset's write run after the answer, so a registered address is not
    // told apart by a slower reply; past `BACKGROUND_LIMIT` of them at once (the per-address
    // limit turned off, a flood), a request waits for its own, so they stay bounded.
    match Background::enter() {
        Some(slot) => {
            let metrics = state.metrics.clone();
            actix_web::rt::spawn(async move {
                if let Err(e) = accepted.send().await {
                    metrics.reset_request_failed();
                    tracing::error!(error = %e, "a password-reset request could not be stored");
                }
                drop(slot);
            });
        }
        None => accepted.send().await?,
    }
    Ok(HttpResponse::Accepted().finish())
}

/// Most password-reset requests finishing in the background at once.
const BACKGROUND_LIMIT: usize = 64;

static IN_BACKGROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A place among the requests finishing in the background; given back when dropped.
struct Background;

impl Background {
    fn enter() -> Option<Self> {
        use std::sync::atomic::Ordering;
        IN_BACKGROUND
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < BACKGROUND_LIMIT).then_some(n + 1)
            })
            .ok()
            .map(|_| Self)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        IN_BACKGROUND.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[utoipa::path(
    post, path = "/v1/password-resets/confirm", tag = "accounts",
    operation_id = "confirm_password_reset",
    summary = "Set a new password with the e-mailed code",
    description = "The code (`token`) works once, for 30 minutes, and only while it is the user's \
                   latest. The new password must meet the policy (a refused one leaves the code \
                   usable). Every session of the user is closed, a failed-login lock is lifted, \
                   and the user is e-mailed that the password changed. MFA stays: the next login \
                   still asks for the second factor. Failed attempts are limited per client \
                   address.",
    request_body = PasswordResetConfirmBody,
    responses((status = 204, description = "The password is set; log in with it.")),
)]
pub(crate) async fn confirm(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: Body<PasswordResetConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let confirmation = ResetConfirmation {
        token: body.token,
        new_password: Password::new(body.new_password.expose_secret()),
        new_password_confirmation: Password::new(body.new_password_confirmation.expose_secret()),
    };
    let user = state.password_resets.confirm(&confirmation, &ctx.0).await?;
    // The lock guarded the forgotten password against guessing; the new one is the user's.
    // The password is set either way: a failure here is logged, not answered.
    if let Err(e) = state.sessions.lift_login_lock(&user.email).await {
        tracing::error!(error = %e, user = %user.id, "could not lift the login lock after a password reset");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The background holds at most `BACKGROUND_LIMIT` requests; a place comes back when its
    /// request finishes.
    #[test]
    fn the_background_is_bounded_and_places_come_back() {
        let held: Vec<Background> = std::iter::from_fn(Background::enter)
            .take(BACKGROUND_LIMIT + 1)
            .collect();
        assert_eq!(held.len(), BACKGROUND_LIMIT);
        assert!(Background::enter().is_none());
        drop(held);
        assert!(Background::enter().is_some());
    }
}
