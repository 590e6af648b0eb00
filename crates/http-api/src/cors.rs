//! Cross-origin requests from browsers (issue 9, HTTP hygiene): off unless origins are configured
//! (`INCREMENTA_CORS_ORIGINS`). Only exact origins are allowed — no wildcard, no credentials
//! (clients send a bearer token, not cookies). A request from another origin gets no CORS headers,
//! so the browser refuses to hand the answer to the page; the server still answers it as it would
//! answer a non-browser client.

use actix_web::HttpResponse;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use crate::ApiState;

/// Origins whose pages may call the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Parses a comma-separated list such as `https://app.example.com,http://localhost:5173`.
    ///
    /// # Errors
    /// A message naming the first entry that is not `scheme://host[:port]`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let rest = raw
                .strip_prefix("https://")
                .or_else(|| raw.strip_prefix("http://"))
                .ok_or_else(|| bad(raw))?;
            let host_ok = !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !host_ok {
                return Err(bad(raw));
            }
            out.push(raw.to_ascii_lowercase());
        }
        Ok(Self(out))
    }

    /// `true` when no origin is allowed (CORS off).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

fn bad(entry: &str) -> String {
    format!("not an origin (https://host[:port], no path, no wildcard): {entry}")
}

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOW_HEADERS: &str = "authorization, content-type, x-request-id";
const EXPOSE_HEADERS: &str = "x-request-id, retry-after, www-authenticate";

/// Middleware: answers preflights of allowed origins and marks their responses readable.
pub(crate) async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Borrowed, not cloned: this runs on every request, and with CORS off it stops at once.
    let origin = req.app_data::<web::Data<ApiState>>().and_then(|state| {
        let allowed = &state.cors;
        if allowed.is_empty() {
            return None;
        }
        req.headers()
            .get(header::ORIGIN)
            .filter(|v| v.to_str().is_ok_and(|o| allowed.allows(o)))
            .cloned()
    });
    let Some(origin) = origin else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let preflight = req.method() == actix_web::http::Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let res = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(req.into_response(res));
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    let headers = res.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_origins_parse() {
        let o = AllowedOrigins::parse(" https://app.example.com, http://localhost:5173 ,").unwrap();
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("HTTPS://APP.EXAMPLE.COM"));
        assert!(o.allows("http://localhost:5173"));
        assert!(!o.allows("https://app.example.com.evil.example"));
        assert!(!o.allows("http://app.example.com"));
        assert!(AllowedOrigins::parse("").unwrap().is_empty());
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://*.example.com",
            "ftp://x",
            "https://",
        ] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad}");
        }
    }
}
