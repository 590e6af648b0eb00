use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use accounts::{
    Company, CompanyName, MockAccountRepository, MockPasswordHasher, PasswordHash, PersonName,
};
use audit::MockAuditSink;
use chrono::TimeZone;
use kernel::{CompanyId, ManualClock, SequentialIds, Timestamp, UserId};
use rbac::Role;

use super::*;
use crate::{
    AuthRecord, MockLoginThrottle, MockSessionStore, MockTokenIssuer, Session, SessionToken,
    ThrottleState, TokenHash,
};

const PW: &str = "Tlacuache#2026";

fn t0() -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
        .unwrap()
}

fn company_id() -> CompanyId {
    CompanyId::from_uuid(uuid::Uuid::from_u128(7))
}

fn user(active: bool) -> accounts::User {
    accounts::User {
        id: UserId::from_uuid(uuid::Uuid::from_u128(1)),
        company_id: company_id(),
        email: Email::parse("ana@example.com").unwrap(),
        name: PersonName::parse("Ana", "name").unwrap(),
        role: Role::Admin,
        active,
        password_hash: PasswordHash::new("$argon2id$stored".into()),
        mfa_enabled: false,
        grants: rbac::PermissionSet::empty(),
        revokes: rbac::PermissionSet::empty(),
        created_at: t0(),
        updated_at: t0(),
        password_change_required: false,
    }
}

fn session(revoked: bool, last_seen: Timestamp) -> Session {
    Session {
        id: SessionId::from_uuid(uuid::Uuid::from_u128(50)),
        company_id: company_id(),
        user_id: UserId::from_uuid(uuid::Uuid::from_u128(1)),
        seq: 1,
        created_at: t0(),
        last_seen_at: last_seen,
        expires_at: t0() + Duration::hours(12),
        ip: None,
        user_agent: None,
        revoked_at: revoked.then(t0),
        revoked_reason: None,
        reauthenticated_at: None,
        mfa_enrolment_only: false,
    }
}

struct Parts {
    accounts: MockAccountRepository,
    hasher: MockPasswordHasher,
    store: MockSessionStore,
    throttle: MockLoginThrottle,
    login_reads: Option<crate::MockLoginReads>,
    tokens: MockTokenIssuer,
    audit: MockAuditSink,
    clock: Arc<ManualClock>,
    ip_limit: u32,
    config: SessionConfig,
    epoch: Arc<dyn crate::ChangeEpoch>,
}

impl Parts {
    fn new() -> Self {
        let mut tokens = MockTokenIssuer::new();
        tokens
            .expect_issue()
            .returning(|| (SessionToken::new("tok".into()), TokenHash::new("h".into())));
        tokens
            .expect_hash()
            .returning(|t| TokenHash::new(format!("hash-of-{t}")));
        let mut throttle = MockLoginThrottle::new();
        throttle
            .expect_state()
            .returning(|_| Ok(ThrottleState::default()));
        Self {
            accounts: MockAccountRepository::new(),
            hasher: MockPasswordHasher::new(),
            store: MockSessionStore::new(),
            throttle,
            login_reads: None,
            tokens,
            audit: MockAuditSink::new(),
            clock: Arc::new(ManualClock::new(t0())),
            ip_limit: 100,
            config: SessionConfig::default(),
            epoch: Arc::new(crate::NoEpoch),
        }
    }

    fn build(self) -> SessionService {
        SessionService::new(
            SessionPorts {
                accounts: Arc::new(self.accounts),
                hasher: Arc::new(self.hasher),
                store: Arc::new(self.store),
                throttle: Arc::new(self.throttle),
                login_reads: self
                    .login_reads
                    .map(|r| Arc::new(r) as Arc<dyn crate::LoginReads>),
                tokens: Arc::new(self.tokens),
                audit: Arc::new(self.audit),
                clock: self.clock,
                ids: Arc::new(SequentialIds::default()),
                // These users have no MFA: any call into it fails the test.
                mfa: Arc::new(mfa::MfaService::new(mfa::MfaPorts {
                    repo: Arc::new(mfa::MockMfaRepository::new()),
                    envelope: Arc::new(vault::MockEnvelope::new()),
                    hotp: Arc::new(mfa::MockHotp::new()),
                    crypto: Arc::new(mfa::MockMfaCrypto::new()),
                    clock: Arc::new(ManualClock::new(t0())),
                    ids: Arc::new(SequentialIds::default()),
                    audit: Arc::new(audit::MockAuditSink::new()),
                })),
                epoch: self.epoch,
            },
            Arc::new(RateLimiter::new(self.ip_limit, Duration::hours(1), 1000)),
            self.config,
        )
    }
}

fn ctx() -> RequestContext {
    RequestContext::new(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), Some("test"), None)
}

fn expect_failure_audit(parts: &mut Parts, reason: &'static str) {
    parts
        .audit
        .expect_record()
        .withf(move |r| {
            r.action == Action::SESSION_LOGIN
                && r.outcome == Outcome::Failure
                && r.details["reason"] == reason
                && !r.details.to_string().contains(PW)
        })
        .times(1)
        .returning(|_| Ok(()));
}

