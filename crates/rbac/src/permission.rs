use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::RbacError;

/// Version of the permission catalog. Adding a permission bumps the minor part; renaming or
/// removing one is a breaking change and bumps the major part.
pub const CATALOG_VERSION: &str = "1.2";

/// The permission catalog (RBAC-2): stable `noun.verb` names, part of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
#[repr(u8)]
pub enum Permission {
    /// List and read users of the company.
    UsersRead = 0,
    /// Create, activate, deactivate and rename users.
    UsersManage = 1,
    /// Change roles and per-user permissions.
    RolesAssign = 2,
    /// Read company configuration.
    CompanyConfigRead = 3,
    /// Change company configuration.
    CompanyConfigWrite = 4,
    /// Upload and delete SAT credentials.
    FiscalCredentialsManage = 5,
    /// Sign with a stored SAT credential.
    FiscalSign = 6,
    /// Read, export and verify the audit log.
    AuditRead = 7,
    /// Open and manage security incidents.
    IncidentsManage = 8,
    /// Read customers assigned to oneself.
    CustomersReadAssigned = 9,
    /// Read every customer of the company.
    CustomersReadAll = 10,
    /// Change customers assigned to oneself.
    CustomersWriteAssigned = 11,
    /// Change every customer of the company.
    CustomersWriteAll = 12,
    /// Start an ownership transfer (the Owner's alone by default).
    OwnershipTransfer = 13,
    /// List and read SAT credentials' metadata (never key material).
    FiscalCredentialsRead = 14,
}

impl Permission {
    /// The whole catalog, in a stable order.
    pub const ALL: [Self; 15] = [
        Self::UsersRead,
        Self::UsersManage,
        Self::RolesAssign,
        Self::CompanyConfigRead,
        Self::CompanyConfigWrite,
        Self::FiscalCredentialsManage,
        Self::FiscalSign,
        Self::AuditRead,
        Self::IncidentsManage,
        Self::CustomersReadAssigned,
        Self::CustomersReadAll,
        Self::CustomersWriteAssigned,
        Self::CustomersWriteAll,
        Self::OwnershipTransfer,
        Self::FiscalCredentialsRead,
    ];

    /// The stable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UsersRead => "users.read",
            Self::UsersManage => "users.manage",
            Self::RolesAssign => "roles.assign",
            Self::CompanyConfigRead => "company.config.read",
            Self::CompanyConfigWrite => "company.config.write",
            Self::FiscalCredentialsManage => "fiscal.credentials.manage",
            Self::FiscalSign => "fiscal.sign",
            Self::AuditRead => "audit.read",
            Self::IncidentsManage => "incidents.manage",
            Self::CustomersReadAssigned => "customers.read.assigned",
            Self::CustomersReadAll => "customers.read.all",
            Self::CustomersWriteAssigned => "customers.write.assigned",
            Self::CustomersWriteAll => "customers.write.all",
            Self::OwnershipTransfer => "ownership.transfer",
            Self::FiscalCredentialsRead => "fiscal.credentials.read",
        }
    }

    /// What the permission allows, for the documentation.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::UsersRead => "List and read the users of the company.",
            Self::UsersManage => "Create, rename, activate and deactivate users.",
            Self::RolesAssign => "Change roles and per-user permissions (with step-up).",
            Self::CompanyConfigRead => "Read the company configuration.",
            Self::CompanyConfigWrite => "Change the company configuration.",
            Self::FiscalCredentialsManage => "Upload and delete SAT credentials (with step-up).",
            Self::FiscalSign => "Sign with a stored SAT credential.",
            Self::AuditRead => "Read, verify and export the audit log.",
            Self::IncidentsManage => "Open and manage security incidents.",
            Self::CustomersReadAssigned => "Read customers assigned to oneself.",
            Self::CustomersReadAll => "Read every customer of the company.",
            Self::CustomersWriteAssigned => "Change customers assigned to oneself.",
            Self::CustomersWriteAll => "Change every customer of the company.",
            Self::OwnershipTransfer => "Start an ownership transfer (with step-up).",
            Self::FiscalCredentialsRead => {
                "List and read SAT credentials' metadata (never key material)."
            }
        }
    }

    /// For an assigned-only permission, the company-wide one that covers it.
    #[must_use]
    pub const fn broader(self) -> Option<Self> {
        match self {
            Self::CustomersReadAssigned => Some(Self::CustomersReadAll),
            Self::CustomersWriteAssigned => Some(Self::CustomersWriteAll),
            _ => None,
        }
    }

    /// `true` for permissions limited to records assigned to the actor.
    #[must_use]
    pub const fn is_assigned_only(self) -> bool {
        self.broader().is_some()
    }

    const fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = RbacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| RbacError::UnknownPermission(s.chars().take(64).collect()))
    }
}

