use std::sync::{Arc, Mutex};

use audit::{Action, Outcome};
use chrono::TimeZone;
use kernel::{ClientNet, CompanyId, Duration, ManualClock, RateLimiter, RequestContext};
use kernel::{SequentialIds, UserId};
use rbac::Role;
use uuid::Uuid;

use super::*;
use crate::{
    MockAccountRepository, MockPasswordHasher, PasswordHash, PasswordPolicy, PasswordViolation,
    PersonName,
};

const GOOD: &str = "Tlacuache#2026";
const TOKEN: &str = "a-token-the-verifier-knows";
const RESET: u128 = 900;

fn now() -> Timestamp {
    chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

fn company() -> CompanyId {
    CompanyId::from_uuid(Uuid::from_u128(77))
}

fn user(active: bool) -> User {
    User {
        id: UserId::from_uuid(Uuid::from_u128(5)),
        company_id: company(),
        email: Email::parse("ana@example.com").unwrap(),
        name: PersonName::parse("Ana", "name").unwrap(),
        role: Role::Owner,
        active,
        password_hash: PasswordHash::new("$argon2id$old".into()),
        mfa_enabled: true,
        grants: rbac::PermissionSet::empty(),
        revokes: rbac::PermissionSet::empty(),
        created_at: now() - Duration::days(30),
        updated_at: now() - Duration::days(30),
        password_change_required: true,
    }
}

fn open_reset(expires_at: Timestamp) -> PasswordReset {
    PasswordReset {
        id: Uuid::from_u128(RESET),
        company_id: company(),
        user_id: user(true).id,
        expires_at,
    }
}

fn ctx() -> RequestContext {
    RequestContext::new(Some("203.0.113.7".parse().unwrap()), Some("test"), None)
}

struct Setup {
    users: MockAccountRepository,
    resets: MockPasswordResetRepository,
    tokens: MockResetTokenVerifier,
    hasher: MockPasswordHasher,
    limit: u32,
}

impl Setup {
    fn new() -> Self {
        Self {
            users: MockAccountRepository::new(),
            resets: MockPasswordResetRepository::new(),
            tokens: MockResetTokenVerifier::new(),
            hasher: MockPasswordHasher::new(),
            limit: 100,
        }
    }

    fn service(self) -> PasswordResetService {
        PasswordResetService::new(
            ResetPorts {
                users: Arc::new(self.users),
                resets: Arc::new(self.resets),
                tokens: Arc::new(self.tokens),
                hasher: Arc::new(self.hasher),
                clock: Arc::new(ManualClock::new(now())),
                ids: Arc::new(SequentialIds::default()),
            },
            PasswordPolicy::default(),
            Arc::new(RateLimiter::<ClientNet>::new(
                self.limit,
                Duration::hours(1),
                1_000,
            )),
        )
    }

    /// The verifier knows [`TOKEN`] as reset [`RESET`], and that reset belongs to a user.
    fn known_token(&mut self, user: User, reset: PasswordReset) {
        self.tokens
            .expect_reset_id()
            .withf(|t| t == TOKEN)
            .returning(|_| Some(Uuid::from_u128(RESET)));
        self.resets
            .expect_reset()
            .withf(|id| *id == Uuid::from_u128(RESET))
            .returning(move |_| Ok(Some((user.clone(), reset))));
    }
}

fn confirmation(token: &str, password: &str, again: &str) -> ResetConfirmation {
    ResetConfirmation {
        token: secrecy::SecretString::from(token.to_owned()),
        new_password: Password::new(password),
        new_password_confirmation: Password::new(again),
    }
}

#[tokio::test]
async fn a_request_for_a_user_opens_a_reset_whose_id_is_its_records() {
    let mut s = Setup::new();
    s.users
        .expect_user_by_email()
        .withf(|e| e.as_str() == "ana@example.com")
        .returning(|_| Ok(Some(user(true))));
    let seen = Arc::new(Mutex::new(None));
    let sink = seen.clone();
    s.resets
        .expect_open_reset()
        .times(1)
        .returning(move |reset, keep, audit| {
            *sink.lock().unwrap() = Some((*reset, keep, audit));
            Ok(true)
        });
    s.service()
        .request("  Ana@Example.com ", &ctx())
        .await
        .unwrap();
    let (reset, keep, audit) = seen.lock().unwrap().take().unwrap();
    assert_eq!(reset.user_id, user(true).id);
    assert_eq!(reset.company_id, company());
    assert_eq!(reset.expires_at, now() + RESET_TTL);
    assert_eq!(keep, now() + RESET_TTL - RESET_RESEND_INTERVAL);
    let [record] = audit.as_slice() else {
        panic!("one record: {audit:?}")
    };
    assert_eq!(
        record.id, reset.id,
        "the mail it causes is made for this reset"
    );
    assert_eq!(record.action, Action::USER_PASSWORD_RESET_REQUESTED);
    assert_eq!(record.outcome, Outcome::Success);
    assert_eq!(record.company_id, Some(company()));
    assert_eq!(record.actor_id, None);
    assert_eq!(
        record.target.as_deref(),
        Some(format!("user:{}", user(true).id).as_str())
    );
    assert_eq!(record.context.ip, ctx().ip);
}

/// `accept` decides everything the answer says (limit, form) without looking anyone up; only
/// `send` does, so an adapter can answer before it runs.
#[tokio::test]
async fn accepting_a_request_looks_nobody_up_and_sending_it_does() {
    let mut s = Setup::new();
    s.limit = 1;
    s.users
        .expect_user_by_email()
        .times(1)
        .returning(|_| Ok(Some(user(true))));
    s.resets
        .expect_open_reset()
        .times(1)
        .returning(|_, _, _| Ok(true));
    let service = s.service();
    let accepted = service.accept("ana@example.com", &ctx()).unwrap();
    assert!(!format!("{accepted:?}").contains("ana"), "{accepted:?}");
    // The limit is spent by the acceptance, before any look-up.
    assert!(matches!(
        service.accept("otra@example.com", &ctx()),
        Err(AccountsError::RateLimited { .. })
    ));
    accepted.send().await.unwrap();
}

#[tokio::test]
async fn unknown_and_deactivated_users_get_the_same_answer_and_nothing_is_stored() {
    let mut s = Setup::new();
    s.users
        .expect_user_by_email()
        .withf(|e| e.as_str() == "nadie@example.com")
        .returning(|_| Ok(None));
    s.users
        .expect_user_by_email()
        .withf(|e| e.as_str() == "ana@example.com")
        .returning(|_| Ok(Some(user(false))));
    // No `open_reset` expectation: a call would fail the test.
    let service = s.service();
    service.request("nadie@example.com", &ctx()).await.unwrap();
    service.request("ana@example.com", &ctx()).await.unwrap();
}

#[tokio::test]
async fn a_malformed_address_is_a_validation_error() {
    let err = Setup::new()
        .service()
        .request("not an address", &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AccountsError::Validation(f) if f[0].field == "email"),
        "{err:?}"
    );
}

