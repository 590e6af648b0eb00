//! Request and response bodies of API v1. Requests carry secrets as `SecretString` (zeroized on
//! drop, never in `Debug`); responses never carry secrets at all.

use accounts::{Company, User};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sessions::{Session, SessionView};
use utoipa::ToSchema;

use crate::openapi::schemas;

/// The page size a list route was asked for: 50 when absent, `1..=max` or a clear 400.
pub(crate) fn page_size(limit: Option<u32>, max: u64) -> Result<u64, crate::ApiError> {
    match limit {
        None => Ok(50_u64.min(max)),
        Some(n) if (1..=max).contains(&u64::from(n)) => Ok(u64::from(n)),
        Some(_) => Err(crate::ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "malformed_request",
            "Malformed request",
            format!("limit is 1 to {max}"),
        )),
    }
}

/// The page size of a list that answered up to `max` items before it had pages: `max` unless
/// the client asks for fewer.
pub(crate) fn list_limit(limit: Option<u32>, max: u64) -> Result<u64, crate::ApiError> {
    match limit {
        None => Ok(max),
        Some(_) => page_size(limit, max),
    }
}

/// Paging of the lists ordered by time (`GET /v1/users`, `GET /v1/incidents`): a cursor and a
/// page size that defaults to the largest.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TimePageParams {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 200 (default 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

impl TimePageParams {
    /// Where the page starts and how many it holds, at most `max`.
    ///
    /// # Errors
    /// 400 for a cursor that is not a `next_cursor`, or a size out of range.
    pub(crate) fn read(
        &self,
        max: u64,
    ) -> Result<(Option<kernel::TimeCursor>, u64), crate::ApiError> {
        Ok((
            time_cursor(self.cursor.as_deref())?,
            list_limit(self.limit, max)?,
        ))
    }
}

/// The `cursor` of a list ordered newest first, if given: the `next_cursor` of an earlier page.
pub(crate) fn time_cursor(
    cursor: Option<&str>,
) -> Result<Option<kernel::TimeCursor>, crate::ApiError> {
    cursor
        .map(|c| {
            kernel::TimeCursor::parse(c).ok_or_else(|| {
                crate::ApiError::new(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "malformed_request",
                    "Malformed request",
                    "cursor is the next_cursor of an earlier page",
                )
            })
        })
        .transpose()
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A new company and its Owner (`POST /v1/signup`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"company_name": "Abarrotes Lupita", "email": "lupita@example.mx", "password": "una frase larga y rara", "password_confirmation": "una frase larga y rara", "name": "Guadalupe Pérez", "rfc": "AAL010101AB1"}))]
pub(crate) struct SignupBody {
    pub company_name: String,
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub password_confirmation: SecretString,
    pub name: String,
    #[serde(default)]
    pub rfc: Option<String>,
}

/// Credentials for a new session; the second factor when the user has MFA.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "lupita@example.mx", "password": "una frase larga y rara"}))]
pub(crate) struct LoginBody {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    #[schema(value_type = Option<String>, format = Password)]
    #[serde(default)]
    pub totp_code: Option<SecretString>,
    #[schema(value_type = Option<String>, format = Password)]
    #[serde(default)]
    pub recovery_code: Option<SecretString>,
}

/// The first code from the authenticator app, confirming the enrolment.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ConfirmMfaBody {
    #[schema(value_type = String, format = Password)]
    pub code: SecretString,
}

/// The address of the account whose password was forgotten.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "lupita@example.mx"}))]
pub(crate) struct PasswordResetBody {
    pub email: String,
}

/// The code from the password-reset e-mail and the new password, twice.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasswordResetConfirmBody {
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password_confirmation: SecretString,
}

/// The address the caller wants to use from now on.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"new_email": "lupita@nuevo.mx"}))]
pub(crate) struct EmailChangeBody {
    pub new_email: String,
}

/// The code e-mailed to the new address.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmailChangeConfirmBody {
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
}

/// A change of address waiting for its code.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PendingEmailChangeDto {
    /// The address the code was sent to.
    #[schema(format = Email)]
    pub pending_email: String,
    /// When the code stops working.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// The caller's address, and a change of it waiting for its code.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmailStatusDto {
    /// The address the account uses now.
    #[schema(format = Email)]
    pub email: String,
    /// The address a code was sent to, while that code works; `null` otherwise.
    #[schema(format = Email)]
    pub pending_email: Option<String>,
    /// When that code stops working; `null` when nothing is pending.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// The current password and the new one, twice.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ChangePasswordBody {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password_confirmation: SecretString,
}

/// A user of the caller's company.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewUserBody {
    pub email: String,
    pub name: String,
    pub role: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub password_confirmation: SecretString,
}

