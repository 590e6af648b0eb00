//! Session use cases: login, authenticate, list, revoke, logout.

use std::net::IpAddr;
use std::sync::Arc;

use accounts::{
    AccountRepository, Company, Email, Password, PasswordCheck, PasswordHasher, PasswordPolicy,
    RevocationReason, SessionRevocation, User,
};
use audit::{Action, AuditRecord, AuditSink, Outcome};
use chrono::Duration;
use kernel::{ClientNet, Clock, IdGenerator, RateLimiter, RequestContext, SessionId};
use mfa::{FactorUsed, MfaError, MfaService, SecondFactor};
use rbac::{Actor, Role};

use crate::cache::AuthCache;
use crate::{
    ChangeEpoch, LoginOutcome, LoginReads, LoginThrottle, MfaNotice, NewSession, SessionError,
    SessionStore, SessionView, ThrottlePolicy, ThrottleState, TokenIssuer,
};

/// Session settings (SES-1, SES-3, OPS-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Active sessions per user when the company sets none (SES-1): 2.
    pub default_cap: u16,
    /// A session unused this long ends: 30 minutes.
    pub idle_timeout: Duration,
    /// A session ends this long after login whatever happens: 12 hours.
    pub absolute_lifetime: Duration,
    /// `last_seen_at` is written at most this often per session: 1 minute.
    pub touch_interval: Duration,
    /// Per-account throttling.
    pub throttle: ThrottlePolicy,
    /// How long an authenticated session may be served from this process's memory without
    /// asking the store again; zero (the default here) turns the cache off. Changes made through
    /// this process are seen at once whatever the value (the [`ChangeEpoch`] port); changes made
    /// by *other* processes sharing the database are seen within this time.
    ///
    /// [`ChangeEpoch`]: crate::ChangeEpoch
    pub cache_ttl: Duration,
    /// Most sessions kept in that cache.
    pub cache_capacity: usize,
    /// How long a session that ended (revoked, expired or idle) is kept before
    /// [`SessionService::purge_ended_sessions`] deletes it with its IP address and user agent.
    /// What happened stays in the audit log, under its own retention.
    pub ended_retention: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            default_cap: 2,
            idle_timeout: Duration::minutes(30),
            absolute_lifetime: Duration::hours(12),
            touch_interval: Duration::minutes(1),
            throttle: ThrottlePolicy::default(),
            cache_ttl: Duration::zero(),
            cache_capacity: 10_000,
            ended_retention: Duration::days(30),
        }
    }
}

/// An authenticated request's identity.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who acts, with permissions as of now (RBAC-6).
    pub actor: Actor,
    /// The user, as loaded with the session.
    pub user: User,
}

/// Longest bearer token looked at; anything longer is rejected without a database round trip.
const MAX_TOKEN_LEN: usize = 128;

/// The session use cases. Cheap to clone; share it.
#[derive(Clone)]
pub struct SessionService {
    accounts: Arc<dyn AccountRepository>,
    hasher: Arc<dyn PasswordHasher>,
    store: Arc<dyn SessionStore>,
    throttle: Arc<dyn LoginThrottle>,
    login_reads: Option<Arc<dyn LoginReads>>,
    tokens: Arc<dyn TokenIssuer>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    mfa: Arc<MfaService>,
    ip_failures: Arc<RateLimiter<ClientNet>>,
    token_failures: Option<Arc<RateLimiter<ClientNet>>>,
    epoch: Arc<dyn ChangeEpoch>,
    cache: Arc<AuthCache>,
    config: SessionConfig,
}

impl std::fmt::Debug for SessionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The ports a [`SessionService`] needs.
#[allow(missing_debug_implementations)]
pub struct SessionPorts {
    /// Users and companies.
    pub accounts: Arc<dyn AccountRepository>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Sessions.
    pub store: Arc<dyn SessionStore>,
    /// Per-account throttle.
    pub throttle: Arc<dyn LoginThrottle>,
    /// A login's three reads (throttle, user, company) in one round trip; `None` reads them
    /// through `throttle` and `accounts` one by one.
    pub login_reads: Option<Arc<dyn LoginReads>>,
    /// Tokens.
    pub tokens: Arc<dyn TokenIssuer>,
    /// Audit of events with no change behind them.
    pub audit: Arc<dyn AuditSink>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Ids.
    pub ids: Arc<dyn IdGenerator>,
    /// The second factor (MFA-1..4).
    pub mfa: Arc<MfaService>,
    /// Advances after every committed write that may change a session or a user (the session
    /// cache's invalidation).
    pub epoch: Arc<dyn ChangeEpoch>,
}

