//! The MFA use cases: enrolment, confirmation, the second-factor check, recovery codes, disabling,
//! and re-sealing secrets after a master key rotation.

use std::sync::Arc;

use accounts::User;
use audit::{Action, AuditRecord, AuditSink, Outcome};
use kernel::{Clock, IdGenerator, RequestContext};
use rbac::{Actor, Refusal};
use vault::{AssociatedData, Envelope, Purpose};

use crate::model::RECOVERY_CODE_LEN;
use crate::{
    Enrolment, Hotp, MfaCrypto, MfaError, MfaRepository, MfaStatus, OneTimeSecret,
    RECOVERY_CODE_COUNT, RecoveryCodes, SecondFactor, TotpEnrolment, TotpError, TotpParams, base32,
    normalize_recovery_code, otpauth_uri, verify,
};

/// The issuer authenticator apps show (MFA-1).
pub const ISSUER: &str = "IncrementaCRM";

/// Bytes of a TOTP secret: 160 bits, RFC 4226's recommendation.
const SECRET_LEN: usize = 20;

/// Random bytes behind one recovery code (80 bits = 16 base32 characters).
const RECOVERY_CODE_BYTES: usize = RECOVERY_CODE_LEN * 5 / 8;

/// The ports an [`MfaService`] needs.
#[allow(missing_debug_implementations)]
pub struct MfaPorts {
    /// Enrolments and recovery codes.
    pub repo: Arc<dyn MfaRepository>,
    /// The vault's envelope, which seals the secrets (MFA-4).
    pub envelope: Arc<dyn Envelope>,
    /// HOTP.
    pub hotp: Arc<dyn Hotp>,
    /// Randomness and digests.
    pub crypto: Arc<dyn MfaCrypto>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Ids of audit records.
    pub ids: Arc<dyn IdGenerator>,
    /// Records refusals (a missing step-up, a restricted session).
    pub audit: Arc<dyn AuditSink>,
}

/// Which second factor a login or re-authentication used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorUsed {
    /// A TOTP code.
    Totp,
    /// A recovery code; this many are left.
    RecoveryCode {
        /// Unused codes left after this one.
        remaining: u32,
    },
}

/// What an actor needs, beyond being the account's own session, to act on its second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Enrolling: open to a session restricted to enrolment, not to one with a password to
    /// change.
    Enrol,
    /// Turning MFA off or replacing the recovery codes: an unrestricted session with a fresh
    /// step-up (MFA-3).
    SteppedUp,
}

/// The MFA use cases. Cheap to clone; share it.
#[derive(Clone)]
pub struct MfaService {
    repo: Arc<dyn MfaRepository>,
    envelope: Arc<dyn Envelope>,
    hotp: Arc<dyn Hotp>,
    crypto: Arc<dyn MfaCrypto>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    audit: Arc<dyn AuditSink>,
    params: TotpParams,
}

