//! The MFA use cases against an in-memory repository, a transparent test envelope that still
//! enforces its associated data, and a manual clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use accounts::{Email, PasswordHash, PersonName};
use async_trait::async_trait;
use chrono::TimeZone;
use kernel::{CompanyId, ManualClock, SequentialIds, Timestamp, UserId};
use vault::{Sealed, SecretBytes, VaultError};
use zeroize::Zeroizing;

use super::*;

fn t0() -> Timestamp {
    chrono::Utc.timestamp_opt(1_790_000_015, 0).unwrap()
}

fn user(n: u128) -> User {
    User {
        id: UserId::from_uuid(uuid::Uuid::from_u128(n)),
        company_id: CompanyId::from_uuid(uuid::Uuid::from_u128(7)),
        email: Email::parse("ana@example.com").unwrap(),
        name: PersonName::parse("Ana", "name").unwrap(),
        role: rbac::Role::Owner,
        active: true,
        password_hash: PasswordHash::new("$argon2id$stored".into()),
        mfa_enabled: false,
        grants: rbac::PermissionSet::empty(),
        revokes: rbac::PermissionSet::empty(),
        created_at: t0(),
        updated_at: t0(),
        password_change_required: false,
    }
}

/// `u`'s own session, stepped up a minute before the fixture's clock when `stepped_up`.
fn own(u: &User, stepped_up: bool) -> rbac::Actor {
    rbac::Actor::new(
        u.id,
        u.company_id,
        kernel::SessionId::from_uuid(uuid::Uuid::from_u128(900)),
        u.role,
        u.permissions(),
    )
    .reauthenticated(stepped_up.then(|| t0() - kernel::Duration::minutes(1)))
}

fn ctx() -> RequestContext {
    RequestContext::new(None, Some("test"), None)
}

#[derive(Default)]
struct Row {
    enrolment: Option<TotpEnrolment>,
    codes: Vec<(String, bool)>,
}

#[derive(Default)]
struct FakeRepo {
    rows: Mutex<HashMap<UserId, Row>>,
    audit: Mutex<Vec<AuditRecord>>,
}

impl FakeRepo {
    fn actions(&self) -> Vec<&'static str> {
        self.audit
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.action.as_str())
            .collect()
    }
    fn stored_codes(&self, user: UserId) -> Vec<String> {
        self.rows.lock().unwrap()[&user]
            .codes
            .iter()
            .map(|(d, _)| d.clone())
            .collect()
    }
}