impl SessionService {
    /// Wires the use cases. `ip_failures` limits failed logins per client address (API.md: 100 an
    /// hour; a limiter with limit 0 is off).
    #[must_use]
    pub fn new(
        ports: SessionPorts,
        ip_failures: Arc<RateLimiter<ClientNet>>,
        config: SessionConfig,
    ) -> Self {
        Self {
            accounts: ports.accounts,
            hasher: ports.hasher,
            store: ports.store,
            throttle: ports.throttle,
            login_reads: ports.login_reads,
            tokens: ports.tokens,
            audit: ports.audit,
            clock: ports.clock,
            ids: ports.ids,
            mfa: ports.mfa,
            ip_failures,
            token_failures: None,
            epoch: ports.epoch,
            cache: Arc::new(AuthCache::new(config.cache_ttl, config.cache_capacity)),
            config,
        }
    }

    /// Limits, per client network, the bearer tokens the store does not know
    /// ([`Self::authenticate_from`]). Past the limit such a client gets `RateLimited` for every
    /// token the session cache does not hold, before any lookup: random tokens cost a store read
    /// each (a cached session costs none), so a flood of them is cut off cheaply.
    ///
    /// Only unknown tokens count. A client that keeps sending its expired or revoked token (a
    /// sync job after its session ended) gets its 401s without limiting everyone behind its
    /// address; a token nobody issued (or purged long ago) is what a flood is made of. A limiter
    /// with limit 0 is off.
    #[must_use]
    pub fn with_token_failure_limit(mut self, limiter: Arc<RateLimiter<ClientNet>>) -> Self {
        self.token_failures = Some(limiter);
        self
    }

    /// The settings in force.
    #[must_use]
    pub const fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// How often the session cache answered authenticated requests (for `/metrics`).
    #[must_use]
    pub fn cache_stats(&self) -> crate::CacheStats {
        self.cache.stats()
    }

    fn record(&self, action: Action, outcome: Outcome, ctx: &RequestContext) -> AuditRecord {
        AuditRecord::new(self.ids.new_id(), self.clock.now(), action, outcome, ctx)
    }

    /// Logs a user in with the password alone: [`Self::login_with`] without a second factor.
    ///
    /// # Errors
    /// As [`Self::login_with`].
    pub async fn login(
        &self,
        email: &str,
        password: &Password,
        ctx: &RequestContext,
    ) -> Result<LoginOutcome, SessionError> {
        self.login_with(email, password, None, ctx).await
    }