#[tokio::test]
async fn requests_are_limited_per_client_network_whatever_the_address() {
    let mut s = Setup::new();
    s.limit = 2;
    s.users.expect_user_by_email().returning(|_| Ok(None));
    let service = s.service();
    service.request("a@example.com", &ctx()).await.unwrap();
    service.request("b@example.com", &ctx()).await.unwrap();
    let err = service.request("c@example.com", &ctx()).await.unwrap_err();
    assert!(
        matches!(err, AccountsError::RateLimited { retry_after_secs } if retry_after_secs > 3000),
        "{err:?}"
    );
    // Another network is not held back.
    let other = RequestContext::new(Some("198.51.100.9".parse().unwrap()), None, None);
    service.request("c@example.com", &other).await.unwrap();
}

#[tokio::test]
async fn a_token_sets_the_password_revokes_every_session_and_closes_the_reset() {
    let mut s = Setup::new();
    s.known_token(user(true), open_reset(now() + Duration::minutes(1)));
    s.hasher
        .expect_hash()
        .withf(|p| p.expose() == GOOD)
        .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
    let seen = Arc::new(Mutex::new(None));
    let sink = seen.clone();
    s.resets
        .expect_complete_reset()
        .times(1)
        .returning(move |id, user, revoke, audit| {
            *sink.lock().unwrap() = Some((id, user.clone(), revoke, audit));
            Ok(vec![])
        });
    let done = s
        .service()
        .confirm(&confirmation(TOKEN, GOOD, GOOD), &ctx())
        .await
        .unwrap();
    assert_eq!(done.id, user(true).id);
    let (id, stored, revoke, audit) = seen.lock().unwrap().take().unwrap();
    assert_eq!(id, Uuid::from_u128(RESET));
    assert_eq!(stored.password_hash.as_str(), "$argon2id$new");
    assert!(
        !stored.password_change_required,
        "an operator's demand lifts"
    );
    assert!(stored.mfa_enabled, "MFA stays as it was");
    assert_eq!(stored.updated_at, now());
    assert_eq!(revoke.keep, None, "every session goes");
    assert_eq!(revoke.reason, RevocationReason::PasswordChanged);
    assert_eq!(revoke.at, now());
    assert_eq!(revoke.audit_template.company_id, Some(company()));
    let [record] = audit.as_slice() else {
        panic!("one record: {audit:?}")
    };
    assert_eq!(record.action, Action::USER_PASSWORD_CHANGED);
    assert_eq!(record.actor_id, None);
    assert_eq!(record.company_id, Some(company()));
    assert_eq!(record.details["by"], "password_reset");
    assert_eq!(record.details["reset"], Uuid::from_u128(RESET).to_string());
    assert_eq!(
        record.details["role"], "owner",
        "the review alerts on an Owner's reset"
    );
    assert!(!format!("{audit:?}").contains(TOKEN));
}

