//! RBAC-5: every registered route × every role, against what the route table declares.

use http_api::routes::{Access, table};
use rbac::Role;
use serde_json::{Value, json};

use crate::helpers::*;

/// A call for the route that, once authorized, fails validation or finds nothing, so running it
/// for every role changes no state. A route missing here fails the test: add it.
fn probe(method: &str, path: &str, ids: &Ids) -> (String, Option<Value>) {
    let random = uuid::Uuid::new_v4().to_string();
    let p = |s: &str| s.replace("{id}", &random);
    match (method, path) {
        (
            "GET",
            "/healthz" | "/readyz" | "/metrics" | "/v1/sessions" | "/v1/me" | "/v1/me/email"
            | "/v1/users",
        ) => (path.into(), None),
        ("GET", "/openapi.json" | "/docs") => (path.into(), None),
        ("GET", "/docs/{asset}") => (path.replace("{asset}", "init.js"), None),
        ("POST", "/v1/signup" | "/v1/sessions") => (path.into(), Some(json!({}))),
        // Missing fields: 400, and no reset is asked for or used, nothing undone.
        (
            "POST",
            "/v1/password-resets" | "/v1/password-resets/confirm" | "/v1/email-changes/revert",
        ) => (path.into(), Some(json!({}))),
        ("DELETE", "/v1/sessions/current") => (path.into(), None),
        // A wrong password: the probe must not open the step-up window it is testing.
        ("POST", "/v1/sessions/current/reauthenticate") => {
            (path.into(), Some(json!({ "password": "Wrong#Probe2026" })))
        }
        ("DELETE", "/v1/sessions/{id}") => (p(path), None),
        ("GET", "/v1/me/mfa") => (path.into(), None),
        // Starts (or restarts) a pending enrolment: it protects nothing until confirmed.
        ("POST", "/v1/me/mfa/totp") => (path.into(), None),
        ("POST", "/v1/me/mfa/totp/confirm") => (path.into(), Some(json!({ "code": "bad" }))),
        // Nobody here has MFA: 409 once authorized.
        ("DELETE", "/v1/me/mfa/totp") | ("POST", "/v1/me/mfa/recovery-codes") => {
            (path.into(), None)
        }
        ("PUT", "/v1/me/password") => (
            path.into(),
            Some(
                json!({ "current_password": "x", "new_password": "x", "new_password_confirmation": "x" }),
            ),
        ),
        // A malformed address or an unknown code: 422 or 400 once allowed, nothing pending.
        ("POST", "/v1/me/email") => (path.into(), Some(json!({ "new_email": "bad" }))),
        ("POST", "/v1/me/email/confirm") => (path.into(), Some(json!({ "token": "bad" }))),
        ("POST", "/v1/users") => (
            path.into(),
            Some(
                json!({ "email": "bad", "name": "", "role": "vendor", "password": "x", "password_confirmation": "x" }),
            ),
        ),
        ("GET", "/v1/users/{id}") => (path.replace("{id}", &ids.vendor), None),
        ("PATCH", "/v1/users/{id}") => (
            path.replace("{id}", &ids.vendor),
            Some(json!({ "name": "" })),
        ),
        ("PUT", "/v1/users/{id}/role") => (
            path.replace("{id}", &ids.vendor),
            Some(json!({ "role": "nonsense" })),
        ),
        ("PUT", "/v1/users/{id}/permissions") => (
            path.replace("{id}", &ids.vendor),
            Some(json!({ "grant": ["nonsense"] })),
        ),
        ("POST", "/v1/ownership-transfers") => (path.into(), Some(json!({ "to_user_id": random }))),
        ("POST", "/v1/ownership-transfers/{id}/accept" | "/v1/ownership-transfers/{id}/cancel") => {
            (p(path), None)
        }
        // JSON where multipart is expected: 415 once authorized.
        ("POST", "/v1/fiscal/credentials") => (path.into(), Some(json!({}))),
        ("GET", "/v1/fiscal/credentials") => (path.into(), None),
        ("GET" | "DELETE", "/v1/fiscal/credentials/{id}") => (p(path), None),
        ("POST", "/v1/fiscal/credentials/{id}/signatures") => {
            (p(path), Some(json!({ "data": "x" })))
        }
        ("GET", "/v1/audit/events" | "/v1/audit/access-log" | "/v1/audit/verify") => {
            (path.into(), None)
        }
        // An unknown format: 400 once authorized, and no export is recorded.
        ("GET", "/v1/audit/export") => (format!("{path}?format=bogus"), None),
        ("GET", "/v1/company" | "/v1/company/changes" | "/v1/audit/alerts") => (path.into(), None),
        // An unknown alert: 404 once authorized.
        ("POST", "/v1/audit/alerts/{id}/dismiss") => (p(path), None),
        ("PATCH", "/v1/company") => (path.into(), Some(json!({ "postal_code": "bad" }))),
        // Invalid bodies or unknown ids: 422 or 404 once authorized.
        ("POST", "/v1/incidents") => (
            path.into(),
            Some(json!({ "kind": "bogus", "severity": "low", "summary": "x" })),
        ),
        ("GET", "/v1/incidents") => (path.into(), None),
        ("GET", "/v1/incidents/{id}") => (p(path), None),
        ("POST", "/v1/incidents/{id}/transitions") => (p(path), Some(json!({ "to": "contained" }))),
        ("POST", "/v1/incidents/{id}/notes") => (p(path), Some(json!({ "note": "x" }))),
        ("POST", "/v1/incidents/{id}/notifications") => (p(path), None),
        _ => panic!("{method} {path} has no probe in the authorization matrix test: add one"),
    }
}

