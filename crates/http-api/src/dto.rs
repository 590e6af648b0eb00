//! Request and response bodies of API v1. Requests carry secrets as `SecretString` (zeroized on
//! drop, never in `Debug`); responses never carry secrets at all.

use accounts::{Company, User};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sessions::{Session, SessionView};

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignupBody {
    pub company_name: String,
    pub email: String,
    pub password: SecretString,
    pub password_confirmation: SecretString,
    pub name: String,
    #[serde(default)]
    pub rfc: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginBody {
    pub email: String,
    pub password: SecretString,
    #[serde(default)]
    pub totp_code: Option<SecretString>,
    #[serde(default)]
    pub recovery_code: Option<SecretString>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmMfaBody {
    pub code: SecretString,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChangePasswordBody {
    pub current_password: SecretString,
    pub new_password: SecretString,
    pub new_password_confirmation: SecretString,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewUserBody {
    pub email: String,
    pub name: String,
    pub role: String,
    pub password: SecretString,
    pub password_confirmation: SecretString,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserPatchBody {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReauthenticateBody {
    pub password: SecretString,
    #[serde(default)]
    pub totp_code: Option<SecretString>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RoleBody {
    pub role: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PermissionsBody {
    #[serde(default)]
    pub grant: Vec<String>,
    #[serde(default)]
    pub revoke: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TransferBody {
    pub to_user_id: kernel::UserId,
}

#[derive(Debug, Serialize)]
pub(crate) struct TransferDto {
    pub id: String,
    pub status: &'static str,
    pub from_user_id: String,
    pub to_user_id: String,
    pub created_at: String,
    pub expires_at: String,
}

impl From<&accounts::OwnershipTransfer> for TransferDto {
    fn from(t: &accounts::OwnershipTransfer) -> Self {
        Self {
            id: t.id.to_string(),
            status: t.status.as_str(),
            from_user_id: t.from_user_id.to_string(),
            to_user_id: t.to_user_id.to_string(),
            created_at: ts(t.created_at),
            expires_at: ts(t.expires_at),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct CompanyDto {
    pub id: String,
    pub name: String,
    pub rfc: Option<String>,
}

impl From<&Company> for CompanyDto {
    fn from(c: &Company) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name.as_str().to_owned(),
            rfc: c.rfc.as_ref().map(|r| r.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct UserDto {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: &'static str,
    pub active: bool,
    pub mfa_enabled: bool,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<&'static str>>,
}

impl UserDto {
    pub(crate) fn new(u: &User, with_permissions: bool) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.as_str().to_owned(),
            name: u.name.as_str().to_owned(),
            role: u.role.as_str(),
            active: u.active,
            mfa_enabled: u.mfa_enabled,
            created_at: ts(u.created_at),
            permissions: with_permissions.then(|| u.permissions().names()),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct MeDto {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: &'static str,
    pub company_id: String,
    pub active: bool,
    pub mfa_enabled: bool,
    pub permissions: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct NewSessionDto {
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
}

impl From<&Session> for NewSessionDto {
    fn from(s: &Session) -> Self {
        Self {
            id: s.id.to_string(),
            created_at: ts(s.created_at),
            expires_at: ts(s.expires_at),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct SessionDto {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

impl From<&SessionView> for SessionDto {
    fn from(v: &SessionView) -> Self {
        let s = &v.session;
        Self {
            id: s.id.to_string(),
            created_at: ts(s.created_at),
            last_seen_at: ts(s.last_seen_at),
            expires_at: ts(s.expires_at),
            ip: s.ip.map(|ip| ip.to_string()),
            user_agent: s.user_agent.clone(),
            current: v.current,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Items<T> {
    pub items: Vec<T>,
}