#[async_trait]
impl MfaRepository for FakeRepo {
    async fn enrolment(
        &self,
        _company: CompanyId,
        user: UserId,
    ) -> Result<Option<TotpEnrolment>, MfaError> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .get(&user)
            .and_then(|r| r.enrolment.clone()))
    }
    async fn save_pending(&self, e: &TotpEnrolment, audit: AuditRecord) -> Result<bool, MfaError> {
        let mut rows = self.rows.lock().unwrap();
        let row = rows.entry(e.user_id).or_default();
        if row
            .enrolment
            .as_ref()
            .is_some_and(|x| x.confirmed_at.is_some())
        {
            return Ok(false);
        }
        row.enrolment = Some(e.clone());
        self.audit.lock().unwrap().push(audit);
        Ok(true)
    }
    async fn confirm(
        &self,
        _company: CompanyId,
        user: UserId,
        secret: &Sealed,
        step: u64,
        at: Timestamp,
        code_digests: &[String],
        audit: AuditRecord,
    ) -> Result<bool, MfaError> {
        let mut rows = self.rows.lock().unwrap();
        let Some(row) = rows.get_mut(&user) else {
            return Ok(false);
        };
        let Some(e) = row
            .enrolment
            .as_mut()
            .filter(|e| e.confirmed_at.is_none() && &e.secret == secret)
        else {
            return Ok(false);
        };
        e.confirmed_at = Some(at);
        e.last_used_step = Some(step);
        row.codes = code_digests.iter().map(|d| (d.clone(), false)).collect();
        self.audit.lock().unwrap().push(audit);
        Ok(true)
    }
    async fn use_step(&self, _c: CompanyId, user: UserId, step: u64) -> Result<bool, MfaError> {
        let mut rows = self.rows.lock().unwrap();
        let Some(e) = rows.get_mut(&user).and_then(|r| r.enrolment.as_mut()) else {
            return Ok(false);
        };
        if e.last_used_step.is_some_and(|last| step <= last) {
            return Ok(false);
        }
        e.last_used_step = Some(step);
        Ok(true)
    }
    async fn use_recovery_code(
        &self,
        _c: CompanyId,
        user: UserId,
        digest: &str,
        _at: Timestamp,
        audit: AuditRecord,
    ) -> Result<bool, MfaError> {
        let mut rows = self.rows.lock().unwrap();
        let Some(code) = rows
            .get_mut(&user)
            .and_then(|r| r.codes.iter_mut().find(|(d, used)| d == digest && !used))
        else {
            return Ok(false);
        };
        code.1 = true;
        self.audit.lock().unwrap().push(audit);
        Ok(true)
    }
    async fn recovery_codes_remaining(&self, _c: CompanyId, user: UserId) -> Result<u32, MfaError> {
        Ok(self.rows.lock().unwrap().get(&user).map_or(0, |r| {
            u32::try_from(r.codes.iter().filter(|(_, used)| !used).count()).unwrap()
        }))
    }
    async fn replace_recovery_codes(
        &self,
        _c: CompanyId,
        user: UserId,
        code_digests: &[String],
        audit: AuditRecord,
    ) -> Result<bool, MfaError> {
        let mut rows = self.rows.lock().unwrap();
        let Some(row) = rows.get_mut(&user).filter(|r| {
            r.enrolment
                .as_ref()
                .is_some_and(|e| e.confirmed_at.is_some())
        }) else {
            return Ok(false);
        };
        row.codes = code_digests.iter().map(|d| (d.clone(), false)).collect();
        self.audit.lock().unwrap().push(audit);
        Ok(true)
    }
    async fn disable(
        &self,
        _c: CompanyId,
        user: UserId,
        audit: AuditRecord,
    ) -> Result<bool, MfaError> {
        let mut rows = self.rows.lock().unwrap();
        let confirmed = rows
            .get(&user)
            .and_then(|r| r.enrolment.as_ref())
            .is_some_and(|e| e.confirmed_at.is_some());
        if !confirmed {
            return Ok(false);
        }
        rows.remove(&user);
        self.audit.lock().unwrap().push(audit);
        Ok(true)
    }
    async fn sealed_not_under(
        &self,
        key_id: u32,
        limit: u32,
    ) -> Result<Vec<TotpEnrolment>, MfaError> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .values()
            .filter_map(|r| r.enrolment.clone())
            .filter(|e| e.key_id != key_id)
            .take(limit as usize)
            .collect())
    }
    async fn replace_secret(
        &self,
        _c: CompanyId,
        user: UserId,
        old: &Sealed,
        new: &Sealed,
        key_id: u32,
    ) -> Result<bool, MfaError> {
        let mut rows = self.rows.lock().unwrap();
        let Some(e) = rows
            .get_mut(&user)
            .and_then(|r| r.enrolment.as_mut())
            .filter(|e| &e.secret == old)
        else {
            return Ok(false);
        };
        e.secret = new.clone();
        e.key_id = key_id;
        Ok(true)
    }
    async fn count_under(&self, key_id: u32) -> Result<u64, MfaError> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.enrolment.as_ref().is_some_and(|e| e.key_id == key_id))
            .count() as u64)
    }
}

/// Not encryption: a readable stand-in that still refuses the wrong associated data, so tests
/// see a secret bound to its user. The real envelope is tested in the crypto adapter.
#[derive(Default)]
struct TestEnvelope {
    key: AtomicU32,
}

