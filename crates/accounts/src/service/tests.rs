use std::sync::Arc;

use audit::{Action, MockAuditSink, Outcome};
use chrono::TimeZone;
use kernel::{CompanyId, ManualClock, RequestContext, SequentialIds, SessionId, UserId};
use rbac::{Actor, Role};

use super::*;
use crate::{
    MockAccountRepository, MockPasswordHasher, PasswordCheck, PasswordHash, PasswordViolation,
};

const GOOD: &str = "Tlacuache#2026";

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
            .unwrap(),
    ))
}

fn hasher() -> MockPasswordHasher {
    let mut h = MockPasswordHasher::new();
    h.expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$fake".into())));
    h
}

fn service(
    repo: MockAccountRepository,
    hasher: MockPasswordHasher,
    sink: MockAuditSink,
) -> AccountService {
    AccountService::new(
        Arc::new(repo),
        Arc::new(hasher),
        Arc::new(sink),
        clock(),
        Arc::new(SequentialIds::default()),
        PasswordPolicy::default(),
    )
}

fn signup_request(password: &str, confirmation: &str) -> SignupRequest {
    SignupRequest {
        company_name: "Tacos El Güero".into(),
        email: "Owner@Example.com".into(),
        password: Password::new(password),
        password_confirmation: Password::new(confirmation),
        name: "Ana López".into(),
        rfc: Some("eku9003173c9".into()),
    }
}

fn actor(role: Role, company: CompanyId) -> Actor {
    Actor::new(
        UserId::from_uuid(uuid::Uuid::from_u128(1)),
        company,
        SessionId::from_uuid(uuid::Uuid::from_u128(2)),
        role,
        role.default_permissions(),
    )
}

fn user(company: CompanyId, id: u128, role: Role) -> User {
    let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    User {
        id: UserId::from_uuid(uuid::Uuid::from_u128(id)),
        company_id: company,
        email: Email::parse(&format!("user{id}@example.com")).unwrap(),
        name: PersonName::parse("Someone", "name").unwrap(),
        role,
        active: true,
        password_hash: PasswordHash::new("$argon2id$old".into()),
        mfa_enabled: false,
        grants: rbac::PermissionSet::empty(),
        revokes: rbac::PermissionSet::empty(),
        created_at: now,
        updated_at: now,
        password_change_required: false,
    }
}

fn company() -> CompanyId {
    CompanyId::from_uuid(uuid::Uuid::from_u128(77))
}

fn sink_expecting_denial() -> MockAuditSink {
    let mut sink = MockAuditSink::new();
    sink.expect_record()
        .withf(|r| r.action == Action::AUTHORIZATION_DENIED && r.outcome == Outcome::Denied)
        .times(1)
        .returning(|_| Ok(()));
    sink
}

#[tokio::test]
async fn signup_creates_company_and_owner_in_one_call_with_its_audit_records() {
    let mut repo = MockAccountRepository::new();
    repo.expect_create_company_with_owner()
        .withf(|company, owner, audit| {
            owner.role == Role::Owner
                && owner.company_id == company.id
                && owner.email.as_str() == "owner@example.com"
                && company.rfc.as_ref().map(Rfc::as_str) == Some("EKU9003173C9")
                && audit.len() == 2
                && audit[0].action == Action::COMPANY_CREATED
                && audit[1].action == Action::USER_CREATED
                && !format!("{audit:?}").contains(GOOD)
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    let svc = service(repo, hasher(), MockAuditSink::new());
    let (company, owner) = svc
        .signup(signup_request(GOOD, GOOD), &RequestContext::default())
        .await
        .unwrap();
    assert_eq!(owner.company_id, company.id);
    assert!(owner.active);
}

#[tokio::test]
async fn signup_with_a_weak_password_lists_every_rule_and_stores_nothing() {
    let mut repo = MockAccountRepository::new();
    repo.expect_create_company_with_owner().times(0);
    let mut h = MockPasswordHasher::new();
    h.expect_hash().times(0);
    let svc = service(repo, h, MockAuditSink::new());
    let err = svc
        .signup(signup_request("owner", "Owner"), &RequestContext::default())
        .await
        .unwrap_err();
    let AccountsError::PasswordPolicy(v) = err else {
        panic!("expected a policy error, got {err:?}")
    };
    assert_eq!(
        v,
        vec![
            PasswordViolation::TooShort,
            PasswordViolation::MissingUppercase,
            PasswordViolation::MissingDigit,
            PasswordViolation::MissingSpecial,
            PasswordViolation::ConfirmationMismatch,
            PasswordViolation::ContainsEmail,
        ]
    );
}

#[tokio::test]
async fn signup_reports_every_invalid_field() {
    let svc = service(MockAccountRepository::new(), hasher(), MockAuditSink::new());
    let mut req = signup_request(GOOD, GOOD);
    req.email = "not an email".into();
    req.company_name = " ".into();
    req.rfc = Some("XYZ".into());
    let err = svc
        .signup(req, &RequestContext::default())
        .await
        .unwrap_err();
    let AccountsError::Validation(errors) = err else {
        panic!("{err:?}")
    };
    let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
    assert_eq!(fields, vec!["company_name", "email", "rfc"]);
}

#[tokio::test]
async fn duplicate_email_is_reported_as_taken() {
    let mut repo = MockAccountRepository::new();
    repo.expect_create_company_with_owner()
        .returning(|_, _, _| Err(AccountsError::EmailTaken));
    let svc = service(repo, hasher(), MockAuditSink::new());
    let err = svc
        .signup(signup_request(GOOD, GOOD), &RequestContext::default())
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::EmailTaken));
}

