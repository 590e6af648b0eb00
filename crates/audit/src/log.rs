//! Reading the audit log: verification (AUD-4), retention (AUD-5), query and export (AUD-6).

use std::sync::Arc;

use async_trait::async_trait;
use kernel::{Clock, CompanyId, IdGenerator, RequestContext, Timestamp, UserId};
use rbac::{Actor, Permission, Scope};

use crate::review::{
    Alert, AlertPage, AlertThresholds, Context, Need, dedupe_window, evaluate, need,
};
use crate::{
    Action, AuditError, AuditRecord, AuditSink, ChainMac, ChainVerifier, ChainedRecord, Checkpoint,
    Outcome, VerifyReport, chain_name,
};

/// The actions of the access log (AUD-1).
pub const ACCESS_ACTIONS: [&str; 4] = [
    "session.login",
    "session.logout",
    "session.revoked",
    "session.reauthenticated",
];

/// Filters of `GET /v1/audit/events` (AUD-6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor_id: Option<UserId>,
    /// Only these actions (any of them).
    pub actions: Vec<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// At or after.
    pub from: Option<Timestamp>,
    /// Before.
    pub to: Option<Timestamp>,
    /// Only the access log's actions ([`ACCESS_ACTIONS`]), on top of `actions`.
    pub access_only: bool,
}

/// Reading and retention of stored records.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Every chain name.
    async fn chains(&self) -> Result<Vec<String>, AuditError>;
    /// The chains with records the review has not seen yet (head past the review cursor).
    async fn chains_to_review(&self) -> Result<Vec<String>, AuditError>;
    /// Where verification of `chain` starts.
    async fn checkpoint(&self, chain: &str) -> Result<Checkpoint, AuditError>;
    /// The last append of `chain`.
    async fn head(&self, chain: &str) -> Result<Option<(i64, [u8; 32])>, AuditError>;
    /// Up to `limit` records of `chain` with `seq > after`, ascending.
    async fn chain_page(
        &self,
        chain: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<ChainedRecord>, AuditError>;
    /// A record of `chain` that carries no chain fields (written around the chain), if any.
    async fn unchained(&self, chain: &str) -> Result<Option<uuid::Uuid>, AuditError>;
    /// Up to `limit` records of `company` matching `filter` with `seq < before`, newest first.
    async fn query(
        &self,
        company: CompanyId,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<ChainedRecord>, AuditError>;
    /// How many records carry a MAC made with key version `key_id`.
    async fn records_under_key(&self, key_id: u32) -> Result<u64, AuditError>;
    /// Up to `limit` records of `chain` with this action (and outcome), at or after `from`, with
    /// `seq <= up_to`, newest first.
    async fn window(
        &self,
        chain: &str,
        action: &str,
        outcome: Option<&'static str>,
        from: Timestamp,
        up_to: i64,
        limit: u64,
    ) -> Result<Vec<ChainedRecord>, AuditError>;
    /// Whether `actor` logged in successfully in `chain` before record `before` (its `seq`):
    /// `(at all, from this address or network)`. The second is true for an earlier login from
    /// `ip`, or, when `network` is given (`review::client_network` of `ip`: an IPv6 client's /64,
    /// a mapped address's IPv4), from an address of that network: a login whose `ip` is
    /// `network` or whose details name it as their `network`. `ip` `None` matches records
    /// without an address. However long the log, every earlier login counts (AUD-7's "new IP"
    /// rule must not forget an administrator's old addresses, nor raise no alert, because other
    /// users logged in since).
    async fn prior_logins(
        &self,
        chain: &str,
        actor: UserId,
        ip: Option<String>,
        network: Option<String>,
        before: i64,
    ) -> Result<(bool, bool), AuditError>;
    /// Sequence number of the last record the review processed in `chain`.
    async fn review_cursor(&self, chain: &str) -> Result<i64, AuditError>;
    /// Stores `alerts` and moves the review cursor from `from` to `to`, atomically; `false`
    /// (and nothing stored) when another reviewer moved the cursor first.
    async fn save_review(
        &self,
        chain: &str,
        from: i64,
        to: i64,
        alerts: Vec<Alert>,
    ) -> Result<bool, AuditError>;
    /// Whether an alert of `rule` about `subject` was raised in `chain` since `since`, whatever
    /// its status: one taken into an incident is being handled, and a dismissed one was judged.
    async fn alert_since(
        &self,
        chain: &str,
        rule: &str,
        subject: &str,
        since: Timestamp,
    ) -> Result<bool, AuditError>;
    /// The actor of the company's record `id` (`company` `None`: the platform's records; the
    /// answer is `None` when there is no such record or it has no actor).
    async fn record_actor(
        &self,
        company: Option<CompanyId>,
        id: uuid::Uuid,
    ) -> Result<Option<UserId>, AuditError>;
    /// The company's alert `id` (`None`: the platform's), if it has one.
    async fn alert(
        &self,
        company: Option<CompanyId>,
        id: uuid::Uuid,
    ) -> Result<Option<Alert>, AuditError>;
    /// Moves the company's (or, `None`, the platform's) alert `id` from status `from` to `to`
    /// and stores `record`, in one transaction; `false` (and nothing stored) when the alert is
    /// not in `from` (or is not the company's).
    async fn set_alert_status(
        &self,
        company: Option<CompanyId>,
        id: uuid::Uuid,
        from: &str,
        to: &str,
        record: AuditRecord,
    ) -> Result<bool, AuditError>;
    /// The company's alerts (`None`: the platform's), newest first (ties: highest id first),
    /// only those after `after` in that order, at most `limit`.
    async fn alerts(
        &self,
        company: Option<CompanyId>,
        status: Option<String>,
        after: Option<kernel::TimeCursor>,
        limit: u64,
    ) -> Result<Vec<Alert>, AuditError>;
    /// Deletes the records of `chain` older than `before`, moving the checkpoint to the last one
    /// removed, in one transaction. Returns how many were removed.
    async fn purge(&self, chain: &str, before: Timestamp, at: Timestamp)
    -> Result<u64, AuditError>;
}

/// A dismissal's reason as kept: trimmed, `None` when empty; refused when over
/// [`AuditService::MAX_DISMISS_REASON`] characters or holding control characters but newlines.
fn checked_reason(reason: Option<&str>) -> Result<Option<&str>, AuditError> {
    let Some(reason) = reason else {
        return Ok(None);
    };
    let code = match kernel::clean_text(reason, AuditService::MAX_DISMISS_REASON) {
        Ok(r) => return Ok(Some(r)),
        Err(kernel::TextProblem::Empty) => return Ok(None),
        Err(kernel::TextProblem::TooLong) => "too_long",
        Err(kernel::TextProblem::ControlCharacters) => "control_characters",
    };
    Err(AuditError::Invalid {
        field: "reason",
        code,
    })
}

/// A page of records and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Records, newest first.
    pub items: Vec<ChainedRecord>,
    /// Pass as `cursor` for the next page; `None` at the end.
    pub next_cursor: Option<i64>,
}