#[tokio::test]
async fn a_good_login_opens_a_capped_session_with_the_company_cap() {
    let mut p = Parts::new();
    p.accounts
        .expect_user_by_email()
        .returning(|_| Ok(Some(user(true))));
    p.accounts.expect_company().returning(|id| {
        Ok(Some(Company {
            id,
            name: CompanyName::parse("X").unwrap(),
            rfc: None,
            session_limit: Some(3),
            profile: accounts::CompanyProfile::default(),
            created_at: t0(),
        }))
    });
    p.hasher.expect_verify().returning(|_, h| {
        assert!(h.is_some());
        Ok(PasswordCheck::Match {
            needs_rehash: false,
        })
    });
    // Earlier failures on record: the success clears them.
    p.throttle = MockLoginThrottle::new();
    p.throttle.expect_state().returning(|_| {
        Ok(ThrottleState {
            failures: 2,
            ..ThrottleState::default()
        })
    });
    p.throttle.expect_reset().times(1).returning(|_| Ok(()));
    p.store
        .expect_create_capped()
        .withf(|s, cap, idle, audit, rev| {
            *cap == 3
                && *idle == Duration::minutes(30)
                && s.expires_at == t0() + Duration::hours(12)
                && audit.action == Action::SESSION_LOGIN
                && audit.outcome == Outcome::Success
                && rev.keep == Some(s.id)
                && rev.reason == RevocationReason::SessionLimit
        })
        .times(1)
        .returning(|s, _, _, _, _| {
            let mut stored = session(false, s.created_at);
            stored.id = s.id;
            Ok((stored, vec![SessionId::from_uuid(uuid::Uuid::from_u128(9))]))
        });
    let outcome = p
        .build()
        .login("ANA@example.com ", &Password::new(PW), &ctx())
        .await
        .unwrap();
    assert_eq!(outcome.token.expose(), "tok");
    assert_eq!(outcome.revoked_session_ids.len(), 1);
}

/// AUD-7: a login's audit record names the client's network when it is not the address itself
/// (an IPv6 /64, the IPv4 address of a mapped one), so the review can tell a rotating IPv6
/// address from a new network; an IPv4 login carries no such field.
#[tokio::test]
async fn a_login_names_its_network_when_the_address_is_not_its_own_network() {
    for (ip, network) in [
        ("2001:db8:7:1:aaaa::2", Some("2001:db8:7:1::/64")),
        ("::ffff:198.51.100.4", Some("198.51.100.4")),
        ("198.51.100.4", None),
    ] {
        let mut p = Parts::new();
        p.accounts
            .expect_user_by_email()
            .returning(|_| Ok(Some(user(true))));
        p.accounts.expect_company().returning(|_| Ok(None));
        p.throttle.expect_reset().returning(|_| Ok(()));
        p.hasher.expect_verify().returning(|_, _| {
            Ok(PasswordCheck::Match {
                needs_rehash: false,
            })
        });
        let seen = Arc::new(std::sync::Mutex::new(None));
        let keep = seen.clone();
        p.store
            .expect_create_capped()
            .times(1)
            .returning(move |s, _, _, audit, _| {
                *keep.lock().unwrap() = Some(audit.details.clone());
                let mut stored = session(false, s.created_at);
                stored.id = s.id;
                Ok((stored, vec![]))
            });
        let ctx = RequestContext::new(Some(ip.parse().unwrap()), None, None);
        p.build()
            .login("ana@example.com", &Password::new(PW), &ctx)
            .await
            .unwrap();
        let details = seen.lock().unwrap().clone().unwrap();
        assert_eq!(
            details.get("network").and_then(|n| n.as_str()),
            network,
            "{ip}: {details}"
        );
        assert_eq!(details["role"], "admin", "{ip}");
    }
}

/// With the combined read, a login makes no other read: the throttle state, the user and the
/// company all come from it (the accounts mock has no expectations, so any call fails the test),
/// and the company's cap and the throttle state are used as the separate reads would be.
#[tokio::test]
async fn the_combined_read_replaces_the_three_reads() {
    let mut p = Parts::new();
    p.throttle = MockLoginThrottle::new();
    p.throttle.expect_state().times(0);
    p.throttle.expect_reset().times(1).returning(|_| Ok(()));
    let mut reads = crate::MockLoginReads::new();
    reads
        .expect_login_reads()
        .withf(|key, email| {
            key == throttle_key("ana@example.com") && email.as_str() == "ana@example.com"
        })
        .times(1)
        .returning(|_, _| {
            let u = user(true);
            Ok(crate::LoginSubject {
                throttle: ThrottleState {
                    failures: 2,
                    ..ThrottleState::default()
                },
                company: Some(Company {
                    id: u.company_id,
                    name: CompanyName::parse("X").unwrap(),
                    rfc: None,
                    session_limit: Some(4),
                    profile: accounts::CompanyProfile::default(),
                    created_at: t0(),
                }),
                user: Some(u),
            })
        });
    p.login_reads = Some(reads);
    p.hasher.expect_verify().returning(|_, h| {
        assert!(h.is_some());
        Ok(PasswordCheck::Match {
            needs_rehash: false,
        })
    });
    p.store
        .expect_create_capped()
        .withf(|_, cap, _, _, _| *cap == 4)
        .times(1)
        .returning(|s, _, _, _, _| {
            let mut stored = session(false, s.created_at);
            stored.id = s.id;
            Ok((stored, vec![]))
        });
    let outcome = p
        .build()
        .login("ANA@example.com ", &Password::new(PW), &ctx())
        .await
        .unwrap();
    assert_eq!(outcome.token.expose(), "tok");
}