/// Fields to change; absent fields are left alone.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct UserPatchBody {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// The password again (and a TOTP code when MFA is on), to open the step-up window.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ReauthenticateBody {
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    #[schema(value_type = Option<String>, format = Password)]
    #[serde(default)]
    pub totp_code: Option<SecretString>,
}

/// The new role: `admin`, `manager` or `vendor`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RoleBody {
    pub role: String,
}

/// Permissions to grant and to revoke, by name.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PermissionsBody {
    #[serde(default)]
    pub grant: Vec<String>,
    #[serde(default)]
    pub revoke: Vec<String>,
}

/// The user who is to become the Owner.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct TransferBody {
    #[schema(value_type = uuid::Uuid)]
    pub to_user_id: kernel::UserId,
}

/// An ownership transfer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TransferDto {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(schema_with = schemas::transfer_status)]
    pub status: &'static str,
    #[schema(format = Uuid)]
    pub from_user_id: String,
    #[schema(format = Uuid)]
    pub to_user_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// A pending transfer not accepted by then expires.
    #[schema(format = DateTime)]
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

/// A company, as the sign-up answer shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CompanyDto {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    /// Registro Federal de Contribuyentes.
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

/// The new Owner, as the sign-up answer shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OwnerDto {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Email)]
    pub email: String,
    pub name: String,
    #[schema(schema_with = schemas::role)]
    pub role: &'static str,
}

/// The answer to a sign-up: the company and its Owner (who logs in next).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignupDto {
    pub company: CompanyDto,
    pub user: OwnerDto,
}

/// A user of the caller's company. `permissions` appears on single-user answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserDto {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Email)]
    pub email: String,
    pub name: String,
    #[schema(schema_with = schemas::role)]
    pub role: &'static str,
    pub active: bool,
    pub mfa_enabled: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The effective permissions (role defaults with grants and revocations applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schemas::permission_list)]
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

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeDto {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Email)]
    pub email: String,
    pub name: String,
    #[schema(schema_with = schemas::role)]
    pub role: &'static str,
    #[schema(format = Uuid)]
    pub company_id: String,
    pub active: bool,
    pub mfa_enabled: bool,
    #[schema(schema_with = schemas::permission_list)]
    pub permissions: Vec<&'static str>,
    /// Present (`true`) while the caller must change a password the operator reset.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub password_change_required: bool,
}

/// A session just created.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewSessionDto {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
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

/// The answer to a login. The token is shown once; send it as `Authorization: Bearer <token>`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoginDto {
    pub token: String,
    pub session: NewSessionDto,
    /// Older sessions closed because the company's session limit was reached (SES-3).
    #[schema(schema_with = schemas::uuid_list)]
    pub revoked_session_ids: Vec<String>,
    /// An Owner or Admin without MFA must enrol by then (MFA-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub mfa_enrolment_due: Option<String>,
    /// An Owner or Admin without MFA must enrol now: only the enrolment routes answer until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_enrolment_required: Option<bool>,
    /// Present when a recovery code was used: how many are left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes_remaining: Option<u32>,
    /// The password was reset by the platform's operator: only `PUT /v1/me/password` (and the
    /// caller's profile, sessions and logout) answer until it is changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_change_required: Option<bool>,
}

/// One of the caller's open sessions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionDto {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The session making this request.
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

/// Until when step-up routes are open to this session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReauthenticatedDto {
    #[schema(format = DateTime)]
    pub reauthenticated_until: String,
}

/// A list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Items<T> {
    pub items: Vec<T>,
}

/// A page of a long list: pass `next_cursor` as `cursor` for the next one (`null`: the last page).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A liveness or readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusDto {
    /// `ok` (alive) or `ready`.
    pub status: &'static str,
}

/// The TOTP enrolment of `POST /v1/me/mfa/totp`: shown once, confirmed by the first code.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotpEnrolmentDto {
    /// Base32 secret, for typing into the app by hand.
    pub secret: String,
    /// `otpauth://totp/...` URI.
    pub otpauth_uri: String,
    /// The URI as a QR code, PNG in base64.
    #[schema(content_encoding = "base64", content_media_type = "image/png")]
    pub qr_png_base64: String,
}

/// Single-use recovery codes, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecoveryCodesDto {
    pub recovery_codes: Vec<String>,
}

/// The caller's MFA state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MfaStatusDto {
    /// TOTP is confirmed.
    pub enabled: bool,
    /// An enrolment waits for its first code.
    pub pending: bool,
    /// Unused recovery codes left.
    pub recovery_codes_remaining: u32,
}
