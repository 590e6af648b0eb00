//! Who may change whom (RBAC-3, ACC-2): one pure function, so every caller applies the same rules.

use std::fmt;

use kernel::UserId;

use crate::{Actor, Permission, PermissionSet, Role, Scope, authorize};

/// A change one user makes to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Give the target this role.
    Role(Role),
    /// Add `grant` and remove `revoke` on top of the target's role defaults.
    Permissions {
        /// Permissions to add.
        grant: PermissionSet,
        /// Permissions to remove.
        revoke: PermissionSet,
    },
    /// Activate the target.
    Activate,
    /// Deactivate the target.
    Deactivate,
    /// Rename the target.
    Rename,
}

/// Why a change is refused. Each is a 403 with its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Only Owner or Admin (holding the needed permission) manage users, roles and permissions.
    NotAdministrator,
    /// Nobody changes their own role or permissions.
    SelfChange,
    /// Nobody acts on a user of a higher role (so Admin never touches the Owner).
    TargetOutranks,
    /// Nobody assigns a role above their own.
    RoleAboveOwn,
    /// The Owner role moves only by an ownership transfer.
    OwnerRoleNotAssignable,
    /// Nobody grants or revokes a permission they do not hold.
    PermissionNotHeld(Permission),
    /// The Owner cannot be deactivated.
    OwnerProtected,
}

impl Denial {
    /// A sentence for the error's `detail`.
    #[must_use]
    pub const fn message(self) -> &'static str {
        match self {
            Self::NotAdministrator => "only the owner or an admin may do this",
            Self::SelfChange => "nobody may change their own role or permissions",
            Self::TargetOutranks => "cannot act on a user of a higher role",
            Self::RoleAboveOwn => "cannot assign a role above your own",
            Self::OwnerRoleNotAssignable => "the owner role moves only by an ownership transfer",
            Self::PermissionNotHeld(_) => "cannot grant or revoke a permission you do not hold",
            Self::OwnerProtected => "the owner cannot be deactivated",
        }
    }
}

impl From<Denial> for crate::Refusal {
    /// A refused management change is a use case's rule, named by [`Denial::message`].
    fn from(denial: Denial) -> Self {
        Self::Rule(denial.message())
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PermissionNotHeld(p) => write!(f, "{} ({p})", self.message()),
            _ => f.write_str(self.message()),
        }
    }
}