impl Envelope for TestEnvelope {
    fn seal(&self, plaintext: &[u8], ad: &AssociatedData) -> Result<Sealed, VaultError> {
        Ok(Sealed::new(format!(
            "k{}.{}.{}",
            self.key.load(Ordering::SeqCst),
            hex(&ad.to_bytes()),
            hex(&plaintext.iter().map(|b| b ^ 0x5a).collect::<Vec<_>>())
        )))
    }
    fn open(&self, sealed: &Sealed, ad: &AssociatedData) -> Result<SecretBytes, VaultError> {
        let mut parts = sealed.as_str().split('.');
        let (_, bound, body) = (parts.next(), parts.next(), parts.next());
        if bound != Some(hex(&ad.to_bytes()).as_str()) {
            return Err(VaultError::Tampered);
        }
        let body = body.ok_or(VaultError::Tampered)?;
        let bytes = (0..body.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&body[i..i + 2], 16).unwrap() ^ 0x5a)
            .collect();
        Ok(SecretBytes::new(bytes))
    }
    fn current_key_id(&self) -> u32 {
        self.key.load(Ordering::SeqCst)
    }
    fn key_id_of(&self, sealed: &Sealed) -> Option<u32> {
        sealed
            .as_str()
            .split('.')
            .next()?
            .strip_prefix('k')?
            .parse()
            .ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stand-in HOTP: the code is the step plus the secret's first byte, so codes differ per
/// secret and the window logic stays readable.
struct StepHotp;

impl Hotp for StepHotp {
    fn hotp(&self, secret: &[u8], counter: u64, digits: u32) -> u32 {
        let salt = u64::from(secret.first().copied().unwrap_or(0));
        u32::try_from((counter + salt) % 10_u64.pow(digits)).unwrap()
    }
}

/// Deterministic "randomness": each call returns the next byte value repeated.
#[derive(Default)]
struct CountingCrypto(AtomicU8);

impl MfaCrypto for CountingCrypto {
    fn random_bytes(&self, len: usize) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(vec![
            self.0.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
            len
        ])
    }
    fn digest(&self, code: &str) -> String {
        format!(
            "digest({})",
            code.len() * 7 + code.bytes().map(usize::from).sum::<usize>()
        ) + &hex(code.as_bytes()).chars().rev().collect::<String>()
    }
}

/// The refusals the service records.
#[derive(Default)]
struct Denials(Mutex<Vec<AuditRecord>>);

#[async_trait]
impl AuditSink for Denials {
    async fn record(&self, record: AuditRecord) -> Result<(), audit::AuditError> {
        self.0.lock().unwrap().push(record);
        Ok(())
    }
}

struct Fixture {
    repo: Arc<FakeRepo>,
    envelope: Arc<TestEnvelope>,
    clock: Arc<ManualClock>,
    denials: Arc<Denials>,
    service: MfaService,
}

fn fixture() -> Fixture {
    let repo = Arc::new(FakeRepo::default());
    let envelope = Arc::new(TestEnvelope::default());
    let clock = Arc::new(ManualClock::new(t0()));
    let denials = Arc::new(Denials::default());
    let service = MfaService::new(MfaPorts {
        repo: repo.clone(),
        envelope: envelope.clone(),
        hotp: Arc::new(StepHotp),
        crypto: Arc::new(CountingCrypto::default()),
        clock: clock.clone(),
        ids: Arc::new(SequentialIds::default()),
        audit: denials.clone(),
    });
    Fixture {
        repo,
        envelope,
        clock,
        denials,
        service,
    }
}

/// The code the stand-in HOTP gives for the secret the fixture's first enrolment draws
/// (twenty bytes of 1) at the clock's current step.
fn code_now(f: &Fixture) -> String {
    let step = crate::step_at(f.clock.now(), TotpParams::default());
    format!("{:06}", (step + 1) % 1_000_000)
}

async fn enrolled(f: &Fixture, u: &mut User) -> RecoveryCodes {
    f.service.begin(&own(u, false), u, &ctx()).await.unwrap();
    let codes = f
        .service
        .confirm(&own(u, false), u, &code_now(f), &ctx())
        .await
        .unwrap();
    u.mfa_enabled = true;
    f.clock.advance(chrono::Duration::seconds(30));
    codes
}

#[tokio::test]
async fn enrolment_returns_the_secret_once_and_stores_it_only_sealed_and_bound_to_the_user() {
    let f = fixture();
    let u = user(1);
    let e = f.service.begin(&own(&u, false), &u, &ctx()).await.unwrap();
    assert_eq!(e.secret.expose(), base32(&[1; 20]));
    assert!(
        e.otpauth_uri
            .expose()
            .starts_with("otpauth://totp/IncrementaCRM:ana%40example.com?secret=")
    );
    assert!(e.otpauth_uri.expose().contains("&issuer=IncrementaCRM"));
    assert!(!format!("{e:?}").contains(e.secret.expose()));
    let stored = f.repo.enrolment(u.company_id, u.id).await.unwrap().unwrap();
    assert!(stored.confirmed_at.is_none());
    assert!(!stored.secret.as_str().contains(&hex(&[1; 20])));
    // Bound to this user: the same sealed value does not open as another user's secret.
    let other = user(2);
    assert!(
        f.envelope
            .open(&stored.secret, &MfaService::ad(&other))
            .is_err()
    );
    assert_eq!(f.repo.actions(), ["mfa.enrolment_started"]);
    let status = f.service.status(&u).await.unwrap();
    assert!(status.pending && !status.enabled);
}