/// Largest page.
pub const MAX_PAGE: u64 = 200;

/// Records one review batch takes (AUD-7).
const REVIEW_PAGE: u64 = 500;

/// How many of the newest failed logins (or exports) at or before a record its rule may count:
/// far above any threshold, and a bound on what one review page reads.
const WINDOW_ROWS: u64 = 10_000;

/// A failed login or an export, as the review's rules count them.
#[derive(Debug)]
struct Counted {
    seq: i64,
    at: Timestamp,
    /// The `email` of a failed login's details.
    email: Option<serde_json::Value>,
    /// The client's network ([`crate::review::client_network`]).
    net: Option<String>,
    actor: Option<UserId>,
}

/// What the records of one review page count, read once for the page
/// ([`AuditService::page_windows`]). Read per record instead, every failed login cost a query of
/// up to 10,000 rows, so a burst of failures (what the rules are for) made the review quadratic.
#[derive(Debug, Default)]
struct PageWindows {
    failures: Vec<Counted>,
    exports: Vec<Counted>,
}

/// The rows of `rows` within `back` of `record`, up to and including it.
fn recent<'a>(
    rows: &'a [Counted],
    record: &ChainedRecord,
    back: kernel::Duration,
) -> Vec<&'a Counted> {
    let from = record.at - back;
    rows.iter()
        .filter(|r| r.seq <= record.seq && r.at >= from)
        .collect()
}

/// The audit log use cases.
#[derive(Clone)]
pub struct AuditService {
    thresholds: AlertThresholds,
    log: Arc<dyn AuditLog>,
    sink: Arc<dyn AuditSink>,
    mac: Arc<dyn ChainMac>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    /// Chains a `verify_company` is walking or an export is streaming now (one of each per
    /// chain at a time).
    walking: Walking,
}

/// What reads a whole chain for one request: a verification or an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Walk {
    Verify,
    Export,
}

type Walking = Arc<std::sync::Mutex<Walks>>;

/// The walks running now, each with the claim that holds it and when it last moved.
#[derive(Debug, Default)]
struct Walks {
    last_token: u64,
    held: std::collections::HashMap<(Walk, String), Lease>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    token: u64,
    touched: Timestamp,
}

/// Marks a chain as being walked until dropped (also when the request goes away mid-walk).
struct Claim {
    key: (Walk, String),
    token: u64,
    set: Walking,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut walks) = self.set.lock()
            // A claim taken over by a newer one leaves that one's lease alone.
            && walks.held.get(&self.key).is_some_and(|l| l.token == self.token)
        {
            walks.held.remove(&self.key);
        }
    }
}

/// Held while an export streams (AUD-6): the company's next export is refused with `Busy` until
/// this is dropped, or until the export has read no page for
/// [`AuditService::EXPORT_IDLE_SECS`] (a client that stopped reading): then the next export
/// takes its place and this one's next page fails. Drop it as soon as the last record is read,
/// before the response ends, so a client that starts its next export at once is not refused.
#[must_use = "the export is unguarded once the pass is dropped"]
pub struct ExportPass {
    claim: Claim,
    company: CompanyId,
}

impl std::fmt::Debug for ExportPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExportPass({})", self.claim.key.1)
    }
}

impl std::fmt::Debug for AuditService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditService")
    }
}

impl AuditService {
    /// Wires the use cases.
    #[must_use]
    pub fn new(
        log: Arc<dyn AuditLog>,
        sink: Arc<dyn AuditSink>,
        mac: Arc<dyn ChainMac>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self {
            thresholds: AlertThresholds::default(),
            log,
            sink,
            mac,
            clock,
            ids,
            walking: Arc::default(),
        }
    }

    /// Seconds a caller is asked to wait while its company's chain is being verified.
    const VERIFY_BUSY_SECS: u64 = 5;
    /// Seconds a caller is asked to wait while its company's log is being exported.
    const EXPORT_BUSY_SECS: u64 = 10;

    /// Seconds an export may read no page before the company's next export takes its place
    /// (its client stopped reading, or reads slower than one page of records in five minutes).
    pub const EXPORT_IDLE_SECS: i64 = 300;

    /// Claims `chain` for one walk of this kind, or `None` when one is running already (an
    /// export idle for over [`Self::EXPORT_IDLE_SECS`] is taken over: `Some((claim, true))`).
    fn claim(&self, walk: Walk, chain: &str) -> Option<(Claim, bool)> {
        let now = self.clock.now();
        // A poisoned set only means a panic elsewhere: refuse rather than walk unguarded.
        let mut walks = self.walking.lock().ok()?;
        let key = (walk, chain.to_owned());
        let taken_over = match walks.held.get(&key) {
            None => false,
            Some(lease)
                if walk == Walk::Export
                    && (now - lease.touched).num_seconds() > Self::EXPORT_IDLE_SECS =>
            {
                true
            }
            Some(_) => return None,
        };
        walks.last_token += 1;
        let token = walks.last_token;
        walks.held.insert(
            key.clone(),
            Lease {
                token,
                touched: now,
            },
        );
        Some((
            Claim {
                key,
                token,
                set: self.walking.clone(),
            },
            taken_over,
        ))
    }

    /// Whether `claim` still holds its chain; if so its lease is renewed from now.
    fn renew(&self, claim: &Claim) -> bool {
        let now = self.clock.now();
        let Ok(mut walks) = self.walking.lock() else {
            return false;
        };
        match walks.held.get_mut(&claim.key) {
            Some(lease) if lease.token == claim.token => {
                lease.touched = now;
                true
            }
            _ => false,
        }
    }

    fn begin_verifying(&self, chain: &str) -> Option<Claim> {
        self.claim(Walk::Verify, chain).map(|(claim, _)| claim)
    }

