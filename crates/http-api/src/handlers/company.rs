//! Company configuration (AUD-3): read, change with a field-level log, and the log itself.

use accounts::{Company, CompanyPatch};
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use crate::dto::ts;
use crate::{ApiError, ApiState, Auth, ClientContext};

/// `absent` → `None`, `null` → `Some(None)`, a value → `Some(Some(v))`.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompanyBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    rfc: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    legal_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    tax_regime: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    postal_code: Option<Option<String>>,
    #[serde(default)]
    mfa_required: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    mfa_grace_until: Option<Option<chrono::DateTime<chrono::Utc>>>,
    #[serde(default)]
    session_limit: Option<u16>,
}

fn dto(c: &Company, default_limit: u16) -> serde_json::Value {
    json!({
        "id": c.id.to_string(),
        "name": c.name.as_str(),
        "rfc": c.rfc.as_ref().map(|r| r.as_str()),
        "legal_name": c.profile.legal_name,
        "tax_regime": c.profile.tax_regime,
        "postal_code": c.profile.postal_code,
        "mfa_required": c.profile.mfa_required,
        "mfa_grace_until": c.profile.mfa_grace_until.map(ts),
        "session_limit": c.session_limit.unwrap_or(default_limit),
        "created_at": ts(c.created_at),
    })
}

pub(crate) async fn get(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let company = state.accounts.get_company(auth.actor(), &ctx.0).await?;
    Ok(HttpResponse::Ok().json(dto(&company, state.sessions.config().default_cap)))
}

pub(crate) async fn update(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: web::Json<CompanyBody>,
) -> Result<HttpResponse, ApiError> {
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
    };
    let company = state
        .accounts
        .update_company(auth.actor(), patch, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(dto(&company, state.sessions.config().default_cap)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChangesQuery {
    cursor: Option<uuid::Uuid>,
    limit: Option<u64>,
}

pub(crate) async fn changes(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<ChangesQuery>,
) -> Result<HttpResponse, ApiError> {
    let (items, next) = state
        .accounts
        .company_changes(auth.actor(), q.cursor, q.limit.unwrap_or(50), &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "items": items.iter().map(|c| json!({
            "id": c.id.to_string(),
            "at": ts(c.at),
            "actor_id": c.actor_id.to_string(),
            "field": c.field,
            "old_value": c.old_value,
            "new_value": c.new_value,
        })).collect::<Vec<_>>(),
        "next_cursor": next.map(|n| n.to_string()),
    })))
}