    /// Logs a user in (SES-1..3, OPS-4, MFA-1, MFA-2). Unknown email, wrong password and
    /// deactivated user get the same error after the same work; every attempt is audited
    /// (AUD-1). A user with MFA must also send a TOTP code or a recovery code: without one the
    /// answer is `MfaRequired` (not counted as a failure: it is the normal first step), and a
    /// wrong or replayed one counts towards the throttle like a wrong password. An Owner or
    /// Admin without MFA under a company policy past its grace period gets a session that may
    /// only enrol.
    ///
    /// # Errors
    /// `InvalidCredentials`, `MfaRequired`, `MfaInvalid`, `RateLimited`, `Internal`.
    pub async fn login_with(
        &self,
        email: &str,
        password: &Password,
        second: Option<&SecondFactor>,
        ctx: &RequestContext,
    ) -> Result<LoginOutcome, SessionError> {
        let now = self.clock.now();
        let key = throttle_key(email);
        if let Some(wait) = ctx
            .ip
            .and_then(|ip| self.ip_failures.retry_after(&ClientNet::from(ip), now))
        {
            return Err(self
                .refuse_throttled(email, wait, "ip_rate_limited", ctx)
                .await);
        }
        let parsed = Email::parse(email).ok();
        // With `LoginReads`, the user and the company come with the throttle state.
        let (state, read_together) = match (&self.login_reads, &parsed) {
            (Some(reads), Some(email)) => {
                let subject = reads.login_reads(&key, email).await?;
                (subject.throttle, Some((subject.user, subject.company)))
            }
            _ => (self.throttle.state(&key).await?, None),
        };
        if let Some(wait) = ThrottlePolicy::remaining(&state, now) {
            return Err(self
                .refuse_throttled(email, wait, "account_locked", ctx)
                .await);
        }
        // `company` is `None` until it has been read.
        let (user, company) = match (read_together, &parsed) {
            (Some((user, company)), _) => (user, Some(company)),
            (None, Some(email)) => (self.accounts.user_by_email(email).await?, None),
            (None, None) => (None, None),
        };
        let too_long = password.expose().chars().count() > PasswordPolicy::default().max_len;
        let check = if too_long {
            PasswordCheck::Mismatch
        } else {
            self.hasher
                .verify(password, user.as_ref().map(|u| &u.password_hash))
                .await?
        };
        match (user, check) {
            (Some(user), PasswordCheck::Match { needs_rehash }) if user.active => {
                let factor = if user.mfa_enabled {
                    let failure = |reason: &str| {
                        self.record(Action::SESSION_LOGIN, Outcome::Failure, ctx)
                            .company(user.company_id)
                            .actor(user.id)
                            .target("user", user.id)
                            .details(serde_json::json!({ "reason": reason, "email": user.email.as_str() }))
                    };
                    Some(
                        self.second_factor(&user, second, &key, ctx, failure)
                            .await?,
                    )
                } else {
                    None
                };
                // A clean record needs no write (most logins): one write transaction less.
                if state != ThrottleState::default() {
                    self.throttle.reset(&key).await?;
                }
                let user = if needs_rehash {
                    self.upgrade_hash(user, password, ctx).await?
                } else {
                    user
                };
                let company = match company {
                    Some(company) => company,
                    None => self.accounts.company(user.company_id).await?,
                };
                let notice = mfa_notice(&user, company.as_ref(), now);
                self.open_session(&user, company.as_ref(), notice, factor, ctx)
                    .await
            }
            (user, check) => {
                let reason = match (&user, check) {
                    (Some(u), PasswordCheck::Match { .. }) if !u.active => "account_disabled",
                    (None, _) => "unknown_email",
                    _ => "invalid_credentials",
                };
                self.throttle
                    .record_failure(&key, now, self.config.throttle)
                    .await?;
                if let Some(ip) = ctx.ip {
                    self.ip_failures.hit(&ClientNet::from(ip), now);
                }
                // Only a well-formed email is recorded: text typed into the wrong field (a
                // password) must never reach the audit log (AUD-8).
                let mut record = self
                    .record(Action::SESSION_LOGIN, Outcome::Failure, ctx)
                    .details(serde_json::json!({ "reason": reason, "email": parsed.as_ref().map(Email::as_str) }));
                if let Some(u) = &user {
                    record = record
                        .company(u.company_id)
                        .actor(u.id)
                        .target("user", u.id);
                }
                self.audit.record(record).await?;
                Err(SessionError::InvalidCredentials)
            }
        }
    }

    async fn refuse_throttled(
        &self,
        email: &str,
        wait: Duration,
        reason: &str,
        ctx: &RequestContext,
    ) -> SessionError {
        let email = Email::parse(email).ok();
        let record = self
            .record(Action::SESSION_LOGIN, Outcome::Failure, ctx)
            .details(
                serde_json::json!({ "reason": reason, "email": email.as_ref().map(Email::as_str) }),
            );
        if let Err(e) = self.audit.record(record).await {
            return e.into();
        }
        rate_limited(wait)
    }

    /// Stores the password the user just logged in with, hashed with today's parameters, in
    /// place of the hash the login verified, unless that hash changed meanwhile (a password
    /// change or reset wins; the next login upgrades).
    async fn upgrade_hash(
        &self,
        user: User,
        password: &Password,
        ctx: &RequestContext,
    ) -> Result<User, SessionError> {
        let mut upgraded = user.clone();
        upgraded.password_hash = self.hasher.hash(password).await?;
        upgraded.updated_at = self.clock.now();
        let record = self
            .record(Action::USER_PASSWORD_CHANGED, Outcome::Success, ctx)
            .company(user.company_id)
            .actor(user.id)
            .target("user", user.id)
            .details(serde_json::json!({ "reason": "hash_parameters_upgraded" }));
        let stored = self
            .accounts
            .rehash_password(&upgraded, &user.password_hash, vec![record])
            .await?;
        Ok(if stored { upgraded } else { user })
    }

