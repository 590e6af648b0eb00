use std::fmt;

use kernel::{CompanyId, Timestamp, UserId};
use rbac::{PermissionSet, Role};
use serde::Serialize;

use crate::{FieldError, PasswordHash};

/// An email address, trimmed and lower-cased: the login name, unique across the platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Longest address accepted (RFC 5321 path limit).
    pub const MAX_LEN: usize = 254;

    /// Validates and normalizes an address.
    ///
    /// # Errors
    /// `email`/`invalid` when it is not a plausible address.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid = FieldError::new("email", "invalid");
        let email = raw.trim().to_lowercase();
        if email.is_empty() || email.chars().count() > Self::MAX_LEN {
            return Err(invalid);
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid);
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid);
        };
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.starts_with('-');
        if local.is_empty() || local.chars().count() > 64 || !domain_ok {
            return Err(invalid);
        }
        Ok(Self(email))
    }

    /// The normalized address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@`.
    #[must_use]
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or(self.0.as_str(), |(l, _)| l)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_text(raw: &str, field: &'static str, max: usize) -> Result<String, FieldError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(FieldError::new(field, "required"));
    }
    if text.chars().count() > max {
        return Err(FieldError::new(field, "too_long"));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(field, "invalid"));
    }
    Ok(text.to_owned())
}

/// A person's display name: 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    /// Validates a name for the field `field`.
    ///
    /// # Errors
    /// `required`, `too_long` or `invalid`.
    pub fn parse(raw: &str, field: &'static str) -> Result<Self, FieldError> {
        parse_text(raw, field, 200).map(Self)
    }
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A company's name: 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CompanyName(String);

impl CompanyName {
    /// Validates a company name.
    ///
    /// # Errors
    /// `company_name`: `required`, `too_long` or `invalid`.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        parse_text(raw, "company_name", 200).map(Self)
    }
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Mexican RFC (Registro Federal de Contribuyentes), upper-cased: 12 characters for a legal
/// entity (3 letters), 13 for a natural person (4 letters), then `YYMMDD` and a 3-character
/// homoclave.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Rfc(String);

impl Rfc {
    /// Validates an RFC.
    ///
    /// # Errors
    /// `rfc`/`invalid` when the shape is wrong.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid = FieldError::new("rfc", "invalid");
        let rfc = raw.trim().to_uppercase();
        let chars: Vec<char> = rfc.chars().collect();
        let letters = match chars.len() {
            12 => 3,
            13 => 4,
            _ => return Err(invalid),
        };
        let (prefix, rest) = chars.split_at(letters);
        let (date, homoclave) = rest.split_at(6);
        let prefix_ok = prefix
            .iter()
            .all(|c| c.is_ascii_uppercase() || *c == 'Ñ' || *c == '&');
        let date_ok = date.iter().all(char::is_ascii_digit) && valid_yymmdd(date);
        let homoclave_ok = homoclave
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if prefix_ok && date_ok && homoclave_ok {
            Ok(Self(rfc))
        } else {
            Err(invalid)
        }
    }

    /// The RFC.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_yymmdd(date: &[char]) -> bool {
    let num = |s: &[char]| {
        s.iter()
            .filter_map(|c| c.to_digit(10))
            .fold(0, |acc, d| acc * 10 + d)
    };
    let (month, day) = match (date.get(2..4), date.get(4..6)) {
        (Some(m), Some(d)) => (num(m), num(d)),
        _ => return false,
    };
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

impl fmt::Display for Rfc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SAT's tax regimes (c_RegimenFiscal) a company may declare.
pub const TAX_REGIMES: [&str; 19] = [
    "601", "603", "605", "606", "607", "608", "610", "611", "612", "614", "615", "616", "620",
    "621", "622", "623", "624", "625", "626",
];

/// How long new companies may log in as Owner or Admin without MFA (MFA-2).
pub const MFA_GRACE: kernel::Duration = kernel::Duration::days(14);

/// A company's configuration beyond its name (AUD-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyProfile {
    /// Razón social.
    pub legal_name: Option<String>,
    /// SAT tax regime code (`TAX_REGIMES`).
    pub tax_regime: Option<String>,
    /// Código postal of the fiscal address: five digits.
    pub postal_code: Option<String>,
    /// MFA mandatory for Owner and Admin (MFA-2).
    pub mfa_required: bool,
    /// Until then Owner and Admin may still log in without MFA.
    pub mfa_grace_until: Option<Timestamp>,
}

impl Default for CompanyProfile {
    fn default() -> Self {
        Self {
            legal_name: None,
            tax_regime: None,
            postal_code: None,
            mfa_required: true,
            mfa_grace_until: None,
        }
    }
}

/// One field of a configuration change (AUD-3): old and new values as text, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Id (time-ordered: the cursor of `GET /v1/company/changes`).
    pub id: uuid::Uuid,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor_id: UserId,
    /// The field's API name.
    pub field: String,
    /// Before (`None`: unset).
    pub old_value: Option<String>,
    /// After.
    pub new_value: Option<String>,
}

/// A company (empresa): the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    /// Id.
    pub id: CompanyId,
    /// Display name.
    pub name: CompanyName,
    /// RFC, when the company gave one (not unique: a business may run several accounts).
    pub rfc: Option<Rfc>,
    /// The company's own cap of active sessions per user; `None` uses the server default.
    pub session_limit: Option<u16>,
    /// Fiscal details and policies.
    pub profile: CompanyProfile,
    /// When it signed up.
    pub created_at: Timestamp,
}

