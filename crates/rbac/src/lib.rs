//! Roles, the permission catalog and the authorization decision of IncrementaCRM (RBAC-1, RBAC-2,
//! RBAC-5).
//!
//! Every access decision in the product is [`authorize`]: a pure function of the [`Actor`], the
//! [`Permission`] asked for and the [`Scope`] of the resource. Other Rust services call it to protect
//! their own resources. This crate performs no I/O and must never depend on a database, a web
//! framework or a cryptographic library.
//!
//! ```
//! use kernel::{CompanyId, SessionId, UserId};
//! use rbac::{authorize, Actor, Decision, Permission, Role, Scope};
//! # let (company, me, session) = (CompanyId::from_uuid(uuid_like(1)), UserId::from_uuid(uuid_like(2)), SessionId::from_uuid(uuid_like(3)));
//! # fn uuid_like(n: u128) -> uuid::Uuid { uuid::Uuid::from_u128(n) }
//! let vendor = Actor::new(me, company, session, Role::Vendor, Role::Vendor.default_permissions());
//! // A vendor reads customers assigned to it, not everybody's.
//! assert_eq!(authorize(&vendor, Permission::CustomersReadAssigned, Scope::Assigned { assignee: me }), Decision::Allow);
//! assert_eq!(authorize(&vendor, Permission::UsersManage, Scope::Company), Decision::Deny);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod management;
mod permission;
mod role;

pub use management::{Change, Denial, check_change};
pub use permission::{CATALOG_VERSION, Permission, PermissionSet, catalog_markdown};
pub use role::Role;

use kernel::{CompanyId, SessionId, Timestamp, UserId};

/// How long an explicit re-authentication opens the step-up window (MFA-3): 5 minutes.
pub const STEP_UP_WINDOW: kernel::Duration = kernel::Duration::minutes(5);

/// Errors of this crate: only parsing of names from the outside.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacError {
    /// A role name that is not one of `owner`, `admin`, `manager`, `vendor`.
    #[error("unknown role `{0}`")]
    UnknownRole(String),
    /// A permission name that is not in the catalog.
    #[error("unknown permission `{0}`")]
    UnknownPermission(String),
}

/// Who is acting: an authenticated user of one company, with the permissions in force right now
/// (role defaults plus per-user grants, minus revocations), loaded fresh for every request (RBAC-6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The acting user.
    pub user_id: UserId,
    /// The user's company: the only tenant it may touch.
    pub company_id: CompanyId,
    /// The session the request came through.
    pub session_id: SessionId,
    /// The user's role.
    pub role: Role,
    /// Effective permissions.
    pub permissions: PermissionSet,
    /// When the session last re-authenticated explicitly (a login alone does not count).
    pub reauthenticated_at: Option<Timestamp>,
    /// MFA-2: an Owner or Admin whose company requires MFA, past the grace period, without MFA
    /// enrolled. Such an actor holds no permission at all and may only enrol (the HTTP guard
    /// lets it reach the enrolment routes, its profile and logout).
    pub mfa_enrolment_only: bool,
    /// The user's password was handed over by the platform's operator (`incrementa users
    /// reset-password`) and not changed since. Such an actor holds no permission at all and may
    /// only change the password (the HTTP guard lets it reach that route, its profile and
    /// logout).
    pub password_change_only: bool,
}

/// Why an actor restricted to changing its password is refused ([`Actor::restriction`]).
pub const PASSWORD_CHANGE_REQUIRED: &str = "password_change_required";

/// Why an actor restricted to MFA enrolment is refused ([`Actor::restriction`]).
pub const MFA_ENROLMENT_REQUIRED: &str = "mfa_enrolment_required";

/// Why an actor is refused a critical action while its step-up window is closed (MFA-3):
/// the reason its `authorization.denied` record names, which every core maps to its
/// re-authentication error.
pub const REAUTHENTICATION_REQUIRED: &str = "reauthentication_required";

/// Why an actor is refused an action its role and grants do not allow ([`authorize`]).
pub const MISSING_PERMISSION: &str = "missing permission";

