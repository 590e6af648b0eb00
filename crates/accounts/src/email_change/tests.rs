use std::sync::{Arc, Mutex};

use audit::{Action, MockAuditSink, Outcome};
use chrono::TimeZone;
use kernel::{
    CompanyId, Duration, ManualClock, RateLimiter, RequestContext, SequentialIds, SessionId, UserId,
};
use rbac::{Actor, Role};
use uuid::Uuid;

use super::*;
use crate::{
    MockAccountRepository, MockPasswordHasher, MockResetTokenVerifier, PasswordHash, PersonName,
};

const CODE: &str = "a-code-the-verifier-knows";
const CHANGE: u128 = 900;

fn now() -> Timestamp {
    chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

fn company() -> CompanyId {
    CompanyId::from_uuid(Uuid::from_u128(77))
}

fn user() -> User {
    User {
        id: UserId::from_uuid(Uuid::from_u128(5)),
        company_id: company(),
        email: Email::parse("ana@example.com").unwrap(),
        name: PersonName::parse("Ana", "name").unwrap(),
        role: Role::Admin,
        active: true,
        password_hash: PasswordHash::new("$argon2id$kept".into()),
        mfa_enabled: false,
        grants: rbac::PermissionSet::empty(),
        revokes: rbac::PermissionSet::empty(),
        created_at: now() - Duration::days(30),
        updated_at: now() - Duration::days(30),
        password_change_required: false,
    }
}

fn actor(stepped_up: bool) -> Actor {
    let u = user();
    Actor::new(
        u.id,
        u.company_id,
        SessionId::from_uuid(Uuid::from_u128(41)),
        u.role,
        u.permissions(),
    )
    .reauthenticated(stepped_up.then(|| now() - Duration::minutes(1)))
}

fn pending(expires_at: Timestamp) -> EmailChange {
    EmailChange {
        id: Uuid::from_u128(CHANGE),
        company_id: company(),
        user_id: user().id,
        to: Email::parse("ana@nuevo.mx").unwrap(),
        expires_at,
    }
}

fn ctx() -> RequestContext {
    RequestContext::new(Some("203.0.113.7".parse().unwrap()), Some("test"), None)
}

/// The undo window [`CODE`] names in the undo tests.
const WINDOW: u128 = 950;

/// An undo window back to the user's old address.
fn window(expires_at: Timestamp) -> EmailRevert {
    EmailRevert {
        id: Uuid::from_u128(WINDOW),
        company_id: company(),
        user_id: user().id,
        to: Email::parse("ana@example.com").unwrap(),
        expires_at,
    }
}

/// The user after someone moved the account to another mailbox.
fn moved() -> User {
    User {
        email: Email::parse("ana@atacante.mx").unwrap(),
        password_change_required: true,
        ..user()
    }
}

struct Setup {
    users: MockAccountRepository,
    changes: MockEmailChangeRepository,
    tokens: MockResetTokenVerifier,
    audit: MockAuditSink,
    hasher: MockPasswordHasher,
    /// The user's undo window, as [`Self::known_code`] makes the store answer.
    window: Option<EmailRevert>,
    /// Failed undos a client network may make in an hour.
    undo_limit: u32,
}

impl Setup {
    /// The actor's user exists; nobody has another address.
    fn new() -> Self {
        let mut users = MockAccountRepository::new();
        users.expect_user().returning(|_, _| Ok(Some(user())));
        let mut changes = MockEmailChangeRepository::new();
        changes
            .expect_address_reserved()
            .returning(|_, _, _| Ok(false));
        Self {
            users,
            changes,
            tokens: MockResetTokenVerifier::new(),
            audit: MockAuditSink::new(),
            hasher: MockPasswordHasher::new(),
            window: None,
            undo_limit: 100,
        }
    }

    fn service(self) -> EmailChangeService {
        EmailChangeService::new(
            EmailChangePorts {
                users: Arc::new(self.users),
                changes: Arc::new(self.changes),
                tokens: Arc::new(self.tokens),
                hasher: Arc::new(self.hasher),
                audit: Arc::new(self.audit),
                clock: Arc::new(ManualClock::new(now())),
                ids: Arc::new(SequentialIds::default()),
            },
            Arc::new(RateLimiter::new(self.undo_limit, Duration::hours(1), 100)),
        )
    }

    /// The verifier knows [`CODE`] as change [`CHANGE`]; the user's pending change is `change`
    /// and their undo window [`Self::window`].
    fn known_code(&mut self, change: Option<EmailChange>) {
        self.tokens
            .expect_reset_id()
            .returning(|t| (t == CODE).then(|| Uuid::from_u128(CHANGE)));
        self.changes
            .expect_email_change()
            .returning(move |_, _| Ok(change.clone()));
        let window = self.window.clone();
        self.changes
            .expect_email_revert_of()
            .returning(move |_, _| Ok(window.clone()));
    }

    /// The verifier knows [`CODE`] as window [`WINDOW`], which belongs to the moved user.
    fn known_undo_code(&mut self, window: EmailRevert) {
        self.tokens
            .expect_reset_id()
            .returning(|t| (t == CODE).then(|| Uuid::from_u128(WINDOW)));
        self.changes
            .expect_email_revert()
            .withf(|id| *id == Uuid::from_u128(WINDOW))
            .returning(move |_| Ok(Some((moved(), window.clone()))));
        self.changes.expect_email_revert().returning(|_| Ok(None));
    }
}

/// A stepped-up request opens a change whose id is its record's, carrying the normalised new
/// address and the expiry, so the outbox can mail the code for this change and nothing else.
#[tokio::test]
async fn a_request_opens_a_change_whose_id_is_its_records() {
    let mut s = Setup::new();
    s.users.expect_user_by_email().returning(|_| Ok(None));
    let written = Arc::new(Mutex::new(Vec::new()));
    let seen = written.clone();
    s.changes
        .expect_open_email_change()
        .times(1)
        .withf(|change, keep, _| *keep == change.expires_at - EMAIL_CHANGE_RESEND_INTERVAL)
        .returning(move |change, _, audit| {
            seen.lock().unwrap().push((change.clone(), audit));
            Ok(true)
        });
    let change = s
        .service()
        .request(&actor(true), "  Ana@Nuevo.MX ", &ctx())
        .await
        .unwrap();
    assert_eq!(change.to.as_str(), "ana@nuevo.mx");
    assert_eq!(change.expires_at, now() + EMAIL_CHANGE_TTL);
    let written = written.lock().unwrap();
    let (stored, audit) = &written[0];
    assert_eq!(stored, &change);
    assert_eq!(audit.len(), 1);
    let record = &audit[0];
    assert_eq!(record.id, change.id, "the record's id is the change's");
    assert_eq!(record.action, Action::USER_EMAIL_CHANGE_REQUESTED);
    assert_eq!(record.outcome, Outcome::Success);
    assert_eq!(record.actor_id, Some(user().id));
    assert_eq!(
        record.target.as_deref(),
        Some(format!("user:{}", user().id).as_str())
    );
    assert_eq!(record.details["to"], "ana@nuevo.mx");
    assert_eq!(
        record.details["expires_at"],
        change.expires_at.to_rfc3339().as_str()
    );
}

/// Without a fresh step-up nothing is looked up or opened, and the denial is recorded.
#[tokio::test]
async fn a_request_without_step_up_is_refused_and_recorded() {
    let mut s = Setup::new();
    s.users.expect_user_by_email().times(0);
    s.changes.expect_open_email_change().times(0);
    s.audit
        .expect_record()
        .times(1)
        .withf(|r| {
            r.action == Action::AUTHORIZATION_DENIED
                && r.details["attempted"] == "user.email_change_requested"
                && r.details["reason"] == "reauthentication_required"
        })
        .returning(|_| Ok(()));
    let err = s
        .service()
        .request(&actor(false), "ana@nuevo.mx", &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountsError::ReauthenticationRequired),
        "{err:?}"
    );
}

