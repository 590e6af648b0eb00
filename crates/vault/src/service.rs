//! Vault use cases: upload, list, read, delete, sign, re-wrap.

use std::sync::Arc;

use accounts::AccountRepository;
use audit::{Action, AuditRecord, AuditSink, Outcome};
use kernel::{Clock, IdGenerator, RequestContext, Timestamp};
use rbac::{Actor, Permission, Scope};

use crate::{
    AssociatedData, CertificateInspector, CredentialId, CredentialRepository, CredentialView,
    Envelope, FiscalCredential, Purpose, SealedCredential, SecretBytes, Signature, VaultError,
};

/// Size bounds (VAULT-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Largest certificate or key file: 64 KiB (API.md).
    pub max_file: usize,
    /// Longest key password in bytes.
    pub max_password: usize,
    /// Largest text to sign.
    pub max_sign_data: usize,
    /// Most credentials one company stores. SAT issues a company a handful (a CSD per branch
    /// or system and one e.firma, renewed every four years); the vault accepts any well-formed
    /// certificate with its key, so without a bound a company's rows (and its list) could grow
    /// without end.
    pub max_credentials: u64,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_file: 64 * 1024,
            max_password: 1024,
            max_sign_data: 1024 * 1024,
            max_credentials: 100,
        }
    }
}

/// What a re-wrap run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RewrapProgress {
    /// Credentials re-encrypted under the newest key by this run.
    pub rewrapped: u64,
    /// Credentials skipped because another process re-wrapped or deleted them first.
    pub skipped: u64,
}

/// What one pass of expiry notices did (VAULT-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpiryNotices {
    /// Notices recorded by this pass (one per credential and stage; each tells every holder of
    /// `fiscal.credentials.manage` in the credential's company).
    pub sent: u64,
    /// Notices another process recorded first (or whose credential was deleted meanwhile).
    pub skipped: u64,
}

/// Credentials read per page by an expiry pass, and users per page when finding recipients.
const EXPIRY_PAGE: u64 = 200;

/// The vault's use cases.
#[derive(Clone)]
pub struct VaultService {
    repo: Arc<dyn CredentialRepository>,
    envelope: Arc<dyn Envelope>,
    inspector: Arc<dyn CertificateInspector>,
    accounts: Arc<dyn AccountRepository>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    limits: UploadLimits,
}

impl std::fmt::Debug for VaultService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The ports a [`VaultService`] needs.
#[allow(missing_debug_implementations)]
pub struct VaultPorts {
    /// Storage.
    pub repo: Arc<dyn CredentialRepository>,
    /// Envelope encryption.
    pub envelope: Arc<dyn Envelope>,
    /// Certificate and key parsing, signing.
    pub inspector: Arc<dyn CertificateInspector>,
    /// Companies (for the RFC check).
    pub accounts: Arc<dyn AccountRepository>,
    /// Audit of events without a change behind them (denials).
    pub audit: Arc<dyn AuditSink>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Ids.
    pub ids: Arc<dyn IdGenerator>,
}

/// Expiry of a credential at `now` (VAULT-8).
#[must_use]
pub fn view(credential: FiscalCredential, now: Timestamp) -> CredentialView {
    let days_to_expiry = crate::days_to_expiry(credential.info.valid_to, now);
    CredentialView {
        expiring_soon: credential.info.valid_to > now
            && days_to_expiry < i64::from(crate::EXPIRING_SOON_DAYS),
        days_to_expiry,
        credential,
    }
}

impl VaultService {
    /// Wires the use cases.
    #[must_use]
    pub fn new(ports: VaultPorts, limits: UploadLimits) -> Self {
        Self {
            repo: ports.repo,
            envelope: ports.envelope,
            inspector: ports.inspector,
            accounts: ports.accounts,
            audit: ports.audit,
            clock: ports.clock,
            ids: ports.ids,
            limits,
        }
    }

    /// The size bounds in force.
    #[must_use]
    pub const fn limits(&self) -> UploadLimits {
        self.limits
    }