/// A locked account is refused from the combined read's throttle state, before any hashing.
#[tokio::test]
async fn the_combined_read_locks_out_like_the_separate_one() {
    let mut p = Parts::new();
    p.throttle = MockLoginThrottle::new();
    p.throttle.expect_state().times(0);
    let mut reads = crate::MockLoginReads::new();
    reads.expect_login_reads().times(1).returning(|_, _| {
        Ok(crate::LoginSubject {
            throttle: ThrottleState {
                failures: 10,
                locked_until: Some(t0() + Duration::minutes(5)),
                ..ThrottleState::default()
            },
            user: Some(user(true)),
            company: None,
        })
    });
    p.login_reads = Some(reads);
    p.hasher.expect_verify().times(0);
    expect_failure_audit(&mut p, "account_locked");
    let err = p
        .build()
        .login("ana@example.com", &Password::new(PW), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::RateLimited { .. }), "{err:?}");
}

#[tokio::test]
async fn unknown_email_does_the_same_work_and_gets_the_same_answer() {
    let mut p = Parts::new();
    p.accounts.expect_user_by_email().returning(|_| Ok(None));
    // The hasher is still asked (against its dummy hash), so timing matches a wrong password.
    p.hasher
        .expect_verify()
        .withf(|_, h| h.is_none())
        .times(1)
        .returning(|_, _| Ok(PasswordCheck::Mismatch));
    p.throttle
        .expect_record_failure()
        .times(1)
        .returning(|_, _, _| Ok(ThrottleState::default()));
    expect_failure_audit(&mut p, "unknown_email");
    let err = p
        .build()
        .login("nobody@example.com", &Password::new(PW), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidCredentials));
}

#[tokio::test]
async fn wrong_password_fails_and_counts() {
    let mut p = Parts::new();
    p.accounts
        .expect_user_by_email()
        .returning(|_| Ok(Some(user(true))));
    p.hasher
        .expect_verify()
        .returning(|_, _| Ok(PasswordCheck::Mismatch));
    p.throttle
        .expect_record_failure()
        .withf(|key, _, _| key == "ana@example.com")
        .times(1)
        .returning(|_, _, _| Ok(ThrottleState::default()));
    expect_failure_audit(&mut p, "invalid_credentials");
    p.store.expect_create_capped().times(0);
    let err = p
        .build()
        .login("ana@example.com", &Password::new("Wrong#2026x"), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidCredentials));
}

#[tokio::test]
async fn a_deactivated_user_never_gets_a_session_even_with_the_right_password() {
    let mut p = Parts::new();
    p.accounts
        .expect_user_by_email()
        .returning(|_| Ok(Some(user(false))));
    p.hasher.expect_verify().returning(|_, _| {
        Ok(PasswordCheck::Match {
            needs_rehash: false,
        })
    });
    p.throttle
        .expect_record_failure()
        .returning(|_, _, _| Ok(ThrottleState::default()));
    expect_failure_audit(&mut p, "account_disabled");
    p.store.expect_create_capped().times(0);
    let err = p
        .build()
        .login("ana@example.com", &Password::new(PW), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidCredentials));
}

#[tokio::test]
async fn a_locked_account_is_refused_before_any_hashing() {
    let mut p = Parts::new();
    p.throttle = MockLoginThrottle::new();
    p.throttle.expect_state().returning(|_| {
        Ok(ThrottleState {
            failures: 0,
            lockouts: 1,
            locked_until: Some(t0() + Duration::seconds(42)),
        })
    });
    p.hasher.expect_verify().times(0);
    expect_failure_audit(&mut p, "account_locked");
    let err = p
        .build()
        .login("ana@example.com", &Password::new(PW), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::RateLimited {
                retry_after_secs: 43
            }
        ),
        "{err:?}"
    );
}

/// A service where every email is unknown, two failures per IP are allowed, and exactly
/// `verifies` password checks (the dummy hash) are expected.
fn unknown_emails_limited_to_two_per_ip(verifies: usize) -> SessionService {
    let mut p = Parts::new();
    p.ip_limit = 2;
    p.accounts.expect_user_by_email().returning(|_| Ok(None));
    p.hasher
        .expect_verify()
        .times(verifies)
        .returning(|_, _| Ok(PasswordCheck::Mismatch));
    p.throttle
        .expect_record_failure()
        .returning(|_, _, _| Ok(ThrottleState::default()));
    p.audit.expect_record().returning(|_| Ok(()));
    p.build()
}