/// A session that may only change its password or enrol MFA neither asks nor confirms, even
/// with a fresh step-up: nothing is looked up, and each refusal is recorded with its reason.
#[tokio::test]
async fn a_restricted_session_neither_asks_nor_confirms() {
    for (restricted, why) in [
        (
            actor(true).restricted_to_password_change(),
            "password_change_required",
        ),
        (
            actor(true).restricted_to_mfa_enrolment(),
            "mfa_enrolment_required",
        ),
    ] {
        let mut s = Setup::new();
        s.users.expect_user_by_email().times(0);
        s.changes.expect_open_email_change().times(0);
        s.changes.expect_email_change().times(0);
        s.changes.expect_complete_email_change().times(0);
        s.tokens.expect_reset_id().times(0);
        s.audit
            .expect_record()
            .times(2)
            .withf(move |r| {
                r.action == Action::AUTHORIZATION_DENIED
                    && r.details["reason"] == why
                    && ["user.email_change_requested", "user.email_changed"]
                        .contains(&r.details["attempted"].as_str().unwrap_or_default())
            })
            .returning(|_| Ok(()));
        let service = s.service();
        for result in [
            service
                .request(&restricted, "ana@nuevo.mx", &ctx())
                .await
                .map(|_| ()),
            service
                .confirm(&restricted, &secrecy::SecretString::from(CODE), &ctx())
                .await
                .map(|_| ()),
        ] {
            match result {
                Err(AccountsError::Forbidden(reason)) => assert_eq!(reason.reason(), why),
                other => panic!("{why}: {other:?}"),
            }
        }
    }
}

