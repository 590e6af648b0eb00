//! The outbox: messages stored with their cause, delivered by a worker with retries.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use kernel::{Clock, CompanyId, Timestamp, UserId};
use uuid::Uuid;

/// Errors of the notification ports.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The mail transport refused or failed; the text is safe to store (no credentials).
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// Storage failure; details stay in the source.
    #[error("internal error in notify")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl NotifyError {
    /// Wraps an infrastructure error.
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Id (also the `Message-ID` local part, so a resend is recognisable).
    pub id: Uuid,
    /// Tenant.
    pub company_id: CompanyId,
    /// Recipient user.
    pub user_id: UserId,
    /// Recipient address.
    pub to: String,
    /// Recipient name.
    pub to_name: String,
    /// Template name.
    pub template: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// The audit record or alert behind it (for a password reset: the reset's id).
    pub cause: Uuid,
    /// When it was queued.
    pub created_at: Timestamp,
    /// Delivery attempts so far.
    pub attempts: u32,
}

/// Storage of the outbox.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` undelivered messages due at `now`, leasing them until `lease_until`
    /// (another worker skips them meanwhile; if this one dies they come back when it expires).
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, NotifyError>;

    /// Records one attempt. `error: None` marks the message delivered; otherwise it is retried
    /// at `retry_at`, or given up when `retry_at` is `None`.
    async fn record_attempt(
        &self,
        id: Uuid,
        at: Timestamp,
        error: Option<String>,
        retry_at: Option<Timestamp>,
    ) -> Result<(), NotifyError>;

    /// Messages not delivered and not given up (for metrics and tests).
    async fn backlog(&self) -> Result<u64, NotifyError>;

    /// Deletes the messages queued before `before` that were delivered or given up, with their
    /// attempts; a message still to be delivered stays, however old. Returns how many went.
    async fn purge_finished(&self, before: Timestamp) -> Result<u64, NotifyError>;
}

/// A mail transport (SMTP, a local directory).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Hands one message over; `Ok` means the transport accepted it.
    async fn send(&self, message: &OutboxMessage) -> Result<(), NotifyError>;

    /// Deletes the copies this transport keeps of messages queued before `before` (a local
    /// directory keeps every message it was handed; SMTP keeps none). Returns how many went.
    async fn purge_delivered(&self, before: Timestamp) -> Result<u64, NotifyError> {
        let _ = before;
        Ok(0)
    }
}

/// Makes password-reset tokens (the crypto adapter, with a key derived from the master key).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ResetTokenMinter: Send + Sync {
    /// The token of reset `reset`; `None` when no key can make one.
    fn mint(&self, reset: Uuid) -> Option<zeroize::Zeroizing<String>>;
}

/// What a retention purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxPurge {
    /// Delivered or given-up messages (with their attempts) deleted from the store.
    pub messages: u64,
    /// Copies the transport kept (the local outbox directory's files).
    pub files: u64,
}

/// Retries: exponential backoff from `base`, capped, up to `max_attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
    /// How long a claimed message stays invisible to other workers.
    pub lease: Duration,
    /// Messages per round.
    pub batch: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base: Duration::seconds(30),
            cap: Duration::hours(6),
            lease: Duration::minutes(2),
            batch: 50,
        }
    }
}

impl RetryPolicy {
    /// When to try again after `attempts` failed attempts; `None` to give up.
    #[must_use]
    pub fn next_attempt(&self, attempts: u32, now: Timestamp) -> Option<Timestamp> {
        if attempts >= self.max_attempts {
            return None;
        }
        let factor = 1_i32 << attempts.saturating_sub(1).min(20);
        let wait = self
            .base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap);
        Some(now + wait)
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Accepted by the transport.
    pub delivered: u32,
    /// Failed, to be retried.
    pub retrying: u32,
    /// Failed for the last time.
    pub given_up: u32,
}

/// Delivers due messages. Run it periodically; several processes may run it at once.
#[derive(Clone)]
pub struct OutboxWorker {
    store: Arc<dyn OutboxStore>,
    mailer: Arc<dyn Mailer>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    reset_tokens: Option<Arc<dyn ResetTokenMinter>>,
    reset_page: Option<Arc<str>>,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl OutboxWorker {
    /// Wires the worker.
    #[must_use]
    pub fn new(
        store: Arc<dyn OutboxStore>,
        mailer: Arc<dyn Mailer>,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            store,
            mailer,
            clock,
            policy,
            reset_tokens: None,
            reset_page: None,
        }
    }

