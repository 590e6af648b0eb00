use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn signup_creates_the_company_and_its_owner() {
    for app in spawn_each().await {
        let r = app
            .call("POST", "/v1/signup", None, Some(json!({
                "company_name": "Tacos El Güero", "email": "Ana@Example.com", "password": PASSWORD,
                "password_confirmation": PASSWORD, "name": "Ana López", "rfc": "eku9003173c9"
            })))
            .await;
        assert_eq!(r.status, 201, "{}: {}", app.db.backend, r.raw);
        assert_eq!(r.body["company"]["name"], "Tacos El Güero");
        assert_eq!(r.body["company"]["rfc"], "EKU9003173C9");
        assert_eq!(r.body["user"]["email"], "ana@example.com");
        assert_eq!(r.body["user"]["role"], "owner");
        assert!(!r.raw.contains(PASSWORD));
        assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");

        // The same email in another case is taken.
        let dup = app
            .call(
                "POST",
                "/v1/signup",
                None,
                Some(json!({
                    "company_name": "Otra", "email": "ANA@example.com", "password": PASSWORD,
                    "password_confirmation": PASSWORD, "name": "Ana"
                })),
            )
            .await;
        assert_problem(&dup, 409, "email_taken");

        let token = app.token("ana@example.com").await;
        let me = app.call("GET", "/v1/me", Some(&token), None).await;
        assert_eq!(me.status, 200, "{}", me.raw);
        assert_eq!(me.body["role"], "owner");
        assert_eq!(me.body["company_id"], r.body["company"]["id"]);
        assert!(
            me.body["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "users.manage")
        );
    }
}

#[actix_web::test]
async fn a_weak_password_is_answered_with_every_violated_rule() {
    let app = spawn_app().await;
    let r = app
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(json!({
                "company_name": "X", "email": "weak@example.com", "password": "weak",
                "password_confirmation": "Weak", "name": "Ana"
            })),
        )
        .await;
    assert_problem(&r, 422, "password_policy");
    let violations: Vec<&str> = r.body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        violations,
        vec![
            "too_short",
            "missing_uppercase",
            "missing_digit",
            "missing_special",
            "confirmation_mismatch",
            "contains_email"
        ]
    );
    // Nothing was created: logging in with it fails.
    assert_problem(
        &app.login("weak@example.com", "weak").await,
        401,
        "invalid_credentials",
    );
}

#[actix_web::test]
async fn invalid_fields_are_listed() {
    let app = spawn_app().await;
    let r = app
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(json!({
                "company_name": "", "email": "nope", "password": PASSWORD,
                "password_confirmation": PASSWORD, "name": "Ana", "rfc": "XYZ"
            })),
        )
        .await;
    assert_problem(&r, 422, "validation_failed");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["company_name", "email", "rfc"]);
}