    fn record(
        &self,
        action: Action,
        outcome: Outcome,
        actor: &Actor,
        ctx: &RequestContext,
    ) -> AuditRecord {
        AuditRecord::new(self.ids.new_id(), self.clock.now(), action, outcome, ctx).by(actor)
    }

    async fn require(
        &self,
        actor: &Actor,
        permission: Permission,
        step_up: bool,
        attempted: Action,
        ctx: &RequestContext,
    ) -> Result<(), VaultError> {
        let now = self.clock.now();
        let Err(why) = rbac::check(actor, permission, Scope::Company, step_up, now) else {
            return Ok(());
        };
        let record = AuditRecord::denied(
            self.ids.new_id(),
            now,
            ctx,
            actor,
            attempted.as_str(),
            why.reason(),
        );
        self.audit.record(record).await?;
        Err(why.into())
    }

    fn ad(actor: &Actor, purpose: Purpose, record: CredentialId) -> AssociatedData {
        AssociatedData {
            company: actor.company_id,
            purpose,
            record,
        }
    }

    /// Validates and stores a credential (VAULT-1..5). Nothing is stored on any failure; the
    /// plaintext inputs are zeroized when this returns. The company's other credential managers
    /// are told.
    ///
    /// # Errors
    /// `Forbidden`, `ReauthenticationRequired`, `TooLarge`, `LimitReached`, one of the 422
    /// upload errors, `Duplicate`, `Internal`.
    pub async fn upload(
        &self,
        actor: &Actor,
        certificate: &[u8],
        private_key: SecretBytes,
        password: SecretBytes,
        ctx: &RequestContext,
    ) -> Result<CredentialView, VaultError> {
        let action = Action::FISCAL_CREDENTIAL_UPLOADED;
        self.require(
            actor,
            Permission::FiscalCredentialsManage,
            true,
            action,
            ctx,
        )
        .await?;
        let max = self.limits.max_file;
        if certificate.len() > max {
            return Err(VaultError::TooLarge {
                what: "the certificate",
                max,
            });
        }
        if private_key.expose().len() > max {
            return Err(VaultError::TooLarge {
                what: "the private key",
                max,
            });
        }
        if password.expose().len() > self.limits.max_password {
            return Err(VaultError::TooLarge {
                what: "the password",
                max: self.limits.max_password,
            });
        }
        if certificate.is_empty() {
            return Err(VaultError::CertificateInvalid("the file is empty"));
        }
        if private_key.expose().is_empty() {
            return Err(VaultError::PrivateKeyInvalid("the file is empty"));
        }
        // Before any parsing: a full vault costs no key derivation. (The store counts again in
        // its transaction, so uploads racing at the bound cannot pass it together.)
        if self.repo.count(actor.company_id).await? >= self.limits.max_credentials {
            return Err(VaultError::LimitReached {
                max: self.limits.max_credentials,
            });
        }
        let info = self.inspector.inspect(certificate)?;
        self.inspector
            .check_key(certificate, private_key.expose(), password.expose())?;
        let now = self.clock.now();
        if now < info.valid_from {
            return Err(VaultError::CertificateNotYetValid);
        }
        if now >= info.valid_to {
            return Err(VaultError::CertificateExpired);
        }
        let company = self
            .accounts
            .company(actor.company_id)
            .await?
            .ok_or(VaultError::NotFound)?;
        if company
            .rfc
            .as_ref()
            .is_some_and(|rfc| rfc.as_str() != info.rfc)
        {
            return Err(VaultError::RfcMismatch);
        }
        let id = self.ids.new_id();
        let key_id = self.envelope.current_key_id();
        let sealed = SealedCredential {
            certificate: self
                .envelope
                .seal(certificate, &Self::ad(actor, Purpose::Certificate, id))?,
            private_key: self.envelope.seal(
                private_key.expose(),
                &Self::ad(actor, Purpose::PrivateKey, id),
            )?,
            password: self.envelope.seal(
                password.expose(),
                &Self::ad(actor, Purpose::KeyPassword, id),
            )?,
            key_id,
            credential: FiscalCredential {
                id,
                company_id: actor.company_id,
                info,
                created_by: actor.user_id,
                created_at: now,
            },
        };
        // The other managers are told (a credential signs the company's invoices).
        let (recipients, by) = self.others_to_tell(actor).await?;
        let audit = vec![
            self.record(action, Outcome::Success, actor, ctx)
                .target("fiscal_credential", id)
                .details(serde_json::json!({
                    "kind": sealed.credential.info.kind.as_str(),
                    "rfc": sealed.credential.info.rfc,
                    "certificate_number": sealed.credential.info.certificate_number,
                    "by": by,
                    "recipients": recipients,
                })),
        ];
        self.repo
            .insert(&sealed, self.limits.max_credentials, audit)
            .await?;
        Ok(view(sealed.credential, now))
    }