#[tokio::test]
async fn failures_from_one_ip_are_limited_across_accounts() {
    let svc = unknown_emails_limited_to_two_per_ip(2);
    for n in 0..2 {
        let err = svc
            .login(&format!("u{n}@example.com"), &Password::new(PW), &ctx())
            .await
            .unwrap_err();
        assert!(matches!(err, SessionError::InvalidCredentials));
    }
    let err = svc
        .login("u9@example.com", &Password::new(PW), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::RateLimited { .. }));
}

#[tokio::test]
async fn failures_from_one_ipv6_network_are_limited_whatever_addresses_it_picks() {
    let svc = unknown_emails_limited_to_two_per_ip(3);
    let from = |ip: &str| RequestContext::new(Some(ip.parse().unwrap()), None, None);
    for ip in ["2001:db8:7:1::1", "2001:db8:7:1:aaaa::2"] {
        let err = svc
            .login("u@example.com", &Password::new(PW), &from(ip))
            .await
            .unwrap_err();
        assert!(matches!(err, SessionError::InvalidCredentials), "{err:?}");
    }
    // A third address of the same /64 is refused before any hashing.
    let err = svc
        .login(
            "v@example.com",
            &Password::new(PW),
            &from("2001:db8:7:1:ffff:1:2:3"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::RateLimited { .. }), "{err:?}");
    // The next /64 is someone else.
    let err = svc
        .login(
            "v@example.com",
            &Password::new(PW),
            &from("2001:db8:7:2::1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidCredentials), "{err:?}");
}

#[tokio::test]
async fn an_over_long_password_is_refused_without_hashing() {
    let mut p = Parts::new();
    p.accounts
        .expect_user_by_email()
        .returning(|_| Ok(Some(user(true))));
    p.hasher.expect_verify().times(0);
    p.throttle
        .expect_record_failure()
        .returning(|_, _, _| Ok(ThrottleState::default()));
    expect_failure_audit(&mut p, "invalid_credentials");
    let long = "A1#".repeat(100);
    let err = p
        .build()
        .login("ana@example.com", &Password::new(&long), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidCredentials));
}

#[tokio::test]
async fn a_password_typed_as_email_never_reaches_the_audit_record_or_the_throttle_table() {
    let mut p = Parts::new();
    p.hasher
        .expect_verify()
        .returning(|_, _| Ok(PasswordCheck::Mismatch));
    p.throttle = MockLoginThrottle::new();
    p.throttle
        .expect_state()
        .withf(|key| !key.contains("Secreto"))
        .returning(|_| Ok(ThrottleState::default()));
    p.throttle
        .expect_record_failure()
        .withf(|key, _, _| !key.contains("Secreto"))
        .times(1)
        .returning(|_, _, _| Ok(ThrottleState::default()));
    p.audit
        .expect_record()
        .withf(|r| r.details["email"].is_null() && !format!("{r:?}").contains("Secreto#2026"))
        .times(1)
        .returning(|_| Ok(()));
    let err = p
        .build()
        .login("Secreto#2026", &Password::new(PW), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidCredentials));
}

#[tokio::test]
async fn weak_hashes_are_upgraded_at_login() {
    let mut p = Parts::new();
    p.accounts
        .expect_user_by_email()
        .returning(|_| Ok(Some(user(true))));
    p.accounts.expect_company().returning(|_| Ok(None));
    p.hasher
        .expect_verify()
        .returning(|_, _| Ok(PasswordCheck::Match { needs_rehash: true }));
    p.hasher
        .expect_hash()
        .times(1)
        .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
    p.accounts.expect_update_user().times(0);
    let verified = user(true).password_hash;
    p.accounts
        .expect_rehash_password()
        .withf(move |u, old, audit| {
            u.password_hash.as_str() == "$argon2id$new"
                && old.as_str() == verified.as_str()
                && audit.len() == 1
                && audit[0].details["reason"] == "hash_parameters_upgraded"
        })
        .times(1)
        .returning(|_, _, _| Ok(true));
    // A clean throttle record is not written on success.
    p.throttle.expect_reset().times(0);
    p.store
        .expect_create_capped()
        .withf(|_, cap, _, _, _| *cap == 2)
        .returning(|s, _, _, _, _| Ok((session(false, s.created_at), vec![])));
    p.build()
        .login("ana@example.com", &Password::new(PW), &ctx())
        .await
        .unwrap();
}

