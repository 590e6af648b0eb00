//! Ownership transfer (RBAC-4): the Owner starts it, the receiving user accepts; both with step-up.
//! The switch is one atomic port operation, so a company has exactly one Owner at every instant.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use audit::{Action, AuditRecord, AuditSink, Outcome};
use kernel::{Clock, CompanyId, IdGenerator, RequestContext, Timestamp, UserId};
use rbac::{Actor, Permission, Refusal, Role, Scope, authorize};
use uuid::Uuid;

use crate::{AccountRepository, AccountsError};

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferStatus {
    /// Waiting for the receiving user.
    Pending,
    /// Accepted: the receiving user is the Owner, the old Owner an Admin.
    Completed,
    /// Withdrawn by either party.
    Cancelled,
    /// Not accepted in time.
    Expired,
}

impl TransferStatus {
    /// The stable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// Parses a stable name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Completed,
            Self::Cancelled,
            Self::Expired,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

impl fmt::Display for TransferStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ownership transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipTransfer {
    /// Id.
    pub id: Uuid,
    /// The company.
    pub company_id: CompanyId,
    /// The Owner who started it.
    pub from_user_id: UserId,
    /// The user who becomes Owner on acceptance.
    pub to_user_id: UserId,
    /// State.
    pub status: TransferStatus,
    /// Started.
    pub created_at: Timestamp,
    /// Not acceptable from then on.
    pub expires_at: Timestamp,
    /// When it left `pending`.
    pub closed_at: Option<Timestamp>,
}

/// Storage of ownership transfers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OwnershipRepository: Send + Sync {
    /// Stores a new pending transfer.
    ///
    /// # Errors
    /// MUST return [`AccountsError::Conflict`] with code `transfer_pending` when the company
    /// already has a pending transfer.
    async fn create_transfer(
        &self,
        transfer: &OwnershipTransfer,
        audit: Vec<AuditRecord>,
    ) -> Result<(), AccountsError>;

    /// A transfer of `company`.
    async fn transfer(
        &self,
        company: CompanyId,
        id: Uuid,
    ) -> Result<Option<OwnershipTransfer>, AccountsError>;

    /// Completes a pending transfer atomically: within one transaction, and only if it is still
    /// pending, the old Owner becomes Admin and the receiving user (still active) becomes Owner.
    ///
    /// # Errors
    /// MUST return [`AccountsError::Conflict`] (`transfer_not_pending`) when another call got there
    /// first, and change nothing.
    async fn complete_transfer(
        &self,
        transfer: &OwnershipTransfer,
        at: Timestamp,
        audit: Vec<AuditRecord>,
    ) -> Result<(), AccountsError>;

    /// Moves a pending transfer to `status` (cancelled or expired). `false` when it was not pending.
    async fn close_transfer(
        &self,
        company: CompanyId,
        id: Uuid,
        status: TransferStatus,
        at: Timestamp,
        audit: Vec<AuditRecord>,
    ) -> Result<bool, AccountsError>;
}

/// How long a transfer waits for acceptance: 24 hours.
pub const TRANSFER_TTL: kernel::Duration = kernel::Duration::hours(24);

/// The ownership transfer use cases.
#[derive(Clone)]
pub struct OwnershipService {
    users: Arc<dyn AccountRepository>,
    transfers: Arc<dyn OwnershipRepository>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl fmt::Debug for OwnershipService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnershipService")
    }
}

const NOT_PENDING: AccountsError = AccountsError::Conflict {
    code: "transfer_not_pending",
    message: "the transfer is no longer pending",
};

