//! Bad input at scale (issue 10, bounded): every route that takes a body receives hundreds of
//! malformed, hostile or random bodies — invalid UTF-8, deep nesting, huge strings, wrong types,
//! random JSON — and must answer a 4xx problem+json every time, never a 5xx, never hang.

use http_api::routes::table;
use serde_json::{Value, json};

use crate::helpers::*;

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn string(&mut self) -> String {
        let pool = [
            "",
            "a",
            "owner",
            "admin",
            "contained",
            "0",
            "-1",
            "99999999999999999999",
            "null",
            "ñandú 🦜",
            "\u{0}",
            "' OR 1=1 --",
            "<script>",
            "../../etc/passwd",
            "TCM970625MB1",
            "ana@example.com",
            "Tlacuache#2026",
            "00000000-0000-0000-0000-000000000000",
        ];
        match self.below(4) {
            0 => "x".repeat(usize::try_from(self.below(70_000)).unwrap()),
            _ => pool[usize::try_from(self.below(pool.len() as u64)).unwrap()].to_owned(),
        }
    }
    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth > 3 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!(i64::try_from(self.next() >> 1).unwrap() - i64::MAX / 2),
            3 => json!(f64::from(u32::try_from(self.below(1000)).unwrap()) / 7.0),
            4 => json!(self.string()),
            5 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let keys = [
                    "email",
                    "password",
                    "name",
                    "role",
                    "active",
                    "grant",
                    "revoke",
                    "to",
                    "note",
                    "message",
                    "code",
                    "kind",
                    "severity",
                    "summary",
                    "affected_user_ids",
                    "alert_id",
                    "to_user_id",
                    "data",
                    "mfa_required",
                    "session_limit",
                    "current_password",
                    "new_password",
                    "new_password_confirmation",
                    "totp_code",
                ];
                let mut map = serde_json::Map::new();
                for _ in 0..self.below(6) {
                    let k = keys[usize::try_from(self.below(keys.len() as u64)).unwrap()];
                    map.insert(k.to_owned(), self.value(depth + 1));
                }
                Value::Object(map)
            }
        }
    }
}

fn fixed_bodies() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        (vec![0xff, 0xfe, 0x80, 0x7b], "application/json"),
        (b"{\"email\": \"\xc3\x28\"}".to_vec(), "application/json"),
        ("[".repeat(20_000).into_bytes(), "application/json"),
        (
            format!("{{\"a\":{}}}", "{\"a\":".repeat(5_000)).into_bytes(),
            "application/json",
        ),
        (vec![b' '; 70_000], "application/json"),
        (b"{}".to_vec(), "text/plain"),
        (b"not json".to_vec(), "application/json"),
        (b"".to_vec(), "application/json"),
        (b"null".to_vec(), "application/json"),
        (b"{\"email\":1e999999}".to_vec(), "application/json"),
    ]
}

#[actix_web::test]
async fn hostile_bodies_get_4xx_problems_never_5xx() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.session_limit = 100;
        s.rate_limit_per_ip = 0;
    })
    .await;
    let [(_, owner), _, _, (vendor_id, _)] = app.company_with_roles("rb-").await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sent = 0;
    for route in table() {
        let method = route.method.as_str();
        if !matches!(method, "POST" | "PUT" | "PATCH") {
            continue;
        }
        // Logging in or signing up with random bodies is covered too; ids point at a real user.
        let path = route.path.replace("{id}", &vendor_id);
        let mut bodies = fixed_bodies();
        for _ in 0..25 {
            let v = rng.value(0);
            bodies.push((serde_json::to_vec(&v).unwrap(), "application/json"));
        }
        for (body, content_type) in bodies {
            // A fresh step-up window per request, so step-up routes reach their validation.
            app.reauth(&owner).await;
            let client = awc::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .finish();
            let mut res = client
                .request(route.method.clone(), format!("{}{path}", app.base))
                .insert_header(("Authorization", format!("Bearer {owner}")))
                .insert_header(("Content-Type", content_type))
                .send_body(body.clone())
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
            let status = res.status();
            let raw = res.body().limit(1 << 20).await.unwrap();
            let what = format!(
                "{method} {path} with {:?}…: {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(80)]),
                String::from_utf8_lossy(&raw[..raw.len().min(300)])
            );
            assert!(status.as_u16() < 500, "{what}");
            if status.is_client_error() {
                assert_eq!(
                    res.headers().get("content-type").map(|v| v.as_bytes()),
                    Some(&b"application/problem+json"[..]),
                    "{what}"
                );
            }
            sent += 1;
        }
    }
    assert!(sent > 500, "{sent}");
    // The server is still healthy and the owner still works.
    assert_eq!(app.call("GET", "/readyz", None, None).await.status, 200);
    assert_eq!(
        app.call("GET", "/v1/me", Some(&owner), None).await.status,
        200
    );
}

/// Routes that take no body at all.
const BODYLESS: [(&str, &str); 4] = [
    ("POST", "/v1/me/mfa/totp"),
    ("POST", "/v1/me/mfa/recovery-codes"),
    ("POST", "/v1/ownership-transfers/{id}/accept"),
    ("POST", "/v1/ownership-transfers/{id}/cancel"),
];

/// Per-route body limits: every JSON route refuses a body one byte over its limit with 413
/// problem+json before any handler runs, and accepts one just under it far enough to answer
/// something else.
#[actix_web::test]
async fn every_json_route_enforces_its_own_body_limit() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.session_limit = 100;
        s.rate_limit_per_ip = 0;
    })
    .await;
    let [(_, owner), _, _, (vendor_id, _)] = app.company_with_roles("lim-").await;
    let body_of = |len: usize| {
        // {"x":"aaa…"} of exactly `len` bytes.
        format!("{{\"x\":\"{}\"}}", "a".repeat(len - 8)).into_bytes()
    };
    let mut checked = 0;
    for route in table() {
        let method = route.method.as_str();
        if !matches!(method, "POST" | "PUT" | "PATCH") || route.path == "/v1/fiscal/credentials" {
            continue;
        }
        let limit = http_api::routes::body_limit(&route.method, route.path);
        assert!(limit <= http_api::JSON_LIMIT, "{method} {}", route.path);
        let path = route.path.replace("{id}", &vendor_id);
        for (len, over) in [(limit + 1, true), (limit - 16, false)] {
            app.reauth(&owner).await;
            let res = app
                .send_raw_as(&owner, method, &path, "application/json", body_of(len))
                .await;
            let what = format!(
                "{method} {path} with {len} bytes (limit {limit}): {}",
                res.raw
            );
            if over && BODYLESS.contains(&(method, route.path)) {
                // The handler reads no body: it is never buffered, so there is nothing to limit.
                assert_ne!(res.status.as_u16(), 413, "{what}");
                assert!(res.status.as_u16() < 500, "{what}");
            } else if over {
                assert_problem(&res, 413, "payload_too_large");
            } else {
                assert_ne!(res.status.as_u16(), 413, "{what}");
                assert!(res.status.as_u16() < 500, "{what}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 19, "{checked}");
    assert_eq!(
        http_api::routes::body_limit(&actix_web::http::Method::POST, "/v1/sessions"),
        4 * 1024,
        "a login never needs more"
    );
}