/// A password changed between the login's read and its rehash stays: the store declines the
/// rehash, and the login goes on.
#[tokio::test]
async fn a_rehash_declined_by_the_store_still_logs_in() {
    let mut p = Parts::new();
    p.accounts
        .expect_user_by_email()
        .returning(|_| Ok(Some(user(true))));
    p.accounts.expect_company().returning(|_| Ok(None));
    p.hasher
        .expect_verify()
        .returning(|_, _| Ok(PasswordCheck::Match { needs_rehash: true }));
    p.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
    p.accounts
        .expect_rehash_password()
        .times(1)
        .returning(|_, _, _| Ok(false));
    p.throttle.expect_reset().times(0);
    p.store
        .expect_create_capped()
        .returning(|s, _, _, _, _| Ok((session(false, s.created_at), vec![])));
    p.build()
        .login("ana@example.com", &Password::new(PW), &ctx())
        .await
        .unwrap();
}

fn auth_parts(session: Session, user: accounts::User) -> Parts {
    let mut p = Parts::new();
    p.store
        .expect_find_by_token()
        .withf(|h| h.as_str() == "hash-of-goodtoken")
        .returning(move |_| {
            Ok(Some(AuthRecord {
                session: session.clone(),
                user: user.clone(),
            }))
        });
    p
}

#[tokio::test]
async fn authenticate_accepts_a_live_session_without_writing() {
    let mut p = auth_parts(session(false, t0()), user(true));
    p.store.expect_touch().times(0);
    p.clock.advance(Duration::seconds(59));
    let auth = p.build().authenticate("goodtoken").await.unwrap();
    assert_eq!(auth.actor.role, Role::Admin);
    assert!(
        auth.actor
            .permissions
            .contains(rbac::Permission::UsersManage)
    );
}

/// A user whose password the operator handed over authenticates as an actor that may only
/// change it: no permission at all, and the flag the HTTP guard reads.
#[tokio::test]
async fn a_password_to_change_restricts_the_actor_until_it_is_changed() {
    let flagged = accounts::User {
        password_change_required: true,
        ..user(true)
    };
    let auth = auth_parts(session(false, t0()), flagged)
        .build()
        .authenticate("goodtoken")
        .await
        .unwrap();
    assert!(auth.actor.password_change_only);
    assert_eq!(auth.actor.permissions, rbac::PermissionSet::empty());
    let auth = auth_parts(session(false, t0()), user(true))
        .build()
        .authenticate("goodtoken")
        .await
        .unwrap();
    assert!(!auth.actor.password_change_only);
}

#[tokio::test]
async fn authenticate_refreshes_last_seen_at_most_once_a_minute() {
    let mut p = auth_parts(session(false, t0()), user(true));
    p.store
        .expect_touch()
        .withf(|_, at| *at == t0() + Duration::minutes(5))
        .times(1)
        .returning(|_, _| Ok(()));
    p.clock.advance(Duration::minutes(5));
    p.build().authenticate("goodtoken").await.unwrap();
}

#[tokio::test]
async fn authenticate_rejects_idle_expired_revoked_and_deactivated() {
    let cases: Vec<(Session, accounts::User, Duration)> = vec![
        (session(false, t0()), user(true), Duration::minutes(30)), // idle
        (
            session(false, t0() + Duration::hours(11)),
            user(true),
            Duration::hours(12),
        ), // absolute
        (session(true, t0()), user(true), Duration::zero()),       // revoked
        (session(false, t0()), user(false), Duration::zero()),     // deactivated user
    ];
    for (n, (s, u, advance)) in cases.into_iter().enumerate() {
        let mut p = auth_parts(s, u);
        p.store.expect_touch().times(0);
        p.clock.advance(advance);
        let err = p.build().authenticate("goodtoken").await.unwrap_err();
        assert!(
            matches!(err, SessionError::Unauthenticated),
            "case {n}: {err:?}"
        );
    }
}

#[tokio::test]
async fn unknown_tokens_are_limited_per_network_and_cached_sessions_still_work() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let lookups = Arc::new(AtomicUsize::new(0));
    let seen = lookups.clone();
    let mut p = Parts::new();
    p.config.cache_ttl = Duration::seconds(60);
    p.store.expect_find_by_token().returning(move |hash| {
        seen.fetch_add(1, SeqCst);
        Ok(match hash.as_str() {
            "hash-of-goodtoken" | "hash-of-othertoken" => Some(live_record()),
            "hash-of-revokedtoken" => Some(AuthRecord {
                session: session(true, t0()),
                user: user(true),
            }),
            _ => None,
        })
    });
    p.store.expect_touch().returning(|_, _| Ok(()));
    let limiter = Arc::new(RateLimiter::new(3, Duration::hours(1), 100));
    let svc = p.build().with_token_failure_limit(limiter);
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    let from = ip("2001:db8:5:5::1");
    // A live session, cached before the flood.
    svc.authenticate_from("goodtoken", from).await.unwrap();
    // A revoked session's token, again and again (a client that missed its logout): plain 401s,
    // not counted.
    for _ in 0..10 {
        assert!(matches!(
            svc.authenticate_from("revokedtoken", from).await,
            Err(SessionError::Unauthenticated)
        ));
    }
    // Three unknown tokens: three failures, each looked up.
    for token in ["random1", "random2", "random3"] {
        assert!(matches!(
            svc.authenticate_from(token, from).await,
            Err(SessionError::Unauthenticated)
        ));
    }
    let looked_up = lookups.load(SeqCst);
    // Malformed tokens are refused without a lookup and are not counted.
    assert!(matches!(
        svc.authenticate_from("not a token!", from).await,
        Err(SessionError::Unauthenticated)
    ));
    // The fourth from the network (another address of its /64) is refused before any lookup,
    // with how long to wait.
    let err = svc
        .authenticate_from("random4", ip("2001:db8:5:5::99"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::RateLimited { retry_after_secs } if retry_after_secs > 3500),
        "{err:?}"
    );
    assert_eq!(lookups.load(SeqCst), looked_up, "no lookup once limited");
    // The cached session still works from there; a session the cache does not hold waits too.
    svc.authenticate_from("goodtoken", from).await.unwrap();
    assert!(matches!(
        svc.authenticate_from("othertoken", from).await,
        Err(SessionError::RateLimited { .. })
    ));
    // Other networks, and callers that name no address, are not affected.
    svc.authenticate_from("othertoken", ip("2001:db8:5:6::1"))
        .await
        .unwrap();
    assert!(matches!(
        svc.authenticate("random5").await,
        Err(SessionError::Unauthenticated)
    ));
}