/// Why an actor is refused: what its `authorization.denied` record names ([`Self::reason`]) and
/// what every core maps to its own error, by variant rather than by comparing texts, so a
/// refusal cannot turn into another one through a misspelt reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its role and grants do not allow the action ([`authorize`]).
    MissingPermission,
    /// A critical action while its step-up window is closed (MFA-3).
    ReauthenticationRequired,
    /// The actor may only change its password ([`Actor::restricted_to_password_change`]).
    PasswordChangeRequired,
    /// The actor may only enrol in MFA ([`Actor::restricted_to_mfa_enrolment`]).
    MfaEnrolmentRequired,
    /// A use case's own rule, in words ("the owner cannot be deactivated").
    Rule(&'static str),
}

impl Refusal {
    /// The reason as the audit record and the problem's detail give it: one of the constants
    /// above, or the rule's words.
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::MissingPermission => MISSING_PERMISSION,
            Self::ReauthenticationRequired => REAUTHENTICATION_REQUIRED,
            Self::PasswordChangeRequired => PASSWORD_CHANGE_REQUIRED,
            Self::MfaEnrolmentRequired => MFA_ENROLMENT_REQUIRED,
            Self::Rule(words) => words,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// The check of every use case that needs a permission: [`authorize`] on `scope`, then, for a
/// critical action (`step_up`), an open step-up window at `now` (MFA-3).
///
/// # Errors
/// [`Refusal::MissingPermission`] or [`Refusal::ReauthenticationRequired`], in that order.
pub fn check(
    actor: &Actor,
    permission: Permission,
    scope: Scope,
    step_up: bool,
    now: Timestamp,
) -> Result<(), Refusal> {
    if !authorize(actor, permission, scope).is_allowed() {
        Err(Refusal::MissingPermission)
    } else if step_up && !actor.has_step_up(now) {
        Err(Refusal::ReauthenticationRequired)
    } else {
        Ok(())
    }
}

impl Actor {
    /// An actor with the given effective permissions.
    #[must_use]
    pub const fn new(
        user_id: UserId,
        company_id: CompanyId,
        session_id: SessionId,
        role: Role,
        permissions: PermissionSet,
    ) -> Self {
        Self {
            user_id,
            company_id,
            session_id,
            role,
            permissions,
            reauthenticated_at: None,
            mfa_enrolment_only: false,
            password_change_only: false,
        }
    }

    /// The same actor restricted to MFA enrolment (MFA-2): every permission is dropped, so
    /// [`authorize`] denies everything whatever the caller checks.
    #[must_use]
    pub const fn restricted_to_mfa_enrolment(mut self) -> Self {
        self.permissions = PermissionSet::empty();
        self.mfa_enrolment_only = true;
        self
    }

    /// The same actor restricted to changing its password: every permission is dropped, so
    /// [`authorize`] denies everything whatever the caller checks.
    #[must_use]
    pub const fn restricted_to_password_change(mut self) -> Self {
        self.permissions = PermissionSet::empty();
        self.password_change_only = true;
        self
    }

    /// What keeps a restricted actor from acting on its own account beyond what its
    /// restriction leaves open: `password_change_required` (see
    /// [`Self::restricted_to_password_change`]; it comes first, as the user must change the
    /// password before enrolling), `mfa_enrolment_required` (see
    /// [`Self::restricted_to_mfa_enrolment`]), or `None`. [`authorize`] already denies such an
    /// actor every permission; the use cases that need no permission refuse with this
    /// ([`Self::self_service_refusal`]), as the HTTP guard does before them, so a service
    /// linking the core directly cannot skip it.
    #[must_use]
    pub const fn restriction(&self) -> Option<Refusal> {
        if self.password_change_only {
            Some(Refusal::PasswordChangeRequired)
        } else if self.mfa_enrolment_only {
            Some(Refusal::MfaEnrolmentRequired)
        } else {
            None
        }
    }

    /// The same actor with a re-authentication at `at`.
    #[must_use]
    pub const fn reauthenticated(mut self, at: Option<Timestamp>) -> Self {
        self.reauthenticated_at = at;
        self
    }