fn new_user(role: &str) -> NewUserRequest {
    NewUserRequest {
        email: "new@example.com".into(),
        name: "Nuevo".into(),
        role: role.into(),
        password: Password::new(GOOD),
        password_confirmation: Password::new(GOOD),
    }
}

#[tokio::test]
async fn managers_and_vendors_cannot_create_users_and_the_denial_is_audited() {
    for role in [Role::Manager, Role::Vendor] {
        let mut repo = MockAccountRepository::new();
        repo.expect_insert_user().times(0);
        let svc = service(repo, hasher(), sink_expecting_denial());
        let err = svc
            .create_user(
                &actor(role, company()),
                new_user("vendor"),
                &RequestContext::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountsError::Forbidden(_)),
            "{role:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn nobody_creates_a_second_owner_and_admins_cannot_create_above_themselves() {
    for role in [Role::Owner, Role::Admin] {
        let svc = service(
            MockAccountRepository::new(),
            hasher(),
            sink_expecting_denial(),
        );
        let err = svc
            .create_user(
                &actor(role, company()),
                new_user("owner"),
                &RequestContext::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::Forbidden(_)));
    }
}

#[tokio::test]
async fn admin_creates_users_up_to_its_own_role_in_its_own_company() {
    for target in ["admin", "manager", "vendor"] {
        let mut repo = MockAccountRepository::new();
        repo.expect_insert_user()
            .withf(move |u, audit| {
                u.company_id == company() && u.role.as_str() == target && audit.len() == 1
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let svc = service(repo, hasher(), MockAuditSink::new());
        let created = svc
            .create_user(
                &actor(Role::Admin, company()),
                new_user(target),
                &RequestContext::default(),
            )
            .await
            .unwrap();
        assert_eq!(created.role.as_str(), target);
    }
}

#[tokio::test]
async fn unknown_role_is_a_field_error() {
    let svc = service(MockAccountRepository::new(), hasher(), MockAuditSink::new());
    let err = svc
        .create_user(
            &actor(Role::Owner, company()),
            new_user("superuser"),
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    let AccountsError::Validation(errors) = err else {
        panic!("{err:?}")
    };
    assert_eq!(errors, vec![FieldError::new("role", "invalid")]);
}

#[tokio::test]
async fn the_owner_cannot_be_deactivated_by_anyone() {
    for role in [Role::Owner, Role::Admin] {
        let mut repo = MockAccountRepository::new();
        repo.expect_user()
            .returning(|c, _| Ok(Some(user(c, 9, Role::Owner))));
        repo.expect_update_user().times(0);
        let svc = service(repo, hasher(), sink_expecting_denial());
        let patch = UserPatch {
            name: None,
            active: Some(false),
            if_match: None,
        };
        let err = svc
            .update_user(
                &actor(role, company()),
                UserId::from_uuid(uuid::Uuid::from_u128(9)),
                patch,
                &RequestContext::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::Forbidden(_)), "{role:?}");
    }
}

#[tokio::test]
async fn admin_cannot_even_rename_the_owner() {
    let mut repo = MockAccountRepository::new();
    repo.expect_user()
        .returning(|c, _| Ok(Some(user(c, 9, Role::Owner))));
    repo.expect_update_user().times(0);
    let svc = service(repo, hasher(), sink_expecting_denial());
    let patch = UserPatch {
        name: Some("Renamed".into()),
        active: None,
        if_match: None,
    };
    let err = svc
        .update_user(
            &actor(Role::Admin, company()),
            UserId::from_uuid(uuid::Uuid::from_u128(9)),
            patch,
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::Forbidden(_)));
}

/// An invalid name is refused before the store is asked for the user (nothing read, nothing
/// locked), whoever the user is.
#[tokio::test]
async fn an_invalid_name_is_refused_before_the_user_is_read() {
    let mut repo = MockAccountRepository::new();
    repo.expect_user().times(0);
    repo.expect_update_user().times(0);
    let svc = service(repo, hasher(), MockAuditSink::new());
    let patch = UserPatch {
        name: Some("  ".into()),
        active: Some(false),
        if_match: None,
    };
    let err = svc
        .update_user(
            &actor(Role::Owner, company()),
            UserId::from_uuid(uuid::Uuid::from_u128(9)),
            patch,
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    let AccountsError::Validation(errors) = err else {
        panic!("{err:?}")
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "name");
}

#[tokio::test]
async fn deactivation_revokes_every_session_in_the_same_call() {
    let mut repo = MockAccountRepository::new();
    repo.expect_user()
        .returning(|c, _| Ok(Some(user(c, 9, Role::Vendor))));
    repo.expect_update_user()
        .withf(|before, u, fields, revoke, audit| {
            before.active
                && !u.active
                && fields == [UserField::Active]
                && revoke.as_ref().is_some_and(|r| {
                    r.reason == RevocationReason::UserDeactivated && r.keep.is_none()
                })
                && audit.len() == 1
                && audit[0].action == Action::USER_DEACTIVATED
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(vec![]));
    let svc = service(repo, hasher(), MockAuditSink::new());
    let patch = UserPatch {
        name: None,
        active: Some(false),
        if_match: None,
    };
    let updated = svc
        .update_user(
            &actor(Role::Admin, company()),
            UserId::from_uuid(uuid::Uuid::from_u128(9)),
            patch,
            &RequestContext::default(),
        )
        .await
        .unwrap();
    assert!(!updated.active);
}

#[tokio::test]
async fn a_patch_that_changes_nothing_writes_nothing() {
    let mut repo = MockAccountRepository::new();
    repo.expect_user()
        .returning(|c, _| Ok(Some(user(c, 9, Role::Vendor))));
    repo.expect_update_user().times(0);
    let svc = service(repo, hasher(), MockAuditSink::new());
    let patch = UserPatch {
        name: Some("Someone".into()),
        active: Some(true),
        if_match: None,
    };
    svc.update_user(
        &actor(Role::Admin, company()),
        UserId::from_uuid(uuid::Uuid::from_u128(9)),
        patch,
        &RequestContext::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn users_of_other_companies_are_not_found() {
    let mut repo = MockAccountRepository::new();
    repo.expect_user()
        .withf(|c, _| *c == company())
        .returning(|_, _| Ok(None));
    let svc = service(repo, hasher(), MockAuditSink::new());
    let err = svc
        .get_user(
            &actor(Role::Owner, company()),
            UserId::from_uuid(uuid::Uuid::from_u128(5)),
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::NotFound));
}

#[tokio::test]
async fn password_change_needs_the_current_password_and_keeps_only_this_session() {
    let me = actor(Role::Vendor, company());
    // Wrong current password: refused and recorded as a failure.
    let mut repo = MockAccountRepository::new();
    repo.expect_user()
        .returning(|c, _| Ok(Some(user(c, 1, Role::Vendor))));
    repo.expect_update_user().times(0);
    let mut h = hasher();
    h.expect_verify()
        .returning(|_, _| Ok(PasswordCheck::Mismatch));
    let mut sink = MockAuditSink::new();
    sink.expect_record()
        .withf(|r| r.action == Action::USER_PASSWORD_CHANGED && r.outcome == Outcome::Failure)
        .times(1)
        .returning(|_| Ok(()));
    let svc = service(repo, h, sink);
    let err = svc
        .change_password(
            &me,
            &Password::new("wrong"),
            &Password::new(GOOD),
            &Password::new(GOOD),
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::CurrentPasswordInvalid));

    // Right password: stored with a revocation that keeps the current session, and the demand
    // to change a password the operator handed over is lifted.
    let session = me.session_id;
    let mut repo = MockAccountRepository::new();
    repo.expect_user().returning(|c, _| {
        Ok(Some(User {
            password_change_required: true,
            ..user(c, 1, Role::Vendor)
        }))
    });
    repo.expect_update_user()
        .withf(move |before, u, fields, revoke, _| {
            before.password_hash.as_str() == "$argon2id$old"
                && u.password_hash.as_str() == "$argon2id$fake"
                && fields == [UserField::Password]
                && !u.password_change_required
                && revoke.as_ref().is_some_and(|r| {
                    r.keep == Some(session) && r.reason == RevocationReason::PasswordChanged
                })
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(vec![]));
    let mut h = hasher();
    h.expect_verify().returning(|_, _| {
        Ok(PasswordCheck::Match {
            needs_rehash: false,
        })
    });
    let svc = service(repo, h, MockAuditSink::new());
    svc.change_password(
        &me,
        &Password::new("old"),
        &Password::new(GOOD),
        &Password::new(GOOD),
        &RequestContext::default(),
    )
    .await
    .unwrap();

    // The current password again: refused, nothing stored, no session revoked.
    let mut repo = MockAccountRepository::new();
    repo.expect_user()
        .returning(|c, _| Ok(Some(user(c, 1, Role::Vendor))));
    repo.expect_update_user().times(0);
    let mut h = hasher();
    h.expect_verify().returning(|_, _| {
        Ok(PasswordCheck::Match {
            needs_rehash: false,
        })
    });
    let svc = service(repo, h, MockAuditSink::new());
    let err = svc
        .change_password(
            &me,
            &Password::new(GOOD),
            &Password::new(GOOD),
            &Password::new(GOOD),
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AccountsError::Validation(e)
            if e == &[crate::FieldError::new("new_password", "same_as_current")]),
        "{err:?}"
    );
}

/// The operator's reset: the user found by e-mail gets the new password, every session goes
/// (none kept), and the record is the user's company's, without an actor, saying the operator
/// did it; an unknown e-mail, a deactivated user and a password the policy refuses change
/// nothing.
#[tokio::test]
async fn the_operator_resets_a_password_revoking_every_session() {
    let email = Email::parse("user5@example.com").unwrap();
    let mut repo = MockAccountRepository::new();
    repo.expect_user_by_email()
        .withf(|e| e.as_str() == "user5@example.com")
        .returning(|_| Ok(Some(user(company(), 5, Role::Owner))));
    repo.expect_update_user()
        .withf(|before, u, fields, revoke, audit| {
            let record = &audit[0];
            before.password_hash.as_str() == "$argon2id$old"
                && fields == [UserField::Password]
                && u.id == UserId::from_uuid(uuid::Uuid::from_u128(5))
                && u.password_hash.as_str() == "$argon2id$fake"
                && u.password_change_required
                && revoke.as_ref().is_some_and(|r| {
                    r.keep.is_none()
                        && r.reason == RevocationReason::PasswordChanged
                        && r.audit_template.company_id == Some(company())
                        && r.audit_template.actor_id.is_none()
                })
                && audit.len() == 1
                && record.action == Action::USER_PASSWORD_CHANGED
                && record.outcome == Outcome::Success
                && record.company_id == Some(company())
                && record.actor_id.is_none()
                && record.target.as_deref() == Some("user:00000000-0000-0000-0000-000000000005")
                && record.details["by"] == "operator"
                && !record.details.to_string().contains(GOOD)
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(vec![]));
    let svc = service(repo, hasher(), MockAuditSink::new());
    let reset = svc
        .reset_password_by_operator(&email, &Password::new(GOOD))
        .await
        .unwrap();
    assert_eq!(reset.company_id, company());

    // Refusals store nothing.
    let mut repo = MockAccountRepository::new();
    repo.expect_user_by_email().returning(|e| {
        Ok(match e.as_str() {
            "user6@example.com" => Some(User {
                active: false,
                ..user(company(), 6, Role::Vendor)
            }),
            "user7@example.com" => Some(user(company(), 7, Role::Vendor)),
            _ => None,
        })
    });
    repo.expect_update_user().times(0);
    let mut h = MockPasswordHasher::new();
    h.expect_hash().times(0);
    let svc = service(repo, h, MockAuditSink::new());
    let reset = |email: &str, password: &str| {
        let email = Email::parse(email).unwrap();
        let password = Password::new(password);
        let svc = &svc;
        async move { svc.reset_password_by_operator(&email, &password).await }
    };
    assert!(matches!(
        reset("nobody@example.com", GOOD).await,
        Err(AccountsError::NotFound)
    ));
    assert!(matches!(
        reset("user6@example.com", GOOD).await,
        Err(AccountsError::Forbidden(_))
    ));
    assert!(matches!(
        reset("user7@example.com", "short").await,
        Err(AccountsError::PasswordPolicy(v)) if v.contains(&PasswordViolation::TooShort)
    ));
}

#[tokio::test]
async fn a_failed_audit_write_fails_the_denial_closed() {
    let mut sink = MockAuditSink::new();
    sink.expect_record()
        .returning(|_| Err(audit::AuditError::Internal("disk full".into())));
    let svc = service(MockAccountRepository::new(), hasher(), sink);
    let err = svc
        .create_user(
            &actor(Role::Vendor, company()),
            new_user("vendor"),
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::Internal(_)));
}

/// A service that lets two sign-ups through per address an hour, and expects exactly two.
fn two_signups_per_ip() -> AccountService {
    let mut repo = MockAccountRepository::new();
    repo.expect_create_company_with_owner()
        .times(2)
        .returning(|_, _, _| Ok(()));
    let limiter = Arc::new(kernel::RateLimiter::new(2, chrono::Duration::hours(1), 100));
    service(repo, hasher(), MockAuditSink::new()).with_signup_limit(limiter)
}

#[tokio::test]
async fn signups_are_limited_per_ip() {
    let svc = two_signups_per_ip();
    let ctx = RequestContext::new(Some("198.51.100.7".parse().unwrap()), None, None);
    for n in 0..2 {
        let mut req = signup_request(GOOD, GOOD);
        req.email = format!("o{n}@example.com");
        svc.signup(req, &ctx).await.unwrap();
    }
    let err = svc
        .signup(signup_request(GOOD, GOOD), &ctx)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountsError::RateLimited { retry_after_secs } if retry_after_secs > 3500),
        "{err:?}"
    );
    // Another address is not affected.
    let other = RequestContext::new(Some("198.51.100.8".parse().unwrap()), None, None);
    assert!(!matches!(
        svc.signup(signup_request("x", "x"), &other).await,
        Err(AccountsError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn signups_from_one_ipv6_network_share_its_limit() {
    let svc = two_signups_per_ip();
    let from = |ip: &str| RequestContext::new(Some(ip.parse().unwrap()), None, None);
    for (n, ip) in ["2001:db8:9:9::1", "2001:db8:9:9:1:2:3:4"]
        .iter()
        .enumerate()
    {
        let mut req = signup_request(GOOD, GOOD);
        req.email = format!("o{n}@example.com");
        svc.signup(req, &from(ip)).await.unwrap();
    }
    let err = svc
        .signup(signup_request(GOOD, GOOD), &from("2001:db8:9:9:ffff::7"))
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::RateLimited { .. }), "{err:?}");
    // An IPv4 client reaching the server as an IPv4-mapped address is the same client.
    let limiter = Arc::new(kernel::RateLimiter::new(1, chrono::Duration::hours(1), 100));
    let mut repo = MockAccountRepository::new();
    repo.expect_create_company_with_owner()
        .times(1)
        .returning(|_, _, _| Ok(()));
    let svc = service(repo, hasher(), MockAuditSink::new()).with_signup_limit(limiter);
    svc.signup(signup_request(GOOD, GOOD), &from("198.51.100.9"))
        .await
        .unwrap();
    let err = svc
        .signup(signup_request(GOOD, GOOD), &from("::ffff:198.51.100.9"))
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::RateLimited { .. }), "{err:?}");
}

/// Each write a repository was asked for: the user as read, as to be stored, and the fields
/// checked and written.
type Writes = Arc<std::sync::Mutex<Vec<(User, User, Vec<UserField>)>>>;

/// A repository whose `user` answers `reads` in turn (the last one from then on) and whose
/// first `stale` writes find the user changed since it was read; every write lands in the
/// returned list.
fn changing_under_us(reads: Vec<User>, stale: usize) -> (MockAccountRepository, Writes) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let read = AtomicUsize::new(0);
    let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&writes);
    let mut repo = MockAccountRepository::new();
    repo.expect_user().returning(move |_, _| {
        let n = read.fetch_add(1, Ordering::SeqCst);
        Ok(reads.get(n).or(reads.last()).cloned())
    });
    repo.expect_update_user()
        .returning(move |before, after, fields, _, _| {
            let mut writes = seen.lock().unwrap();
            writes.push((before.clone(), after.clone(), fields.to_vec()));
            if writes.len() <= stale {
                Err(AccountsError::Stale)
            } else {
                Ok(vec![])
            }
        });
    (repo, writes)
}