    /// Checks the second factor of a user with MFA; failures are audited with `failure(reason)`
    /// and, when a code was wrong, counted towards the throttle of `key`.
    async fn second_factor(
        &self,
        user: &User,
        second: Option<&SecondFactor>,
        key: &str,
        ctx: &RequestContext,
        failure: impl Fn(&str) -> AuditRecord,
    ) -> Result<FactorUsed, SessionError> {
        let Some(second) = second else {
            self.audit.record(failure("mfa_required")).await?;
            return Err(SessionError::MfaRequired);
        };
        let reason = match self.mfa.verify(user, second, ctx).await {
            Ok(used) => return Ok(used),
            Err(MfaError::InvalidCode) => "mfa_invalid",
            Err(MfaError::Replayed) => "mfa_replayed",
            // `mfa_enabled` without an enrolment, or storage trouble: fail closed.
            Err(e) => return Err(SessionError::internal(e)),
        };
        let now = self.clock.now();
        self.throttle
            .record_failure(key, now, self.config.throttle)
            .await?;
        if let Some(ip) = ctx.ip {
            self.ip_failures.hit(&ClientNet::from(ip), now);
        }
        self.audit.record(failure(reason)).await?;
        Err(SessionError::MfaInvalid)
    }

    async fn open_session(
        &self,
        user: &User,
        company: Option<&Company>,
        mfa_notice: Option<MfaNotice>,
        factor: Option<FactorUsed>,
        ctx: &RequestContext,
    ) -> Result<LoginOutcome, SessionError> {
        let now = self.clock.now();
        let cap = company
            .and_then(|c| c.session_limit)
            .unwrap_or(self.config.default_cap)
            .max(1);
        let (token, token_hash) = self.tokens.issue();
        let id = SessionId::from_uuid(self.ids.new_id());
        let new = NewSession {
            id,
            company_id: user.company_id,
            user_id: user.id,
            token_hash,
            created_at: now,
            expires_at: now + self.config.absolute_lifetime,
            ip: ctx.ip,
            user_agent: ctx.user_agent.clone(),
            mfa_enrolment_only: mfa_notice == Some(MfaNotice::EnrolmentRequired),
        };
        let mut details = serde_json::json!({
            "role": user.role.as_str(),
            "second_factor": match factor {
                Some(FactorUsed::Totp) => "totp",
                Some(FactorUsed::RecoveryCode { .. }) => "recovery_code",
                None => "none",
            },
            "mfa_enrolment_only": mfa_notice == Some(MfaNotice::EnrolmentRequired),
        });
        // AUD-7 compares an administrator's login with earlier ones by network; a login from
        // an address that is not its own network (IPv6: the /64; IPv4-mapped: the IPv4 address)
        // names it, so the store finds earlier logins of the network through an index.
        if let (Some(ip), Some(fields)) = (ctx.ip, details.as_object_mut()) {
            let network = kernel::ClientNet::from(ip).to_string();
            if network != ip.to_string() {
                fields.insert("network".into(), network.into());
            }
        }
        let login_audit = self
            .record(Action::SESSION_LOGIN, Outcome::Success, ctx)
            .company(user.company_id)
            .actor(user.id)
            .target("session", id)
            .details(details);
        let revocation = SessionRevocation {
            at: now,
            reason: RevocationReason::SessionLimit,
            keep: Some(id),
            audit_template: self
                .record(Action::SESSION_REVOKED, Outcome::Success, ctx)
                .company(user.company_id)
                .actor(user.id),
            ids: self.ids.clone(),
        };
        let (session, revoked_session_ids) = self
            .store
            .create_capped(&new, cap, self.config.idle_timeout, login_audit, revocation)
            .await?;
        Ok(LoginOutcome {
            token,
            session,
            revoked_session_ids,
            mfa_notice,
            factor,
            password_change_required: user.password_change_required,
        })
    }