impl TryFrom<String> for Permission {
    type Error = RbacError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Permission> for &'static str {
    fn from(p: Permission) -> Self {
        p.as_str()
    }
}

/// A set of permissions as a bit set: membership is one AND, so [`crate::authorize`] never
/// allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u32);

impl PermissionSet {
    /// No permission.
    #[must_use]
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The whole catalog.
    #[must_use]
    pub const fn all() -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < Permission::ALL.len() {
            // `i` stays within the array's bounds by the loop condition.
            #[allow(clippy::indexing_slicing)]
            {
                bits |= Permission::ALL[i].bit();
            }
            i += 1;
        }
        Self(bits)
    }

    /// The set of the listed permissions.
    #[must_use]
    pub const fn of(perms: &[Permission]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < perms.len() {
            #[allow(clippy::indexing_slicing)]
            {
                bits |= perms[i].bit();
            }
            i += 1;
        }
        Self(bits)
    }

    /// Membership.
    #[must_use]
    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// `true` when every permission of `other` is in `self`.
    #[must_use]
    pub const fn is_superset_of(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` plus `grants` minus `revokes`: how effective permissions are derived from a role's
    /// defaults and a user's deltas.
    #[must_use]
    pub const fn with_deltas(self, grants: Self, revokes: Self) -> Self {
        Self((self.0 | grants.0) & !revokes.0)
    }

    /// The members, in catalog order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// The stable names of the members, in catalog order.
    #[must_use]
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::as_str).collect()
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Permission::as_str))
            .finish()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, p| bits | p.bit()))
    }
}

/// The permission catalog as Markdown (`docs/permissions.md` is generated from this, and a test
/// fails when the file is stale).
#[must_use]
pub fn catalog_markdown() -> String {
    use crate::Role;
    let mut out = format!(
        "# Permission catalog (version {CATALOG_VERSION})\n\n\
         Generated from `crates/rbac` (`rbac::catalog_markdown`); do not edit by hand. Run\n\
         `UPDATE_DOCS=1 cargo test -p http-api generated_docs` after changing the catalog.\n\n\
         Names are stable: adding a permission bumps the minor version, renaming or removing one\n\
         the major. Effective permissions of a user are its role's defaults plus per-user grants\n\
         minus per-user revocations (`PUT /v1/users/{{id}}/permissions`).\n\n\
         | permission | what it allows | owner | admin | manager | vendor |\n\
         |---|---|---|---|---|---|\n"
    );
    for p in Permission::ALL {
        let mark = |r: Role| {
            if r.default_permissions().contains(p) {
                "✓"
            } else {
                "—"
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            p.as_str(),
            p.description(),
            mark(Role::Owner),
            mark(Role::Admin),
            mark(Role::Manager),
            mark(Role::Vendor)
        ));
    }
    out.push_str(
        "\n`*.assigned` permissions cover records assigned to the user; the matching `*.all`\n\
         permission covers every record of the company and implies the `.assigned` one.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for p in Permission::ALL {
            assert!(seen.insert(p.as_str()), "duplicate name {}", p.as_str());
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        }
        assert!(matches!(
            "users.delete".parse::<Permission>(),
            Err(RbacError::UnknownPermission(_))
        ));
    }

    #[test]
    fn set_operations() {
        let set = PermissionSet::of(&[Permission::UsersRead, Permission::AuditRead]);
        assert!(set.contains(Permission::UsersRead));
        assert!(!set.contains(Permission::UsersManage));
        let derived = set.with_deltas(
            PermissionSet::of(&[Permission::UsersManage]),
            PermissionSet::of(&[Permission::AuditRead]),
        );
        assert_eq!(derived.names(), vec!["users.read", "users.manage"]);
        assert_eq!(PermissionSet::all().iter().count(), Permission::ALL.len());
        assert!(PermissionSet::all().is_superset_of(set));
        assert!(!set.is_superset_of(PermissionSet::all()));
    }

    #[test]
    fn serde_uses_stable_names() {
        let json = serde_json_like(Permission::FiscalSign);
        assert_eq!(json, "fiscal.sign");
    }

    fn serde_json_like(p: Permission) -> &'static str {
        p.into()
    }
}