fn nine() -> UserId {
    UserId::from_uuid(uuid::Uuid::from_u128(9))
}

/// An Admin deactivates a Manager while that Manager accepts the company's ownership: the
/// write finds the role it was decided on gone, and the decision made again on the fresh read
/// refuses (an Admin never deactivates the Owner) instead of landing on the new Owner.
#[tokio::test]
async fn a_decision_whose_read_went_stale_is_made_again_on_a_fresh_read() {
    let (repo, writes) = changing_under_us(
        vec![
            user(company(), 9, Role::Manager),
            user(company(), 9, Role::Owner),
        ],
        1,
    );
    let svc = service(repo, hasher(), sink_expecting_denial());
    let patch = UserPatch {
        name: None,
        active: Some(false),
        if_match: None,
    };
    let err = svc
        .update_user(
            &actor(Role::Admin, company()),
            nine(),
            patch,
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::Forbidden(_)), "{err:?}");
    let writes = writes.lock().unwrap();
    assert_eq!(writes.len(), 1, "only the stale attempt reached the store");
    assert_eq!(writes[0].0.role, Role::Manager);
}

/// Two Owners grant one permission each at the same time: the second write finds the grants
/// it computed from replaced, and the grants computed again keep the other one's.
#[tokio::test]
async fn grants_are_computed_again_from_grants_another_write_stored() {
    let read = user(company(), 9, Role::Vendor);
    let other = User {
        grants: PermissionSet::of(&[Permission::CustomersReadAll]),
        ..read.clone()
    };
    let (repo, writes) = changing_under_us(vec![read, other], 1);
    let svc = service(repo, hasher(), MockAuditSink::new());
    let owner = actor(Role::Owner, company()).reauthenticated(Some(clock().now()));
    let updated = svc
        .change_permissions(
            &owner,
            nine(),
            &["audit.read".to_owned()],
            &[],
            None,
            &RequestContext::default(),
        )
        .await
        .unwrap();
    let both = PermissionSet::of(&[Permission::CustomersReadAll, Permission::AuditRead]);
    assert_eq!(updated.grants, both);
    let writes = writes.lock().unwrap();
    assert_eq!(writes.len(), 2);
    assert_eq!(
        writes[1].0.grants,
        PermissionSet::of(&[Permission::CustomersReadAll])
    );
    assert_eq!(writes[1].1.grants, both);
}

