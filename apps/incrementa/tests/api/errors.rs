use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn malformed_json_wrong_types_and_missing_fields_are_400() {
    let app = spawn_app().await;
    let r = app
        .send_raw(
            "POST",
            "/v1/signup",
            "application/json",
            b"{not json".to_vec(),
        )
        .await;
    assert_problem(&r, 400, "malformed_request");
    let r = app
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({ "email": "a@example.com", "password": 12345678 })),
        )
        .await;
    assert_problem(&r, 400, "malformed_request");
    assert!(
        !r.raw.contains("12345678"),
        "a value sent in a wrong type must not be echoed: {}",
        r.raw
    );
    let r = app
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({ "email": "a@example.com" })),
        )
        .await;
    assert_problem(&r, 400, "malformed_request");
    assert!(
        r.body["detail"].as_str().unwrap().contains("password"),
        "{}",
        r.raw
    );
}

#[actix_web::test]
async fn wrong_content_type_is_415_and_oversized_bodies_are_413() {
    let app = spawn_app().await;
    let r = app
        .send_raw("POST", "/v1/sessions", "text/plain", b"{}".to_vec())
        .await;
    assert_problem(&r, 415, "unsupported_media_type");
    let big = format!(
        "{{\"email\":\"a@example.com\",\"password\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let r = app
        .send_raw("POST", "/v1/sessions", "application/json", big.into_bytes())
        .await;
    assert_problem(&r, 413, "payload_too_large");
}

/// A field given twice is refused, whichever copy a proxy or a log reader would believe, and
/// neither value comes back.
#[actix_web::test]
async fn a_field_given_twice_is_refused() {
    let app = spawn_app().await;
    app.signup("twice@example.com").await;
    let login = |password: &str| {
        let body = format!(r#"{{"email":"twice@example.com",{password}}}"#);
        app.send_raw(
            "POST",
            "/v1/sessions",
            "application/json",
            body.into_bytes(),
        )
    };
    let r = login(&format!(
        r#""password":"wrong-guess","password":"{PASSWORD}""#
    ))
    .await;
    assert_problem(&r, 400, "malformed_request");
    assert!(
        !r.raw.contains("wrong-guess") && !r.raw.contains(PASSWORD),
        "{}",
        r.raw
    );
    // The same body with the field once logs in.
    let r = login(&format!(r#""password":"{PASSWORD}""#)).await;
    assert_eq!(r.status, 201, "{}", r.raw);
}

#[actix_web::test]
async fn unknown_routes_and_unparsable_ids_are_404_problems() {
    let app = spawn_app().await;
    assert_problem(
        &app.call("GET", "/v1/nothing-here", None, None).await,
        404,
        "not_found",
    );
    app.signup("o@example.com").await;
    let token = app.token("o@example.com").await;
    assert_problem(
        &app.call("GET", "/v1/users/not-a-uuid", Some(&token), None)
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &app.call("DELETE", "/v1/sessions/123", Some(&token), None)
            .await,
        404,
        "not_found",
    );
}

#[actix_web::test]
async fn protected_routes_need_a_bearer_token() {
    let app = spawn_app().await;
    for (method, path) in [
        ("GET", "/v1/me"),
        ("GET", "/v1/sessions"),
        ("GET", "/v1/users"),
        ("DELETE", "/v1/sessions/current"),
    ] {
        let r = app.call(method, path, None, None).await;
        assert_problem(&r, 401, "unauthenticated");
        assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
        let r = app.call(method, path, Some("forged-token"), None).await;
        assert_problem(&r, 401, "unauthenticated");
    }
    // A token in the query string is not a credential.
    let r = app.call("GET", "/v1/me?access_token=abc", None, None).await;
    assert_problem(&r, 401, "unauthenticated");
}

#[actix_web::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200);
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.headers.get("x-request-id").is_some());
}

#[actix_web::test]
async fn the_embedded_default_keeps_its_files_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = incrementa::config::Settings::load(None, &|_| None).unwrap();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = dir.path().join("data");
    settings.workers = 1;
    let app = incrementa::startup::Application::build(&settings)
        .await
        .unwrap();
    let mode = |name: &str| {
        std::fs::metadata(settings.data_dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    assert_eq!(mode("master.key"), 0o600);
    assert_eq!(mode("incrementa.db"), 0o600);
    assert!(app.port() > 0);
}

#[actix_web::test]
async fn a_body_that_is_not_an_object_is_refused() {
    let app = spawn_app().await;
    app.signup("shape@example.com").await;
    let token = app.token("shape@example.com").await;
    let before = app.call("GET", "/v1/company", Some(&token), None).await;
    assert_eq!(before.status, 200, "{}", before.raw);
    // serde would read a struct from an array, field by field: `[null, null]` names no field
    // but would set the second one (the RFC) to null.
    app.call(
        "PATCH",
        "/v1/company",
        Some(&token),
        Some(json!({ "rfc": "TCM970625MB1" })),
    )
    .await;
    for body in [
        json!([null, null]),
        json!(["x"]),
        json!("x"),
        json!(7),
        json!(null),
    ] {
        let r = app
            .call("PATCH", "/v1/company", Some(&token), Some(body.clone()))
            .await;
        assert_problem(&r, 400, "malformed_request");
        assert!(r.raw.contains("JSON object"), "{body}: {}", r.raw);
    }
    let r = app
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!(["shape@example.com", "x"])),
        )
        .await;
    assert_problem(&r, 400, "malformed_request");
    let after = app.call("GET", "/v1/company", Some(&token), None).await;
    assert_eq!(after.body["rfc"], "TCM970625MB1", "{}", after.raw);
}

/// RFC 9110 §9.3.2: every GET route answers HEAD with the same status and headers and no body,
/// behind the same access check.
#[actix_web::test]
async fn head_answers_wherever_get_does_without_a_body() {
    let app = spawn_app().await;
    let [(_, owner), _, _, _] = app.company_with_roles("").await;
    for (path, token) in [("/healthz", None), ("/v1/me", Some(owner.as_str()))] {
        let get = app.call("GET", path, token, None).await;
        let head = app.call("HEAD", path, token, None).await;
        assert_eq!(get.status, 200, "{}", get.raw);
        assert_eq!(head.status, 200, "{path}");
        assert!(head.raw.is_empty(), "{path}: {}", head.raw);
        assert_eq!(
            head.headers.get("content-type"),
            get.headers.get("content-type"),
            "{path}"
        );
        assert_eq!(
            head.headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok()),
            Some(get.raw.len()),
            "{path}"
        );
    }
    // The access check runs as for GET.
    let r = app.call("HEAD", "/v1/me", None, None).await;
    assert_eq!(r.status, 401);
    assert!(r.raw.is_empty());
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    // A path without GET does not answer HEAD.
    let r = app.call("HEAD", "/v1/sessions/current", None, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").unwrap(), "DELETE");
}

#[actix_web::test]
async fn a_wrong_method_is_405_with_allow() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4();
    for (method, path, allow) in [
        ("TRACE", "/healthz".to_owned(), "GET, HEAD"),
        ("POST", "/v1/company".to_owned(), "GET, HEAD, PATCH"),
        ("PUT", format!("/v1/users/{id}"), "GET, HEAD, PATCH"),
        ("GET", "/v1/sessions/current".to_owned(), "DELETE"),
    ] {
        let r = app.call(method, &path, None, None).await;
        assert_problem(&r, 405, "method_not_allowed");
        assert_eq!(
            r.headers.get("allow").unwrap().to_str().unwrap(),
            allow,
            "{method} {path}"
        );
    }
    // A path that does not exist stays 404, whatever the method.
    assert_problem(
        &app.call("TRACE", "/v1/nothing", None, None).await,
        404,
        "not_found",
    );
    assert_problem(
        &app.call("GET", "/v1/users/a/b", None, None).await,
        404,
        "not_found",
    );
}
