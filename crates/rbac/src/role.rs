use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Permission, PermissionSet, RbacError};

/// The four hierarchical roles (RBAC-1), highest first. `Ord` follows rank: `Owner > Admin >
/// Manager > Vendor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Limited to customers, sales and functions assigned to it.
    Vendor,
    /// Intermediate supervision, no critical configuration.
    Manager,
    /// Advanced operations, no control over the Owner.
    Admin,
    /// Full control of the account and its global configuration. Exactly one per company.
    Owner,
}

impl Role {
    /// Every role, highest first.
    pub const ALL: [Self; 4] = [Self::Owner, Self::Admin, Self::Manager, Self::Vendor];

    /// The stable lower-case name used in the API and the database.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Vendor => "vendor",
        }
    }

    /// `true` when `self` ranks strictly above `other`.
    #[must_use]
    pub fn outranks(self, other: Self) -> bool {
        self > other
    }

    /// The least-privilege default permission set of the role (RBAC-2).
    #[must_use]
    pub const fn default_permissions(self) -> PermissionSet {
        use Permission as P;
        match self {
            Self::Owner => PermissionSet::all(),
            // Everything but what makes the Owner the Owner.
            Self::Admin => PermissionSet::of(&[
                P::UsersRead,
                P::UsersManage,
                P::RolesAssign,
                P::CompanyConfigRead,
                P::CompanyConfigWrite,
                P::FiscalCredentialsManage,
                P::FiscalCredentialsRead,
                P::FiscalSign,
                P::AuditRead,
                P::IncidentsManage,
                P::CustomersReadAll,
                P::CustomersWriteAll,
            ]),
            // The user directory is Owner/Admin business (issue 2: Manager and Vendor get 403).
            Self::Manager => PermissionSet::of(&[
                P::CompanyConfigRead,
                P::CustomersReadAll,
                P::CustomersWriteAll,
            ]),
            Self::Vendor => {
                PermissionSet::of(&[P::CustomersReadAssigned, P::CustomersWriteAssigned])
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RbacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RbacError::UnknownRole(s.chars().take(32).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_rank() {
        assert!(Role::Owner.outranks(Role::Admin));
        assert!(Role::Admin.outranks(Role::Manager));
        assert!(Role::Manager.outranks(Role::Vendor));
        assert!(!Role::Admin.outranks(Role::Admin));
        assert!(!Role::Vendor.outranks(Role::Owner));
    }

    #[test]
    fn names_round_trip_and_unknown_names_fail() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!(matches!(
            "Owner".parse::<Role>(),
            Err(RbacError::UnknownRole(_))
        ));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn lower_roles_hold_a_subset_of_higher_ones() {
        for pair in Role::ALL.windows(2) {
            let [high, low] = pair else { unreachable!() };
            assert!(
                high.default_permissions()
                    .is_superset_of(low.default_permissions())
                    || *low == Role::Vendor,
                "{high:?} should hold everything {low:?} holds"
            );
        }
        // Vendors hold the assigned-only variants, whose broader variants the others hold.
        for p in Role::Vendor.default_permissions().iter() {
            let wider = p.broader().unwrap_or(p);
            assert!(Role::Manager.default_permissions().contains(wider));
        }
    }

    #[test]
    fn only_owner_and_admin_manage_users_and_fiscal_credentials() {
        for role in Role::ALL {
            let set = role.default_permissions();
            let privileged = matches!(role, Role::Owner | Role::Admin);
            assert_eq!(set.contains(Permission::UsersManage), privileged);
            assert_eq!(set.contains(Permission::UsersRead), privileged);
            assert_eq!(
                set.contains(Permission::OwnershipTransfer),
                role == Role::Owner
            );
            assert_eq!(
                set.contains(Permission::FiscalCredentialsManage),
                privileged
            );
            assert_eq!(set.contains(Permission::CompanyConfigWrite), privileged);
        }
    }
}