/// A malformed address, the current one, and someone else's are each refused before anything
/// is written.
#[tokio::test]
async fn bad_same_and_taken_addresses_are_refused() {
    let mut s = Setup::new();
    s.users
        .expect_user_by_email()
        .withf(|e| e.as_str() == "luis@example.com")
        .returning(|_| {
            let mut other = user();
            other.id = UserId::from_uuid(Uuid::from_u128(6));
            other.email = Email::parse("luis@example.com").unwrap();
            Ok(Some(other))
        });
    s.changes.expect_open_email_change().times(0);
    let service = s.service();
    for (given, field_code) in [
        ("no es correo", "invalid"),
        ("ANA@example.com", "same_as_current"),
    ] {
        match service.request(&actor(true), given, &ctx()).await {
            Err(AccountsError::Validation(errors)) => {
                assert_eq!(
                    errors,
                    vec![FieldError::new("new_email", field_code)],
                    "{given}"
                );
            }
            other => panic!("{given}: {other:?}"),
        }
    }
    let err = service
        .request(&actor(true), "luis@example.com", &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::EmailTaken), "{err:?}");
}

/// An address another user's move vacated, while that user's undo window is open, is taken:
/// nothing is opened or mailed.
#[tokio::test]
async fn an_address_kept_for_an_undo_is_taken() {
    let mut s = Setup::new();
    s.users.expect_user_by_email().returning(|_| Ok(None));
    s.changes = MockEmailChangeRepository::new();
    s.changes
        .expect_address_reserved()
        .times(1)
        .withf(|email, except, at| {
            email.as_str() == "vacada@nuevo.mx" && *except == user().id && *at == now()
        })
        .returning(|_, _, _| Ok(true));
    s.changes.expect_open_email_change().times(0);
    let err = s
        .service()
        .request(&actor(true), "vacada@nuevo.mx", &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::EmailTaken), "{err:?}");
}

/// The pending change shows while its code works, and not after.
#[tokio::test]
async fn the_pending_change_shows_until_its_code_expires() {
    for (expires_at, shown) in [(now() + Duration::minutes(1), true), (now(), false)] {
        let mut s = Setup::new();
        s.changes
            .expect_email_change()
            .returning(move |_, _| Ok(Some(pending(expires_at))));
        let found = s.service().pending(&actor(false), &ctx()).await.unwrap();
        assert_eq!(found, shown.then(|| pending(expires_at)));
    }
}