#[tokio::test]
async fn without_a_token_failure_limit_unknown_tokens_stay_plain_401s() {
    let mut p = Parts::new();
    p.store
        .expect_find_by_token()
        .times(50)
        .returning(|_| Ok(None));
    let svc = p.build();
    for n in 0..50 {
        assert!(matches!(
            svc.authenticate_from(&format!("random{n}"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))
                .await,
            Err(SessionError::Unauthenticated)
        ));
    }
}

/// A change epoch the test advances by hand.
#[derive(Default)]
struct Epoch(std::sync::atomic::AtomicU64);

impl crate::ChangeEpoch for Epoch {
    fn current(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Parts whose store counts lookups and answers with `answer(n)` for the n-th one.
fn counted_parts(
    answer: impl Fn(usize) -> AuthRecord + Send + 'static,
) -> (Parts, Arc<std::sync::atomic::AtomicUsize>) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let mut p = Parts::new();
    p.store.expect_find_by_token().returning(move |_| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Some(answer(n)))
    });
    p.store.expect_touch().returning(|_, _| Ok(()));
    (p, calls)
}

fn live_record() -> AuthRecord {
    AuthRecord {
        session: session(false, t0()),
        user: user(true),
    }
}

#[tokio::test]
async fn the_session_cache_serves_repeats_until_a_change_or_its_time_to_live() {
    use std::sync::atomic::Ordering::SeqCst;
    let (mut p, calls) = counted_parts(|_| live_record());
    let epoch = Arc::new(Epoch::default());
    p.epoch = epoch.clone();
    p.config.cache_ttl = Duration::seconds(1);
    let clock = p.clock.clone();
    let svc = p.build();
    for _ in 0..3 {
        svc.authenticate("goodtoken").await.unwrap();
    }
    assert_eq!(calls.load(SeqCst), 1, "repeats come from the cache");
    // A write committed by this process: the next request asks the store again.
    epoch.0.fetch_add(1, SeqCst);
    svc.authenticate("goodtoken").await.unwrap();
    assert_eq!(calls.load(SeqCst), 2);
    clock.advance(Duration::milliseconds(999));
    svc.authenticate("goodtoken").await.unwrap();
    assert_eq!(calls.load(SeqCst), 2);
    clock.advance(Duration::milliseconds(1));
    svc.authenticate("goodtoken").await.unwrap();
    assert_eq!(
        calls.load(SeqCst),
        3,
        "an entry lives less than its time to live"
    );
}

#[tokio::test]
async fn a_session_revoked_by_a_local_write_is_refused_at_once() {
    use std::sync::atomic::Ordering::SeqCst;
    // The store says revoked from the second lookup on (the revocation committed).
    let (mut p, _) = counted_parts(|n| AuthRecord {
        session: session(n > 0, t0()),
        user: user(true),
    });
    let epoch = Arc::new(Epoch::default());
    p.epoch = epoch.clone();
    p.config.cache_ttl = Duration::seconds(60);
    let svc = p.build();
    svc.authenticate("goodtoken").await.unwrap();
    epoch.0.fetch_add(1, SeqCst);
    assert!(matches!(
        svc.authenticate("goodtoken").await,
        Err(SessionError::Unauthenticated)
    ));
}

#[tokio::test]
async fn a_session_revoked_by_another_process_is_refused_within_the_time_to_live() {
    let (mut p, _) = counted_parts(|n| AuthRecord {
        session: session(n > 0, t0()),
        user: user(true),
    });
    p.epoch = Arc::new(Epoch::default());
    p.config.cache_ttl = Duration::seconds(1);
    let clock = p.clock.clone();
    let svc = p.build();
    svc.authenticate("goodtoken").await.unwrap();
    clock.advance(Duration::seconds(1));
    assert!(matches!(
        svc.authenticate("goodtoken").await,
        Err(SessionError::Unauthenticated)
    ));
}

