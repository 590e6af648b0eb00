//! The API's own documentation (OPS-2): the OpenAPI document and an interactive page (Swagger UI)
//! whose assets are compiled into the binary, so nothing is fetched from a CDN.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::ApiError;

/// Only what the page needs: its own scripts and styles, requests to this origin, inline
/// images; nothing from another origin, no framing.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                        img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                        base-uri 'none'; form-action 'none'";

const INDEX_HTML: &str = include_str!("../../assets/docs/index.html");
const INIT_JS: &str = include_str!("../../assets/docs/init.js");
const SWAGGER_UI_JS: &str = include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &str = include_str!("../../assets/swagger-ui/swagger-ui.css");

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations", operation_id = "openapi_document",
    summary = "The OpenAPI 3.1 document",
    description = "This document, generated from the code at build time.",
    responses((status = 200, description = "The document.", content_type = "application/json",
               body = Object)),
)]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(crate::openapi::json())
}

/// The interactive documentation page.
#[utoipa::path(
    get, path = "/docs", tag = "operations", operation_id = "docs_page",
    summary = "Interactive documentation",
    description = "Swagger UI on `/openapi.json`, served from assets bundled in the binary.",
    responses((status = 200, description = "An HTML page.", content_type = "text/html",
               body = String)),
)]
pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(INDEX_HTML)
}

/// A script or style sheet of the documentation page.
#[utoipa::path(
    get, path = "/docs/{asset}", tag = "operations", operation_id = "docs_asset",
    summary = "An asset of the documentation page",
    params(("asset" = String, Path,
            description = "`swagger-ui-bundle.js`, `swagger-ui.css` or `init.js`.")),
    responses(
        (status = 200, description = "The asset.", content_type = "application/javascript",
         body = String),
        (status = 404, description = "`not_found`: no such asset.",
         content_type = "application/problem+json", body = crate::openapi::Problem),
    ),
)]
pub(crate) async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (content_type, body) = match name.as_str() {
        "swagger-ui-bundle.js" => ("text/javascript; charset=utf-8", SWAGGER_UI_JS),
        "init.js" => ("text/javascript; charset=utf-8", INIT_JS),
        "swagger-ui.css" => ("text/css; charset=utf-8", SWAGGER_UI_CSS),
        _ => return Err(ApiError::not_found()),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        // The same binary serves the same bytes: browsers may keep them for an hour.
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body))
}