impl OwnershipService {
    /// Wires the use cases.
    #[must_use]
    pub fn new(
        users: Arc<dyn AccountRepository>,
        transfers: Arc<dyn OwnershipRepository>,
        audit: Arc<dyn AuditSink>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self {
            users,
            transfers,
            audit,
            clock,
            ids,
        }
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

    async fn deny(
        &self,
        actor: &Actor,
        attempted: Action,
        why: Refusal,
        ctx: &RequestContext,
    ) -> AccountsError {
        let record = AuditRecord::denied(
            self.ids.new_id(),
            self.clock.now(),
            ctx,
            actor,
            attempted.as_str(),
            why.reason(),
        );
        match self.audit.record(record).await {
            Ok(()) => why.into(),
            Err(e) => e.into(),
        }
    }

    /// The Owner proposes `to` as the new Owner (step-up required).
    ///
    /// # Errors
    /// `Forbidden` (not the Owner, or oneself), `ReauthenticationRequired`, `NotFound` (no such
    /// user in the company), `Conflict` (`user_inactive`, `transfer_pending`), `Internal`.
    pub async fn start(
        &self,
        actor: &Actor,
        to: UserId,
        ctx: &RequestContext,
    ) -> Result<OwnershipTransfer, AccountsError> {
        let action = Action::OWNERSHIP_TRANSFER_STARTED;
        if actor.role != Role::Owner
            || !authorize(actor, Permission::OwnershipTransfer, Scope::Company).is_allowed()
        {
            return Err(self
                .deny(
                    actor,
                    action,
                    Refusal::Rule("only the owner may transfer ownership"),
                    ctx,
                )
                .await);
        }
        let now = self.clock.now();
        if !actor.has_step_up(now) {
            return Err(self
                .deny(actor, action, Refusal::ReauthenticationRequired, ctx)
                .await);
        }
        if to == actor.user_id {
            return Err(self
                .deny(
                    actor,
                    action,
                    Refusal::Rule("the owner already owns the company"),
                    ctx,
                )
                .await);
        }
        let target = self
            .users
            .user(actor.company_id, to)
            .await?
            .ok_or(AccountsError::NotFound)?;
        if !target.active {
            return Err(AccountsError::Conflict {
                code: "user_inactive",
                message: "the receiving user is deactivated",
            });
        }
        let transfer = OwnershipTransfer {
            id: self.ids.new_id(),
            company_id: actor.company_id,
            from_user_id: actor.user_id,
            to_user_id: to,
            status: TransferStatus::Pending,
            created_at: now,
            expires_at: now + TRANSFER_TTL,
            closed_at: None,
        };
        let audit = vec![
            self.record(action, Outcome::Success, actor, ctx)
                .target("user", to)
                .details(serde_json::json!({ "transfer_id": transfer.id })),
        ];
        self.transfers.create_transfer(&transfer, audit).await?;
        Ok(transfer)
    }

    /// The receiving user accepts (step-up required): atomically it becomes Owner and the old
    /// Owner becomes Admin.
    ///
    /// # Errors
    /// `NotFound` (no such transfer for this user), `Forbidden` (a restricted session,
    /// recorded), `ReauthenticationRequired`, `Conflict` (`transfer_not_pending`,
    /// `transfer_expired`), `Internal`.
    pub async fn accept(
        &self,
        actor: &Actor,
        id: Uuid,
        ctx: &RequestContext,
    ) -> Result<OwnershipTransfer, AccountsError> {
        let transfer = self
            .transfers
            .transfer(actor.company_id, id)
            .await?
            .ok_or(AccountsError::NotFound)?;
        if transfer.to_user_id != actor.user_id {
            // The other party and everybody else: no such transfer for you to accept.
            return Err(AccountsError::NotFound);
        }
        let now = self.clock.now();
        if let Some(why) = actor.self_service_refusal(now, true) {
            return Err(self
                .deny(actor, Action::OWNERSHIP_TRANSFER_COMPLETED, why, ctx)
                .await);
        }
        if transfer.status != TransferStatus::Pending {
            return Err(NOT_PENDING);
        }
        if now >= transfer.expires_at {
            let audit = vec![
                self.record(
                    Action::OWNERSHIP_TRANSFER_CANCELLED,
                    Outcome::Success,
                    actor,
                    ctx,
                )
                .details(serde_json::json!({ "transfer_id": id, "reason": "expired" })),
            ];
            self.transfers
                .close_transfer(actor.company_id, id, TransferStatus::Expired, now, audit)
                .await?;
            return Err(AccountsError::Conflict {
                code: "transfer_expired",
                message: "the transfer expired; the owner must start a new one",
            });
        }
        let audit = vec![
            self.record(Action::OWNERSHIP_TRANSFER_COMPLETED, Outcome::Success, actor, ctx)
                .target("user", transfer.from_user_id)
                .details(serde_json::json!({ "transfer_id": id, "new_owner": actor.user_id, "previous_owner_now": "admin" })),
        ];
        self.transfers
            .complete_transfer(&transfer, now, audit)
            .await?;
        Ok(OwnershipTransfer {
            status: TransferStatus::Completed,
            closed_at: Some(now),
            ..transfer
        })
    }

    /// Either party withdraws a pending transfer.
    ///
    /// # Errors
    /// `NotFound` (not a party), `Forbidden` (a restricted session, recorded), `Conflict`
    /// (`transfer_not_pending`), `Internal`.
    pub async fn cancel(
        &self,
        actor: &Actor,
        id: Uuid,
        ctx: &RequestContext,
    ) -> Result<OwnershipTransfer, AccountsError> {
        let transfer = self
            .transfers
            .transfer(actor.company_id, id)
            .await?
            .ok_or(AccountsError::NotFound)?;
        if actor.user_id != transfer.from_user_id && actor.user_id != transfer.to_user_id {
            return Err(AccountsError::NotFound);
        }
        let now = self.clock.now();
        if let Some(why) = actor.self_service_refusal(now, false) {
            return Err(self
                .deny(actor, Action::OWNERSHIP_TRANSFER_CANCELLED, why, ctx)
                .await);
        }
        let audit = vec![
            self.record(
                Action::OWNERSHIP_TRANSFER_CANCELLED,
                Outcome::Success,
                actor,
                ctx,
            )
            .details(serde_json::json!({ "transfer_id": id })),
        ];
        if self
            .transfers
            .close_transfer(actor.company_id, id, TransferStatus::Cancelled, now, audit)
            .await?
        {
            Ok(OwnershipTransfer {
                status: TransferStatus::Cancelled,
                closed_at: Some(now),
                ..transfer
            })
        } else {
            Err(NOT_PENDING)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Email, MockAccountRepository, PasswordHash, PersonName, User};
    use audit::MockAuditSink;
    use chrono::TimeZone;
    use kernel::{ManualClock, SequentialIds, SessionId};
    use rbac::PermissionSet;

    fn t0() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
            .unwrap()
    }
    fn company() -> CompanyId {
        CompanyId::from_uuid(Uuid::from_u128(7))
    }
    fn uid(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }
    fn actor(n: u128, role: Role, step_up: bool) -> Actor {
        Actor::new(
            uid(n),
            company(),
            SessionId::from_uuid(Uuid::from_u128(100 + n)),
            role,
            role.default_permissions(),
        )
        .reauthenticated(step_up.then(t0))
    }
    fn user(n: u128, active: bool) -> User {
        User {
            id: uid(n),
            company_id: company(),
            email: Email::parse(&format!("u{n}@example.com")).unwrap(),
            name: PersonName::parse("U", "name").unwrap(),
            role: Role::Admin,
            active,
            password_hash: PasswordHash::new("x".into()),
            mfa_enabled: false,
            grants: PermissionSet::empty(),
            revokes: PermissionSet::empty(),
            created_at: t0(),
            updated_at: t0(),
            password_change_required: false,
        }
    }
    fn pending() -> OwnershipTransfer {
        OwnershipTransfer {
            id: Uuid::from_u128(55),
            company_id: company(),
            from_user_id: uid(1),
            to_user_id: uid(2),
            status: TransferStatus::Pending,
            created_at: t0(),
            expires_at: t0() + TRANSFER_TTL,
            closed_at: None,
        }
    }
    fn service(
        users: MockAccountRepository,
        transfers: MockOwnershipRepository,
        clock: Arc<ManualClock>,
    ) -> OwnershipService {
        let mut sink = MockAuditSink::new();
        sink.expect_record().returning(|_| Ok(()));
        OwnershipService::new(
            Arc::new(users),
            Arc::new(transfers),
            Arc::new(sink),
            clock,
            Arc::new(SequentialIds::default()),
        )
    }
    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(t0() + kernel::Duration::seconds(10)))
    }

    #[tokio::test]
    async fn only_the_owner_with_step_up_starts_a_transfer_to_an_active_colleague() {
        for role in [Role::Admin, Role::Manager, Role::Vendor] {
            let svc = service(
                MockAccountRepository::new(),
                MockOwnershipRepository::new(),
                clock(),
            );
            let err = svc
                .start(&actor(1, role, true), uid(2), &RequestContext::default())
                .await
                .unwrap_err();
            assert!(matches!(err, AccountsError::Forbidden(_)), "{role:?}");
        }
        let svc = service(
            MockAccountRepository::new(),
            MockOwnershipRepository::new(),
            clock(),
        );
        let err = svc
            .start(
                &actor(1, Role::Owner, false),
                uid(2),
                &RequestContext::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::ReauthenticationRequired));
        let err = svc
            .start(
                &actor(1, Role::Owner, true),
                uid(1),
                &RequestContext::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AccountsError::Forbidden(_)));

        let mut users = MockAccountRepository::new();
        users
            .expect_user()
            .returning(|_, id| Ok(Some(user(id.as_uuid().as_u128(), id != uid(3)))));
        let mut transfers = MockOwnershipRepository::new();
        transfers
            .expect_create_transfer()
            .withf(|t, audit| {
                t.to_user_id == uid(2)
                    && t.expires_at == t0() + kernel::Duration::seconds(10) + TRANSFER_TTL
                    && audit.len() == 1
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let svc = service(users, transfers, clock());
        let t = svc
            .start(
                &actor(1, Role::Owner, true),
                uid(2),
                &RequestContext::default(),
            )
            .await
            .unwrap();
        assert_eq!(t.status, TransferStatus::Pending);
        let err = svc
            .start(
                &actor(1, Role::Owner, true),
                uid(3),
                &RequestContext::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AccountsError::Conflict {
                code: "user_inactive",
                ..
            }
        ));
    }

    #[tokio::test]
    async fn only_the_receiving_user_accepts_with_step_up_before_expiry() {
        let mut transfers = MockOwnershipRepository::new();
        transfers
            .expect_transfer()
            .returning(|_, _| Ok(Some(pending())));
        transfers
            .expect_complete_transfer()
            .times(1)
            .returning(|_, _, _| Ok(()));
        let svc = service(MockAccountRepository::new(), transfers, clock());
        // The old Owner and a stranger see nothing to accept.
        for who in [actor(1, Role::Owner, true), actor(3, Role::Admin, true)] {
            assert!(matches!(
                svc.accept(&who, pending().id, &RequestContext::default())
                    .await,
                Err(AccountsError::NotFound)
            ));
        }
        assert!(matches!(
            svc.accept(
                &actor(2, Role::Admin, false),
                pending().id,
                &RequestContext::default()
            )
            .await,
            Err(AccountsError::ReauthenticationRequired)
        ));
        let done = svc
            .accept(
                &actor(2, Role::Admin, true),
                pending().id,
                &RequestContext::default(),
            )
            .await
            .unwrap();
        assert_eq!(done.status, TransferStatus::Completed);
    }

    #[tokio::test]
    async fn an_expired_transfer_is_closed_instead_of_completed() {
        let mut transfers = MockOwnershipRepository::new();
        transfers
            .expect_transfer()
            .returning(|_, _| Ok(Some(pending())));
        transfers.expect_complete_transfer().times(0);
        transfers
            .expect_close_transfer()
            .withf(|_, _, status, _, _| *status == TransferStatus::Expired)
            .times(1)
            .returning(|_, _, _, _, _| Ok(true));
        let clock = clock();
        let svc = service(MockAccountRepository::new(), transfers, clock.clone());
        clock.set(t0() + TRANSFER_TTL);
        let late = actor(2, Role::Admin, false)
            .reauthenticated(Some(t0() + TRANSFER_TTL - kernel::Duration::seconds(1)));
        let err = svc
            .accept(&late, pending().id, &RequestContext::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AccountsError::Conflict {
                    code: "transfer_expired",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn either_party_cancels_a_pending_transfer_once() {
        let mut transfers = MockOwnershipRepository::new();
        transfers
            .expect_transfer()
            .returning(|_, _| Ok(Some(pending())));
        let mut first = true;
        transfers
            .expect_close_transfer()
            .returning(move |_, _, _, _, _| Ok(std::mem::replace(&mut first, false)));
        let svc = service(MockAccountRepository::new(), transfers, clock());
        assert!(matches!(
            svc.cancel(
                &actor(3, Role::Admin, true),
                pending().id,
                &RequestContext::default()
            )
            .await,
            Err(AccountsError::NotFound)
        ));
        assert_eq!(
            svc.cancel(
                &actor(2, Role::Admin, false),
                pending().id,
                &RequestContext::default()
            )
            .await
            .unwrap()
            .status,
            TransferStatus::Cancelled
        );
        assert!(matches!(
            svc.cancel(
                &actor(1, Role::Owner, false),
                pending().id,
                &RequestContext::default()
            )
            .await,
            Err(AccountsError::Conflict {
                code: "transfer_not_pending",
                ..
            })
        ));
    }

    /// A session that may only change its password or enrol MFA accepts and cancels nothing,
    /// even with a fresh step-up, and the refusal is recorded with its reason.
    #[tokio::test]
    async fn a_restricted_session_neither_accepts_nor_cancels() {
        for (restricted, why) in [
            (
                actor(2, Role::Admin, true).restricted_to_password_change(),
                "password_change_required",
            ),
            (
                actor(2, Role::Admin, true).restricted_to_mfa_enrolment(),
                "mfa_enrolment_required",
            ),
        ] {
            let mut transfers = MockOwnershipRepository::new();
            transfers
                .expect_transfer()
                .returning(|_, _| Ok(Some(pending())));
            transfers.expect_complete_transfer().times(0);
            transfers.expect_close_transfer().times(0);
            let mut sink = MockAuditSink::new();
            sink.expect_record()
                .times(2)
                .withf(move |r| {
                    r.action == Action::AUTHORIZATION_DENIED && r.details["reason"] == why
                })
                .returning(|_| Ok(()));
            let svc = OwnershipService::new(
                Arc::new(MockAccountRepository::new()),
                Arc::new(transfers),
                Arc::new(sink),
                clock(),
                Arc::new(SequentialIds::default()),
            );
            let ctx = RequestContext::default();
            for result in [
                svc.accept(&restricted, pending().id, &ctx).await,
                svc.cancel(&restricted, pending().id, &ctx).await,
            ] {
                match result {
                    Err(AccountsError::Forbidden(reason)) => assert_eq!(reason.reason(), why),
                    other => panic!("{why}: {other:?}"),
                }
            }
        }
    }
}