/// A user that keeps changing under every attempt: after `STALE_ATTEMPTS` reads and writes
/// the caller is told, and nothing landed.
#[tokio::test]
async fn a_record_that_keeps_changing_is_given_up_on_after_a_bounded_number_of_attempts() {
    let (repo, writes) = changing_under_us(vec![user(company(), 9, Role::Vendor)], usize::MAX);
    let svc = service(repo, hasher(), MockAuditSink::new());
    let err = svc
        .change_role(
            &actor(Role::Owner, company()).reauthenticated(Some(clock().now())),
            nine(),
            "manager",
            None,
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::Stale), "{err:?}");
    assert_eq!(writes.lock().unwrap().len(), STALE_ATTEMPTS);
}

/// A password change whose hash was replaced meanwhile (the real owner reset it) is checked
/// again against the new hash, which the old password does not open: refused, not stored.
#[tokio::test]
async fn a_password_change_racing_a_reset_verifies_against_the_new_hash() {
    let before = user(company(), 1, Role::Vendor);
    let reset = User {
        password_hash: PasswordHash::new("$argon2id$reset".into()),
        ..before.clone()
    };
    let (repo, writes) = changing_under_us(vec![before, reset], 1);
    let mut h = hasher();
    h.expect_verify().returning(|_, hash| {
        Ok(match hash.map(PasswordHash::as_str) {
            Some("$argon2id$old") => PasswordCheck::Match {
                needs_rehash: false,
            },
            _ => PasswordCheck::Mismatch,
        })
    });
    let mut sink = MockAuditSink::new();
    sink.expect_record()
        .withf(|r| r.action == Action::USER_PASSWORD_CHANGED && r.outcome == Outcome::Failure)
        .times(1)
        .returning(|_| Ok(()));
    let svc = service(repo, h, sink);
    let err = svc
        .change_password(
            &actor(Role::Vendor, company()),
            &Password::new("old"),
            &Password::new(GOOD),
            &Password::new(GOOD),
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountsError::CurrentPasswordInvalid),
        "{err:?}"
    );
    assert_eq!(writes.lock().unwrap().len(), 1);
}

