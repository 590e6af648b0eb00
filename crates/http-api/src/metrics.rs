//! Prometheus metrics (OPS-3): requests by route and status, latency histograms per route, login
//! outcomes, plus gauges read from the database at scrape time (active sessions, outbox backlog).
//! Routes are labelled by their pattern (`/v1/users/{id}`), never by raw paths, so label values
//! stay few and carry no ids.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use async_trait::async_trait;

use crate::ApiState;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// What one route pattern has counted.
#[derive(Debug, Default)]
struct RouteStats {
    /// By method label and status.
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Inner {
    /// By route pattern: a request allocates nothing here once its route has been seen.
    routes: BTreeMap<String, RouteStats>,
    logins: BTreeMap<&'static str, u64>,
    vault: BTreeMap<(&'static str, &'static str), u64>,
    /// Password-reset requests answered 202 whose look-up or write then failed.
    reset_requests_failed: u64,
    /// Requests refused because their client had as many in flight as it may, by cap.
    in_flight_refused: BTreeMap<crate::in_flight::Refused, u64>,
}

/// The in-process counters. Cheap to share.
#[derive(Debug, Default)]
pub struct Metrics(Mutex<Inner>);

/// Values read at scrape time.
#[async_trait]
pub trait Gauges: Send + Sync {
    /// `(name, help, value)` triples; a name ending in `_total` is typed a counter, any other
    /// a gauge.
    async fn read(&self) -> Vec<(&'static str, &'static str, f64)>;
}

/// The `method` label: the standard methods by name, and every other one as `OTHER`. A client
/// may send any token as a method (`XMETHOD1`, `XMETHOD2`, …); counting each under its own name
/// would let it grow the counters, and `/metrics`, without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

impl Metrics {
    fn observe(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let Ok(mut inner) = self.0.lock() else {
            return;
        };
        let stats = if inner.routes.contains_key(route) {
            inner.routes.get_mut(route)
        } else {
            Some(inner.routes.entry(route.to_owned()).or_default())
        };
        if let Some(stats) = stats {
            *stats.requests.entry((method, status)).or_default() += 1;
            let h = &mut stats.latency;
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter_mut()) {
                if seconds <= *bound {
                    *count += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        }
        if method == "POST" && route == "/v1/sessions" {
            let outcome = match status {
                201 => "success",
                429 => "throttled",
                400..=499 => "failure",
                _ => "error",
            };
            *inner.logins.entry(outcome).or_default() += 1;
        }
        if let Some(operation) = vault_operation(method, route) {
            let outcome = match status {
                200..=299 => "success",
                500..=599 => "error",
                _ => "refused",
            };
            *inner.vault.entry((operation, outcome)).or_default() += 1;
        }
    }

    /// Counts a password-reset request that was answered 202 and then could not be stored (its
    /// user got no e-mail; the error is in the log).
    pub fn reset_request_failed(&self) {
        if let Ok(mut inner) = self.0.lock() {
            inner.reset_requests_failed += 1;
        }
    }

    /// Counts a request refused with 429 because its client already had the most requests in
    /// flight it may have ([`crate::in_flight`]).
    pub fn in_flight_refused(&self, cap: crate::in_flight::Refused) {
        if let Ok(mut inner) = self.0.lock() {
            *inner.in_flight_refused.entry(cap).or_default() += 1;
        }
    }

    /// The Prometheus text exposition of the counters.
    #[must_use]
    pub fn render(&self) -> String {
        let Ok(inner) = self.0.lock() else {
            return String::new();
        };
        let mut out = String::new();
        out.push_str("# HELP incrementa_http_requests_total HTTP requests by method, route pattern and status.\n");
        out.push_str("# TYPE incrementa_http_requests_total counter\n");
        for (route, stats) in &inner.routes {
            for ((method, status), n) in &stats.requests {
                let _ = writeln!(
                    out,
                    "incrementa_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP incrementa_http_request_duration_seconds Request latency by route pattern.\n",
        );
        out.push_str("# TYPE incrementa_http_request_duration_seconds histogram\n");
        for (route, RouteStats { latency: h, .. }) in &inner.routes {
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "incrementa_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "incrementa_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "incrementa_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "incrementa_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP incrementa_logins_total Login attempts by outcome (throttled: 429).\n",
        );
        out.push_str("# TYPE incrementa_logins_total counter\n");
        for (outcome, n) in &inner.logins {
            let _ = writeln!(out, "incrementa_logins_total{{outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP incrementa_vault_operations_total Fiscal vault operations by kind and outcome (refused: 4xx).\n");
        out.push_str("# TYPE incrementa_vault_operations_total counter\n");
        for ((operation, outcome), n) in &inner.vault {
            let _ = writeln!(
                out,
                "incrementa_vault_operations_total{{operation=\"{operation}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP incrementa_password_reset_requests_failed_total Password-reset requests answered 202 that could not be stored afterwards (no e-mail went out).\n");
        out.push_str("# TYPE incrementa_password_reset_requests_failed_total counter\n");
        let _ = writeln!(
            out,
            "incrementa_password_reset_requests_failed_total {}",
            inner.reset_requests_failed
        );
        out.push_str("# HELP incrementa_requests_refused_in_flight_total Requests refused with 429 because their client (an IPv4 address, an IPv6 /64) already had as many in flight as it may: of any kind (INCREMENTA_IN_FLIGHT_PER_IP) or hashing a password (INCREMENTA_HASHING_PER_IP).\n");
        out.push_str("# TYPE incrementa_requests_refused_in_flight_total counter\n");
        for cap in [
            crate::in_flight::Refused::Requests,
            crate::in_flight::Refused::PasswordHashing,
        ] {
            let _ = writeln!(
                out,
                "incrementa_requests_refused_in_flight_total{{kind=\"{}\"}} {}",
                cap.label(),
                inner.in_flight_refused.get(&cap).copied().unwrap_or(0)
            );
        }
        out
    }
}

/// The vault operation a request is, from its method and route pattern.
fn vault_operation(method: &str, route: &str) -> Option<&'static str> {
    match (method, route) {
        ("POST", "/v1/fiscal/credentials") => Some("store"),
        ("POST", "/v1/fiscal/credentials/{id}/signatures") => Some("sign"),
        ("DELETE", "/v1/fiscal/credentials/{id}") => Some("delete"),
        ("GET", "/v1/fiscal/credentials" | "/v1/fiscal/credentials/{id}") => Some("read"),
        _ => None,
    }
}

/// Middleware: counts every request by its route pattern and status.
pub(crate) async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let state = req.app_data::<web::Data<ApiState>>().cloned();
    let res = next.call(req).await?;
    // Routing happened inside: the pattern is known only now.
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_owned());
    if let Some(state) = state {
        state.metrics.observe(
            method,
            &route,
            res.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_names_and_made_up_ones_share_other() {
        for (method, label) in [
            (Method::GET, "GET"),
            (Method::HEAD, "HEAD"),
            (Method::POST, "POST"),
            (Method::PUT, "PUT"),
            (Method::PATCH, "PATCH"),
            (Method::DELETE, "DELETE"),
            (Method::OPTIONS, "OPTIONS"),
        ] {
            assert_eq!(method_label(&method), label);
        }
        let m = Metrics::default();
        for i in 0..100 {
            let made_up = Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
            m.observe(method_label(&made_up), "(unmatched)", 404, 0.001);
        }
        let text = m.render();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("incrementa_http_requests_total{"))
            .collect();
        assert_eq!(
            series,
            [
                "incrementa_http_requests_total{method=\"OTHER\",route=\"(unmatched)\",status=\"404\"} 100"
            ]
        );
    }

    #[test]
    fn failed_reset_requests_are_counted() {
        let m = Metrics::default();
        assert!(
            m.render()
                .lines()
                .any(|l| l == "incrementa_password_reset_requests_failed_total 0")
        );
        m.reset_request_failed();
        m.reset_request_failed();
        assert!(
            m.render()
                .lines()
                .any(|l| l == "incrementa_password_reset_requests_failed_total 2")
        );
    }

    #[test]
    fn counters_histograms_and_login_outcomes_render_as_prometheus_text() {
        let m = Metrics::default();
        m.observe("GET", "/v1/users/{id}", 200, 0.003);
        m.observe("GET", "/v1/users/{id}", 200, 0.2);
        m.observe("POST", "/v1/sessions", 201, 0.1);
        m.observe("POST", "/v1/sessions", 401, 0.1);
        m.observe("POST", "/v1/sessions", 429, 0.001);
        m.observe("POST", "/v1/fiscal/credentials/{id}/signatures", 200, 0.003);
        m.observe("POST", "/v1/fiscal/credentials/{id}/signatures", 422, 0.003);
        m.observe("POST", "/v1/fiscal/credentials", 201, 0.01);
        let text = m.render();
        for line in [
            "incrementa_vault_operations_total{operation=\"sign\",outcome=\"success\"} 1",
            "incrementa_vault_operations_total{operation=\"sign\",outcome=\"refused\"} 1",
            "incrementa_vault_operations_total{operation=\"store\",outcome=\"success\"} 1",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        assert!(text.contains(
            "incrementa_http_requests_total{method=\"GET\",route=\"/v1/users/{id}\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "incrementa_http_request_duration_seconds_bucket{route=\"/v1/users/{id}\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "incrementa_http_request_duration_seconds_bucket{route=\"/v1/users/{id}\",le=\"0.25\"} 2"
        ));
        assert!(text.contains(
            "incrementa_http_request_duration_seconds_count{route=\"/v1/users/{id}\"} 2"
        ));
        for outcome in ["success", "failure", "throttled"] {
            assert!(
                text.contains(&format!(
                    "incrementa_logins_total{{outcome=\"{outcome}\"}} 1"
                )),
                "{outcome}"
            );
        }
    }
}