    /// The company's credentials with their expiry.
    ///
    /// # Errors
    /// `Forbidden`, `Internal`.
    pub async fn list(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
    ) -> Result<Vec<CredentialView>, VaultError> {
        self.require(
            actor,
            Permission::FiscalCredentialsRead,
            false,
            Action::FISCAL_CREDENTIAL_USED,
            ctx,
        )
        .await?;
        let now = self.clock.now();
        Ok(self
            .repo
            .list(actor.company_id)
            .await?
            .into_iter()
            .map(|c| view(c, now))
            .collect())
    }

    /// One credential.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Internal`.
    pub async fn get(
        &self,
        actor: &Actor,
        id: CredentialId,
        ctx: &RequestContext,
    ) -> Result<CredentialView, VaultError> {
        self.require(
            actor,
            Permission::FiscalCredentialsRead,
            false,
            Action::FISCAL_CREDENTIAL_USED,
            ctx,
        )
        .await?;
        let credential = self
            .repo
            .credential(actor.company_id, id)
            .await?
            .ok_or(VaultError::NotFound)?;
        Ok(view(credential, self.clock.now()))
    }

    /// Deletes a credential (step-up); the company's other credential managers are told.
    ///
    /// # Errors
    /// `Forbidden`, `ReauthenticationRequired`, `NotFound`, `Internal`.
    pub async fn delete(
        &self,
        actor: &Actor,
        id: CredentialId,
        ctx: &RequestContext,
    ) -> Result<(), VaultError> {
        let action = Action::FISCAL_CREDENTIAL_DELETED;
        self.require(
            actor,
            Permission::FiscalCredentialsManage,
            true,
            action,
            ctx,
        )
        .await?;
        let gone = self
            .repo
            .credential(actor.company_id, id)
            .await?
            .ok_or(VaultError::NotFound)?
            .info;
        // The other managers are told: a company without its CSD cannot invoice.
        let (recipients, by) = self.others_to_tell(actor).await?;
        let audit = vec![
            self.record(action, Outcome::Success, actor, ctx)
                .target("fiscal_credential", id)
                .details(serde_json::json!({
                    "kind": gone.kind.as_str(),
                    "rfc": gone.rfc,
                    "certificate_number": gone.certificate_number,
                    "by": by,
                    "recipients": recipients,
                })),
        ];
        if self.repo.delete(actor.company_id, id, audit).await? {
            Ok(())
        } else {
            Err(VaultError::NotFound)
        }
    }