    /// Uses other review thresholds (AUD-7).
    #[must_use]
    pub fn with_thresholds(mut self, thresholds: AlertThresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// The failed logins and exports the records of `page` look back to, read once for the
    /// whole page: each record's rule then counts its own share of them in memory.
    async fn page_windows(
        &self,
        chain: &str,
        page: &[ChainedRecord],
    ) -> Result<PageWindows, AuditError> {
        let t = &self.thresholds;
        // From the earliest look-back of the records that need `wanted` to the last of them.
        let span = |wanted: Need, back: kernel::Duration| {
            page.iter()
                .filter(|r| need(r) == wanted)
                .fold(None, |acc: Option<(Timestamp, i64)>, r| {
                    Some(acc.map_or((r.at, r.seq), |(at, seq)| (at.min(r.at), seq.max(r.seq))))
                })
                .map(|(at, seq)| (at - back, seq))
        };
        // Each record still sees the WINDOW_ROWS newest rows at or before it: at most the
        // page's own records come after it.
        let limit = WINDOW_ROWS.saturating_add(u64::try_from(page.len()).unwrap_or(u64::MAX));
        let mut windows = PageWindows::default();
        if let Some((from, up_to)) = span(Need::Failures, t.failure_window) {
            windows.failures = self
                .log
                .window(chain, "session.login", Some("failure"), from, up_to, limit)
                .await?
                .into_iter()
                .map(|r| Counted {
                    seq: r.seq,
                    at: r.at,
                    email: serde_json::from_str::<serde_json::Value>(&r.details)
                        .ok()
                        .and_then(|mut d| d.get_mut("email").map(serde_json::Value::take)),
                    net: r.ip.as_deref().map(crate::review::client_network),
                    actor: r.actor_id,
                })
                .collect();
        }
        if let Some((from, up_to)) = span(Need::Exports, t.export_window) {
            windows.exports = self
                .log
                .window(chain, "audit.exported", None, from, up_to, limit)
                .await?
                .into_iter()
                .map(|r| Counted {
                    seq: r.seq,
                    at: r.at,
                    email: None,
                    net: r.ip.as_deref().map(crate::review::client_network),
                    actor: r.actor_id,
                })
                .collect();
        }
        Ok(windows)
    }

    async fn context(
        &self,
        chain: &str,
        record: &ChainedRecord,
        windows: &PageWindows,
    ) -> Result<Context, AuditError> {
        let details: serde_json::Value = serde_json::from_str(&record.details).unwrap_or_default();
        let t = &self.thresholds;
        let mut ctx = Context::default();
        match need(record) {
            Need::Failures => {
                let recent = recent(&windows.failures, record, t.failure_window);
                let email = details.get("email");
                ctx.account_failures = recent.iter().filter(|r| r.email.as_ref() == email).count();
                let net = record.ip.as_deref().map(crate::review::client_network);
                ctx.ip_failures = recent
                    .iter()
                    .filter(|r| r.net.is_some() && r.net == net)
                    .count();
            }
            Need::PriorLogins => {
                // A login without an actor has no history to compare with: no alert.
                if let Some(actor) = record.actor_id {
                    // An IPv6 client whose interface id rotates is still on its /64.
                    let network = record.ip.as_deref().map(crate::review::client_network);
                    ctx.prior_logins = self
                        .log
                        .prior_logins(chain, actor, record.ip.clone(), network, record.seq)
                        .await?;
                }
            }
            Need::Exports => {
                ctx.exports = recent(&windows.exports, record, t.export_window)
                    .iter()
                    .filter(|r| r.actor == record.actor_id)
                    .count();
            }
            Need::Nothing | Need::Itself => {}
        }
        Ok(ctx)
    }

    /// Reviews the records of `chain` not reviewed yet (AUD-7) and stores the alerts they raise.
    /// Safe to run from several processes: each batch moves the review cursor by compare-and-set.
    /// Returns the alerts raised.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn review_chain(&self, chain: &str) -> Result<Vec<Alert>, AuditError> {
        let mut raised = Vec::new();
        let mut cursor = self.log.review_cursor(chain).await?;
        loop {
            let page = self.log.chain_page(chain, cursor, REVIEW_PAGE).await?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            let windows = self.page_windows(chain, &page).await?;
            let mut batch: Vec<Alert> = Vec::new();
            for record in &page {
                let ctx = self.context(chain, record, &windows).await?;
                for alert in evaluate(record, &ctx, &self.thresholds, &mut || self.ids.new_id()) {
                    let since = record.at - dedupe_window(&alert.rule, &self.thresholds);
                    let dup_here = batch.iter().any(|a| {
                        a.rule == alert.rule && a.subject == alert.subject && a.at >= since
                    });
                    if !dup_here
                        && !self
                            .log
                            .alert_since(chain, &alert.rule, &alert.subject, since)
                            .await?
                    {
                        batch.push(alert);
                    }
                }
            }
            if !self
                .log
                .save_review(chain, cursor, last, batch.clone())
                .await?
            {
                break;
            }
            raised.extend(batch);
            cursor = last;
        }
        Ok(raised)
    }

    /// How many audit records still need key version `key_id` to verify (VAULT-7: such a key
    /// cannot be retired until retention removes them).
    ///
    /// # Errors
    /// `Internal`.
    pub async fn records_under_key(&self, key_id: u32) -> Result<u64, AuditError> {
        self.log.records_under_key(key_id).await
    }