/// Decides whether `actor` may apply `change` to the user `target` whose role is `target_role`.
///
/// # Errors
/// The first rule the change breaks.
pub fn check_change(
    actor: &Actor,
    target: UserId,
    target_role: Role,
    change: Change,
) -> Result<(), Denial> {
    let administrator = matches!(actor.role, Role::Owner | Role::Admin);
    let needed = match change {
        Change::Role(_) | Change::Permissions { .. } => Permission::RolesAssign,
        Change::Activate | Change::Deactivate | Change::Rename => Permission::UsersManage,
    };
    if !administrator || !authorize(actor, needed, Scope::Company).is_allowed() {
        return Err(Denial::NotAdministrator);
    }
    if matches!(change, Change::Role(_) | Change::Permissions { .. }) && target == actor.user_id {
        return Err(Denial::SelfChange);
    }
    if target_role.outranks(actor.role) {
        return Err(Denial::TargetOutranks);
    }
    match change {
        Change::Role(Role::Owner) => Err(Denial::OwnerRoleNotAssignable),
        Change::Role(new) if new.outranks(actor.role) => Err(Denial::RoleAboveOwn),
        Change::Permissions { grant, revoke } => {
            let asked: PermissionSet = grant.iter().chain(revoke.iter()).collect();
            match asked.iter().find(|p| !actor.permissions.contains(*p)) {
                Some(p) => Err(Denial::PermissionNotHeld(p)),
                None => Ok(()),
            }
        }
        Change::Deactivate if target_role == Role::Owner => Err(Denial::OwnerProtected),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::{Admin, Manager, Owner, Vendor};
    use kernel::{CompanyId, SessionId};

    fn uid(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn actor(role: Role) -> Actor {
        Actor::new(
            uid(1),
            CompanyId::from_uuid(uuid::Uuid::from_u128(9)),
            SessionId::from_uuid(uuid::Uuid::from_u128(8)),
            role,
            role.default_permissions(),
        )
    }

    const ROLES: [Role; 4] = [Owner, Admin, Manager, Vendor];

    /// The expected answer for every (actor role × target role × change) on another user,
    /// written out from RBAC-3 and ACC-2 rather than computed.
    fn expected(actor: Role, target: Role, change: Change) -> Result<(), Denial> {
        use Denial::*;
        if !matches!(actor, Owner | Admin) {
            return Err(NotAdministrator);
        }
        if target > actor {
            return Err(TargetOutranks);
        }
        match change {
            Change::Role(Owner) => Err(OwnerRoleNotAssignable),
            Change::Role(r) if r > actor => Err(RoleAboveOwn),
            Change::Deactivate if target == Owner => Err(OwnerProtected),
            _ => Ok(()),
        }
    }

    #[test]
    fn every_actor_role_target_role_and_change() {
        let mut changes: Vec<Change> = ROLES.iter().map(|r| Change::Role(*r)).collect();
        changes.extend([Change::Activate, Change::Deactivate, Change::Rename]);
        changes.push(Change::Permissions {
            grant: PermissionSet::of(&[Permission::CustomersReadAll]),
            revoke: PermissionSet::empty(),
        });
        let mut checked = 0;
        for a in ROLES {
            for t in ROLES {
                for c in &changes {
                    assert_eq!(
                        check_change(&actor(a), uid(2), t, *c),
                        expected(a, t, *c),
                        "{a:?} → {t:?}: {c:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 4 * 4 * 8);
    }

    #[test]
    fn nobody_changes_their_own_role_or_permissions() {
        for a in ROLES {
            for c in [
                Change::Role(Vendor),
                Change::Permissions {
                    grant: PermissionSet::empty(),
                    revoke: PermissionSet::empty(),
                },
            ] {
                let expected = if matches!(a, Owner | Admin) {
                    Denial::SelfChange
                } else {
                    Denial::NotAdministrator
                };
                assert_eq!(
                    check_change(&actor(a), uid(1), a, c),
                    Err(expected),
                    "{a:?} {c:?}"
                );
            }
        }
    }

    #[test]
    fn nobody_grants_or_revokes_what_they_do_not_hold() {
        let mut admin = actor(Admin);
        admin.permissions = Admin.default_permissions().with_deltas(
            PermissionSet::empty(),
            PermissionSet::of(&[Permission::FiscalSign]),
        );
        let grant = Change::Permissions {
            grant: PermissionSet::of(&[Permission::FiscalSign]),
            revoke: PermissionSet::empty(),
        };
        assert_eq!(
            check_change(&admin, uid(2), Vendor, grant),
            Err(Denial::PermissionNotHeld(Permission::FiscalSign))
        );
        let revoke = Change::Permissions {
            grant: PermissionSet::empty(),
            revoke: PermissionSet::of(&[Permission::FiscalSign]),
        };
        assert_eq!(
            check_change(&admin, uid(2), Vendor, revoke),
            Err(Denial::PermissionNotHeld(Permission::FiscalSign))
        );
        let fine = Change::Permissions {
            grant: PermissionSet::of(&[Permission::AuditRead]),
            revoke: PermissionSet::of(&[Permission::CustomersWriteAll]),
        };
        assert_eq!(check_change(&admin, uid(2), Manager, fine), Ok(()));
    }

    #[test]
    fn an_admin_without_roles_assign_is_not_an_administrator_for_roles() {
        let mut admin = actor(Admin);
        admin.permissions = Admin.default_permissions().with_deltas(
            PermissionSet::empty(),
            PermissionSet::of(&[Permission::RolesAssign]),
        );
        assert_eq!(
            check_change(&admin, uid(2), Vendor, Change::Role(Manager)),
            Err(Denial::NotAdministrator)
        );
        assert_eq!(
            check_change(&admin, uid(2), Vendor, Change::Deactivate),
            Ok(())
        );
    }

    #[test]
    fn a_manager_granted_roles_assign_is_still_not_an_administrator() {
        let mut manager = actor(Manager);
        manager.permissions = PermissionSet::all();
        assert_eq!(
            check_change(&manager, uid(2), Vendor, Change::Role(Vendor)),
            Err(Denial::NotAdministrator)
        );
    }
}
