//! The fiscal vault's routes. Uploads are read in memory with bounds and never written to disk
//! (VAULT-5); the key and its password live in zeroizing buffers; no answer carries them.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use vault::{CredentialView, SecretBytes};
use zeroize::Zeroizing;

use crate::dto::{Items, ts};
use crate::error::Body;
use crate::error::too_large_upload;
use crate::openapi::schemas;
use crate::{ApiError, ApiState, Auth, ClientContext, UPLOAD_FILE_LIMIT, UPLOAD_REQUEST_LIMIT};

/// A stored credential: what its certificate says. Never the key or its password.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CredentialDto {
    #[schema(format = Uuid)]
    id: String,
    /// `csd` (seal certificate) or `fiel` (e.firma).
    #[schema(schema_with = schemas::credential_kind)]
    kind: &'static str,
    /// The holder's RFC.
    rfc: String,
    /// For a company's e.firma: the legal representative's RFC.
    representative_rfc: Option<String>,
    curp: Option<String>,
    legal_name: String,
    /// NoCertificado: 20 digits.
    certificate_number: String,
    issuer: String,
    #[schema(format = DateTime)]
    valid_from: String,
    #[schema(format = DateTime)]
    valid_to: String,
    /// Whole days until `valid_to` (negative once expired).
    days_to_expiry: i64,
    /// Expires within the warning window (30 days).
    expiring_soon: bool,
    #[schema(format = DateTime)]
    created_at: String,
}

/// The multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)] // Documents the form; the handler reads it part by part.
pub(crate) struct UploadForm {
    /// The certificate (`.cer`, DER), at most 64 KiB.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    certificate: Vec<u8>,
    /// The private key (`.key`, encrypted PKCS#8 DER), at most 64 KiB.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    private_key: Vec<u8>,
    /// The key's password (a trailing newline is ignored).
    #[schema(value_type = String, format = Password)]
    password: String,
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
struct UploadParts {
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

async fn read_form(mut payload: Multipart) -> Result<UploadParts, ApiError> {
    let mut form = UploadParts::default();
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

#[utoipa::path(
    post, path = "/v1/fiscal/credentials", tag = "fiscal", operation_id = "upload_credential",
    summary = "Store a CSD or e.firma",
    description = "Checks that the certificate is a SAT certificate in force, that the key opens with \
                   the password and belongs to the certificate, then stores all three encrypted \
                   (envelope encryption). Read in memory, never written to disk in the clear.",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "Stored.", body = CredentialDto)),
)]
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

#[utoipa::path(
    get, path = "/v1/fiscal/credentials", tag = "fiscal", operation_id = "list_credentials",
    summary = "List the company's credentials",
    responses((status = 200, description = "Every stored credential.", body = Items<CredentialDto>)),
)]
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

#[utoipa::path(
    get, path = "/v1/fiscal/credentials/{id}", tag = "fiscal", operation_id = "get_credential",
    summary = "One credential",
    params(("id" = uuid::Uuid, Path, description = "Credential id.")),
    responses((status = 200, description = "The credential.", body = CredentialDto)),
)]
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

#[utoipa::path(
    delete, path = "/v1/fiscal/credentials/{id}", tag = "fiscal", operation_id = "delete_credential",
    summary = "Delete a credential",
    description = "Its encrypted certificate, key and password are erased.",
    params(("id" = uuid::Uuid, Path, description = "Credential id.")),
    responses((status = 204, description = "Deleted.")),
)]
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

/// What to sign.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SignBody {
    /// The text to sign, e.g. a CFDI's cadena original, as UTF-8.
    data: String,
}

/// A signature.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignatureDto {
    /// Base64 of the PKCS#1 v1.5 SHA-256 signature (the CFDI `Sello`).
    signature: String,
    /// `RSA-SHA256`.
    algorithm: &'static str,
    /// NoCertificado of the signing certificate.
    certificate_number: String,
}

#[utoipa::path(
    post, path = "/v1/fiscal/credentials/{id}/signatures", tag = "fiscal",
    operation_id = "sign",
    summary = "Sign with a credential",
    description = "Signs `data` with the credential's private key, which never leaves the server.",
    params(("id" = uuid::Uuid, Path, description = "Credential id.")),
    request_body = SignBody,
    responses((status = 200, description = "The signature.", body = SignatureDto)),
)]
pub(crate) async fn sign(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
    body: Body<SignBody>,
) -> Result<HttpResponse, ApiError> {
    let signature = state
        .vault
        .sign(auth.actor(), id.into_inner(), body.data.as_bytes(), &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(SignatureDto {
        signature: signature.signature_base64,
        algorithm: signature.algorithm,
        certificate_number: signature.certificate_number,
    }))
}