    /// Signs `data` with the credential's key inside the vault (VAULT-6): SHA256withRSA, PKCS#1
    /// v1.5, base64. Needs `fiscal.sign`, no step-up (invoices are sealed in batches). An expired
    /// certificate does not sign: its seals would be rejected.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `TooLarge`, `CertificateExpired`, `CertificateNotYetValid`,
    /// `Tampered`, `Internal`.
    pub async fn sign(
        &self,
        actor: &Actor,
        id: CredentialId,
        data: &[u8],
        ctx: &RequestContext,
    ) -> Result<Signature, VaultError> {
        let action = Action::FISCAL_CREDENTIAL_USED;
        self.require(actor, Permission::FiscalSign, false, action, ctx)
            .await?;
        if data.len() > self.limits.max_sign_data {
            return Err(VaultError::TooLarge {
                what: "the data to sign",
                max: self.limits.max_sign_data,
            });
        }
        let sealed = self
            .repo
            .sealed(actor.company_id, id)
            .await?
            .ok_or(VaultError::NotFound)?;
        let now = self.clock.now();
        let info = &sealed.credential.info;
        if now >= info.valid_to {
            return Err(VaultError::CertificateExpired);
        }
        if now < info.valid_from {
            return Err(VaultError::CertificateNotYetValid);
        }
        let key = self.envelope.open(
            &sealed.private_key,
            &Self::ad(actor, Purpose::PrivateKey, id),
        )?;
        let password = self
            .envelope
            .open(&sealed.password, &Self::ad(actor, Purpose::KeyPassword, id))?;
        let signature_base64 = self.inspector.sign(key.expose(), password.expose(), data)?;
        drop((key, password));
        let audit = self
            .record(action, Outcome::Success, actor, ctx)
            .target("fiscal_credential", id)
            .details(serde_json::json!({ "certificate_number": info.certificate_number, "bytes_signed": data.len() }));
        self.repo.record_use(audit, now).await?;
        Ok(Signature {
            signature_base64,
            algorithm: "RSA-SHA256",
            certificate_number: info.certificate_number.clone(),
        })
    }

