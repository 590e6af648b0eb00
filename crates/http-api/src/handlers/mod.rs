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