/// A second request within the resend interval sends nothing and says how long to wait.
#[tokio::test]
async fn a_request_too_soon_after_the_last_one_is_rate_limited() {
    let mut s = Setup::new();
    s.users.expect_user_by_email().returning(|_| Ok(None));
    s.changes
        .expect_open_email_change()
        .returning(|_, _, _| Ok(false));
    // The pending change was asked for two minutes ago.
    let asked = now() - Duration::minutes(2);
    s.changes
        .expect_email_change()
        .returning(move |_, _| Ok(Some(pending(asked + EMAIL_CHANGE_TTL))));
    let err = s
        .service()
        .request(&actor(true), "otra@nuevo.mx", &ctx())
        .await
        .unwrap_err();
    match err {
        AccountsError::RateLimited { retry_after_secs } => assert_eq!(retry_after_secs, 3 * 60 + 1),
        other => panic!("{other:?}"),
    }
}

/// The code of the pending change sets the address, keeps the current session, revokes the
/// others, records both addresses, and opens the old address's undo window under the record's
/// id (a closed window of an earlier change does not count).
#[tokio::test]
async fn the_code_of_the_pending_change_sets_the_address() {
    let mut s = Setup::new();
    s.window = Some(window(now()));
    s.known_code(Some(pending(now() + Duration::minutes(10))));
    let written = Arc::new(Mutex::new(Vec::new()));
    let seen = written.clone();
    s.changes
        .expect_complete_email_change()
        .times(1)
        .withf(|id, _, _, _, _| *id == Uuid::from_u128(CHANGE))
        .returning(move |_, user, revert, revoke, audit| {
            seen.lock().unwrap().push((
                user.clone(),
                revert,
                revoke.keep,
                revoke.reason,
                revoke.at,
                audit,
            ));
            Ok(vec![])
        });
    let changed = s
        .service()
        .confirm(&actor(false), &secrecy::SecretString::from(CODE), &ctx())
        .await
        .unwrap();
    assert_eq!(changed.email.as_str(), "ana@nuevo.mx");
    assert_eq!(changed.updated_at, now());
    let written = written.lock().unwrap();
    let (stored, revert, keep, reason, at, audit) = &written[0];
    assert_eq!(stored, &changed);
    assert_eq!(stored.password_hash.as_str(), "$argon2id$kept");
    assert_eq!(*keep, Some(actor(false).session_id));
    assert_eq!(*reason, RevocationReason::EmailChanged);
    assert_eq!(*at, now());
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, Action::USER_EMAIL_CHANGED);
    assert_eq!(audit[0].details["from"], "ana@example.com");
    assert_eq!(audit[0].details["to"], "ana@nuevo.mx");
    assert_eq!(audit[0].details["role"], "admin");
    let expires_at = now() + EMAIL_REVERT_TTL;
    assert_eq!(
        revert.as_ref(),
        Some(&EmailRevert {
            id: audit[0].id,
            expires_at,
            ..window(now())
        }),
        "the old address may undo it, with a code made from the record's id"
    );
    assert_eq!(
        audit[0].details["revert_until"],
        expires_at.to_rfc3339().as_str()
    );
}

/// A second change while the first one's window is open leaves that window alone: the undo
/// still goes back to the address the moves started from, and this change's record offers
/// no undo of its own.
#[tokio::test]
async fn a_change_inside_an_open_undo_window_keeps_that_window() {
    let mut s = Setup::new();
    s.window = Some(window(now() + Duration::hours(1)));
    s.known_code(Some(pending(now() + Duration::minutes(10))));
    let written = Arc::new(Mutex::new(Vec::new()));
    let seen = written.clone();
    s.changes
        .expect_complete_email_change()
        .times(1)
        .returning(move |_, _, revert, _, audit| {
            seen.lock().unwrap().push((revert, audit));
            Ok(vec![])
        });
    s.service()
        .confirm(&actor(false), &secrecy::SecretString::from(CODE), &ctx())
        .await
        .unwrap();
    let written = written.lock().unwrap();
    let (revert, audit) = &written[0];
    assert_eq!(*revert, None);
    assert!(audit[0].details.get("revert_until").is_none());
}