impl Company {
    /// A tag of the configuration as it is: equal for equal configurations, different (but for
    /// a 1 in 2^64 chance) as soon as any field differs. Clients send it back (HTTP `If-Match`)
    /// so a change made on a configuration read earlier does not silently undo what another
    /// change stored since. Not a secret and not a MAC: FNV-1a over the fields, which anyone
    /// who can read the configuration can compute.
    #[must_use]
    pub fn tag(&self) -> String {
        let p = &self.profile;
        let text = |v: Option<&str>| v.unwrap_or("\u{0}").to_owned();
        let fields = [
            self.id.to_string(),
            self.name.as_str().to_owned(),
            text(self.rfc.as_ref().map(Rfc::as_str)),
            text(p.legal_name.as_deref()),
            text(p.tax_regime.as_deref()),
            text(p.postal_code.as_deref()),
            p.mfa_required.to_string(),
            text(p.mfa_grace_until.map(|t| t.to_rfc3339()).as_deref()),
            text(self.session_limit.map(|l| l.to_string()).as_deref()),
        ];
        tag_of(&fields)
    }
}

/// FNV-1a (64 bits) over `fields`, as 16 hex digits: the tags of [`Company::tag`] and
/// [`User::tag`]. Each field ends with a separator no field contains (the parsers refuse
/// control characters), so moving text from one field to the next changes the tag.
fn tag_of(fields: &[String]) -> String {
    let hash = fields
        .iter()
        .flat_map(|f| f.bytes().chain([0x1f]))
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("{hash:016x}")
}

/// A company about to be created by sign-up.
pub type NewCompany = Company;

/// A user of one company.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// The tenant it belongs to.
    pub company_id: CompanyId,
    /// Login name.
    pub email: Email,
    /// Display name.
    pub name: PersonName,
    /// Role.
    pub role: Role,
    /// ACC-1: a deactivated user cannot log in and has no live sessions.
    pub active: bool,
    /// Argon2id PHC string.
    pub password_hash: PasswordHash,
    /// Whether TOTP is enrolled.
    pub mfa_enabled: bool,
    /// Permissions granted on top of the role's defaults (RBAC-2).
    pub grants: PermissionSet,
    /// Permissions removed from the role's defaults.
    pub revokes: PermissionSet,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// Set by the operator's reset (the password was handed over by someone else): until the
    /// user changes it, their sessions may only change it (see the HTTP guard).
    pub password_change_required: bool,
}

impl User {
    /// A tag of what administrators change on this user (name, role, active, permissions; see
    /// [`Company::tag`] for what a tag is for): a change sent with it (HTTP `If-Match`) is made
    /// only while the user still has it. The address and MFA, which the user changes, are not
    /// in it: they never conflict with an administrator's change.
    #[must_use]
    pub fn tag(&self) -> String {
        tag_of(&[
            self.id.to_string(),
            self.name.as_str().to_owned(),
            self.role.as_str().to_owned(),
            self.active.to_string(),
            self.grants.names().join(","),
            self.revokes.names().join(","),
        ])
    }

    /// Where the page after this user starts, in the listing's order (oldest first).
    #[must_use]
    pub fn cursor(&self) -> kernel::TimeCursor {
        kernel::TimeCursor {
            at: self.created_at,
            id: self.id.as_uuid(),
        }
    }

    /// Effective permissions, derived (never stored): role defaults, plus grants, minus revokes.
    #[must_use]
    pub const fn permissions(&self) -> PermissionSet {
        self.role
            .default_permissions()
            .with_deltas(self.grants, self.revokes)
    }
}

/// A page of users, oldest first.
#[derive(Debug, Clone)]
pub struct UserPage {
    /// The users.
    pub items: Vec<User>,
    /// Where the next page starts; `None` after the last.
    pub next_cursor: Option<kernel::TimeCursor>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("company_id", &self.company_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_validated() {
        let e = Email::parse("  Ana.Lopez@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "ana.lopez@example.com");
        assert_eq!(e.local_part(), "ana.lopez");
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "ana@@example.com",
            "ana@example..com",
            "ana@.example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn rfcs_of_both_kinds_are_accepted() {
        assert_eq!(Rfc::parse("eku9003173c9").unwrap().as_str(), "EKU9003173C9");
        assert!(Rfc::parse("SOMG790807J57").is_ok());
        assert!(Rfc::parse("AAA010101AAA").is_ok());
        assert!(Rfc::parse("ÑA&010101AAA").is_ok());
        for bad in [
            "",
            "EKU900317",
            "EKU9013173C9",
            "EKU9003003C9",
            "E1U9003173C9",
            "EKU9003173C9X",
            "EKU9003173-9",
        ] {
            assert!(Rfc::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(
            PersonName::parse("  Ana  ", "name").unwrap().as_str(),
            "Ana"
        );
        assert_eq!(
            PersonName::parse(" ", "name"),
            Err(FieldError::new("name", "required"))
        );
        assert_eq!(
            PersonName::parse(&"x".repeat(201), "name"),
            Err(FieldError::new("name", "too_long"))
        );
        assert_eq!(
            CompanyName::parse("A\u{0}B"),
            Err(FieldError::new("company_name", "invalid"))
        );
    }
}
