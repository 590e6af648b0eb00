//! Company configuration (AUD-3): read, change with a field-level log, and the log itself.

use accounts::{Company, CompanyPatch};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::dto::{Page, ts};
use crate::error::Body;
use crate::{ApiError, ApiState, Auth, ClientContext};

/// `absent` → `None`, `null` → `Some(None)`, a value → `Some(Some(v))`.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Fields to change; absent fields are left alone, `null` clears an optional one. Unknown fields
/// are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompanyBody {
    #[serde(default)]
    name: Option<String>,
    /// Registro Federal de Contribuyentes of a company (12 characters).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    rfc: Option<Option<String>>,
    /// Razón social.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    legal_name: Option<Option<String>>,
    /// SAT tax regime code (`601`, `612`, ...).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    tax_regime: Option<Option<String>>,
    /// Five digits.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    postal_code: Option<Option<String>>,
    /// MFA mandatory for Owner and Admin (MFA-2).
    #[serde(default)]
    mfa_required: Option<bool>,
    /// Until then Owner and Admin may still log in without MFA.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    mfa_grace_until: Option<Option<chrono::DateTime<chrono::Utc>>>,
    /// Open sessions per user (SES-3).
    #[serde(default)]
    session_limit: Option<u16>,
}

/// The company's configuration.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CompanyConfigDto {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    rfc: Option<String>,
    legal_name: Option<String>,
    tax_regime: Option<String>,
    postal_code: Option<String>,
    mfa_required: bool,
    #[schema(format = DateTime)]
    mfa_grace_until: Option<String>,
    /// Open sessions per user; the oldest is closed beyond it (SES-3).
    session_limit: u16,
    #[schema(format = DateTime)]
    created_at: String,
}

fn dto(c: &Company, default_limit: u16) -> CompanyConfigDto {
    CompanyConfigDto {
        id: c.id.to_string(),
        name: c.name.as_str().to_owned(),
        rfc: c.rfc.as_ref().map(|r| r.as_str().to_owned()),
        legal_name: c.profile.legal_name.clone(),
        tax_regime: c.profile.tax_regime.clone(),
        postal_code: c.profile.postal_code.clone(),
        mfa_required: c.profile.mfa_required,
        mfa_grace_until: c.profile.mfa_grace_until.map(ts),
        session_limit: c.session_limit.unwrap_or(default_limit),
        created_at: ts(c.created_at),
    }
}

/// 200 with the configuration and its `ETag` (a quoted [`Company::tag`]), which a change sends
/// back in `If-Match`.
fn config_response(c: &Company, default_limit: u16) -> HttpResponse {
    super::tagged(&c.tag()).json(dto(c, default_limit))
}

/// One change to the company's configuration.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChangeDto {
    #[schema(format = Uuid)]
    id: String,
    #[schema(format = DateTime)]
    at: String,
    #[schema(format = Uuid)]
    actor_id: String,
    field: String,
    old_value: Option<String>,
    new_value: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/company", tag = "company", operation_id = "get_company",
    summary = "The company's configuration",
    responses((status = 200, description = "The configuration.", body = CompanyConfigDto,
        headers(("ETag" = String, description = "The configuration's entity tag: send it in \
                  `If-Match` to change only what you read.")))),
)]
pub(crate) async fn get(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let company = state.accounts.get_company(auth.actor(), &ctx.0).await?;
    Ok(config_response(
        &company,
        state.sessions.config().default_cap,
    ))
}

#[utoipa::path(
    patch, path = "/v1/company", tag = "company", operation_id = "update_company",
    summary = "Change the company's configuration",
    description = "Every changed field is recorded with its old and new value \
                   (`GET /v1/company/changes`) and audited. With `If-Match` (the `ETag` of a \
                   read), the change is made only if the configuration is still the one read; \
                   otherwise 412 `precondition_failed` and nothing changes.",
    params(("If-Match" = Option<String>, Header,
        description = "`*` or the quoted `ETag` of the configuration the change was made on.")),
    request_body = CompanyBody,
    responses((status = 200, description = "The configuration after the change.", body = CompanyConfigDto,
        headers(("ETag" = String, description = "The entity tag of the configuration now.")))),
)]
pub(crate) async fn update(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    req: HttpRequest,
    body: Body<CompanyBody>,
) -> Result<HttpResponse, ApiError> {
    let if_match = super::if_match(&req)?;
    let b = body.into_inner();
    // `null` clears a text field: the core treats an empty text as "unset".
    let text = |v: Option<Option<String>>| v.map(Option::unwrap_or_default);
    let patch = CompanyPatch {
        name: b.name,
        rfc: text(b.rfc),
        legal_name: text(b.legal_name),
        tax_regime: text(b.tax_regime),
        postal_code: text(b.postal_code),
        mfa_required: b.mfa_required,
        mfa_grace_until: b.mfa_grace_until,
        session_limit: b.session_limit,
        if_match,
    };
    let company = state
        .accounts
        .update_company(auth.actor(), patch, &ctx.0)
        .await?;
    Ok(config_response(
        &company,
        state.sessions.config().default_cap,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChangesQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<uuid::Uuid>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/v1/company/changes", tag = "company", operation_id = "company_changes",
    summary = "History of configuration changes, newest first",
    params(ChangesQuery),
    responses((status = 200, description = "A page of changes.", body = Page<ChangeDto>)),
)]
pub(crate) async fn changes(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<ChangesQuery>,
) -> Result<HttpResponse, ApiError> {
    let (items, next) = state
        .accounts
        .company_changes(
            auth.actor(),
            q.cursor,
            crate::dto::page_size(q.limit, accounts::MAX_CHANGES_PAGE)?,
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page {
        items: items
            .iter()
            .map(|c| ChangeDto {
                id: c.id.to_string(),
                at: ts(c.at),
                actor_id: c.actor_id.to_string(),
                field: c.field.clone(),
                old_value: c.old_value.clone(),
                new_value: c.new_value.clone(),
            })
            .collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}