/// The undo code puts the old address back, replaces the password with one nobody knows
/// (hashed through the port), lifts an operator's demand to change it, revokes every session
/// and records who and what, without a session.
#[tokio::test]
async fn the_undo_code_restores_the_address_and_shuts_the_password_out() {
    let mut s = Setup::new();
    s.known_undo_code(window(now() + Duration::hours(1)));
    let hashed = Arc::new(Mutex::new(Vec::new()));
    let seen_password = hashed.clone();
    s.hasher.expect_hash().times(1).returning(move |p| {
        seen_password.lock().unwrap().push(p.expose().to_owned());
        Ok(PasswordHash::new("$argon2id$unknown".into()))
    });
    let written = Arc::new(Mutex::new(Vec::new()));
    let seen = written.clone();
    s.changes
        .expect_complete_email_revert()
        .times(1)
        .withf(|id, _, _, _, _| *id == Uuid::from_u128(WINDOW))
        .returning(move |_, user, revoke, factor, audit| {
            seen.lock().unwrap().push((
                user.clone(),
                revoke.keep,
                revoke.reason,
                revoke.at,
                factor,
                audit,
            ));
            Ok(vec![])
        });
    let restored = s
        .service()
        .revert(&secrecy::SecretString::from(CODE), &ctx())
        .await
        .unwrap();
    assert_eq!(restored.email.as_str(), "ana@example.com");
    let written = written.lock().unwrap();
    let (stored, keep, reason, at, factor, audit) = &written[0];
    assert_eq!(stored, &restored);
    assert_eq!(stored.password_hash.as_str(), "$argon2id$unknown");
    // A factor enrolled since the move (the window opened with it) goes, recorded as such.
    assert_eq!(
        factor.enrolled_after,
        now() + Duration::hours(1) - EMAIL_REVERT_TTL
    );
    assert_eq!(factor.audit.action, Action::MFA_DISABLED);
    assert_eq!(factor.audit.details["by"], "email_revert");
    assert_eq!(
        factor.audit.target.as_deref(),
        Some(format!("user:{}", user().id).as_str())
    );
    assert!(!stored.password_change_required);
    assert_eq!(stored.updated_at, now());
    assert_eq!(*keep, None, "every session ends, the mover's among them");
    assert_eq!(*reason, RevocationReason::EmailChangeReverted);
    assert_eq!(*at, now());
    assert_eq!(audit.len(), 1);
    let record = &audit[0];
    assert_eq!(record.action, Action::USER_EMAIL_CHANGE_REVERTED);
    assert_eq!(record.company_id, Some(company()));
    assert_eq!(record.actor_id, None, "the code speaks, not a session");
    assert_eq!(record.context.ip, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(record.details["from"], "ana@atacante.mx");
    assert_eq!(record.details["to"], "ana@example.com");
    assert_eq!(record.details["role"], "admin");
    assert_eq!(
        record.details["revert"],
        Uuid::from_u128(WINDOW).to_string().as_str()
    );
    // The password nobody knows is long and not the record's business.
    let hashed = hashed.lock().unwrap();
    assert_eq!(hashed[0].len(), 64);
    assert!(!record.details.to_string().contains(hashed[0].as_str()));
}

/// Forged, over-long, unknown and closed-window codes get the same answer, change nothing and
/// count against the client network, which is then refused before anything is looked up.
#[tokio::test]
async fn wrong_undo_codes_change_nothing_and_count_against_the_network() {
    let mut s = Setup::new();
    s.undo_limit = 4;
    s.known_undo_code(window(now()));
    s.hasher.expect_hash().times(0);
    s.changes.expect_complete_email_revert().times(0);
    let service = s.service();
    for code in [
        "forged".to_owned(),
        "c".repeat(200),
        CODE.to_owned(),
        "x".to_owned(),
    ] {
        let err = service
            .revert(&secrecy::SecretString::from(code.clone()), &ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::EmailChangeInvalid),
            "{code}: {err:?}"
        );
    }
    let err = service
        .revert(&secrecy::SecretString::from(CODE), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::RateLimited { .. }), "{err:?}");
    // Another network is not held back by this one's failures.
    let elsewhere = RequestContext::new(Some("198.51.100.9".parse().unwrap()), None, None);
    let err = service
        .revert(&secrecy::SecretString::from("forged"), &elsewhere)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::EmailChangeInvalid), "{err:?}");
}