/// Every field a use case writes, and the role, decide whether the read still holds; a field
/// it does not write does not.
#[test]
fn a_read_holds_while_the_role_and_the_written_fields_are_unchanged() {
    let read = user(company(), 9, Role::Vendor);
    let all = [
        UserField::Name,
        UserField::Role,
        UserField::Active,
        UserField::Permissions,
        UserField::Password,
    ];
    assert!(UserField::unchanged_since(&read, &read, &all));
    let promoted = User {
        role: Role::Owner,
        ..read.clone()
    };
    assert!(!UserField::unchanged_since(
        &read,
        &promoted,
        &[UserField::Name]
    ));
    let cases: [(UserField, User); 6] = [
        (
            UserField::Name,
            User {
                name: PersonName::parse("Otro", "name").unwrap(),
                ..read.clone()
            },
        ),
        (
            UserField::Active,
            User {
                active: false,
                ..read.clone()
            },
        ),
        (
            UserField::Permissions,
            User {
                grants: PermissionSet::of(&[Permission::AuditRead]),
                ..read.clone()
            },
        ),
        (
            UserField::Permissions,
            User {
                revokes: PermissionSet::of(&[Permission::CustomersReadAssigned]),
                ..read.clone()
            },
        ),
        (
            UserField::Password,
            User {
                password_hash: PasswordHash::new("$argon2id$other".into()),
                ..read.clone()
            },
        ),
        (
            UserField::Password,
            User {
                password_change_required: true,
                ..read.clone()
            },
        ),
    ];
    for (field, stored) in cases {
        assert!(
            !UserField::unchanged_since(&read, &stored, &[field]),
            "{field:?}"
        );
        let others: Vec<UserField> = all
            .iter()
            .copied()
            .filter(|f| *f != field && *f != UserField::Role)
            .collect();
        assert!(
            UserField::unchanged_since(&read, &stored, &others),
            "{field:?}"
        );
    }
}

