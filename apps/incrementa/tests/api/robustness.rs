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

/// Sends `pieces` of a request over a fresh connection, 200 ms apart, then stops writing, and
/// reads the server's answer until it closes the connection. A server that waits forever for
/// the rest of a body fails the test at the read timeout.
fn send_in_pieces(base: &str, pieces: Vec<Vec<u8>>) -> String {
    use std::io::{Read as _, Write as _};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        stream.write_all(piece).unwrap();
    }
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the server answers and closes the connection instead of waiting");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that announces a body and stops sending it holds nothing for long: past the body
/// timeout the request fails with 408 problem+json and the connection closes, on a public route
/// and behind the access guard alike, and the change it carried is not made. A body that
/// arrives in pieces within the timeout is read whole.
#[actix_web::test]
async fn a_body_that_stops_arriving_is_cut_off_with_408() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.body_timeout_secs = 1;
    })
    .await;
    app.signup("slow@example.com").await;
    let token = app.token("slow@example.com").await;
    let stalled = [
        (
            "POST /v1/sessions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{\"email\":"
                .to_owned(),
            "login",
        ),
        (
            format!(
                "PATCH /v1/company HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n\
                 {{\"name\":\"Tacos Lentos\"}}"
            ),
            "company change",
        ),
        (
            format!(
                "POST /v1/fiscal/credentials HTTP/1.1\r\nHost: t\r\n\
                 Authorization: Bearer {token}\r\n\
                 Content-Type: multipart/form-data; boundary=XyZ\r\n\
                 Content-Length: 4000\r\n\r\n--XyZ\r\n\
                 Content-Disposition: form-data; name=\"certificate\"; filename=\"a.cer\"\r\n\r\n0\x03"
            ),
            "upload",
        ),
    ];
    app.reauth(&token).await;
    for (request, what) in stalled {
        let base = app.base.clone();
        let answer = actix_web::rt::task::spawn_blocking(move || {
            send_in_pieces(&base, vec![request.into_bytes()])
        })
        .await
        .unwrap();
        let lower = answer.to_ascii_lowercase();
        assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer}");
        assert!(
            lower.contains("content-type: application/problem+json"),
            "{what}: {answer}"
        );
        assert!(lower.contains("connection: close"), "{what}: {answer}");
        assert!(answer.contains("\"request_timeout\""), "{what}: {answer}");
        assert!(lower.contains("x-request-id:"), "{what}: {answer}");
    }
    let company = app.call("GET", "/v1/company", Some(&token), None).await;
    assert_eq!(company.status, 200, "{}", company.raw);
    assert_eq!(company.body["name"], "Tacos El Güero", "{}", company.raw);
    let credentials = app
        .call("GET", "/v1/fiscal/credentials", Some(&token), None)
        .await;
    assert_eq!(credentials.status, 200, "{}", credentials.raw);
    assert_eq!(credentials.body["items"], json!([]), "{}", credentials.raw);

    // In two pieces, the second 200 ms after the first: within the timeout, read whole.
    let body = br#"{"email":"slow@example.com","password":"wrong password"}"#;
    let head = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut first = head.into_bytes();
    first.extend_from_slice(&body[..10]);
    let base = app.base.clone();
    let answer = actix_web::rt::task::spawn_blocking(move || {
        send_in_pieces(&base, vec![first, body[10..].to_vec()])
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("\"invalid_credentials\""), "{answer}");
}

/// A request from `client` (through the trusted proxy on loopback) whose body never comes: in
/// flight until the connection closes. Returns once the server has had 200 ms to take it in
/// with nothing else of the test in flight, and checks that it was not answered (refused).
async fn held_open(base: &str, client: &str) -> std::net::TcpStream {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/sessions HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {client}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"email\":"
            )
            .as_bytes(),
        )
        .unwrap();
    actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0_u8; 1];
    assert!(
        matches!(stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the held request was answered instead of waiting for its body"
    );
    stream
}

/// `call` again every 25 ms (the server reads held requests' heads on its own time) until its
/// reply is `wanted`, for at most 5 s; the last reply.
async fn until<F, Fut>(mut call: F, wanted: impl Fn(&Reply) -> bool) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut reply = call().await;
    for _ in 0..200 {
        if wanted(&reply) {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(25)).await;
        reply = call().await;
    }
    reply
}

