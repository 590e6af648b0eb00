//! The fiscal vault's routes. Uploads are read in memory with bounds and never written to disk
//! (VAULT-5); the key and its password live in zeroizing buffers; no answer carries them.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vault::{CredentialView, SecretBytes};
use zeroize::Zeroizing;

use crate::dto::ts;
use crate::error::too_large_upload;
use crate::{ApiError, ApiState, Auth, ClientContext, UPLOAD_FILE_LIMIT, UPLOAD_REQUEST_LIMIT};

#[derive(Debug, Serialize)]
struct CredentialDto {
    id: String,
    kind: &'static str,
    rfc: String,
    representative_rfc: Option<String>,
    curp: Option<String>,
    legal_name: String,
    certificate_number: String,
    issuer: String,
    valid_from: String,
    valid_to: String,
    days_to_expiry: i64,
    expiring_soon: bool,
    created_at: String,
}

impl From<&CredentialView> for CredentialDto {
    fn from(v: &CredentialView) -> Self {
        let c = &v.credential;
        let i = &c.info;
        Self {
            id: c.id.to_string(),
            kind: i.kind.as_str(),
            rfc: i.rfc.clone(),
            representative_rfc: i.representative_rfc.clone(),
            curp: i.curp.clone(),
            legal_name: i.legal_name.clone(),
            certificate_number: i.certificate_number.clone(),
            issuer: i.issuer.clone(),
            valid_from: ts(i.valid_from),
            valid_to: ts(i.valid_to),
            days_to_expiry: v.days_to_expiry,
            expiring_soon: v.expiring_soon,
            created_at: ts(c.created_at),
        }
    }
}

fn bad_form(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_request",
        "Malformed request",
        detail,
    )
}

/// The three parts of an upload, read in memory.
#[derive(Default)]
struct UploadForm {
    certificate: Option<Vec<u8>>,
    private_key: Option<Zeroizing<Vec<u8>>>,
    password: Option<Zeroizing<Vec<u8>>>,
}

/// At most this many parts are read: the form has three.
const MAX_PARTS: usize = 8;

fn form_error(e: &actix_multipart::MultipartError) -> ApiError {
    use actix_multipart::MultipartError as M;
    match e {
        M::ContentTypeMissing | M::ContentTypeParse | M::ContentTypeIncompatible => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send the credential as multipart/form-data with the parts certificate, private_key and password",
        ),
        _ => bad_form("the multipart body is malformed"),
    }
}

async fn read_form(mut payload: Multipart) -> Result<UploadForm, ApiError> {
    let mut form = UploadForm::default();
    let mut total = 0_usize;
    let mut parts = 0_usize;
    while let Some(mut field) = payload.try_next().await.map_err(|e| form_error(&e))? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(bad_form("too many form parts"));
        }
        let name = field.name().unwrap_or_default().to_owned();
        if !matches!(name.as_str(), "certificate" | "private_key" | "password") {
            return Err(bad_form(format!(
                "unexpected form part `{}`",
                name.chars().take(40).collect::<String>()
            )));
        }
        let mut buf = Zeroizing::new(Vec::new());
        while let Some(chunk) = field.try_next().await.map_err(|e| form_error(&e))? {
            total = total.saturating_add(chunk.len());
            if buf.len().saturating_add(chunk.len()) > UPLOAD_FILE_LIMIT
                || total > UPLOAD_REQUEST_LIMIT
            {
                return Err(too_large_upload());
            }
            buf.extend_from_slice(&chunk);
        }
        let duplicate = match name.as_str() {
            "certificate" => form.certificate.replace(buf.to_vec()).is_some(),
            "private_key" => form.private_key.replace(buf).is_some(),
            _ => form.password.replace(buf).is_some(),
        };
        if duplicate {
            return Err(bad_form(format!("the form part `{name}` appears twice")));
        }
    }
    Ok(form)
}

pub(crate) async fn upload(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    payload: Multipart,
) -> Result<HttpResponse, ApiError> {
    let form = read_form(payload).await?;
    let (Some(certificate), Some(private_key), Some(password)) =
        (form.certificate, form.private_key, form.password)
    else {
        return Err(bad_form(
            "the form needs the parts certificate, private_key and password",
        ));
    };
    // A password typed with a trailing newline (copied from password.txt) is the same password.
    let trimmed: &[u8] = password
        .strip_suffix(b"\r\n")
        .or_else(|| password.strip_suffix(b"\n"))
        .unwrap_or(&password);
    let password = SecretBytes::new(trimmed.to_vec());
    let private_key = SecretBytes::new(private_key.to_vec());
    let view = state
        .vault
        .upload(auth.actor(), &certificate, private_key, password, &ctx.0)
        .await?;
    Ok(HttpResponse::Created().json(CredentialDto::from(&view)))
}

#[derive(Debug, Serialize)]
struct Items {
    items: Vec<CredentialDto>,
}

pub(crate) async fn list(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let views = state.vault.list(auth.actor(), &ctx.0).await?;
    Ok(HttpResponse::Ok().json(Items {
        items: views.iter().map(CredentialDto::from).collect(),
    }))
}

pub(crate) async fn get(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let view = state
        .vault
        .get(auth.actor(), id.into_inner(), &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(CredentialDto::from(&view)))
}

pub(crate) async fn delete(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .vault
        .delete(auth.actor(), id.into_inner(), &ctx.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignBody {
    data: String,
}

pub(crate) async fn sign(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: web::Json<SignBody>,
) -> Result<HttpResponse, ApiError> {
    let signature = state
        .vault
        .sign(auth.actor(), id.into_inner(), body.data.as_bytes(), &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "signature": signature.signature_base64,
        "algorithm": signature.algorithm,
        "certificate_number": signature.certificate_number,
    })))
}