    /// Lets the worker fill password-reset messages' tokens. Without it such messages fail to
    /// deliver (and are retried): a reset e-mail never goes out without its token.
    #[must_use]
    pub fn with_reset_tokens(mut self, minter: Arc<dyn ResetTokenMinter>) -> Self {
        self.reset_tokens = Some(minter);
        self
    }

    /// Gives password-reset messages a link to the front end's reset page besides the code:
    /// `<page>#token=<code>`. The code travels in the fragment, which browsers keep to
    /// themselves: it reaches neither the page's server logs nor a `Referer`. `page` is an
    /// absolute address the caller has checked (the server's `INCREMENTA_RESET_URL`); without
    /// it the message carries the code alone.
    #[must_use]
    pub fn with_reset_page(mut self, page: &str) -> Self {
        self.reset_page = Some(Arc::from(page));
        self
    }

    /// Hands `message` to the mailer; a password-reset message, an e-mail change code or the
    /// code undoing a change goes with the token of its own cause in place of the placeholder (and a password reset with
    /// the link to the reset page in place of its own, when there is a page), in a copy that is
    /// wiped once handed over (the stored body never changes). The token names the reset, the
    /// change or the undo window it was made for, and each use only accepts its own kind's id.
    async fn send(&self, message: &OutboxMessage) -> Result<(), NotifyError> {
        let is_reset = message.template == crate::PASSWORD_RESET_TEMPLATE;
        if !is_reset
            && message.template != crate::EMAIL_CHANGE_CODE_TEMPLATE
            && message.template != crate::EMAIL_CHANGE_UNDO_TEMPLATE
        {
            return self.mailer.send(message).await;
        }
        let token = self
            .reset_tokens
            .as_ref()
            .and_then(|minter| minter.mint(message.cause))
            .ok_or_else(|| NotifyError::Delivery("no key to make the reset token".to_owned()))?;
        let page = self.reset_page.as_deref().filter(|_| is_reset);
        let link = page.map_or_else(String::new, |page| {
            format!(
                "\n\nO abre este enlace, que ya lo incluye:\n{page}#token={}",
                crate::RESET_TOKEN_PLACEHOLDER
            )
        });
        let mut finished = message.clone();
        // The link first: it brings a token placeholder of its own, filled with the rest.
        finished.body = message
            .body
            .replace(crate::RESET_LINK_PLACEHOLDER, &link)
            .replace(crate::RESET_TOKEN_PLACEHOLDER, token.as_str());
        let result = self.mailer.send(&finished).await;
        zeroize::Zeroize::zeroize(&mut finished.body);
        result
    }

    /// Retention: deletes the delivered and given-up messages queued more than `retention`
    /// ago, with their attempts, and the transport's copies of them. They hold addresses, names
    /// and what happened to an account; kept as long as the audit records that caused them,
    /// then gone with them.
    ///
    /// # Errors
    /// `Internal` when the store fails, `Delivery` when the transport cannot purge (nothing is
    /// lost: the next run purges what is left).
    pub async fn purge_finished(&self, retention: Duration) -> Result<OutboxPurge, NotifyError> {
        // A retention beyond the calendar's start deletes nothing.
        let before = self
            .clock
            .now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let messages = self.store.purge_finished(before).await?;
        let files = self.mailer.purge_delivered(before).await?;
        Ok(OutboxPurge { messages, files })
    }

    /// One round: claim what is due, send each, record each attempt.
    ///
    /// # Errors
    /// `Internal` when the store fails (messages stay queued).
    pub async fn run_once(&self) -> Result<DeliveryReport, NotifyError> {
        let now = self.clock.now();
        let due = self
            .store
            .claim_due(now, now + self.policy.lease, self.policy.batch)
            .await?;
        let mut report = DeliveryReport::default();
        for message in due {
            let result = self.send(&message).await;
            let at = self.clock.now();
            match result {
                Ok(()) => {
                    self.store
                        .record_attempt(message.id, at, None, None)
                        .await?;
                    report.delivered += 1;
                }
                Err(e) => {
                    let error = match e {
                        NotifyError::Delivery(text) => text,
                        NotifyError::Internal(_) => "internal error".to_owned(),
                    };
                    let retry = self.policy.next_attempt(message.attempts + 1, at);
                    if retry.is_some() {
                        report.retrying += 1;
                    } else {
                        report.given_up += 1;
                    }
                    self.store
                        .record_attempt(message.id, at, Some(error), retry)
                        .await?;
                }
            }
        }
        Ok(report)
    }

    /// Messages waiting.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn backlog(&self) -> Result<u64, NotifyError> {
        self.store.backlog().await
    }
}