/// `GET /healthz` as `client`, until it answers `status`; the last reply.
async fn healthz_until(app: &TestApp, client: &str, status: u16) -> Reply {
    let forwarded = [("X-Forwarded-For", client)];
    until(
        || app.call_with("GET", "/healthz", None, None, &forwarded),
        |r| r.status == status,
    )
    .await
}

/// One address may have only so many requests in flight at once (`INCREMENTA_IN_FLIGHT_PER_IP`):
/// the next one gets 429 problem+json with `Retry-After: 1` before anything runs, while other
/// addresses (behind the same trusted proxy, or the proxy itself) are served; when one of its
/// requests ends the address is served again, and the refusals are counted in `/metrics`.
#[actix_web::test]
async fn one_address_has_at_most_its_cap_of_requests_in_flight() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.in_flight_per_ip = 2;
        s.trusted_proxies = "127.0.0.1".into();
        s.body_timeout_secs = 60;
    })
    .await;
    let first = held_open(&app.base, "203.0.113.5").await;
    let _second = held_open(&app.base, "203.0.113.5").await;
    let refused = healthz_until(&app, "203.0.113.5", 429).await;
    assert_problem(&refused, 429, "rate_limited");
    assert_eq!(refused.retry_after(), 1);
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at once")),
        "{}",
        refused.raw
    );
    for header in ["x-request-id", "x-content-type-options"] {
        assert!(
            refused.headers.contains_key(header),
            "{header}: {refused:?}",
            refused = refused.headers
        );
    }
    // Another address behind the same trusted proxy, and the proxy itself, are served.
    let neighbour = app
        .call_with(
            "GET",
            "/healthz",
            None,
            None,
            &[("X-Forwarded-For", "203.0.113.6")],
        )
        .await;
    assert_eq!(neighbour.status, 200, "{}", neighbour.raw);
    let proxy = app.call("GET", "/healthz", None, None).await;
    assert_eq!(proxy.status, 200, "{}", proxy.raw);
    let counted: u64 = app
        .metric("incrementa_requests_refused_in_flight_total{kind=\"requests\"}")
        .await
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(counted >= 1, "{counted}");

    // The first held request ends (its client goes away): the address has a slot again.
    drop(first);
    let served = healthz_until(&app, "203.0.113.5", 200).await;
    assert_eq!(served.status, 200, "{}", served.raw);
}

/// A login from `client` to an account nobody has, a new one each time (so no account's lockout
/// answers 429): the status tells whether the cap let it in (401) or refused it (429).
async fn login_as(app: &TestApp, client: &str) -> Reply {
    static ATTEMPT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    app.call_with(
        "POST",
        "/v1/sessions",
        None,
        Some(json!({ "email": format!("nadie{n}@example.com"), "password": "Wrong#Password1" })),
        &[("X-Forwarded-For", client)],
    )
    .await
}

/// Requests that hash a password have a smaller cap per address (`INCREMENTA_HASHING_PER_IP`):
/// with one such request of an address in flight, its next login is refused at once with 429
/// while its other requests and other addresses' logins go on; once the first ends, the
/// address logs in again.
#[actix_web::test]
async fn one_address_has_at_most_its_cap_of_password_checks_in_flight() {
    let app = spawn_configured(test_support::TestDb::sqlite(), |s| {
        s.hashing_per_ip = 1;
        s.trusted_proxies = "127.0.0.1".into();
        s.body_timeout_secs = 60;
    })
    .await;
    let held = held_open(&app.base, "203.0.113.7").await;
    // Held past the caps already: the address's next login is refused at once.
    let refused = login_as(&app, "203.0.113.7").await;
    assert_problem(&refused, 429, "rate_limited");
    assert_eq!(refused.retry_after(), 1);
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("password checks")),
        "{}",
        refused.raw
    );
    // Its requests that hash nothing are served; another address's login is let in.
    let healthz = healthz_until(&app, "203.0.113.7", 200).await;
    assert_eq!(healthz.status, 200, "{}", healthz.raw);
    let other = login_as(&app, "203.0.113.8").await;
    assert_problem(&other, 401, "invalid_credentials");
    let counted: u64 = app
        .metric("incrementa_requests_refused_in_flight_total{kind=\"password_hashing\"}")
        .await
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(counted >= 1, "{counted}");

    drop(held);
    let again = until(|| login_as(&app, "203.0.113.7"), |r| r.status != 429).await;
    assert_problem(&again, 401, "invalid_credentials");
}