/// The store's refusals at the undo reach the caller; a window closed meanwhile counts as a
/// failed attempt, an address taken meanwhile does not.
#[tokio::test]
async fn the_stores_refusals_of_an_undo_reach_the_caller() {
    let mut s = Setup::new();
    s.undo_limit = 1;
    s.known_undo_code(window(now() + Duration::hours(1)));
    s.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$unknown".into())));
    let refusals = Mutex::new(vec![
        AccountsError::EmailChangeInvalid,
        AccountsError::EmailTaken,
        AccountsError::EmailTaken,
    ]);
    s.changes
        .expect_complete_email_revert()
        .times(3)
        .returning(move |_, _, _, _, _| Err(refusals.lock().unwrap().pop().unwrap()));
    let service = s.service();
    let code = secrecy::SecretString::from(CODE);
    for _ in 0..2 {
        let err = service.revert(&code, &ctx()).await.unwrap_err();
        assert!(matches!(err, AccountsError::EmailTaken), "{err:?}");
    }
    let err = service.revert(&code, &ctx()).await.unwrap_err();
    assert!(matches!(err, AccountsError::EmailChangeInvalid), "{err:?}");
    let err = service.revert(&code, &ctx()).await.unwrap_err();
    assert!(matches!(err, AccountsError::RateLimited { .. }), "{err:?}");
}

/// Forged, over-long, another change's and expired codes, and a user with nothing pending, all
/// get the same answer and change nothing.
#[tokio::test]
async fn wrong_codes_change_nothing() {
    let cases: [(&str, Option<EmailChange>); 5] = [
        ("forged", Some(pending(now() + Duration::minutes(10)))),
        (CODE, None),
        (CODE, Some(pending(now()))),
        (
            CODE,
            Some(EmailChange {
                id: Uuid::from_u128(CHANGE + 1),
                ..pending(now() + Duration::minutes(10))
            }),
        ),
        ("x", Some(pending(now() + Duration::minutes(10)))),
    ];
    for (i, (code, change)) in cases.into_iter().enumerate() {
        let mut s = Setup::new();
        s.known_code(change);
        s.changes.expect_complete_email_change().times(0);
        let code = if i == 4 {
            "c".repeat(200)
        } else {
            code.to_owned()
        };
        let err = s
            .service()
            .confirm(&actor(true), &secrecy::SecretString::from(code), &ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::EmailChangeInvalid),
            "case {i}: {err:?}"
        );
    }
}

/// What the store says at completion (the address taken meanwhile, the change gone) reaches
/// the caller unchanged.
#[tokio::test]
async fn the_stores_refusals_reach_the_caller() {
    for refusal in [AccountsError::EmailTaken, AccountsError::EmailChangeInvalid] {
        let mut s = Setup::new();
        s.known_code(Some(pending(now() + Duration::minutes(10))));
        let expected = format!("{refusal:?}");
        let refusal = Mutex::new(Some(refusal));
        s.changes
            .expect_complete_email_change()
            .returning(move |_, _, _, _, _| Err(refusal.lock().unwrap().take().unwrap()));
        let err = s
            .service()
            .confirm(&actor(false), &secrecy::SecretString::from(CODE), &ctx())
            .await
            .unwrap_err();
        assert_eq!(format!("{err:?}"), expected);
    }
}