#[tokio::test]
async fn with_the_cache_off_every_request_asks_the_store() {
    let (p, calls) = counted_parts(|_| live_record());
    assert_eq!(
        p.config.cache_ttl,
        Duration::zero(),
        "off by default in the core"
    );
    let svc = p.build();
    for _ in 0..3 {
        svc.authenticate("goodtoken").await.unwrap();
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refreshed_last_seen_is_kept_in_the_cache() {
    use std::sync::atomic::Ordering::SeqCst;
    let touches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = touches.clone();
    let mut p = Parts::new();
    p.store
        .expect_find_by_token()
        .returning(|_| Ok(Some(live_record())));
    p.store.expect_touch().returning(move |_, _| {
        counter.fetch_add(1, SeqCst);
        Ok(())
    });
    p.epoch = Arc::new(Epoch::default());
    p.config.cache_ttl = Duration::seconds(30);
    let clock = p.clock.clone();
    let svc = p.build();
    clock.advance(Duration::minutes(2));
    for _ in 0..5 {
        svc.authenticate("goodtoken").await.unwrap();
    }
    assert_eq!(
        touches.load(SeqCst),
        1,
        "one touch, then the cached copy is fresh"
    );
}

#[tokio::test]
async fn malformed_tokens_never_reach_the_store() {
    let mut p = Parts::new();
    p.store.expect_find_by_token().times(0);
    let svc = p.build();
    for bad in ["", "has space", "ünïcode", &"a".repeat(129), "semi;colon"] {
        assert!(
            matches!(
                svc.authenticate(bad).await,
                Err(SessionError::Unauthenticated)
            ),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn revoking_a_session_that_is_not_ones_own_is_not_found() {
    let mut p = Parts::new();
    p.store.expect_revoke().returning(|_, _, _, _| Ok(false));
    let actor = Actor::new(
        user(true).id,
        company_id(),
        SessionId::from_uuid(uuid::Uuid::from_u128(50)),
        Role::Vendor,
        Role::Vendor.default_permissions(),
    );
    let err = p
        .build()
        .revoke(
            &actor,
            SessionId::from_uuid(uuid::Uuid::from_u128(51)),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::NotFound));
}

#[tokio::test]
async fn logout_revokes_the_current_session_with_a_logout_record() {
    let mut p = Parts::new();
    let current = SessionId::from_uuid(uuid::Uuid::from_u128(50));
    p.store
        .expect_revoke()
        .withf(move |_, _, id, rev| {
            *id == current
                && rev.reason == RevocationReason::Logout
                && rev.audit_template.action == Action::SESSION_LOGOUT
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let actor = Actor::new(
        user(true).id,
        company_id(),
        current,
        Role::Vendor,
        Role::Vendor.default_permissions(),
    );
    p.build().logout(&actor, &ctx()).await.unwrap();
}

/// A restricted session (a password to change, or MFA to enrol) may log itself out, but may
/// neither end its other sessions nor open a step-up window: each refusal is recorded, and the
/// store and the hasher are never asked. The HTTP guard refuses the same by route; this is the
/// core keeping it for a service that links it directly.
#[tokio::test]
async fn a_restricted_session_may_log_out_but_not_revoke_others_or_step_up() {
    let current = SessionId::from_uuid(uuid::Uuid::from_u128(50));
    let other = SessionId::from_uuid(uuid::Uuid::from_u128(51));
    let base = Actor::new(
        user(true).id,
        company_id(),
        current,
        Role::Admin,
        Role::Admin.default_permissions(),
    );
    for (actor, why) in [
        (
            base.clone().restricted_to_password_change(),
            rbac::PASSWORD_CHANGE_REQUIRED,
        ),
        (
            base.clone().restricted_to_mfa_enrolment(),
            rbac::MFA_ENROLMENT_REQUIRED,
        ),
    ] {
        let mut p = Parts::new();
        p.store
            .expect_revoke()
            .withf(move |_, _, id, _| *id == current)
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        p.accounts.expect_user().times(0);
        p.hasher.expect_verify().times(0);
        p.audit
            .expect_record()
            .withf(move |r| {
                r.action == Action::AUTHORIZATION_DENIED
                    && r.details["reason"] == why
                    && [
                        Action::SESSION_REVOKED.as_str(),
                        Action::SESSION_REAUTHENTICATED.as_str(),
                    ]
                    .contains(&r.details["attempted"].as_str().unwrap_or_default())
            })
            .times(2)
            .returning(|_| Ok(()));
        let svc = p.build();
        let err = svc.revoke(&actor, other, &ctx()).await.unwrap_err();
        assert!(
            matches!(err, SessionError::Forbidden(w) if w.reason() == why),
            "{err:?}"
        );
        let err = svc
            .reauthenticate(&actor, &Password::new(PW), &ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(err, SessionError::Forbidden(w) if w.reason() == why),
            "{err:?}"
        );
        svc.logout(&actor, &ctx()).await.unwrap();
    }
}

fn company_with_policy(required: bool, grace_until: Option<Timestamp>) -> Company {
    let mut c = Company {
        id: company_id(),
        name: CompanyName::parse("X").unwrap(),
        rfc: None,
        session_limit: None,
        profile: accounts::CompanyProfile::default(),
        created_at: t0(),
    };
    c.profile.mfa_required = required;
    c.profile.mfa_grace_until = grace_until;
    c
}

#[test]
fn mfa_policy_binds_owners_and_admins_without_mfa_after_the_grace_period() {
    let now = t0();
    let later = now + Duration::days(3);
    let admin = user(true);
    let required = company_with_policy(true, Some(later));
    assert_eq!(
        mfa_notice(&admin, Some(&required), now),
        Some(MfaNotice::EnrolBy(later))
    );
    assert_eq!(
        mfa_notice(&admin, Some(&required), later),
        Some(MfaNotice::EnrolmentRequired)
    );
    assert_eq!(
        mfa_notice(&admin, Some(&company_with_policy(true, None)), now),
        Some(MfaNotice::EnrolmentRequired)
    );
    assert_eq!(
        mfa_notice(&admin, Some(&company_with_policy(false, None)), now),
        None
    );
    let mut enrolled = user(true);
    enrolled.mfa_enabled = true;
    assert_eq!(mfa_notice(&enrolled, Some(&required), later), None);
    for role in [Role::Manager, Role::Vendor] {
        let mut u = user(true);
        u.role = role;
        assert_eq!(mfa_notice(&u, Some(&required), later), None, "{role:?}");
    }
    let mut owner = user(true);
    owner.role = Role::Owner;
    assert_eq!(
        mfa_notice(&owner, Some(&required), later),
        Some(MfaNotice::EnrolmentRequired)
    );
    // No company row (cannot happen with foreign keys): no policy to apply.
    assert_eq!(mfa_notice(&admin, None, later), None);
}

#[test]
fn the_session_cache_stays_within_its_capacity() {
    let cache = crate::cache::AuthCache::new(Duration::seconds(1), 2);
    let epochs = Epoch::default();
    for key in ["a", "b", "c"] {
        cache.put(key, &live_record(), t0(), 0, &epochs);
    }
    assert!(cache.len() <= 2);
    assert!(
        cache.get("c", t0(), &epochs).is_some(),
        "the newest entry is kept"
    );
    assert!(
        cache
            .get("c", t0() - Duration::seconds(1), &epochs)
            .is_none(),
        "a clock that went back misses"
    );
    epochs.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    assert!(
        cache.get("c", t0(), &epochs).is_none(),
        "a later write misses"
    );
}

/// Epochs that know which users a write changed.
#[derive(Default)]
struct UserEpochs {
    now: std::sync::atomic::AtomicU64,
    changed: std::sync::Mutex<Vec<(kernel::UserId, u64)>>,
}

impl UserEpochs {
    fn write(&self, user: kernel::UserId) {
        let at = self.now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.changed.lock().unwrap().push((user, at));
    }
}

impl crate::ChangeEpoch for UserEpochs {
    fn current(&self) -> u64 {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn changed_since(&self, user: kernel::UserId, since: u64) -> bool {
        self.changed
            .lock()
            .unwrap()
            .iter()
            .any(|(u, at)| *u == user && *at > since)
    }
}

/// One user's change empties that user's cached sessions only, when the epochs can tell whose
/// it was; entries loaded after the change are fresh again.
#[test]
fn a_change_to_one_user_leaves_other_users_cached_sessions() {
    use crate::ChangeEpoch as _;
    let cache = crate::cache::AuthCache::new(Duration::seconds(1), 10);
    let epochs = UserEpochs::default();
    let ana = live_record();
    let mut bea = live_record();
    bea.user.id = kernel::UserId::from_uuid(uuid::Uuid::from_u128(0xbea));
    bea.session.user_id = bea.user.id;
    cache.put("ana", &ana, t0(), epochs.current(), &epochs);
    cache.put("bea", &bea, t0(), epochs.current(), &epochs);
    epochs.write(bea.user.id);
    assert!(cache.get("ana", t0(), &epochs).is_some());
    assert!(cache.get("bea", t0(), &epochs).is_none());
    cache.put("bea", &bea, t0(), epochs.current(), &epochs);
    assert!(cache.get("bea", t0(), &epochs).is_some());
}

/// The daily purge asks the store for the sessions that ended a retention ago (their idle
/// timeout with them), and says how many went.
#[tokio::test]
async fn the_purge_deletes_sessions_that_ended_a_retention_ago() {
    let mut p = Parts::new();
    p.config.ended_retention = Duration::days(7);
    p.store
        .expect_purge_ended()
        .withf(|before, idle| *before == t0() - Duration::days(7) && *idle == Duration::minutes(30))
        .times(1)
        .returning(|_, _| Ok(4));
    assert_eq!(p.build().purge_ended_sessions().await.unwrap(), 4);
}