    /// Reviews every chain (the server's periodic task); returns the alerts it raised.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn review_all(&self) -> Result<Vec<Alert>, AuditError> {
        let mut raised = Vec::new();
        // Only chains that moved: an idle company costs nothing per pass.
        for chain in self.log.chains_to_review().await? {
            raised.extend(self.review_chain(&chain).await?);
        }
        Ok(raised)
    }

    /// A page of the actor's company's alerts, newest first, after reviewing its newest records
    /// (`GET /v1/audit/alerts`). `limit` is clamped to 1..=[`MAX_PAGE`].
    ///
    /// # Errors
    /// `Forbidden`, `Internal`.
    pub async fn alerts(
        &self,
        actor: &Actor,
        status: Option<String>,
        after: Option<kernel::TimeCursor>,
        limit: u64,
        ctx: &RequestContext,
    ) -> Result<AlertPage, AuditError> {
        self.require(actor, false, ctx).await?;
        self.alert_page(Some(actor.company_id), status, after, limit)
            .await
    }

    /// Reviews the chain's newest records, then reads one page of its alerts (one more than
    /// asked, to know whether another page follows).
    async fn alert_page(
        &self,
        company: Option<CompanyId>,
        status: Option<String>,
        after: Option<kernel::TimeCursor>,
        limit: u64,
    ) -> Result<AlertPage, AuditError> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.review_chain(&chain_name(company)).await?;
        let mut items = self.log.alerts(company, status, after, limit + 1).await?;
        let next_cursor = kernel::cut_page(&mut items, limit, Alert::cursor);
        Ok(AlertPage { items, next_cursor })
    }

    /// Longest reason for dismissing an alert, in characters.
    pub const MAX_DISMISS_REASON: usize = 500;

    /// Dismisses an open alert of the actor's company: triage judged that it needs no incident
    /// (AUD-7). Needs `incidents.manage`; an optional reason (trimmed, at most
    /// [`Self::MAX_DISMISS_REASON`] characters, no control characters but newlines) goes into the
    /// `audit.alert_dismissed` record, stored with the change. Returns the alert as it is now.
    /// Nobody dismisses an alert raised by a record of their own (their failed logins, their
    /// login from a new address, their exports): another Owner or Admin must judge it.
    ///
    /// # Errors
    /// `Forbidden`, `OwnAlert` (audited as denied), `Invalid` (`reason`), `NotFound` (also
    /// another company's alert), `AlertNotOpen` (dismissed already, or taken into an incident,
    /// also by a concurrent request), `Internal`.
    pub async fn dismiss_alert(
        &self,
        actor: &Actor,
        id: uuid::Uuid,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Alert, AuditError> {
        self.require_to(actor, Permission::IncidentsManage, false, ctx)
            .await?;
        let reason = checked_reason(reason)?;
        let company = Some(actor.company_id);
        let alert = self.open_alert(company, id).await?;
        if self.log.record_actor(company, alert.record_id).await? == Some(actor.user_id) {
            let denied = AuditRecord::denied(
                self.ids.new_id(),
                self.clock.now(),
                ctx,
                actor,
                Action::ALERT_DISMISSED.as_str(),
                "own_alert",
            )
            .target("alert", id);
            self.sink.record(denied).await?;
            return Err(AuditError::OwnAlert);
        }
        let record = self
            .succeeded(Action::ALERT_DISMISSED, actor, ctx)
            .target("alert", id)
            .details(serde_json::json!({
                "rule": alert.rule,
                "subject": alert.subject,
                "reason": reason,
            }));
        self.dismiss(company, alert, record).await
    }

    /// The operator's triage (`incrementa audit dismiss-alert`): an open alert of `company`, or
    /// of the platform (`None`: failed logins for emails of no company, which no company's
    /// triage can reach), dismissed with the same checks as [`Self::dismiss_alert`], recorded
    /// without an actor and with `"by": "operator"`.
    ///
    /// # Errors
    /// `Invalid` (`reason`), `NotFound`, `AlertNotOpen`, `Internal`.
    pub async fn dismiss_alert_as_operator(
        &self,
        company: Option<CompanyId>,
        id: uuid::Uuid,
        reason: Option<&str>,
    ) -> Result<Alert, AuditError> {
        let reason = checked_reason(reason)?;
        let alert = self.open_alert(company, id).await?;
        let mut record = AuditRecord::new(
            self.ids.new_id(),
            self.clock.now(),
            Action::ALERT_DISMISSED,
            Outcome::Success,
            &RequestContext::default(),
        )
        .target("alert", id)
        .details(serde_json::json!({
            "rule": alert.rule,
            "subject": alert.subject,
            "reason": reason,
            "by": "operator",
        }));
        record.company_id = company;
        self.dismiss(company, alert, record).await
    }

    /// A page of the alerts of `company`'s chain, or the platform's (`None`), after reviewing
    /// its newest records: the operator's view (`incrementa audit alerts`), without a
    /// permission check. `limit` is clamped to 1..=[`MAX_PAGE`].
    ///
    /// # Errors
    /// `Internal`.
    pub async fn operator_alerts(
        &self,
        company: Option<CompanyId>,
        status: Option<String>,
        after: Option<kernel::TimeCursor>,
        limit: u64,
    ) -> Result<AlertPage, AuditError> {
        self.alert_page(company, status, after, limit).await
    }

    /// The alert `id` of `company`'s chain if it is open.
    async fn open_alert(
        &self,
        company: Option<CompanyId>,
        id: uuid::Uuid,
    ) -> Result<Alert, AuditError> {
        let alert = self
            .log
            .alert(company, id)
            .await?
            .ok_or(AuditError::NotFound)?;
        if alert.status == Alert::OPEN {
            Ok(alert)
        } else {
            Err(AuditError::AlertNotOpen {
                status: alert.status,
            })
        }
    }

    /// Moves `alert` from open to dismissed with `record`, or says what it is now.
    async fn dismiss(
        &self,
        company: Option<CompanyId>,
        mut alert: Alert,
        record: AuditRecord,
    ) -> Result<Alert, AuditError> {
        let id = alert.id;
        if !self
            .log
            .set_alert_status(company, id, Alert::OPEN, Alert::DISMISSED, record)
            .await?
        {
            // Another request moved it first.
            let status = self
                .log
                .alert(company, id)
                .await?
                .map(|a| a.status)
                .ok_or(AuditError::NotFound)?;
            return Err(AuditError::AlertNotOpen { status });
        }
        Alert::DISMISSED.clone_into(&mut alert.status);
        Ok(alert)
    }

    /// A record of `action` done by `actor` in its company, now.
    fn succeeded(&self, action: Action, actor: &Actor, ctx: &RequestContext) -> AuditRecord {
        AuditRecord::new(
            self.ids.new_id(),
            self.clock.now(),
            action,
            Outcome::Success,
            ctx,
        )
        .by(actor)
    }

    async fn require(
        &self,
        actor: &Actor,
        step_up: bool,
        ctx: &RequestContext,
    ) -> Result<(), AuditError> {
        self.require_to(actor, Permission::AuditRead, step_up, ctx)
            .await
    }

    /// Checks `permission` (and step-up when asked); a refusal is audited as denied.
    async fn require_to(
        &self,
        actor: &Actor,
        permission: Permission,
        step_up: bool,
        ctx: &RequestContext,
    ) -> Result<(), AuditError> {
        let now = self.clock.now();
        let Err(why) = rbac::check(actor, permission, Scope::Company, step_up, now) else {
            return Ok(());
        };
        let record = AuditRecord::denied(
            self.ids.new_id(),
            now,
            ctx,
            actor,
            permission.as_str(),
            why.reason(),
        );
        self.sink.record(record).await?;
        Err(why.into())
    }

    /// Verifies one chain from its checkpoint to its head (AUD-4).
    ///
    /// # Errors
    /// `Internal`.
    pub async fn verify_chain(&self, chain: &str) -> Result<VerifyReport, AuditError> {
        if let Some(id) = self.log.unchained(chain).await? {
            return Ok(VerifyReport {
                ok: false,
                checked: 0,
                first_broken_id: Some(id),
                reason: Some("a record carries no chain fields".into()),
            });
        }
        let checkpoint = self.log.checkpoint(chain).await?;
        let mut verifier = ChainVerifier::new(checkpoint);
        let mut after = checkpoint.seq;
        loop {
            let page = self.log.chain_page(chain, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in &page {
                verifier.step(record, self.mac.as_ref());
            }
        }
        Ok(verifier.finish(self.log.head(chain).await?))
    }

    /// Verifies every chain (`incrementa audit verify`), or one company's.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn verify_all(
        &self,
        company: Option<CompanyId>,
    ) -> Result<Vec<(String, VerifyReport)>, AuditError> {
        let chains = match company {
            Some(c) => vec![chain_name(Some(c))],
            None => self.log.chains().await?,
        };
        let mut out = Vec::new();
        for chain in chains {
            let report = self.verify_chain(&chain).await?;
            out.push((chain, report));
        }
        Ok(out)
    }

    /// `GET /v1/audit/verify`: the actor's company chain, one walk per chain at a time.
    ///
    /// # Errors
    /// `Forbidden`, `Busy` while another request verifies the same chain, `Internal`.
    pub async fn verify_company(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
    ) -> Result<VerifyReport, AuditError> {
        self.require(actor, false, ctx).await?;
        let chain = chain_name(Some(actor.company_id));
        // A walk reads the whole chain: several at once for one company would only repeat it.
        let Some(_walking) = self.begin_verifying(&chain) else {
            return Err(AuditError::Busy {
                retry_after_secs: Self::VERIFY_BUSY_SECS,
            });
        };
        self.verify_chain(&chain).await
    }

    /// One page of the actor's company's records (AUD-6).
    ///
    /// # Errors
    /// `Forbidden`, `Internal`.
    pub async fn query(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
        cursor: Option<i64>,
        limit: u64,
        ctx: &RequestContext,
    ) -> Result<Page, AuditError> {
        self.require(actor, false, ctx).await?;
        self.page(actor.company_id, filter, cursor, limit.clamp(1, MAX_PAGE))
            .await
    }

    /// The largest page of an export ([`Self::export_page`]): bigger than a client's page, as
    /// an export reads on until the log ends and fewer round trips serve it sooner.
    pub const MAX_EXPORT_PAGE: u64 = 1_000;

    /// The next page of an export authorized by [`Self::start_export`], renewing its pass.
    ///
    /// # Errors
    /// `ExportSuperseded` when the export read no page for [`Self::EXPORT_IDLE_SECS`] and
    /// another export of the company took its place; `Internal`.
    pub async fn export_page(
        &self,
        pass: &ExportPass,
        filter: &AuditFilter,
        cursor: Option<i64>,
        limit: u64,
    ) -> Result<Page, AuditError> {
        if !self.renew(&pass.claim) {
            return Err(AuditError::ExportSuperseded);
        }
        let limit = limit.clamp(1, Self::MAX_EXPORT_PAGE);
        self.page(pass.company, filter, cursor, limit).await
    }

    /// A page of `limit` records (already clamped by the caller) without the permission check.
    async fn page(
        &self,
        company: CompanyId,
        filter: &AuditFilter,
        cursor: Option<i64>,
        limit: u64,
    ) -> Result<Page, AuditError> {
        let mut items = self.log.query(company, filter, cursor, limit + 1).await?;
        let next_cursor = kernel::cut_page(&mut items, limit, |r| r.seq);
        Ok(Page { items, next_cursor })
    }

    /// Authorizes an export (step-up, AUD-6) and records `audit.exported` before any byte is sent.
    /// One export per company at a time: an export reads the whole log, and several at once would
    /// only read it again. The returned pass keeps the company's exports claimed until dropped.
    ///
    /// # Errors
    /// `Forbidden`, `ReauthenticationRequired`, `Busy` while another export of the company
    /// streams (nothing recorded), `Internal`.
    pub async fn start_export(
        &self,
        actor: &Actor,
        format: &str,
        filter: &AuditFilter,
        ctx: &RequestContext,
    ) -> Result<ExportPass, AuditError> {
        self.require(actor, true, ctx).await?;
        let Some((claim, took_over)) =
            self.claim(Walk::Export, &chain_name(Some(actor.company_id)))
        else {
            return Err(AuditError::Busy {
                retry_after_secs: Self::EXPORT_BUSY_SECS,
            });
        };
        let mut details = serde_json::Map::new();
        details.insert("format".into(), format.into());
        details.insert("actor_filter".into(), serde_json::json!(filter.actor_id));
        details.insert("actions".into(), serde_json::json!(filter.actions));
        details.insert("outcome".into(), serde_json::json!(filter.outcome));
        details.insert("from".into(), serde_json::json!(filter.from));
        details.insert("to".into(), serde_json::json!(filter.to));
        if took_over {
            // The stalled export it replaced ends at its next page: a reviewer of the log sees
            // why that one is incomplete.
            details.insert("replaced_idle_export".into(), true.into());
        }
        let record = self
            .succeeded(Action::AUDIT_EXPORTED, actor, ctx)
            .details(serde_json::Value::Object(details));
        self.sink.record(record).await?;
        Ok(ExportPass {
            claim,
            company: actor.company_id,
        })
    }

    /// Retention (AUD-5): removes records older than `retention` from every chain, keeping each
    /// chain verifiable from its checkpoint. Returns how many records were removed.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn purge(&self, retention: kernel::Duration) -> Result<u64, AuditError> {
        let now = self.clock.now();
        let mut removed = 0;
        for chain in self.log.chains().await? {
            removed += self.log.purge(&chain, now - retention, now).await?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use kernel::{ManualClock, SequentialIds};

    use super::*;
    use crate::{MockAuditSink, MockChainMac};

    fn t0() -> Timestamp {
        // 2026-11-30 12:00:00 UTC.
        Timestamp::from_timestamp(1_796_040_000, 0).unwrap()
    }

    fn failure(seq: i64, email: &str, ip: &str) -> ChainedRecord {
        ChainedRecord {
            seq,
            id: uuid::Uuid::from_u128(u128::try_from(seq).unwrap()),
            company_id: None,
            at: t0() + kernel::Duration::seconds(seq),
            actor_id: None,
            action: "session.login".into(),
            target: None,
            outcome: "failure".into(),
            ip: Some(ip.into()),
            user_agent: None,
            request_id: None,
            details: serde_json::json!({ "email": email, "reason": "invalid_credentials" })
                .to_string(),
            key_id: 1,
            mac: [0; 32],
        }
    }

    fn service(log: MockAuditLog) -> AuditService {
        service_with(log, MockAuditSink::new())
    }

    fn service_with(log: MockAuditLog, sink: MockAuditSink) -> AuditService {
        AuditService::new(
            Arc::new(log),
            Arc::new(sink),
            Arc::new(MockChainMac::new()),
            Arc::new(ManualClock::new(t0())),
            Arc::new(SequentialIds::default()),
        )
    }

    /// A log whose review starts at the beginning and finds `page`, then nothing more.
    fn serving_one_page(page: &[ChainedRecord]) -> MockAuditLog {
        let mut log = MockAuditLog::new();
        log.expect_review_cursor().returning(|_| Ok(0));
        let served = page.to_vec();
        log.expect_chain_page()
            .returning(move |_, after, _| Ok(if after == 0 { served.clone() } else { vec![] }));
        log
    }

    fn admin_of(company: u128) -> Actor {
        let role = rbac::Role::Admin;
        Actor::new(
            kernel::UserId::from_uuid(uuid::Uuid::from_u128(1)),
            kernel::CompanyId::from_uuid(uuid::Uuid::from_u128(company)),
            kernel::SessionId::from_uuid(uuid::Uuid::from_u128(9)),
            role,
            role.default_permissions(),
        )
    }

    fn alert_in(company: u128, status: &str) -> Alert {
        Alert {
            id: uuid::Uuid::from_u128(77),
            company_id: Some(kernel::CompanyId::from_uuid(uuid::Uuid::from_u128(company))),
            at: t0(),
            rule: "new_ip_privileged_login".into(),
            severity: "medium".into(),
            summary: "an admin logged in from a new IP address 198.51.100.4".into(),
            subject: "u@198.51.100.4".into(),
            status: status.into(),
            record_id: uuid::Uuid::from_u128(5),
        }
    }

    /// AUD-7 triage: an open alert is dismissed with its reason in the audit record, stored with
    /// the change; a bad reason is refused before anything is read; a vendor is refused, and so
    /// is the admin an alert is about (both refusals audited); an alert that is not open, or
    /// that another request moved first, is a conflict naming its status; an unknown id is not
    /// found.
    #[tokio::test]
    async fn an_open_alert_is_dismissed_once_with_its_reason_audited() {
        use std::sync::Mutex;
        let id = uuid::Uuid::from_u128(77);
        let ctx = RequestContext::default();
        let stored = Arc::new(Mutex::new(Vec::<AuditRecord>::new()));
        let mut log = MockAuditLog::new();
        // Reads: open (the actor's own alert), open, then (for the lost race) open and then
        // dismissed, then one not open, then none at all.
        let mut reads = vec![
            None,
            Some(alert_in(7, "incident")),
            Some(alert_in(7, "dismissed")),
            Some(alert_in(7, "open")),
            Some(alert_in(7, "open")),
            Some(alert_in(7, "open")),
        ];
        // The triggering record's actor: the admin itself first, then someone else.
        let someone = kernel::UserId::from_uuid(uuid::Uuid::from_u128(2));
        let mut actors = vec![Some(someone), Some(someone), Some(admin_of(7).user_id)];
        log.expect_record_actor()
            .withf(|_, record| *record == uuid::Uuid::from_u128(5))
            .returning(move |_, _| Ok(actors.pop().flatten()));
        log.expect_alert()
            .withf(move |company, asked| {
                *company == Some(kernel::CompanyId::from_uuid(uuid::Uuid::from_u128(7)))
                    && *asked == id
            })
            .returning(move |_, _| Ok(reads.pop().flatten()));
        let mut moves = vec![false, true];
        let keep = stored.clone();
        log.expect_set_alert_status()
            .withf(|_, _, from, to, _| from == "open" && to == "dismissed")
            .returning(move |_, _, _, _, record| {
                let moved = moves.pop().unwrap();
                if moved {
                    keep.lock().unwrap().push(record);
                }
                Ok(moved)
            });
        let mut sink = MockAuditSink::new();
        let denied = Arc::new(Mutex::new(Vec::<AuditRecord>::new()));
        let keep = denied.clone();
        sink.expect_record().returning(move |r| {
            keep.lock().unwrap().push(r);
            Ok(())
        });
        let svc = service_with(log, sink);
        let admin = admin_of(7);

        // Refused before any read: too long, control characters; a vendor.
        let long = "x".repeat(AuditService::MAX_DISMISS_REASON + 1);
        for (reason, code) in [
            (long.as_str(), "too_long"),
            ("a\u{7}b", "control_characters"),
        ] {
            let err = svc
                .dismiss_alert(&admin, id, Some(reason), &ctx)
                .await
                .unwrap_err();
            assert!(
                matches!(err, AuditError::Invalid { field: "reason", code: c } if c == code),
                "{err:?}"
            );
        }
        let vendor = {
            let role = rbac::Role::Vendor;
            Actor::new(
                admin.user_id,
                admin.company_id,
                admin.session_id,
                role,
                role.default_permissions(),
            )
        };
        assert!(matches!(
            svc.dismiss_alert(&vendor, id, None, &ctx).await,
            Err(AuditError::Forbidden)
        ));
        assert_eq!(denied.lock().unwrap().len(), 1, "the refusal is audited");
        assert_eq!(denied.lock().unwrap()[0].outcome, Outcome::Denied);
        // Raised by the admin's own record: another Owner or Admin must judge it.
        assert!(matches!(
            svc.dismiss_alert(&admin, id, None, &ctx).await,
            Err(AuditError::OwnAlert)
        ));
        assert_eq!(denied.lock().unwrap().len(), 2, "the refusal is audited");
        assert_eq!(denied.lock().unwrap()[1].details["reason"], "own_alert");
        assert!(stored.lock().unwrap().is_empty());

        // Open: dismissed, the reason trimmed into the record.
        let alert = svc
            .dismiss_alert(&admin, id, Some("  la oficina nueva\n"), &ctx)
            .await
            .unwrap();
        assert_eq!(alert.status, "dismissed");
        let records = stored.lock().unwrap().clone();
        let [record] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(record.action, Action::ALERT_DISMISSED);
        assert_eq!(
            record.target.as_deref(),
            Some(format!("alert:{id}").as_str())
        );
        assert_eq!(record.details["reason"], "la oficina nueva");
        assert_eq!(record.details["rule"], "new_ip_privileged_login");
        // Open when read, but another request dismissed it first.
        let err = svc.dismiss_alert(&admin, id, None, &ctx).await.unwrap_err();
        assert!(
            matches!(&err, AuditError::AlertNotOpen { status } if status == "dismissed"),
            "{err:?}"
        );
        // Taken into an incident.
        let err = svc.dismiss_alert(&admin, id, None, &ctx).await.unwrap_err();
        assert!(
            matches!(&err, AuditError::AlertNotOpen { status } if status == "incident"),
            "{err:?}"
        );
        // Unknown (or another company's: the store reads within the company only).
        assert!(matches!(
            svc.dismiss_alert(&admin, id, None, &ctx).await,
            Err(AuditError::NotFound)
        ));
        assert_eq!(stored.lock().unwrap().len(), 1);
    }

    /// One walk per chain at a time: a second request for the same company's chain while one
    /// runs is told to come back (`Busy`) without reading anything; other companies' chains,
    /// and the same chain once the first walk is over (or was dropped), verify as usual.
    #[tokio::test]
    async fn a_chain_is_walked_by_one_verification_at_a_time() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let walks = Arc::new(AtomicUsize::new(0));
        let counted = walks.clone();
        let mut log = MockAuditLog::new();
        log.expect_unchained().returning(move |_| {
            counted.fetch_add(1, SeqCst);
            Ok(None)
        });
        log.expect_checkpoint()
            .returning(|_| Ok(Checkpoint::default()));
        log.expect_chain_page().returning(|_, _, _| Ok(vec![]));
        log.expect_head().returning(|_| Ok(None));
        let svc = service(log);
        let ctx = RequestContext::default();
        let seven = chain_name(Some(admin_of(7).company_id));

        let running = svc.begin_verifying(&seven).unwrap();
        assert!(svc.begin_verifying(&seven).is_none(), "claimed once");
        let err = svc.verify_company(&admin_of(7), &ctx).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Busy {
                    retry_after_secs: 5
                }
            ),
            "{err:?}"
        );
        assert_eq!(walks.load(SeqCst), 0, "nothing read while busy");
        assert!(svc.verify_company(&admin_of(8), &ctx).await.unwrap().ok);
        assert_eq!(walks.load(SeqCst), 1);

        drop(running);
        assert!(svc.verify_company(&admin_of(7), &ctx).await.unwrap().ok);
        assert_eq!(walks.load(SeqCst), 2);
        // A finished walk released its chain (the guard goes with the call).
        assert!(svc.begin_verifying(&seven).is_some());
        // A clone of the service shares the claims (the HTTP workers each hold one).
        let clone = svc.clone();
        let _held = svc.begin_verifying(&seven).unwrap();
        assert!(matches!(
            clone.verify_company(&admin_of(7), &ctx).await,
            Err(AuditError::Busy { .. })
        ));
    }

    /// One export per company at a time: a second one while the first streams is told to come
    /// back (`Busy`) and records nothing; another company, a verification of the same chain, and
    /// the same company once the pass is dropped go ahead. A refused step-up claims nothing.
    #[tokio::test]
    async fn a_company_exports_one_log_at_a_time() {
        use std::sync::Mutex;
        let recorded = Arc::new(Mutex::new(Vec::<(String, Option<kernel::CompanyId>)>::new()));
        let mut sink = MockAuditSink::new();
        let seen = recorded.clone();
        sink.expect_record().returning(move |r| {
            seen.lock()
                .unwrap()
                .push((r.action.as_str().to_owned(), r.company_id));
            Ok(())
        });
        let mut log = MockAuditLog::new();
        log.expect_unchained().returning(|_| Ok(None));
        log.expect_checkpoint()
            .returning(|_| Ok(Checkpoint::default()));
        log.expect_chain_page().returning(|_, _, _| Ok(vec![]));
        log.expect_head().returning(|_| Ok(None));
        let svc = service_with(log, sink);
        let ctx = RequestContext::default();
        let stepped = |company| admin_of(company).reauthenticated(Some(t0()));
        let exports = || {
            recorded
                .lock()
                .unwrap()
                .iter()
                .filter(|(a, _)| a == "audit.exported")
                .count()
        };
        let filter = AuditFilter::default();

        // Without step-up: refused (and audited as denied), and nothing is claimed.
        assert!(matches!(
            svc.start_export(&admin_of(7), "csv", &filter, &ctx).await,
            Err(AuditError::ReauthenticationRequired)
        ));
        let first = svc
            .start_export(&stepped(7), "csv", &filter, &ctx)
            .await
            .unwrap();
        assert_eq!(exports(), 1);
        let err = svc
            .clone()
            .start_export(&stepped(7), "ndjson", &filter, &ctx)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Busy {
                    retry_after_secs: 10
                }
            ),
            "{err:?}"
        );
        assert_eq!(exports(), 1, "a refused export is not recorded as exported");
        // Verifying the chain is another kind of walk; another company exports meanwhile.
        assert!(svc.verify_company(&admin_of(7), &ctx).await.unwrap().ok);
        let other = svc
            .start_export(&stepped(8), "csv", &filter, &ctx)
            .await
            .unwrap();
        assert_eq!(exports(), 2);

        drop(first);
        let again = svc
            .start_export(&stepped(7), "csv", &filter, &ctx)
            .await
            .unwrap();
        assert_eq!(exports(), 3);
        assert!(format!("{again:?}").starts_with("ExportPass("));
        drop((again, other));
    }

    /// A client's page holds at most `MAX_PAGE` records; an export's up to `MAX_EXPORT_PAGE`
    /// (the store is asked for one more, to know whether another page follows).
    #[tokio::test]
    async fn an_export_reads_bigger_pages_than_a_client_may_ask_for() {
        use std::sync::Mutex;
        let asked = Arc::new(Mutex::new(Vec::new()));
        let mut log = MockAuditLog::new();
        let seen = asked.clone();
        log.expect_query().returning(move |_, _, _, limit| {
            seen.lock().unwrap().push(limit);
            Ok(vec![])
        });
        let mut sink = MockAuditSink::new();
        sink.expect_record().returning(|_| Ok(()));
        let svc = service_with(log, sink);
        let ctx = RequestContext::default();
        let filter = AuditFilter::default();
        let admin = admin_of(7).reauthenticated(Some(t0()));
        svc.query(&admin, &filter, None, 500, &ctx).await.unwrap();
        let pass = svc
            .start_export(&admin, "csv", &filter, &ctx)
            .await
            .unwrap();
        for limit in [500, 5_000, 0] {
            svc.export_page(&pass, &filter, None, limit).await.unwrap();
        }
        assert_eq!(*asked.lock().unwrap(), [201, 501, 1_001, 2]);
    }

    /// An export whose client stopped reading holds the company's exports for
    /// [`AuditService::EXPORT_IDLE_SECS`] after its last page, no longer: then the next export
    /// takes its place (and says so in its record), the stalled one's next page fails, and
    /// dropping the stalled pass does not free the newer export's claim.
    #[tokio::test]
    async fn an_export_idle_too_long_gives_way_to_the_next() {
        use std::sync::Mutex;
        let details = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
        let mut sink = MockAuditSink::new();
        let seen = details.clone();
        sink.expect_record().returning(move |r| {
            seen.lock().unwrap().push(r.details.clone());
            Ok(())
        });
        let mut log = MockAuditLog::new();
        log.expect_query()
            .returning(|_, _, _, _| Ok(vec![failure(1, "a@example.com", "192.0.2.1")]));
        let clock = Arc::new(ManualClock::new(t0()));
        let svc = AuditService::new(
            Arc::new(log),
            Arc::new(sink),
            Arc::new(MockChainMac::new()),
            clock.clone(),
            Arc::new(SequentialIds::default()),
        );
        let ctx = RequestContext::default();
        let filter = AuditFilter::default();
        let export = || async {
            let actor = admin_of(7).reauthenticated(Some(clock.now()));
            svc.start_export(&actor, "csv", &filter, &ctx).await
        };
        let busy = |r: Result<ExportPass, AuditError>| matches!(r, Err(AuditError::Busy { .. }));
        let idle = kernel::Duration::seconds(AuditService::EXPORT_IDLE_SECS);

        let stalled = export().await.unwrap();
        // Reading a page renews the pass: idle time counts from the last page, not the start.
        clock.advance(idle);
        assert_eq!(
            svc.export_page(&stalled, &filter, None, 500)
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        clock.advance(idle);
        assert!(busy(export().await), "idle exactly the limit: still held");
        clock.advance(kernel::Duration::seconds(1));
        let newer = export().await.unwrap();
        let recorded = details.lock().unwrap().clone();
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].get("replaced_idle_export"), None);
        assert_eq!(recorded[1]["replaced_idle_export"], true);
        assert!(matches!(
            svc.export_page(&stalled, &filter, None, 500).await,
            Err(AuditError::ExportSuperseded)
        ));
        drop(stalled);
        assert!(
            busy(export().await),
            "the stalled pass freed the newer export's claim"
        );
        svc.export_page(&newer, &filter, None, 500).await.unwrap();
        drop(newer);
        drop(export().await.unwrap());
    }

    /// A page of failed logins reads the failures it counts once, not once per record (a burst
    /// of failures made the review quadratic), and still counts each record's own window: one
    /// alert per account past its threshold and one for the address.
    #[tokio::test]
    async fn a_page_of_failed_logins_reads_its_window_once() {
        let page: Vec<ChainedRecord> = (1..=40)
            .map(|n| {
                let email = if n % 2 == 0 {
                    "a@example.com"
                } else {
                    "b@example.com"
                };
                failure(n, email, "192.0.2.1")
            })
            .collect();
        let mut log = serving_one_page(&page);
        let stored = page.clone();
        log.expect_window()
            .times(1)
            .withf(|_, action, outcome, from, up_to, limit| {
                action == "session.login"
                    && *outcome == Some("failure")
                    && *from == t0() + kernel::Duration::seconds(1) - kernel::Duration::minutes(15)
                    && *up_to == 40
                    && *limit == WINDOW_ROWS + 40
            })
            .returning(move |_, _, _, _, _, _| Ok(stored.iter().rev().cloned().collect()));
        log.expect_alert_since().returning(|_, _, _, _| Ok(false));
        log.expect_save_review()
            .times(1)
            .withf(|_, from, to, _| (*from, *to) == (0, 40))
            .returning(|_, _, _, _| Ok(true));
        let mut raised: Vec<(String, String, i64)> = service(log)
            .review_chain("platform")
            .await
            .unwrap()
            .into_iter()
            .map(|a| {
                let seq = a.record_id.as_u128();
                (a.rule, a.subject, i64::try_from(seq).unwrap())
            })
            .collect();
        raised.sort();
        assert_eq!(
            raised,
            vec![
                ("ip_login_failures".into(), "192.0.2.1".into(), 20),
                ("repeated_login_failures".into(), "a@example.com".into(), 10),
                ("repeated_login_failures".into(), "b@example.com".into(), 9),
            ]
        );
    }

    /// Failed logins from every address of one IPv6 /64 (privacy addresses, or an attacker
    /// stepping through its network) are one source: the per-address rule raises its alert for
    /// the /64, once, at the threshold; a neighbouring /64 is someone else.
    #[tokio::test]
    async fn failures_from_rotating_ipv6_addresses_of_one_network_raise_one_alert() {
        // One failure per address and per account, so only the per-address rule can fire.
        let mut page: Vec<ChainedRecord> = (1..=20)
            .map(|n| {
                failure(
                    n,
                    &format!("u{n}@example.com"),
                    &format!("2001:db8:77:1:{n:x}::{n:x}"),
                )
            })
            .collect();
        page.push(failure(21, "v@example.com", "2001:db8:77:2::1"));
        let mut log = serving_one_page(&page);
        let stored = page.clone();
        log.expect_window()
            .returning(move |_, _, _, _, _, _| Ok(stored.iter().rev().cloned().collect()));
        log.expect_alert_since().returning(|_, _, _, _| Ok(false));
        log.expect_save_review().returning(|_, _, _, _| Ok(true));
        let raised: Vec<(String, String, String)> = service(log)
            .review_chain("platform")
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.rule, a.subject, a.summary))
            .collect();
        assert_eq!(
            raised,
            vec![(
                "ip_login_failures".to_owned(),
                "2001:db8:77:1::/64".to_owned(),
                "20 failed logins from 2001:db8:77:1::/64 within 15 minutes".to_owned()
            )]
        );
    }

    /// A page without failed logins or exports reads no window at all.
    #[tokio::test]
    async fn a_page_without_counted_records_reads_no_window() {
        let mut record = failure(1, "a@example.com", "192.0.2.1");
        record.action = "company.updated".into();
        record.outcome = "success".into();
        let mut log = MockAuditLog::new();
        log.expect_review_cursor().returning(|_| Ok(0));
        log.expect_chain_page().returning(move |_, after, _| {
            Ok(if after == 0 {
                vec![record.clone()]
            } else {
                vec![]
            })
        });
        log.expect_window().times(0);
        log.expect_save_review()
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        assert!(
            service(log)
                .review_chain("platform")
                .await
                .unwrap()
                .is_empty()
        );
    }

    fn alert(n: u128, at: Timestamp) -> Alert {
        Alert {
            id: uuid::Uuid::from_u128(n),
            company_id: None,
            at,
            rule: "account_failures".into(),
            severity: "medium".into(),
            summary: "s".into(),
            subject: format!("s{n}"),
            status: Alert::OPEN.into(),
            record_id: uuid::Uuid::from_u128(n),
        }
    }

    /// A page asks the store for one alert more than it returns, and only then names a cursor:
    /// the last alert it returns, so the next page starts right after it.
    #[tokio::test]
    async fn an_alert_page_names_a_cursor_only_when_more_follow() {
        let stored: Vec<Alert> = (0..5_u128).rev().map(|n| alert(n, t0())).collect();
        let mut log = serving_one_page(&[]);
        log.expect_save_review().returning(|_, _, _, _| Ok(true));
        let served = stored.clone();
        log.expect_alerts()
            .returning(move |company, status, after, limit| {
                assert_eq!((company, status.as_deref()), (None, Some(Alert::OPEN)));
                let from = after.map_or(0, |c| {
                    served
                        .iter()
                        .position(|a| a.id == c.id)
                        .map_or(0, |i| i + 1)
                });
                Ok(served
                    .iter()
                    .skip(from)
                    .take(usize::try_from(limit).unwrap())
                    .cloned()
                    .collect())
            });
        let svc = service(log);
        let open = || Some(Alert::OPEN.to_owned());
        let first = svc.operator_alerts(None, open(), None, 2).await.unwrap();
        assert_eq!(first.items, stored[..2].to_vec());
        assert_eq!(first.next_cursor, Some(stored[1].cursor()));
        let second = svc
            .operator_alerts(None, open(), first.next_cursor, 2)
            .await
            .unwrap();
        assert_eq!(second.items, stored[2..4].to_vec());
        let last = svc
            .operator_alerts(None, open(), second.next_cursor, 2)
            .await
            .unwrap();
        assert_eq!((last.items, last.next_cursor), (stored[4..].to_vec(), None));
        // A limit past the largest page is clamped; zero means one.
        let all = svc
            .operator_alerts(None, open(), None, 10_000)
            .await
            .unwrap();
        assert_eq!((all.items.len(), all.next_cursor), (5, None));
        let one = svc.operator_alerts(None, open(), None, 0).await.unwrap();
        assert_eq!(one.items, stored[..1].to_vec());
    }
}