fn stored_company() -> Company {
    Company {
        id: company(),
        name: CompanyName::parse("Tacos El Güero").unwrap(),
        rfc: None,
        session_limit: None,
        profile: crate::CompanyProfile::default(),
        created_at: clock().now(),
    }
}

/// An invalid configuration change is refused, every bad field listed, before the store is
/// asked for anything (nothing read, nothing locked).
#[tokio::test]
async fn an_invalid_company_change_is_refused_before_the_store_is_asked() {
    let mut repo = MockAccountRepository::new();
    repo.expect_update_company().times(0);
    repo.expect_company().times(0);
    let svc = service(repo, hasher(), MockAuditSink::new());
    let patch = CompanyPatch {
        name: Some("Tacos Nuevos".into()),
        postal_code: Some("1234".into()),
        session_limit: Some(11),
        ..CompanyPatch::default()
    };
    let err = svc
        .update_company(
            &actor(Role::Owner, company()),
            patch,
            &RequestContext::default(),
        )
        .await
        .unwrap_err();
    let AccountsError::Validation(errors) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        errors,
        vec![
            FieldError::new("postal_code", "invalid"),
            FieldError::new("session_limit", "out_of_range"),
        ]
    );
}

/// A valid change is decided on the configuration the store hands over: the record of each
/// changed field names the stored value it replaces, and a field the patch leaves alone keeps
/// the stored value even if it differs from what the client saw.
#[tokio::test]
async fn a_company_change_is_decided_on_the_configuration_the_store_hands_over() {
    let mut repo = MockAccountRepository::new();
    repo.expect_update_company()
        .withf(|id, _| *id == company())
        .times(1)
        .returning(|_, decide| {
            let mut stored = stored_company();
            stored.profile.postal_code = Some("06600".into());
            let update = decide(&stored)?.expect("a change");
            assert_eq!(update.changes.len(), 1);
            assert_eq!(update.changes[0].field, "name");
            assert_eq!(
                update.changes[0].old_value.as_deref(),
                Some("Tacos El Güero")
            );
            assert_eq!(update.changes[0].new_value.as_deref(), Some("Tacos Nuevos"));
            assert_eq!(update.audit.len(), 1);
            assert_eq!(update.audit[0].action, Action::COMPANY_CONFIG_CHANGED);
            Ok(update.company)
        });
    let svc = service(repo, hasher(), MockAuditSink::new());
    let patch = CompanyPatch {
        name: Some("Tacos Nuevos".into()),
        ..CompanyPatch::default()
    };
    let stored = svc
        .update_company(
            &actor(Role::Owner, company()),
            patch,
            &RequestContext::default(),
        )
        .await
        .unwrap();
    assert_eq!(stored.name.as_str(), "Tacos Nuevos");
    assert_eq!(stored.profile.postal_code.as_deref(), Some("06600"));
}