#[tokio::test]
async fn confirmation_needs_a_valid_code_and_returns_ten_distinct_recovery_codes_stored_hashed() {
    let f = fixture();
    let mut u = user(1);
    assert!(matches!(
        f.service
            .confirm(&own(&u, false), &u, "123456", &ctx())
            .await,
        Err(MfaError::NotPending)
    ));
    f.service.begin(&own(&u, false), &u, &ctx()).await.unwrap();
    assert!(matches!(
        f.service
            .confirm(&own(&u, false), &u, "000000", &ctx())
            .await,
        Err(MfaError::InvalidCode)
    ));
    let codes = f
        .service
        .confirm(&own(&u, false), &u, &code_now(&f), &ctx())
        .await
        .unwrap();
    assert_eq!(codes.0.len(), RECOVERY_CODE_COUNT);
    let shown: std::collections::HashSet<&str> =
        codes.0.iter().map(OneTimeSecret::expose).collect();
    assert_eq!(shown.len(), RECOVERY_CODE_COUNT);
    for code in &shown {
        assert_eq!(code.len(), 19, "{code}");
        assert!(normalize_recovery_code(code).is_some(), "{code}");
    }
    let stored = f.repo.stored_codes(u.id);
    assert_eq!(stored.len(), RECOVERY_CODE_COUNT);
    for code in &shown {
        assert!(
            !stored
                .iter()
                .any(|d| d.contains(code) || d.contains(&code.replace('-', "")))
        );
    }
    assert!(!format!("{codes:?}").contains(codes.0[0].expose()));
    assert_eq!(f.repo.actions(), ["mfa.enrolment_started", "mfa.enabled"]);
    u.mfa_enabled = true;
    let status = f.service.status(&u).await.unwrap();
    assert_eq!(
        status,
        MfaStatus {
            enabled: true,
            pending: false,
            recovery_codes_remaining: 10
        }
    );
    assert!(matches!(
        f.service.begin(&own(&u, false), &u, &ctx()).await,
        Err(MfaError::AlreadyEnabled)
    ));
}

#[tokio::test]
async fn a_totp_code_works_once_and_drift_is_bounded() {
    let f = fixture();
    let mut u = user(1);
    enrolled(&f, &mut u).await;
    let code = code_now(&f);
    assert_eq!(
        f.service
            .verify(&u, &SecondFactor::totp(&code), &ctx())
            .await
            .unwrap(),
        FactorUsed::Totp
    );
    assert!(matches!(
        f.service
            .verify(&u, &SecondFactor::totp(&code), &ctx())
            .await,
        Err(MfaError::Replayed)
    ));
    // The next step's code (one step of drift ahead) is accepted; two steps ahead is not.
    let step = crate::step_at(f.clock.now(), TotpParams::default());
    let ahead = |n: u64| format!("{:06}", (step + n + 1) % 1_000_000);
    assert!(matches!(
        f.service
            .verify(&u, &SecondFactor::totp(&ahead(2)), &ctx())
            .await,
        Err(MfaError::InvalidCode)
    ));
    assert!(
        f.service
            .verify(&u, &SecondFactor::totp(&ahead(1)), &ctx())
            .await
            .is_ok()
    );
    // Malformed codes are refused before any HMAC is computed.
    assert!(matches!(
        f.service
            .verify(&u, &SecondFactor::totp("12"), &ctx())
            .await,
        Err(MfaError::InvalidCode)
    ));
}

#[tokio::test]
async fn the_confirmation_code_cannot_be_replayed_at_login() {
    let f = fixture();
    let mut u = user(1);
    f.service.begin(&own(&u, false), &u, &ctx()).await.unwrap();
    let code = code_now(&f);
    f.service
        .confirm(&own(&u, false), &u, &code, &ctx())
        .await
        .unwrap();
    u.mfa_enabled = true;
    assert!(matches!(
        f.service
            .verify(&u, &SecondFactor::totp(&code), &ctx())
            .await,
        Err(MfaError::Replayed)
    ));
}

