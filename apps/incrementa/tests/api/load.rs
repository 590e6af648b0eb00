//! Issue 10: the load tool (`apps/loadtest`), in a bounded form, against a real server process on
//! each database. It checks behaviour only (every request answered as expected, the limits
//! respected, memory readable); the figures are printed and recorded in docs/performance.md.

use loadtest::{Limits, Plan};

use crate::helpers::*;

#[actix_web::test]
async fn bounded_load_run_gets_only_expected_answers() {
    for app in spawn_each().await {
        // Loopback is a trusted proxy, so the flood's clients are another address than the
        // tool's other phases; a small cap on one address's requests in flight, above the
        // phases' own clients (8, and the storm's 4 + 2) and below the flood's 16.
        let server = ServerProcess::start(
            &app,
            &[
                ("INCREMENTA_TRUSTED_PROXIES", "127.0.0.1"),
                ("INCREMENTA_IN_FLIGHT_PER_IP", "10"),
            ],
            None,
        )
        .await;
        let plan = Plan {
            limits: Limits::new(1.0, 3_000).unwrap(),
            login_limits: Limits::new(2.0, 24).unwrap(),
            concurrency: 8,
            login_concurrency: 4,
            login_users: 2,
            sessions: 60,
            login_rounds: 2,
            // The storm's reads go round two sessions that never log in again.
            readers: 2,
            flood: 16,
        };
        let report = loadtest::run(&server.base, app.db.backend, Some(server.pid()), &plan)
            .await
            .unwrap();
        eprintln!("{}", report.render());
        let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
        for expected in [
            "healthz",
            "me",
            "write",
            "login",
            "storm: logins",
            "storm: GET /v1/me",
            "flood: one address",
            "flood: two others",
        ] {
            assert!(names.contains(&expected), "{names:?}");
        }
        for phase in &report.phases {
            assert!(phase.requests > 0, "{}", phase.name);
            if phase.name == "flood: one address" {
                // Past the address's cap, the flood is refused at once; the rest log in.
                let refused = phase.statuses.get(&429).copied().unwrap_or(0);
                assert!(refused > 0 && phase.ok > 0, "{}", report.render());
                assert_eq!(refused + phase.ok, phase.requests, "{}", report.render());
            } else {
                assert_eq!(phase.failures(), 0, "{}\n{}", phase.name, report.render());
            }
            let cap = if phase.name.contains("login")
                || phase.name.starts_with("flood")
                || phase.name == "sessions"
            {
                plan.login_limits.max_requests.max(plan.sessions)
            } else {
                plan.limits.max_requests
            };
            assert!(phase.requests <= cap, "{} exceeded its bound", phase.name);
        }
        let memory = report.memory.as_ref().expect("/proc is readable on Linux");
        assert!(memory.idle_kib > 0 && memory.after_sessions_kib > 0);
        assert!(memory.sessions_created >= plan.sessions);
        assert!(report.argon2_bound_per_second > 0.0);
        // The bound is probed before the first login round and after each of the two.
        assert_eq!(report.hash_probes.len(), 3, "{}", report.render());
        assert!(
            report
                .hash_probes
                .iter()
                .all(|p| p.alone_ms > 0.0 && p.all_cores_ms > 0.0),
            "{:?}",
            report.hash_probes
        );
        assert!(report.argon2_all_cores_per_second > 0.0);
        // The readers' repeated reads come from the session cache (its counters in /metrics).
        assert!(
            report.storm_cache_hit_share.is_some_and(|s| s > 0.0),
            "{:?}",
            report.storm_cache_hit_share
        );
        assert_eq!(report.goals().len(), 5, "{}", report.render());
        // The login phase's machine time, split from the real server's threads: its hashing
        // threads are found by name (argon2-N) and the parts account for the time the phase had
        // (cores × seconds; /proc/stat ticks are 10 ms, hence the tolerance).
        let cpu = report
            .login_cpu
            .as_ref()
            .expect("/proc is readable on Linux");
        assert!(cpu.server_hashing_ms > 0.0, "{cpu:?}");
        assert!(
            cpu.server_other_ms > 0.0 && cpu.load_tool_ms > 0.0,
            "{cpu:?}"
        );
        let accounted = cpu.server_hashing_ms
            + cpu.server_other_ms
            + cpu.load_tool_ms
            + cpu.rest_ms
            + cpu.idle_ms
            + cpu.steal_ms;
        assert!(
            (0.75..=1.25).contains(&(accounted / cpu.capacity_ms)),
            "{cpu:?}"
        );
    }
}

#[actix_web::test]
async fn the_load_tool_refuses_other_hosts() {
    let err = loadtest::run("http://192.0.2.1:80", "sqlite", None, &Plan::default())
        .await
        .unwrap_err();
    assert!(matches!(err, loadtest::LoadError::NotLoopback(_)), "{err}");
}