    /// `true` while the step-up window of [`STEP_UP_WINDOW`] is open at `now` (MFA-3). Critical
    /// operations check this; a login by itself never opens it.
    #[must_use]
    pub fn has_step_up(&self, now: Timestamp) -> bool {
        self.reauthenticated_at
            .is_some_and(|at| at <= now && now < at + STEP_UP_WINDOW)
    }

    /// Why the actor may not, at `now`, use a self-service action on its own account that
    /// needs no permission: its [`Self::restriction`] first, then, when the action is critical
    /// (`step_up`), a step-up window that is not open (`reauthentication_required`). `None`
    /// when it may. The one rule every such use case applies (changing one's address, an
    /// ownership transfer's acceptance, turning MFA off).
    #[must_use]
    pub fn self_service_refusal(&self, now: Timestamp, step_up: bool) -> Option<Refusal> {
        self.restriction().or_else(|| {
            (step_up && !self.has_step_up(now)).then_some(Refusal::ReauthenticationRequired)
        })
    }
}

/// Which records of the actor's company a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Company-wide data or configuration.
    Company,
    /// A record owned by one user (e.g. the user's own profile or sessions).
    Own {
        /// The owner of the record.
        owner: UserId,
    },
    /// A record assigned to one user (e.g. a customer assigned to a vendor).
    Assigned {
        /// The user the record is assigned to.
        assignee: UserId,
    },
}

/// The answer of [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse; the caller answers 403 and records `authorization.denied`.
    Deny,
}

impl Decision {
    /// `true` for [`Decision::Allow`].
    #[must_use]
    pub const fn is_allowed(self) -> bool {
        matches!(self, Self::Allow)
    }
}