#[tokio::test]
async fn recovery_codes_are_one_time_and_forgiving_about_format() {
    let f = fixture();
    let mut u = user(1);
    let codes = enrolled(&f, &mut u).await;
    let first = codes.0[0].expose().to_owned();
    let sloppy = first.replace('-', " ").to_uppercase();
    assert_eq!(
        f.service
            .verify(&u, &SecondFactor::recovery_code(&sloppy), &ctx())
            .await
            .unwrap(),
        FactorUsed::RecoveryCode { remaining: 9 }
    );
    assert!(matches!(
        f.service
            .verify(&u, &SecondFactor::recovery_code(&first), &ctx())
            .await,
        Err(MfaError::InvalidCode)
    ));
    for bad in [
        "",
        "not-a-code",
        "abcd-efgh-ijkl-mnop-qrst",
        "abcd-efgh-ijkl-mno1",
    ] {
        assert!(
            matches!(
                f.service
                    .verify(&u, &SecondFactor::recovery_code(bad), &ctx())
                    .await,
                Err(MfaError::InvalidCode)
            ),
            "{bad}"
        );
    }
    assert!(f.repo.actions().contains(&"mfa.recovery_code_used"));
}

#[tokio::test]
async fn regenerating_voids_the_old_codes() {
    let f = fixture();
    let mut u = user(1);
    let old = enrolled(&f, &mut u).await;
    let new = f
        .service
        .regenerate_recovery_codes(&own(&u, true), &u, &ctx())
        .await
        .unwrap();
    assert!(matches!(
        f.service
            .verify(&u, &SecondFactor::recovery_code(old.0[1].expose()), &ctx())
            .await,
        Err(MfaError::InvalidCode)
    ));
    assert!(
        f.service
            .verify(&u, &SecondFactor::recovery_code(new.0[1].expose()), &ctx())
            .await
            .is_ok()
    );
    assert!(f.repo.actions().contains(&"mfa.recovery_codes_regenerated"));
}

#[tokio::test]
async fn disabling_removes_the_factor_and_only_works_when_enabled() {
    let f = fixture();
    let mut u = user(1);
    let me = own(&u, true);
    assert!(matches!(
        f.service.disable(&me, &u, &ctx()).await,
        Err(MfaError::NotEnabled)
    ));
    assert!(matches!(
        f.service.regenerate_recovery_codes(&me, &u, &ctx()).await,
        Err(MfaError::NotEnabled)
    ));
    enrolled(&f, &mut u).await;
    f.service.disable(&me, &u, &ctx()).await.unwrap();
    assert!(matches!(
        f.service
            .verify(&u, &SecondFactor::totp(&code_now(&f)), &ctx())
            .await,
        Err(MfaError::NotEnabled)
    ));
    assert_eq!(f.repo.actions().last(), Some(&"mfa.disabled"));
    assert_eq!(f.service.status(&u).await.unwrap(), MfaStatus::default());
}

/// Turning MFA off and replacing the recovery codes take the user's own unrestricted session
/// with a fresh step-up (MFA-3), in the core and not only behind the HTTP guard: anything else
/// changes nothing and records why.
#[tokio::test]
async fn turning_mfa_off_or_new_codes_need_the_users_own_stepped_up_session() {
    let f = fixture();
    let mut u = user(1);
    enrolled(&f, &mut u).await;
    let before = f.repo.actions().len();
    let other = own(&user(2), true);
    let cases = [
        (own(&u, false), "reauthentication_required"),
        (
            own(&u, true).restricted_to_password_change(),
            "password_change_required",
        ),
        (
            own(&u, true).restricted_to_mfa_enrolment(),
            "mfa_enrolment_required",
        ),
        (other, "not the caller's own account"),
    ];
    for (actor, why) in cases {
        for result in [
            f.service.disable(&actor, &u, &ctx()).await,
            f.service
                .regenerate_recovery_codes(&actor, &u, &ctx())
                .await
                .map(|_| ()),
        ] {
            match result {
                Err(MfaError::ReauthenticationRequired) => {
                    assert_eq!(why, "reauthentication_required");
                }
                Err(MfaError::Forbidden(reason)) => assert_eq!(reason.reason(), why),
                other => panic!("{why}: {other:?}"),
            }
        }
    }
    assert_eq!(f.repo.actions().len(), before, "nothing changed");
    let denials = f.denials.0.lock().unwrap().clone();
    assert_eq!(denials.len(), 8);
    assert!(
        denials
            .iter()
            .all(|d| d.action == Action::AUTHORIZATION_DENIED)
    );
    assert_eq!(denials[0].details["attempted"], "mfa.disabled");
    assert_eq!(
        denials[1].details["attempted"],
        "mfa.recovery_codes_regenerated"
    );
    // Still on, and the codes still work: the user's own stepped-up session turns it off.
    assert!(f.service.status(&u).await.unwrap().enabled);
    f.service.disable(&own(&u, true), &u, &ctx()).await.unwrap();
    assert!(!f.service.status(&u).await.unwrap().enabled);
}