/// A change the stored configuration already has decides nothing to store.
#[tokio::test]
async fn a_company_change_the_configuration_already_has_stores_nothing() {
    let mut repo = MockAccountRepository::new();
    repo.expect_update_company()
        .times(1)
        .returning(|_, decide| {
            let stored = stored_company();
            assert!(decide(&stored)?.is_none());
            Ok(stored)
        });
    let svc = service(repo, hasher(), MockAuditSink::new());
    let patch = CompanyPatch {
        name: Some("  Tacos El Güero ".into()),
        rfc: Some(String::new()),
        ..CompanyPatch::default()
    };
    let stored = svc
        .update_company(
            &actor(Role::Owner, company()),
            patch,
            &RequestContext::default(),
        )
        .await
        .unwrap();
    assert_eq!(stored, stored_company());
}

/// The tag of a configuration changes with every field and only with them.
#[test]
fn a_configuration_tag_follows_every_field() {
    let base = stored_company();
    assert_eq!(base.tag(), stored_company().tag());
    assert_eq!(base.tag().len(), 16);
    let when = clock().now();
    let variants: Vec<Company> = vec![
        Company {
            name: CompanyName::parse("Otra").unwrap(),
            ..base.clone()
        },
        Company {
            rfc: Some(Rfc::parse("EKU9003173C9").unwrap()),
            ..base.clone()
        },
        Company {
            session_limit: Some(3),
            ..base.clone()
        },
        Company {
            id: CompanyId::from_uuid(uuid::Uuid::from_u128(78)),
            ..base.clone()
        },
    ];
    let mut profiles = Vec::new();
    for change in 0..5 {
        let mut c = base.clone();
        match change {
            0 => c.profile.legal_name = Some("Tacos SA".into()),
            1 => c.profile.tax_regime = Some("601".into()),
            2 => c.profile.postal_code = Some("06600".into()),
            3 => c.profile.mfa_required = !c.profile.mfa_required,
            _ => c.profile.mfa_grace_until = Some(when),
        }
        profiles.push(c);
    }
    let mut tags: Vec<String> = variants
        .iter()
        .chain(&profiles)
        .map(Company::tag)
        .chain([base.tag()])
        .collect();
    let all = tags.len();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), all, "every variant has its own tag");
}