    /// Re-encrypts every credential not under the newest key (VAULT-7), in batches, while the
    /// server runs. Idempotent and resumable: a second run finds nothing to do; two runs at once
    /// skip each other's work. `progress` is called after each batch.
    ///
    /// # Errors
    /// `Tampered` (a value under a key that is no longer configured), `Internal`.
    pub async fn rewrap(
        &self,
        batch: u64,
        mut progress: impl FnMut(RewrapProgress) + Send,
    ) -> Result<RewrapProgress, VaultError> {
        let current = self.envelope.current_key_id();
        let mut done = RewrapProgress::default();
        let mut after = None;
        loop {
            let rows = self
                .repo
                .sealed_not_under(current, after, batch.max(1))
                .await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.credential.id);
            for old in rows {
                let c = &old.credential;
                let ad = |purpose| AssociatedData {
                    company: c.company_id,
                    purpose,
                    record: c.id,
                };
                let reseal = |sealed, purpose| -> Result<_, VaultError> {
                    let plain = self.envelope.open(sealed, &ad(purpose))?;
                    self.envelope.seal(plain.expose(), &ad(purpose))
                };
                let new = SealedCredential {
                    certificate: reseal(&old.certificate, Purpose::Certificate)?,
                    private_key: reseal(&old.private_key, Purpose::PrivateKey)?,
                    password: reseal(&old.password, Purpose::KeyPassword)?,
                    key_id: current,
                    credential: old.credential.clone(),
                };
                if self.repo.replace_envelopes(&new, old.key_id).await? {
                    done.rewrapped += 1;
                } else {
                    done.skipped += 1;
                }
            }
            progress(done);
        }
        Ok(done)
    }

    /// One pass of expiry notices (VAULT-8): every credential of every company that has reached
    /// a new stage of [`crate::EXPIRY_NOTICE_STAGES`] since its last notice gets a
    /// `fiscal.credential_expiring` record naming the stage and the recipients (the company's
    /// active users holding `fiscal.credentials.manage`); the storage adapter queues their
    /// e-mails with the record. One notice per credential and stage, whatever the number of
    /// passes or processes: a server that was down through a stage sends only the latest one
    /// on its next pass, and a credential that expired more than [`crate::EXPIRED_NOTICE_DAYS`]
    /// ago gets none.
    ///
    /// # Errors
    /// `Internal` (the pass stops; the next one resumes, as nothing half-done is kept).
    pub async fn send_expiry_notices(&self) -> Result<ExpiryNotices, VaultError> {
        let now = self.clock.now();
        let expired_after = now - chrono::Duration::days(crate::EXPIRED_NOTICE_DAYS);
        let expiring_before = now + chrono::Duration::days(i64::from(crate::EXPIRING_SOON_DAYS));
        let mut done = ExpiryNotices::default();
        let mut recipients: std::collections::HashMap<kernel::CompanyId, Vec<kernel::UserId>> =
            std::collections::HashMap::new();
        let mut after = None;
        loop {
            let page = self
                .repo
                .expiry_candidates(expired_after, expiring_before, after, EXPIRY_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.credential.id);
            for candidate in page {
                let c = &candidate.credential;
                let Some(stage) = crate::expiry_stage(c.info.valid_to, now) else {
                    continue;
                };
                if candidate.noticed.is_some_and(|noticed| noticed <= stage) {
                    continue;
                }
                let to = match recipients.entry(c.company_id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(
                        self.credential_managers(c.company_id)
                            .await?
                            .into_iter()
                            .map(|(id, _)| id)
                            .collect(),
                    ),
                };
                let record = AuditRecord::new(
                    self.ids.new_id(),
                    now,
                    Action::FISCAL_CREDENTIAL_EXPIRING,
                    Outcome::Success,
                    &RequestContext::default(),
                )
                .company(c.company_id)
                .target("fiscal_credential", c.id)
                .details(serde_json::json!({
                    "kind": c.info.kind.as_str(),
                    "rfc": c.info.rfc,
                    "certificate_number": c.info.certificate_number,
                    "valid_to": c.info.valid_to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "days_to_expiry": crate::days_to_expiry(c.info.valid_to, now),
                    "stage": stage,
                    "recipients": to.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }));
                if self
                    .repo
                    .record_expiry_notice(c.company_id, c.id, stage, vec![record])
                    .await?
                {
                    done.sent += 1;
                } else {
                    done.skipped += 1;
                }
            }
        }
        Ok(done)
    }

    /// Who is told of a change `actor` makes to the vault: the company's other credential
    /// managers (ids, as text), or the actor alone when nobody else manages them (so a change
    /// made from a stolen session still reaches the account's mailbox), and the actor's name
    /// for the message.
    async fn others_to_tell(&self, actor: &Actor) -> Result<(Vec<String>, String), VaultError> {
        let managers = self.credential_managers(actor.company_id).await?;
        let name = managers
            .iter()
            .find(|(id, _)| *id == actor.user_id)
            .map_or_else(|| "Un usuario de tu empresa".to_owned(), |(_, n)| n.clone());
        let mut others: Vec<String> = managers
            .iter()
            .filter(|(id, _)| *id != actor.user_id)
            .map(|(id, _)| id.to_string())
            .collect();
        if others.is_empty() && managers.iter().any(|(id, _)| *id == actor.user_id) {
            others.push(actor.user_id.to_string());
        }
        Ok((others, name))
    }

    /// The company's active users who hold `fiscal.credentials.manage` (those who can replace
    /// a credential), oldest first, with their names.
    async fn credential_managers(
        &self,
        company: kernel::CompanyId,
    ) -> Result<Vec<(kernel::UserId, String)>, VaultError> {
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let page = self.accounts.users(company, after, EXPIRY_PAGE).await?;
            let full = u64::try_from(page.len()).unwrap_or(u64::MAX) >= EXPIRY_PAGE;
            after = page.last().map(accounts::User::cursor);
            found.extend(
                page.iter()
                    .filter(|u| {
                        u.active
                            && u.permissions()
                                .contains(Permission::FiscalCredentialsManage)
                    })
                    .map(|u| (u.id, u.name.as_str().to_owned())),
            );
            if !full || after.is_none() {
                return Ok(found);
            }
        }
    }

    /// How many stored credentials are sealed under key version `key_id`.
    ///
    /// # Errors
    /// `Internal`.
    pub async fn count_under(&self, key_id: u32) -> Result<u64, VaultError> {
        self.repo.count_under(key_id).await
    }

    /// Whether key version `key_id` may be removed (VAULT-7): not the newest, and no stored
    /// value uses it.
    ///
    /// # Errors
    /// [`VaultError::Key`] saying why not.
    pub async fn check_retirable(&self, key_id: u32) -> Result<(), VaultError> {
        if key_id == self.envelope.current_key_id() {
            return Err(VaultError::Key(format!(
                "key {key_id} is the newest key; rotate first"
            )));
        }
        let used = self.repo.count_under(key_id).await?;
        if used > 0 {
            return Err(VaultError::Key(format!(
                "{used} stored credentials still use key {key_id}; run `incrementa keys rewrap` first"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