#[tokio::test]
async fn bad_expired_and_deactivated_tokens_get_one_answer_and_count_against_the_limit() {
    let mut s = Setup::new();
    s.limit = 3;
    s.tokens
        .expect_reset_id()
        .withf(|t| t == "forged")
        .returning(|_| None);
    s.tokens
        .expect_reset_id()
        .withf(|t| t == "expired")
        .returning(|_| Some(Uuid::from_u128(1)));
    s.tokens
        .expect_reset_id()
        .withf(|t| t == "deactivated")
        .returning(|_| Some(Uuid::from_u128(2)));
    s.resets
        .expect_reset()
        .withf(|id| *id == Uuid::from_u128(1))
        .returning(|_| Ok(Some((user(true), open_reset(now())))));
    s.resets
        .expect_reset()
        .withf(|id| *id == Uuid::from_u128(2))
        .returning(|_| {
            Ok(Some((
                user(false),
                open_reset(now() + Duration::minutes(10)),
            )))
        });
    // No `hash` or `complete_reset` expectation: nothing is changed.
    let service = s.service();
    for token in ["forged", "expired", "deactivated"] {
        let err = service
            .confirm(&confirmation(token, GOOD, GOOD), &ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::ResetTokenInvalid),
            "{token}: {err:?}"
        );
    }
    let err = service
        .confirm(&confirmation("forged", GOOD, GOOD), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::RateLimited { .. }), "{err:?}");
}

#[tokio::test]
async fn an_overlong_token_is_refused_unread() {
    // No verifier expectation: reading it would fail the test.
    let err = Setup::new()
        .service()
        .confirm(&confirmation(&"x".repeat(10_000), GOOD, GOOD), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::ResetTokenInvalid), "{err:?}");
}

#[tokio::test]
async fn a_password_the_policy_refuses_leaves_the_reset_open() {
    let mut s = Setup::new();
    s.known_token(user(true), open_reset(now() + Duration::minutes(1)));
    let service = s.service();
    let err = service
        .confirm(&confirmation(TOKEN, "short", "short"), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AccountsError::PasswordPolicy(v) if v.contains(&PasswordViolation::TooShort)),
        "{err:?}"
    );
    let err = service
        .confirm(&confirmation(TOKEN, GOOD, "Tlacuache#2027"), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AccountsError::PasswordPolicy(v) if v.contains(&PasswordViolation::ConfirmationMismatch)),
        "{err:?}"
    );
    let err = service
        .confirm(
            &confirmation(TOKEN, "Ana@Example.com#1", "Ana@Example.com#1"),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AccountsError::PasswordPolicy(v) if v.contains(&PasswordViolation::ContainsEmail)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_reset_used_meanwhile_is_invalid() {
    let mut s = Setup::new();
    s.known_token(user(true), open_reset(now() + Duration::minutes(1)));
    s.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
    s.resets
        .expect_complete_reset()
        .returning(|_, _, _, _| Err(AccountsError::ResetTokenInvalid));
    let err = s
        .service()
        .confirm(&confirmation(TOKEN, GOOD, GOOD), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::ResetTokenInvalid), "{err:?}");
}

#[test]
fn a_confirmation_shows_neither_token_nor_password() {
    let text = format!("{:?}", confirmation(TOKEN, GOOD, GOOD));
    assert!(!text.contains(TOKEN) && !text.contains(GOOD), "{text}");
}