/// With `if_match`, a change is made only on the configuration the caller read: another tag
/// (or only weak ones, which the adapter drops) refuses it with nothing stored.
#[tokio::test]
async fn a_company_change_naming_another_read_is_refused() {
    let current = stored_company().tag();
    for (tags, lands) in [
        (vec![current.clone()], true),
        (vec!["0000000000000000".to_owned(), current.clone()], true),
        (vec!["0000000000000000".to_owned()], false),
        (vec![], false),
    ] {
        let mut repo = MockAccountRepository::new();
        repo.expect_update_company()
            .times(1)
            .returning(|_, decide| {
                let update = decide(&stored_company())?.expect("a change");
                Ok(update.company)
            });
        let svc = service(repo, hasher(), MockAuditSink::new());
        let patch = CompanyPatch {
            postal_code: Some("06700".into()),
            if_match: Some(tags.clone()),
            ..CompanyPatch::default()
        };
        let result = svc
            .update_company(
                &actor(Role::Owner, company()),
                patch,
                &RequestContext::default(),
            )
            .await;
        if lands {
            assert_eq!(
                result.unwrap().profile.postal_code.as_deref(),
                Some("06700")
            );
        } else {
            assert!(
                matches!(result, Err(AccountsError::PreconditionFailed)),
                "{tags:?}: {result:?}"
            );
        }
    }
}

/// A user's tag follows what administrators change (name, role, active, grants, revokes) and
/// only that: the user's own address and MFA leave it alone.
#[test]
fn a_user_tag_follows_what_administrators_change() {
    let base = user(company(), 9, Role::Vendor);
    let tagged = |u: User| u.tag();
    let changed = [
        tagged(User {
            name: PersonName::parse("Otra", "name").unwrap(),
            ..base.clone()
        }),
        tagged(User {
            role: Role::Manager,
            ..base.clone()
        }),
        tagged(User {
            active: false,
            ..base.clone()
        }),
        tagged(User {
            grants: PermissionSet::of(&[Permission::AuditRead]),
            ..base.clone()
        }),
        tagged(User {
            revokes: PermissionSet::of(&[Permission::CustomersReadAssigned]),
            ..base.clone()
        }),
        tagged(user(company(), 10, Role::Vendor)),
    ];
    for tag in &changed {
        assert_ne!(*tag, base.tag());
    }
    let own = User {
        email: Email::parse("otra@example.com").unwrap(),
        mfa_enabled: true,
        password_hash: PasswordHash::new("$argon2id$new".into()),
        ..base.clone()
    };
    assert_eq!(own.tag(), base.tag());
}

/// With `If-Match`, a user change is made only on the user the caller read, and its write then
/// checks every field the tag covers; without, only what it writes. A stale tag changes nothing.
#[tokio::test]
async fn a_user_change_naming_another_read_is_refused() {
    let read = user(company(), 9, Role::Vendor);
    let owner = actor(Role::Owner, company()).reauthenticated(Some(clock().now()));
    let stale = Some(vec!["0000000000000000".to_owned()]);
    for (tags, lands) in [(Some(vec![read.tag()]), true), (stale, false), (None, true)] {
        let (repo, writes) = changing_under_us(vec![read.clone()], 0);
        let svc = service(repo, hasher(), MockAuditSink::new());
        let patch = UserPatch {
            name: Some("Renombrada".into()),
            active: None,
            if_match: tags.clone(),
        };
        let renamed = svc
            .update_user(&owner, nine(), patch, &RequestContext::default())
            .await;
        let role = svc
            .change_role(
                &owner,
                nine(),
                "manager",
                tags.as_deref(),
                &RequestContext::default(),
            )
            .await;
        let granted = svc
            .change_permissions(
                &owner,
                nine(),
                &["audit.read".to_owned()],
                &[],
                tags.as_deref(),
                &RequestContext::default(),
            )
            .await;
        let writes = writes.lock().unwrap();
        if lands {
            assert!(
                renamed.is_ok() && role.is_ok() && granted.is_ok(),
                "{tags:?}"
            );
            let checked: Vec<&[UserField]> = writes.iter().map(|w| w.2.as_slice()).collect();
            if tags.is_some() {
                assert_eq!(checked, [&UserField::ADMINISTERED[..]; 3]);
            } else {
                assert_eq!(
                    checked,
                    [
                        &[UserField::Name][..],
                        &[UserField::Role],
                        &[UserField::Permissions]
                    ]
                );
            }
        } else {
            for result in [renamed, role, granted] {
                assert!(
                    matches!(result, Err(AccountsError::PreconditionFailed)),
                    "{result:?}"
                );
            }
            assert!(writes.is_empty(), "nothing reached the store");
        }
    }
}
