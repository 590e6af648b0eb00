//! Handlers: parse, call one use case, shape the answer.

pub(crate) mod audit;
pub(crate) mod company;
pub(crate) mod docs;
pub(crate) mod fiscal;
pub(crate) mod incidents;
pub(crate) mod me;
pub(crate) mod mfa;
pub(crate) mod ops;
pub(crate) mod ownership;
pub(crate) mod password_resets;
pub(crate) mod sessions;
pub(crate) mod signup;
pub(crate) mod users;

/// 200 with the record's `ETag`: `tag` quoted, which a change sends back in `If-Match`.
pub(crate) fn tagged(tag: &str) -> actix_web::HttpResponseBuilder {
    let mut response = actix_web::HttpResponse::Ok();
    response.insert_header((actix_web::http::header::ETAG, format!("\"{tag}\"")));
    response
}

/// Longest `If-Match` read: a few tags; anything longer is refused unread.
const MAX_IF_MATCH: usize = 1024;

/// The tags `If-Match` names: `None` when it is absent or `*` (the record the route changes exists),
/// else the strong tags of its list (a weak tag `W/"…"` never matches under the strong
/// comparison `If-Match` asks for, so it adds none). 400 when it is not `*` or a list of quoted
/// tags.
pub(crate) fn if_match(
    req: &actix_web::HttpRequest,
) -> Result<Option<Vec<String>>, crate::error::ApiError> {
    let mut values = req
        .headers()
        .get_all(actix_web::http::header::IF_MATCH)
        .peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let bad = || crate::error::malformed("If-Match must be * or a list of quoted entity tags");
    let mut tags = Vec::new();
    let mut total = 0;
    for value in values {
        total += value.len();
        if total > MAX_IF_MATCH {
            return Err(bad());
        }
        let text = value.to_str().map_err(|_| bad())?;
        for item in text.split(',').map(str::trim) {
            if item == "*" {
                return Ok(None);
            }
            let (weak, quoted) = match item.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            let tag = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .filter(|t| !t.contains('"'))
                .ok_or_else(bad)?;
            if !weak {
                tags.push(tag.to_owned());
            }
        }
    }
    Ok(Some(tags))
}

/// Reads an optional JSON object body: empty (or only whitespace) gives `T::default()`; anything
/// else must be a JSON object that `T` accepts, or it is 400 `malformed_request` saying
/// `expected`. Over [`crate::JSON_LIMIT`] it is 413, like every other body.
pub(crate) async fn optional_json<T: serde::de::DeserializeOwned + Default>(
    mut payload: actix_web::web::Payload,
    expected: &str,
) -> Result<T, crate::error::ApiError> {
    use futures_util::StreamExt as _;
    let malformed = |detail: &str| {
        crate::error::ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "malformed_request",
            "Malformed request",
            detail,
        )
    };
    let mut body = actix_web::web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| malformed("the body could not be read"))?;
        if body.len() + chunk.len() > crate::JSON_LIMIT {
            return Err(crate::error::too_large());
        }
        body.extend_from_slice(&chunk);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .filter(serde_json::Value::is_object)
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| malformed(expected))
}