/// Enrolling takes the user's own session, in the core and not only behind the HTTP guard: a
/// session restricted to enrolment may (that is what it is for), one with a password the
/// operator handed over may not until it is changed (whoever knows that password must not put
/// their authenticator on the account), nor anyone else's. Refusals change nothing and are
/// recorded.
#[tokio::test]
async fn enrolment_takes_the_users_own_session_without_a_password_to_change() {
    let f = fixture();
    let u = user(1);
    let refused = [
        (
            own(&u, true).restricted_to_password_change(),
            "password_change_required",
        ),
        (
            own(&u, true)
                .restricted_to_mfa_enrolment()
                .restricted_to_password_change(),
            "password_change_required",
        ),
        (own(&user(2), true), "not the caller's own account"),
    ];
    for (actor, why) in &refused {
        assert!(
            matches!(f.service.begin(actor, &u, &ctx()).await, Err(MfaError::Forbidden(w)) if w.reason() == *why),
            "{why}"
        );
        assert!(
            matches!(f.service.confirm(actor, &u, "123456", &ctx()).await, Err(MfaError::Forbidden(w)) if w.reason() == *why),
            "{why}"
        );
    }
    assert!(f.repo.actions().is_empty(), "nothing changed");
    let denials = f.denials.0.lock().unwrap().clone();
    assert_eq!(denials.len(), 2 * refused.len());
    assert_eq!(denials[0].details["attempted"], "mfa.enrolment_started");
    assert_eq!(denials[1].details["attempted"], "mfa.enabled");

    // The session the company's policy restricts to enrolling enrols.
    let enrolling = own(&u, false).restricted_to_mfa_enrolment();
    f.service.begin(&enrolling, &u, &ctx()).await.unwrap();
    f.service
        .confirm(&enrolling, &u, &code_now(&f), &ctx())
        .await
        .unwrap();
    assert!(f.service.status(&u).await.unwrap().enabled);
}

/// The operator's reset removes the factor like the user's own, and its record has no actor
/// and says the operator did it; without MFA there is nothing to reset.
#[tokio::test]
async fn the_operator_turns_mfa_off_for_a_user_who_lost_it() {
    let f = fixture();
    let mut u = user(1);
    assert!(matches!(
        f.service.disable_by_operator(&u).await,
        Err(MfaError::NotEnabled)
    ));
    enrolled(&f, &mut u).await;
    f.service.disable_by_operator(&u).await.unwrap();
    assert!(matches!(
        f.service
            .verify(&u, &SecondFactor::totp(&code_now(&f)), &ctx())
            .await,
        Err(MfaError::NotEnabled)
    ));
    let audit = f.repo.audit.lock().unwrap();
    let record = audit.last().unwrap();
    assert_eq!(record.action, Action::MFA_DISABLED);
    assert_eq!(record.actor_id, None);
    assert_eq!(record.company_id, Some(u.company_id));
    assert_eq!(
        record.target.as_deref(),
        Some(format!("user:{}", u.id).as_str())
    );
    assert_eq!(record.details["by"], "operator");
}

#[tokio::test]
async fn rewrap_reseals_every_secret_under_the_current_key() {
    let f = fixture();
    let mut a = user(1);
    let mut b = user(2);
    enrolled(&f, &mut a).await;
    f.service.begin(&own(&b, false), &b, &ctx()).await.unwrap();
    b.mfa_enabled = false;
    assert_eq!(f.service.count_under(0).await.unwrap(), 2);
    f.envelope.key.store(1, Ordering::SeqCst);
    assert_eq!(f.service.rewrap(1).await.unwrap(), 2);
    assert_eq!(f.service.count_under(0).await.unwrap(), 0);
    assert_eq!(f.service.count_under(1).await.unwrap(), 2);
    // Still the same secret: a's codes keep working.
    assert!(
        f.service
            .verify(&a, &SecondFactor::totp(&code_now(&f)), &ctx())
            .await
            .is_ok()
    );
    assert_eq!(f.service.rewrap(10).await.unwrap(), 0);
}

#[test]
fn second_factors_never_show_their_codes() {
    let text = format!(
        "{:?} {:?}",
        SecondFactor::totp("123456"),
        SecondFactor::recovery_code("abcd-efgh-ijkl-mnop")
    );
    assert!(!text.contains("123456") && !text.contains("abcd"), "{text}");
}