    /// Turns a bearer token into the acting user (SES-3, ACC-1, RBAC-6). Fails closed on anything
    /// unexpected. [`Self::authenticate_from`] without a client address (no limit applies).
    ///
    /// # Errors
    /// `Unauthenticated`, `Internal`.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, SessionError> {
        self.authenticate_from(token, None).await
    }

    /// Turns a bearer token presented from `ip` into the acting user. Once `ip`'s network has
    /// presented too many tokens the store does not know (see
    /// [`Self::with_token_failure_limit`]), a token the cache does not hold is refused before
    /// the store is asked.
    ///
    /// # Errors
    /// `Unauthenticated`, `RateLimited`, `Internal`.
    pub async fn authenticate_from(
        &self,
        token: &str,
        ip: Option<IpAddr>,
    ) -> Result<Authenticated, SessionError> {
        // A token no issuer could have made is refused without a lookup: it costs nothing, so
        // it is not counted against the client.
        if token.is_empty()
            || token.len() > MAX_TOKEN_LEN
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SessionError::Unauthenticated);
        }
        let hash = self.tokens.hash(token);
        let now = self.clock.now();
        let limit = self.token_failures.as_deref().zip(ip.map(ClientNet::from));
        // Read before loading: a write committed after this read makes the entry stale.
        let epoch = self.epoch.current();
        let record = if let Some(cached) = self.cache.get(hash.as_str(), now, self.epoch.as_ref()) {
            cached
        } else {
            if let Some(wait) = limit.and_then(|(limiter, net)| limiter.retry_after(&net, now)) {
                return Err(rate_limited(wait));
            }
            let Some(record) = self.store.find_by_token(&hash).await? else {
                if let Some((limiter, net)) = limit {
                    limiter.hit(&net, now);
                }
                return Err(SessionError::Unauthenticated);
            };
            self.cache
                .put(hash.as_str(), &record, now, epoch, self.epoch.as_ref());
            record
        };
        let session = &record.session;
        let user = &record.user;
        if !session.is_active(now, self.config.idle_timeout)
            || !user.active
            || user.id != session.user_id
            || user.company_id != session.company_id
        {
            return Err(SessionError::Unauthenticated);
        }
        if now - session.last_seen_at >= self.config.touch_interval {
            self.store.touch(session.id, now).await?;
            self.cache.touched(hash.as_str(), now);
        }
        let actor = Actor::new(
            user.id,
            user.company_id,
            session.id,
            user.role,
            user.permissions(),
        )
        .reauthenticated(session.reauthenticated_at);
        // MFA-2: the restriction lifts as soon as the user has enrolled.
        let actor = if session.mfa_enrolment_only && !user.mfa_enabled {
            actor.restricted_to_mfa_enrolment()
        } else {
            actor
        };
        // A password the operator handed over: only changing it is allowed until it is changed
        // (read from the user at every request, so it lifts with the change).
        let actor = if user.password_change_required {
            actor.restricted_to_password_change()
        } else {
            actor
        };
        Ok(Authenticated {
            actor,
            user: record.user,
        })
    }

    /// Forgets throttle state untouched for a day and not locked (OPS-4 hygiene); the failures it
    /// held are older than any lock they could still cause. Run daily by the server.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn purge_stale_throttles(&self) -> Result<u64, SessionError> {
        let now = self.clock.now();
        self.throttle
            .purge_stale(now - Duration::days(1), now)
            .await
    }

    /// Lifts the failed-login lock of `email` (OPS-4) after its password was reset: the lock
    /// guarded the old password against guessing, and the user must be able to use the new one
    /// at once.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn lift_login_lock(&self, email: &Email) -> Result<(), SessionError> {
        lift_login_lock(self.throttle.as_ref(), email).await
    }

    /// Deletes the sessions that ended more than [`SessionConfig::ended_retention`] ago, so the
    /// table (and the addresses and user agents it holds) does not grow with every login ever
    /// made, nor each login's look at the user's live sessions with it. Run daily by the server.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn purge_ended_sessions(&self) -> Result<u64, SessionError> {
        let now = self.clock.now();
        self.store
            .purge_ended(now - self.config.ended_retention, self.config.idle_timeout)
            .await
    }

    /// `true` while the actor's step-up window is open (MFA-3).
    #[must_use]
    pub fn has_step_up(&self, actor: &Actor) -> bool {
        actor.has_step_up(self.clock.now())
    }

    /// Re-authentication with the password alone: [`Self::reauthenticate_with`] without a code.
    ///
    /// # Errors
    /// As [`Self::reauthenticate_with`].
    pub async fn reauthenticate(
        &self,
        actor: &Actor,
        password: &Password,
        ctx: &RequestContext,
    ) -> Result<kernel::Timestamp, SessionError> {
        self.reauthenticate_with(actor, password, None, ctx).await
    }

    /// Explicit re-authentication of the current session (MFA-3): the password, plus a TOTP code
    /// when the user has MFA. Opens the 5-minute step-up window and returns when it closes.
    /// Failures count towards the account's login throttle, so a stolen session cannot be used
    /// to guess the password or the code.
    ///
    /// A restricted session ([`Actor::restriction`]) may not: it must change its password or
    /// enrol first, and a step-up would open nothing it may do.
    ///
    /// # Errors
    /// `ReauthenticationFailed`, `MfaRequired`, `MfaInvalid`, `RateLimited`, `Unauthenticated`
    /// (user vanished), `Forbidden` (restricted, recorded), `Internal`.
    pub async fn reauthenticate_with(
        &self,
        actor: &Actor,
        password: &Password,
        totp_code: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<kernel::Timestamp, SessionError> {
        self.refuse_restricted(actor, Action::SESSION_REAUTHENTICATED, ctx)
            .await?;
        let now = self.clock.now();
        let user = self
            .accounts
            .user(actor.company_id, actor.user_id)
            .await?
            .filter(|u| u.active)
            .ok_or(SessionError::Unauthenticated)?;
        let key = throttle_key(user.email.as_str());
        let state = self.throttle.state(&key).await?;
        if let Some(wait) = ThrottlePolicy::remaining(&state, now) {
            return Err(self
                .refuse_throttled(user.email.as_str(), wait, "account_locked", ctx)
                .await);
        }
        let too_long = password.expose().chars().count() > PasswordPolicy::default().max_len;
        let check = if too_long {
            PasswordCheck::Mismatch
        } else {
            self.hasher
                .verify(password, Some(&user.password_hash))
                .await?
        };
        let base = |outcome| {
            self.record(Action::SESSION_REAUTHENTICATED, outcome, ctx)
                .by(actor)
                .target("session", actor.session_id)
        };
        if check == PasswordCheck::Mismatch {
            self.throttle
                .record_failure(&key, now, self.config.throttle)
                .await?;
            self.audit
                .record(
                    base(Outcome::Failure)
                        .details(serde_json::json!({ "reason": "invalid_credentials" })),
                )
                .await?;
            return Err(SessionError::ReauthenticationFailed);
        }
        if user.mfa_enabled {
            let second = totp_code.map(SecondFactor::totp);
            let failure = |reason: &str| {
                base(Outcome::Failure).details(serde_json::json!({ "reason": reason }))
            };
            self.second_factor(&user, second.as_ref(), &key, ctx, failure)
                .await?;
        }
        self.throttle.reset(&key).await?;
        self.store
            .mark_reauthenticated(actor.session_id, now, base(Outcome::Success))
            .await?;
        Ok(now + rbac::STEP_UP_WINDOW)
    }

    /// The actor's active sessions, newest first, marking the current one (SES-4).
    ///
    /// # Errors
    /// `Internal`.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<SessionView>, SessionError> {
        let now = self.clock.now();
        let sessions = self
            .store
            .list_active(
                actor.company_id,
                actor.user_id,
                now,
                self.config.idle_timeout,
            )
            .await?;
        Ok(sessions
            .into_iter()
            .map(|session| SessionView {
                current: session.id == actor.session_id,
                session,
            })
            .collect())
    }

    /// Revokes one of the actor's own sessions (SES-4). Someone else's session is `NotFound`.
    /// A restricted session ([`Actor::restriction`]) may end itself (log out), not the others.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden` (restricted, recorded), `Internal`.
    pub async fn revoke(
        &self,
        actor: &Actor,
        id: SessionId,
        ctx: &RequestContext,
    ) -> Result<(), SessionError> {
        if id != actor.session_id {
            self.refuse_restricted(actor, Action::SESSION_REVOKED, ctx)
                .await?;
        }
        let reason = if id == actor.session_id {
            RevocationReason::Logout
        } else {
            RevocationReason::UserRevoked
        };
        let action = if id == actor.session_id {
            Action::SESSION_LOGOUT
        } else {
            Action::SESSION_REVOKED
        };
        let revocation = SessionRevocation {
            at: self.clock.now(),
            reason,
            keep: None,
            audit_template: self.record(action, Outcome::Success, ctx).by(actor),
            ids: self.ids.clone(),
        };
        if self
            .store
            .revoke(actor.company_id, actor.user_id, id, revocation)
            .await?
        {
            Ok(())
        } else {
            Err(SessionError::NotFound)
        }
    }

    /// Refuses, recording the denial, an actor whose session may only change its password or
    /// enrol MFA: the rule the HTTP guard applies by route, kept by the core for a service that
    /// links it without that guard.
    async fn refuse_restricted(
        &self,
        actor: &Actor,
        attempted: Action,
        ctx: &RequestContext,
    ) -> Result<(), SessionError> {
        let Some(why) = actor.restriction() else {
            return Ok(());
        };
        self.audit
            .record(self.denial(actor, attempted.as_str(), why.reason(), ctx))
            .await?;
        Err(SessionError::Forbidden(why))
    }

    /// The `authorization.denied` record of `actor` refused `attempted` because of `reason`.
    fn denial(
        &self,
        actor: &Actor,
        attempted: &str,
        reason: &str,
        ctx: &RequestContext,
    ) -> AuditRecord {
        AuditRecord::denied(
            self.ids.new_id(),
            self.clock.now(),
            ctx,
            actor,
            attempted,
            reason,
        )
    }

    /// Records that `actor` was refused `attempted` on `route` because of `reason`
    /// (`authorization.denied`).
    ///
    /// # Errors
    /// `Internal` when the record could not be stored: the caller still refuses.
    pub async fn record_denied(
        &self,
        actor: &Actor,
        attempted: &str,
        reason: &str,
        route: &str,
        ctx: &RequestContext,
    ) -> Result<(), SessionError> {
        let record = self
            .denial(actor, attempted, reason, ctx)
            .target("route", route);
        Ok(self.audit.record(record).await?)
    }

    /// Ends the current session (SES-4).
    ///
    /// # Errors
    /// `Internal` (an already revoked session cannot reach here: it fails authentication).
    pub async fn logout(&self, actor: &Actor, ctx: &RequestContext) -> Result<(), SessionError> {
        match self.revoke(actor, actor.session_id, ctx).await {
            Err(SessionError::NotFound) => Err(SessionError::Unauthenticated),
            other => other,
        }
    }
}