struct Ids {
    vendor: String,
}

fn allowed(access: Access, role: Role) -> bool {
    access
        .permission()
        .is_none_or(|p| role.default_permissions().contains(p))
}

#[actix_web::test]
async fn authorization_matrix() {
    // Each user holds up to four sessions here (plain, stepped-up, two spares for logout).
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| s.session_limit = 10).await;
    let users = app.company_with_roles("").await;
    let ids = Ids {
        vendor: users[3].0.clone(),
    };
    let roles = [Role::Owner, Role::Admin, Role::Manager, Role::Vendor];
    let mut checked = 0;
    for (i, role) in roles.iter().enumerate() {
        let email = format!("{}@example.com", role.as_str());
        // One session with the step-up window open, one without.
        let fresh = app.token(&email).await;
        app.reauth(&fresh).await;
        let plain = users[i].1.clone();
        for route in table() {
            let method = route.method.as_str();
            for (token, stepped_up) in [(&fresh, true), (&plain, false)] {
                // Logging out would end the session the rest of the loop uses: use a spare one.
                let spare;
                let token = if route.path == "/v1/sessions/current" && method == "DELETE" {
                    spare = app.token(&email).await;
                    if stepped_up {
                        app.reauth(&spare).await;
                    }
                    &spare
                } else {
                    token
                };
                let (path, body) = probe(method, route.path, &ids);
                let r = app.call(method, &path, Some(token), body).await;
                let code = r.body["code"].as_str().unwrap_or("");
                let what = format!(
                    "{role:?} {method} {} (step-up {stepped_up}): {} {}",
                    route.path, r.status, r.raw
                );
                assert_ne!(r.status, 401, "{what}");
                assert!(r.status.as_u16() < 500, "{what}");
                if !allowed(route.access, *role) {
                    assert_eq!((r.status.as_u16(), code), (403, "forbidden"), "{what}");
                } else if route.access.needs_step_up() && !stepped_up {
                    assert_eq!(
                        (r.status.as_u16(), code),
                        (403, "reauthentication_required"),
                        "{what}"
                    );
                } else {
                    assert!(
                        !(r.status == 403
                            && (code == "forbidden" || code == "reauthentication_required")),
                        "{what}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, table().len() * 4 * 2);
    // Nothing above changed any user.
    let list = app.call("GET", "/v1/users", Some(&users[0].1), None).await;
    for u in list.body["items"].as_array().unwrap() {
        assert_eq!(u["active"], true);
        assert_ne!(u["name"], "");
    }
}