impl std::fmt::Debug for MfaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaService")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl MfaService {
    /// Wires the use cases with the authenticator apps' TOTP settings.
    #[must_use]
    pub fn new(ports: MfaPorts) -> Self {
        Self {
            repo: ports.repo,
            envelope: ports.envelope,
            hotp: ports.hotp,
            crypto: ports.crypto,
            clock: ports.clock,
            ids: ports.ids,
            audit: ports.audit,
            params: TotpParams::default(),
        }
    }

    fn ad(user: &User) -> AssociatedData {
        AssociatedData {
            company: user.company_id,
            purpose: Purpose::TotpSecret,
            record: user.id.as_uuid(),
        }
    }

    fn record(&self, action: Action, user: &User, ctx: &RequestContext) -> AuditRecord {
        AuditRecord::new(
            self.ids.new_id(),
            self.clock.now(),
            action,
            Outcome::Success,
            ctx,
        )
        .company(user.company_id)
        .actor(user.id)
        .target("user", user.id)
    }

    /// Lets `actor` act on `user`'s second factor only as that user's own session, and as the
    /// `access` rule says: the HTTP guard checks the same before the call, and a service
    /// linking the core directly cannot skip it. A refusal is recorded.
    async fn require(
        &self,
        actor: &Actor,
        user: &User,
        access: Access,
        attempted: Action,
        ctx: &RequestContext,
    ) -> Result<(), MfaError> {
        let now = self.clock.now();
        let why = if actor.user_id != user.id || actor.company_id != user.company_id {
            Some(Refusal::Rule("not the caller's own account"))
        } else {
            match access {
                Access::Enrol => actor
                    .password_change_only
                    .then_some(Refusal::PasswordChangeRequired),
                Access::SteppedUp => actor.self_service_refusal(now, true),
            }
        };
        let Some(why) = why else {
            return Ok(());
        };
        let denial = AuditRecord::denied(
            self.ids.new_id(),
            now,
            ctx,
            actor,
            attempted.as_str(),
            why.reason(),
        );
        self.audit.record(denial).await?;
        Err(why.into())
    }

    fn new_recovery_codes(&self) -> (RecoveryCodes, Vec<String>) {
        let mut shown = Vec::with_capacity(RECOVERY_CODE_COUNT);
        let mut digests = Vec::with_capacity(RECOVERY_CODE_COUNT);
        for _ in 0..RECOVERY_CODE_COUNT {
            let raw = self.crypto.random_bytes(RECOVERY_CODE_BYTES);
            let code = zeroize::Zeroizing::new(base32(&raw).to_ascii_lowercase());
            digests.push(self.crypto.digest(&code));
            let grouped: Vec<&str> = code
                .as_bytes()
                .chunks(4)
                .filter_map(|c| std::str::from_utf8(c).ok())
                .collect();
            shown.push(OneTimeSecret::new(grouped.join("-")));
        }
        (RecoveryCodes(shown), digests)
    }

    async fn confirmed(&self, user: &User) -> Result<TotpEnrolment, MfaError> {
        self.repo
            .enrolment(user.company_id, user.id)
            .await?
            .filter(|e| e.confirmed_at.is_some())
            .ok_or(MfaError::NotEnabled)
    }

    /// The user's MFA state.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn status(&self, user: &User) -> Result<MfaStatus, MfaError> {
        let enrolment = self.repo.enrolment(user.company_id, user.id).await?;
        let enabled = enrolment.as_ref().is_some_and(|e| e.confirmed_at.is_some());
        Ok(MfaStatus {
            enabled,
            pending: enrolment.is_some() && !enabled,
            recovery_codes_remaining: if enabled {
                self.repo
                    .recovery_codes_remaining(user.company_id, user.id)
                    .await?
            } else {
                0
            },
        })
    }

    /// Starts enrolment (MFA-1) for `actor`'s own account `user`: a fresh 160-bit secret, stored
    /// sealed and pending (replacing an earlier pending one), returned once with its
    /// `otpauth://` URI. A session restricted to enrolling may; one whose password the operator
    /// handed over must change it first (whoever knows that password must not put their
    /// authenticator on the account).
    ///
    /// # Errors
    /// `AlreadyEnabled`, `Forbidden` (another account, or a password to change; recorded),
    /// `Internal`.
    pub async fn begin(
        &self,
        actor: &Actor,
        user: &User,
        ctx: &RequestContext,
    ) -> Result<Enrolment, MfaError> {
        self.require(
            actor,
            user,
            Access::Enrol,
            Action::MFA_ENROLMENT_STARTED,
            ctx,
        )
        .await?;
        if user.mfa_enabled {
            return Err(MfaError::AlreadyEnabled);
        }
        let secret = self.crypto.random_bytes(SECRET_LEN);
        if secret.len() != SECRET_LEN {
            return Err(MfaError::Internal("short random secret".into()));
        }
        let sealed = self.envelope.seal(&secret, &Self::ad(user))?;
        let key_id = self
            .envelope
            .key_id_of(&sealed)
            .unwrap_or_else(|| self.envelope.current_key_id());
        let enrolment = TotpEnrolment {
            company_id: user.company_id,
            user_id: user.id,
            secret: sealed,
            key_id,
            confirmed_at: None,
            last_used_step: None,
            created_at: self.clock.now(),
        };
        let audit = self.record(Action::MFA_ENROLMENT_STARTED, user, ctx);
        if !self.repo.save_pending(&enrolment, audit).await? {
            return Err(MfaError::AlreadyEnabled);
        }
        Ok(Enrolment {
            secret: OneTimeSecret::new(base32(&secret)),
            otpauth_uri: OneTimeSecret::new(otpauth_uri(
                ISSUER,
                user.email.as_str(),
                &secret,
                self.params,
            )),
        })
    }

    /// Confirms the pending enrolment of `actor`'s own account `user` with a first code
    /// (MFA-1): MFA is on from now, and the ten recovery codes are returned once. The code's
    /// step counts as used. Refused as [`Self::begin`] is.
    ///
    /// # Errors
    /// `NotPending`, `AlreadyEnabled`, `InvalidCode`, `Forbidden` (recorded), `Internal`.
    pub async fn confirm(
        &self,
        actor: &Actor,
        user: &User,
        code: &str,
        ctx: &RequestContext,
    ) -> Result<RecoveryCodes, MfaError> {
        self.require(actor, user, Access::Enrol, Action::MFA_ENABLED, ctx)
            .await?;
        let enrolment = self
            .repo
            .enrolment(user.company_id, user.id)
            .await?
            .ok_or(MfaError::NotPending)?;
        if enrolment.confirmed_at.is_some() {
            return Err(MfaError::AlreadyEnabled);
        }
        let secret = self.envelope.open(&enrolment.secret, &Self::ad(user))?;
        let now = self.clock.now();
        let step = verify(
            self.hotp.as_ref(),
            secret.expose(),
            code,
            now,
            enrolment.last_used_step,
            self.params,
        )
        .map_err(|_| MfaError::InvalidCode)?;
        let (codes, digests) = self.new_recovery_codes();
        let audit = self.record(Action::MFA_ENABLED, user, ctx);
        if !self
            .repo
            .confirm(
                user.company_id,
                user.id,
                &enrolment.secret,
                step,
                now,
                &digests,
                audit,
            )
            .await?
        {
            return Err(MfaError::NotPending);
        }
        Ok(codes)
    }

    /// Checks a second factor at login or re-authentication (MFA-1, MFA-4). A TOTP code is
    /// accepted at most once, also under concurrent requests; a recovery code is spent.
    ///
    /// # Errors
    /// `NotEnabled`, `InvalidCode`, `Replayed`, `Internal`.
    pub async fn verify(
        &self,
        user: &User,
        factor: &SecondFactor,
        ctx: &RequestContext,
    ) -> Result<FactorUsed, MfaError> {
        let enrolment = self.confirmed(user).await?;
        match factor {
            SecondFactor::Totp(code) => {
                let secret = self.envelope.open(&enrolment.secret, &Self::ad(user))?;
                let step = verify(
                    self.hotp.as_ref(),
                    secret.expose(),
                    code,
                    self.clock.now(),
                    enrolment.last_used_step,
                    self.params,
                )
                .map_err(|e| match e {
                    TotpError::Invalid => MfaError::InvalidCode,
                    TotpError::Replayed => MfaError::Replayed,
                })?;
                if self.repo.use_step(user.company_id, user.id, step).await? {
                    Ok(FactorUsed::Totp)
                } else {
                    Err(MfaError::Replayed)
                }
            }
            SecondFactor::RecoveryCode(code) => {
                let code = normalize_recovery_code(code).ok_or(MfaError::InvalidCode)?;
                let digest = self.crypto.digest(&code);
                let audit = self.record(Action::MFA_RECOVERY_CODE_USED, user, ctx);
                if !self
                    .repo
                    .use_recovery_code(user.company_id, user.id, &digest, self.clock.now(), audit)
                    .await?
                {
                    return Err(MfaError::InvalidCode);
                }
                let remaining = self
                    .repo
                    .recovery_codes_remaining(user.company_id, user.id)
                    .await?;
                Ok(FactorUsed::RecoveryCode { remaining })
            }
        }
    }

    /// Replaces the recovery codes of `actor`'s own `user` (the old ones stop working at once)
    /// and returns the new ones. Needs a fresh step-up (MFA-3).
    ///
    /// # Errors
    /// `ReauthenticationRequired`, `Forbidden` (another user, a restricted session; both
    /// recorded), `NotEnabled`, `Internal`.
    pub async fn regenerate_recovery_codes(
        &self,
        actor: &Actor,
        user: &User,
        ctx: &RequestContext,
    ) -> Result<RecoveryCodes, MfaError> {
        self.require(
            actor,
            user,
            Access::SteppedUp,
            Action::MFA_RECOVERY_CODES_REGENERATED,
            ctx,
        )
        .await?;
        self.confirmed(user).await?;
        let (codes, digests) = self.new_recovery_codes();
        let audit = self.record(Action::MFA_RECOVERY_CODES_REGENERATED, user, ctx);
        if self
            .repo
            .replace_recovery_codes(user.company_id, user.id, &digests, audit)
            .await?
        {
            Ok(codes)
        } else {
            Err(MfaError::NotEnabled)
        }
    }

    /// Turns MFA off for `actor`'s own `user`: the secret and the recovery codes are deleted.
    /// Needs a fresh step-up (MFA-3). Under a company policy that requires MFA, the user's next
    /// login is restricted to enrolling again.
    ///
    /// # Errors
    /// `ReauthenticationRequired`, `Forbidden` (another user, a restricted session; both
    /// recorded), `NotEnabled`, `Internal`.
    pub async fn disable(
        &self,
        actor: &Actor,
        user: &User,
        ctx: &RequestContext,
    ) -> Result<(), MfaError> {
        self.require(actor, user, Access::SteppedUp, Action::MFA_DISABLED, ctx)
            .await?;
        let audit = self.record(Action::MFA_DISABLED, user, ctx);
        if self.repo.disable(user.company_id, user.id, audit).await? {
            Ok(())
        } else {
            Err(MfaError::NotEnabled)
        }
    }

    /// The operator's break glass (`incrementa users reset-mfa`) for a user who lost both the
    /// authenticator and the recovery codes: what [`Self::disable`] does, recorded on the user's
    /// company chain without an actor and with `"by": "operator"` (the user is mailed that MFA
    /// was turned off). Under a company policy that requires MFA, the user's next login is
    /// restricted to enrolling again.
    ///
    /// # Errors
    /// `NotEnabled`, `Internal`.
    pub async fn disable_by_operator(&self, user: &User) -> Result<(), MfaError> {
        let mut audit = self
            .record(Action::MFA_DISABLED, user, &RequestContext::default())
            .details(serde_json::json!({ "by": "operator" }));
        audit.actor_id = None;
        if self.repo.disable(user.company_id, user.id, audit).await? {
            Ok(())
        } else {
            Err(MfaError::NotEnabled)
        }
    }

    /// Re-seals every TOTP secret under the current master key (after `keys rotate`), in
    /// batches; returns how many were re-sealed. Secrets changed meanwhile are picked up again.
    ///
    /// # Errors
    /// `Internal`, including a secret that no longer opens (tampered or its key is gone).
    pub async fn rewrap(&self, batch: u32) -> Result<u64, MfaError> {
        let current = self.envelope.current_key_id();
        let mut done = 0_u64;
        let mut stalled_rounds = 0_u8;
        loop {
            let pending = self.repo.sealed_not_under(current, batch.max(1)).await?;
            if pending.is_empty() {
                return Ok(done);
            }
            let mut progressed = false;
            for e in pending {
                let ad = AssociatedData {
                    company: e.company_id,
                    purpose: Purpose::TotpSecret,
                    record: e.user_id.as_uuid(),
                };
                let secret = self.envelope.open(&e.secret, &ad)?;
                let sealed = self.envelope.seal(secret.expose(), &ad)?;
                if self
                    .repo
                    .replace_secret(e.company_id, e.user_id, &e.secret, &sealed, current)
                    .await?
                {
                    done += 1;
                    progressed = true;
                }
            }
            if progressed {
                stalled_rounds = 0;
            } else {
                // Every row of the batch changed under us; the next round reads them afresh,
                // but a round that keeps losing means something else is wrong: stop.
                stalled_rounds += 1;
                if stalled_rounds >= 3 {
                    return Err(MfaError::Internal(
                        "TOTP secrets keep changing during rewrap".into(),
                    ));
                }
            }
        }
    }

    /// Enrolments sealed under `key_id` (a key cannot be retired while any remain).
    ///
    /// # Errors
    /// `Internal`.
    pub async fn count_under(&self, key_id: u32) -> Result<u64, MfaError> {
        self.repo.count_under(key_id).await
    }
}

#[cfg(test)]
mod tests;