/// The one authorization decision (RBAC-5). Fails closed: anything not explicitly allowed is denied.
///
/// A permission held by the actor allows the company scope. Permissions ending in `.assigned`
/// allow only records assigned to the actor; `*.all` permissions cover everybody's records, and a
/// holder of the `.all` variant is also allowed where the `.assigned` variant is asked.
///
/// ```
/// use kernel::{CompanyId, SessionId, UserId};
/// use rbac::{Actor, Permission, Role, Scope, authorize};
///
/// let id = |n| uuid::Uuid::from_u128(n);
/// let vendor = Actor::new(
///     UserId::from_uuid(id(1)),
///     CompanyId::from_uuid(id(2)),
///     SessionId::from_uuid(id(3)),
///     Role::Vendor,
///     Role::Vendor.default_permissions(),
/// );
/// // A vendor reads the customers assigned to it, not everybody's, and manages no users.
/// let own = Scope::Assigned { assignee: vendor.user_id };
/// let other = Scope::Assigned { assignee: UserId::from_uuid(id(9)) };
/// assert!(authorize(&vendor, Permission::CustomersReadAssigned, own).is_allowed());
/// assert!(!authorize(&vendor, Permission::CustomersReadAssigned, other).is_allowed());
/// assert!(!authorize(&vendor, Permission::UsersManage, Scope::Company).is_allowed());
/// // An actor restricted to MFA enrolment is denied everything (MFA-2).
/// let restricted = vendor.restricted_to_mfa_enrolment();
/// assert!(!authorize(&restricted, Permission::CustomersReadAssigned, own).is_allowed());
/// ```
pub fn authorize(actor: &Actor, permission: Permission, scope: Scope) -> Decision {
    let held = actor.permissions.contains(permission)
        || permission
            .broader()
            .is_some_and(|wider| actor.permissions.contains(wider));
    if !held {
        return Decision::Deny;
    }
    let allowed = match scope {
        Scope::Company => !permission.is_assigned_only() || actor_holds_broader(actor, permission),
        Scope::Own { owner } => owner == actor.user_id || !permission.is_assigned_only(),
        Scope::Assigned { assignee } => {
            assignee == actor.user_id || actor_holds_broader(actor, permission)
        }
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

fn actor_holds_broader(actor: &Actor, permission: Permission) -> bool {
    permission
        .broader()
        .is_some_and(|wider| actor.permissions.contains(wider))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid_helpers::*;

    mod uuid_helpers {
        use kernel::{CompanyId, SessionId, UserId};

        pub fn user(n: u128) -> UserId {
            UserId::from_uuid(uuid::Uuid::from_u128(n))
        }
        pub fn company() -> CompanyId {
            CompanyId::from_uuid(uuid::Uuid::from_u128(100))
        }
        pub fn session() -> SessionId {
            SessionId::from_uuid(uuid::Uuid::from_u128(200))
        }
    }

    fn actor(role: Role) -> Actor {
        Actor::new(
            user(1),
            company(),
            session(),
            role,
            role.default_permissions(),
        )
    }

    #[test]
    fn an_actor_restricted_to_mfa_enrolment_is_denied_everything() {
        let owner = actor(Role::Owner).restricted_to_mfa_enrolment();
        assert!(owner.mfa_enrolment_only);
        for permission in Permission::ALL {
            for scope in [
                Scope::Company,
                Scope::Own { owner: user(1) },
                Scope::Assigned { assignee: user(1) },
            ] {
                assert_eq!(
                    authorize(&owner, permission, scope),
                    Decision::Deny,
                    "{permission}"
                );
            }
        }
        assert!(!actor(Role::Owner).mfa_enrolment_only);
    }

    #[test]
    fn self_service_is_refused_for_a_restriction_first_then_a_missing_step_up() {
        let now = kernel::Timestamp::from_timestamp(1_790_000_000, 0).unwrap();
        let fresh = actor(Role::Owner).reauthenticated(Some(now));
        let stale = actor(Role::Owner);
        assert_eq!(fresh.self_service_refusal(now, true), None);
        assert_eq!(stale.self_service_refusal(now, false), None);
        assert_eq!(
            stale.self_service_refusal(now, true),
            Some(Refusal::ReauthenticationRequired)
        );
        assert_eq!(
            fresh
                .restricted_to_mfa_enrolment()
                .self_service_refusal(now, true),
            Some(Refusal::MfaEnrolmentRequired)
        );
        assert_eq!(
            stale
                .restricted_to_password_change()
                .self_service_refusal(now, false),
            Some(Refusal::PasswordChangeRequired)
        );
    }

    #[test]
    fn a_permission_check_names_the_missing_permission_before_the_missing_step_up() {
        let now = kernel::Timestamp::from_timestamp(1_790_000_000, 0).unwrap();
        let fresh = actor(Role::Admin).reauthenticated(Some(now));
        let stale = actor(Role::Admin);
        let vendor = actor(Role::Vendor).reauthenticated(Some(now));
        let at = |a: &Actor, step_up, when| {
            check(a, Permission::UsersManage, Scope::Company, step_up, when)
        };
        assert_eq!(at(&fresh, true, now), Ok(()));
        assert_eq!(at(&stale, false, now), Ok(()));
        assert_eq!(
            at(&stale, true, now),
            Err(Refusal::ReauthenticationRequired)
        );
        assert_eq!(at(&vendor, true, now), Err(Refusal::MissingPermission));
        assert_eq!(
            at(&actor(Role::Vendor), true, now),
            Err(Refusal::MissingPermission),
            "without the permission the step-up is not the reason"
        );
        assert_eq!(
            at(&fresh.clone().restricted_to_mfa_enrolment(), true, now),
            Err(Refusal::MissingPermission)
        );
        // The window closes after five minutes.
        assert_eq!(
            at(&fresh, true, now + STEP_UP_WINDOW),
            Err(Refusal::ReauthenticationRequired)
        );
    }

    #[test]
    fn refusals_give_the_reasons_audit_records_have_always_named() {
        assert_eq!(Refusal::MissingPermission.reason(), "missing permission");
        assert_eq!(
            Refusal::ReauthenticationRequired.reason(),
            "reauthentication_required"
        );
        assert_eq!(
            Refusal::PasswordChangeRequired.reason(),
            "password_change_required"
        );
        assert_eq!(
            Refusal::MfaEnrolmentRequired.reason(),
            "mfa_enrolment_required"
        );
        assert_eq!(
            Refusal::Rule("the owner cannot be deactivated").to_string(),
            "the owner cannot be deactivated"
        );
    }

    #[test]
    fn a_restriction_is_named_the_password_change_first() {
        assert_eq!(actor(Role::Owner).restriction(), None);
        assert_eq!(
            actor(Role::Owner)
                .restricted_to_mfa_enrolment()
                .restriction(),
            Some(Refusal::MfaEnrolmentRequired)
        );
        assert_eq!(
            actor(Role::Vendor)
                .restricted_to_password_change()
                .restriction(),
            Some(Refusal::PasswordChangeRequired)
        );
        assert_eq!(
            actor(Role::Admin)
                .restricted_to_mfa_enrolment()
                .restricted_to_password_change()
                .restriction(),
            Some(Refusal::PasswordChangeRequired)
        );
    }

    #[test]
    fn an_actor_restricted_to_a_password_change_is_denied_everything() {
        let owner = actor(Role::Owner).restricted_to_password_change();
        assert!(owner.password_change_only);
        for permission in Permission::ALL {
            assert_eq!(
                authorize(&owner, permission, Scope::Own { owner: user(1) }),
                Decision::Deny,
                "{permission}"
            );
            assert_eq!(
                authorize(&owner, permission, Scope::Company),
                Decision::Deny,
                "{permission}"
            );
        }
        assert!(!actor(Role::Owner).password_change_only);
    }

    #[test]
    fn vendor_sees_only_assigned_customers() {
        let vendor = actor(Role::Vendor);
        let mine = Scope::Assigned { assignee: user(1) };
        let theirs = Scope::Assigned { assignee: user(2) };
        assert_eq!(
            authorize(&vendor, Permission::CustomersReadAssigned, mine),
            Decision::Allow
        );
        assert_eq!(
            authorize(&vendor, Permission::CustomersReadAssigned, theirs),
            Decision::Deny
        );
        assert_eq!(
            authorize(&vendor, Permission::CustomersReadAssigned, Scope::Company),
            Decision::Deny
        );
        assert_eq!(
            authorize(&vendor, Permission::CustomersReadAll, Scope::Company),
            Decision::Deny
        );
    }

    #[test]
    fn manager_reads_all_customers_through_the_broader_permission() {
        let manager = actor(Role::Manager);
        let theirs = Scope::Assigned { assignee: user(2) };
        assert_eq!(
            authorize(&manager, Permission::CustomersReadAssigned, theirs),
            Decision::Allow
        );
        assert_eq!(
            authorize(&manager, Permission::CustomersReadAll, Scope::Company),
            Decision::Allow
        );
    }

    #[test]
    fn user_management_is_owner_and_admin_only() {
        for role in Role::ALL {
            let expected = matches!(role, Role::Owner | Role::Admin);
            assert_eq!(
                authorize(&actor(role), Permission::UsersManage, Scope::Company).is_allowed(),
                expected,
                "{role:?}"
            );
        }
    }

    #[test]
    fn the_step_up_window_lasts_five_minutes_from_reauthentication() {
        let at = Timestamp::default() + kernel::Duration::days(1);
        let plain = actor(Role::Owner);
        assert!(!plain.has_step_up(at));
        let fresh = plain.reauthenticated(Some(at));
        assert!(fresh.has_step_up(at));
        assert!(fresh.has_step_up(at + kernel::Duration::seconds(299)));
        assert!(!fresh.has_step_up(at + kernel::Duration::seconds(300)));
        assert!(
            !fresh.has_step_up(at - kernel::Duration::seconds(1)),
            "a future stamp is not trusted"
        );
    }

    #[test]
    fn nothing_is_allowed_without_permissions() {
        let mut nobody = actor(Role::Owner);
        nobody.permissions = PermissionSet::empty();
        for p in Permission::ALL {
            assert_eq!(
                authorize(&nobody, p, Scope::Company),
                Decision::Deny,
                "{p:?}"
            );
            assert_eq!(
                authorize(&nobody, p, Scope::Own { owner: user(1) }),
                Decision::Deny
            );
        }
    }
}