/// MFA-2: what an Owner or Admin without MFA must do under the company's policy at `now`.
fn mfa_notice(user: &User, company: Option<&Company>, now: kernel::Timestamp) -> Option<MfaNotice> {
    if user.mfa_enabled || !matches!(user.role, Role::Owner | Role::Admin) {
        return None;
    }
    let profile = &company?.profile;
    if !profile.mfa_required {
        return None;
    }
    Some(match profile.mfa_grace_until {
        Some(until) if now < until => MfaNotice::EnrolBy(until),
        _ => MfaNotice::EnrolmentRequired,
    })
}

/// `RateLimited` for a wait of `wait`: its whole seconds plus one, so never less than the wait
/// and never 0 (a client told to retry after 0 seconds would retry at once).
fn rate_limited(wait: Duration) -> SessionError {
    SessionError::RateLimited {
        retry_after_secs: u64::try_from(wait.num_seconds())
            .unwrap_or(0)
            .saturating_add(1),
    }
}

/// The throttle key of a login attempt: the normalized email, so unknown and known emails are
/// throttled alike. Text that is not an email (often a password typed into the wrong field) is
/// never stored: all such attempts share one key, which no real account uses.
/// Lifts the failed-login lock of `email` in `throttle`: what [`SessionService::lift_login_lock`]
/// does, for a caller that holds the throttle alone (the operator's password reset, which gives
/// the user a new password to use at once).
///
/// # Errors
/// `Internal`.
pub async fn lift_login_lock(
    throttle: &dyn LoginThrottle,
    email: &Email,
) -> Result<(), SessionError> {
    throttle.reset(&throttle_key(email.as_str())).await
}

fn throttle_key(email: &str) -> String {
    Email::parse(email).map_or_else(
        |_| MALFORMED_EMAIL_KEY.to_owned(),
        |e| e.as_str().to_owned(),
    )
}

/// The throttle key of every attempt whose email does not parse.
const MALFORMED_EMAIL_KEY: &str = "(malformed email)";

#[cfg(test)]
mod tests;
