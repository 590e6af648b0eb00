//! Where the machine's CPU time went during a phase (Linux `/proc`).
//!
//! The login goal compares logins per second with `cores ÷ one hash`. Over a phase the machine
//! has `cores × seconds` of CPU time; divided by the logins, that is the time each login had
//! ([`CpuBreakdown::capacity_ms`]), and the bound is met exactly when it equals one hash alone.
//! This module splits that time per login into the server's hashing threads, the rest of the
//! server, this load tool, everything else that ran (a database server, the kernel, other
//! processes), time the cores were idle, and time the hypervisor gave to other guests ("steal"),
//! so a gap to the bound is measured rather than guessed.
//!
//! Thread times come from `/proc/<pid>/task/<tid>/schedstat` (nanoseconds on the CPU, and
//! nanoseconds spent runnable but waiting for one); machine times from the `cpu` line of
//! `/proc/stat` (in `USER_HZ` ticks, fixed at 100 per second by the Linux ABI on x86-64 and
//! arm64).

use std::collections::BTreeMap;

use serde::Serialize;

/// `/proc/stat` ticks per second (`USER_HZ`).
const USER_HZ: f64 = 100.0;

/// The name the server gives its password-hashing threads (`argon2-0`, `argon2-1`, …).
const HASHING_THREAD: &str = "argon2-";

/// One thread's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ThreadTimes {
    hashing: bool,
    on_cpu_ns: u64,
    waiting_ns: u64,
}

/// The machine's `cpu` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MachineTicks {
    busy: u64,
    idle: u64,
    steal: u64,
}

/// Counters read at one moment; two of them make a [`CpuBreakdown`].
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    server: BTreeMap<u32, ThreadTimes>,
    tool: BTreeMap<u32, ThreadTimes>,
    machine: MachineTicks,
}

/// Milliseconds of CPU per login during one phase, by where they went.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuBreakdown {
    /// Logins the phase completed.
    pub logins: u64,
    /// cores × wall time ÷ logins: the time each login had. The bound is met when this equals
    /// the time of one hash alone.
    pub capacity_ms: f64,
    /// On the CPU in the server's hashing threads.
    pub server_hashing_ms: f64,
    /// On the CPU in the server's other threads (HTTP, database driver, runtime).
    pub server_other_ms: f64,
    /// On the CPU in this load tool.
    pub load_tool_ms: f64,
    /// Busy outside those two processes: a database server, the kernel's interrupt work, other
    /// processes.
    pub rest_ms: f64,
    /// Cores idle.
    pub idle_ms: f64,
    /// Time the hypervisor ran something else on this machine's virtual cores.
    pub steal_ms: f64,
    /// Time the hashing threads were ready to run but waited for a core (preempted or queued
    /// behind other threads).
    pub hashing_waited_ms: f64,
}

impl CpuSnapshot {
    /// Reads the counters of the server process `server` (when known), this process and the
    /// machine. Missing files read as empty, so a non-Linux system gets an empty snapshot.
    #[must_use]
    pub fn take(server: Option<u32>) -> Self {
        Self {
            server: server
                .map(|pid| threads(&pid.to_string()))
                .unwrap_or_default(),
            tool: threads("self"),
            machine: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|text| parse_machine(&text))
                .unwrap_or_default(),
        }
    }

    /// What happened between `self` and `later`, over `seconds` of wall time on `cores` cores,
    /// for `logins` logins; `None` without logins or without readings of the server.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn until(
        &self,
        later: &Self,
        cores: usize,
        seconds: f64,
        logins: u64,
    ) -> Option<CpuBreakdown> {
        if logins == 0 || later.server.is_empty() || later.machine == MachineTicks::default() {
            return None;
        }
        let per_login_ms = |ns: u64| ns as f64 / 1e6 / logins as f64;
        let ticks_ms = |ticks: u64| ticks as f64 * 1000.0 / USER_HZ / logins as f64;
        let server = delta(&self.server, &later.server);
        let tool = delta(&self.tool, &later.tool);
        let busy = later.machine.busy.saturating_sub(self.machine.busy);
        let idle = later.machine.idle.saturating_sub(self.machine.idle);
        let steal = later.machine.steal.saturating_sub(self.machine.steal);
        let server_hashing_ms = per_login_ms(server.hashing_on_cpu_ns);
        let server_other_ms = per_login_ms(server.other_on_cpu_ns);
        let load_tool_ms = per_login_ms(tool.hashing_on_cpu_ns + tool.other_on_cpu_ns);
        // Ticks are coarse (10 ms): the remainder is clamped at zero rather than shown negative.
        let rest_ms =
            (ticks_ms(busy) - server_hashing_ms - server_other_ms - load_tool_ms).max(0.0);
        Some(CpuBreakdown {
            logins,
            capacity_ms: cores as f64 * seconds * 1000.0 / logins as f64,
            server_hashing_ms,
            server_other_ms,
            load_tool_ms,
            rest_ms,
            idle_ms: ticks_ms(idle),
            steal_ms: ticks_ms(steal),
            hashing_waited_ms: per_login_ms(server.hashing_waiting_ns),
        })
    }
}

/// Summed differences of the threads present at both readings (a server's thread pools are
/// stable during a phase; a thread that started in between counts from zero).
#[derive(Debug, Default)]
struct Delta {
    hashing_on_cpu_ns: u64,
    other_on_cpu_ns: u64,
    hashing_waiting_ns: u64,
}

fn delta(before: &BTreeMap<u32, ThreadTimes>, after: &BTreeMap<u32, ThreadTimes>) -> Delta {
    let mut d = Delta::default();
    for (tid, now) in after {
        let then = before.get(tid).copied().unwrap_or(ThreadTimes {
            on_cpu_ns: 0,
            waiting_ns: 0,
            ..*now
        });
        let on_cpu = now.on_cpu_ns.saturating_sub(then.on_cpu_ns);
        if now.hashing {
            d.hashing_on_cpu_ns += on_cpu;
            d.hashing_waiting_ns += now.waiting_ns.saturating_sub(then.waiting_ns);
        } else {
            d.other_on_cpu_ns += on_cpu;
        }
    }
    d
}

/// Every thread of `/proc/<pid>`.
fn threads(pid: &str) -> BTreeMap<u32, ThreadTimes> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| {
            let tid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let path = entry.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            let (on_cpu_ns, waiting_ns) =
                parse_schedstat(&std::fs::read_to_string(path.join("schedstat")).ok()?)?;
            Some((
                tid,
                ThreadTimes {
                    hashing: comm.trim_end().starts_with(HASHING_THREAD),
                    on_cpu_ns,
                    waiting_ns,
                },
            ))
        })
        .collect()
}

/// `schedstat`: nanoseconds on the CPU, nanoseconds waiting on a run queue, time slices.
fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    Some((fields.next()?.ok()?, fields.next()?.ok()?))
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal [guest …].
/// Guest time is already inside user time, so it is not added again.
fn parse_machine(text: &str) -> Option<MachineTicks> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let field = |i: usize| values.get(i).copied().unwrap_or(0);
    Some(MachineTicks {
        busy: field(0) + field(1) + field(2) + field(5) + field(6),
        idle: field(3) + field(4),
        steal: field(7),
    })
}

impl CpuBreakdown {
    /// The breakdown of several rounds of one phase taken as one: each part weighs by its
    /// logins (every field is per login). `None` without parts or without logins.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn combine(parts: &[Self]) -> Option<Self> {
        let logins: u64 = parts.iter().map(|p| p.logins).sum();
        if logins == 0 {
            return None;
        }
        let mean = |f: fn(&Self) -> f64| {
            parts.iter().map(|p| f(p) * p.logins as f64).sum::<f64>() / logins as f64
        };
        Some(Self {
            logins,
            capacity_ms: mean(|p| p.capacity_ms),
            server_hashing_ms: mean(|p| p.server_hashing_ms),
            server_other_ms: mean(|p| p.server_other_ms),
            load_tool_ms: mean(|p| p.load_tool_ms),
            rest_ms: mean(|p| p.rest_ms),
            idle_ms: mean(|p| p.idle_ms),
            steal_ms: mean(|p| p.steal_ms),
            hashing_waited_ms: mean(|p| p.hashing_waited_ms),
        })
    }

    /// One paragraph for the text report.
    #[must_use]
    pub fn render(&self) -> String {
        format!(
            "login phase, time per login ({:.2} ms = cores x seconds / {} logins): server hashing {:.2}, \
             server other {:.2}, load tool {:.2}, rest of the machine {:.2}, idle {:.2}, stolen by the host {:.2}; \
             the hashing threads waited {:.2} ms per login for a core\n",
            self.capacity_ms,
            self.logins,
            self.server_hashing_ms,
            self.server_other_ms,
            self.load_tool_ms,
            self.rest_ms,
            self.idle_ms,
            self.steal_ms,
            self.hashing_waited_ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_combine_weighted_by_their_logins() {
        let part = |logins, ms: f64| CpuBreakdown {
            logins,
            capacity_ms: ms,
            server_hashing_ms: ms * 0.9,
            server_other_ms: ms * 0.1,
            load_tool_ms: 0.0,
            rest_ms: 0.0,
            idle_ms: 0.0,
            steal_ms: 0.0,
            hashing_waited_ms: 1.0,
        };
        let all = CpuBreakdown::combine(&[part(30, 20.0), part(10, 40.0)]).unwrap();
        assert_eq!(all.logins, 40);
        // (30 × 20 + 10 × 40) ÷ 40 = 25: the phase's cores × seconds over all its logins.
        assert!((all.capacity_ms - 25.0).abs() < 1e-9, "{all:?}");
        assert!((all.server_hashing_ms - 22.5).abs() < 1e-9);
        assert!((all.hashing_waited_ms - 1.0).abs() < 1e-9);
        assert!(CpuBreakdown::combine(&[]).is_none());
        assert!(CpuBreakdown::combine(&[part(0, 1.0)]).is_none());
    }

    #[test]
    fn proc_files_are_parsed() {
        assert_eq!(
            parse_schedstat("123456789 4567 89\n"),
            Some((123_456_789, 4567))
        );
        assert_eq!(parse_schedstat("garbage"), None);
        let stat = "cpu  100 5 30 800 20 1 4 7 0 0\ncpu0 50 2 15 400 10 0 2 3 0 0\n";
        assert_eq!(
            parse_machine(stat),
            Some(MachineTicks {
                busy: 140,
                idle: 820,
                steal: 7
            })
        );
        assert_eq!(parse_machine("intr 1 2 3\n"), None);
    }

    fn times(hashing: bool, on_cpu_ms: u64, waiting_ms: u64) -> ThreadTimes {
        ThreadTimes {
            hashing,
            on_cpu_ns: on_cpu_ms * 1_000_000,
            waiting_ns: waiting_ms * 1_000_000,
        }
    }

    /// 100 logins in 1 s on 2 cores: 20 ms each, split by where the counters moved.
    #[test]
    fn a_phase_is_split_per_login() {
        let before = CpuSnapshot {
            server: BTreeMap::from([
                (1, times(true, 1_000, 10)),
                (2, times(true, 1_000, 10)),
                (3, times(false, 500, 0)),
            ]),
            tool: BTreeMap::from([(9, times(false, 100, 0))]),
            machine: MachineTicks {
                busy: 1_000,
                idle: 5_000,
                steal: 0,
            },
        };
        let after = CpuSnapshot {
            server: BTreeMap::from([
                (1, times(true, 1_800, 60)),
                (2, times(true, 1_800, 60)),
                // A thread that appeared during the phase counts from zero.
                (3, times(false, 600, 0)),
                (4, times(false, 50, 0)),
            ]),
            tool: BTreeMap::from([(9, times(false, 120, 0))]),
            machine: MachineTicks {
                busy: 1_190,
                idle: 5_008,
                steal: 2,
            },
        };
        let b = before.until(&after, 2, 1.0, 100).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(b.capacity_ms, 20.0), "{b:?}");
        assert!(close(b.server_hashing_ms, 16.0), "{b:?}");
        assert!(close(b.server_other_ms, 1.5), "{b:?}");
        assert!(close(b.load_tool_ms, 0.2), "{b:?}");
        // 190 ticks = 1.9 s busy = 19 ms per login, 17.7 of them in the two processes.
        assert!(close(b.rest_ms, 1.3), "{b:?}");
        assert!(close(b.idle_ms, 0.8), "{b:?}");
        assert!(close(b.steal_ms, 0.2), "{b:?}");
        assert!(close(b.hashing_waited_ms, 1.0), "{b:?}");
        assert!(
            b.render().contains("server hashing 16.00"),
            "{}",
            b.render()
        );
        assert_eq!(before.until(&after, 2, 1.0, 0), None, "no logins");
        assert_eq!(
            before.until(&CpuSnapshot::default(), 2, 1.0, 100),
            None,
            "no readings"
        );
    }

    /// On Linux this process reads its own threads and the machine's counters.
    #[test]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        let first = CpuSnapshot::take(Some(pid));
        let mut x = 0_u64;
        for i in 0..2_000_000_u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let second = CpuSnapshot::take(Some(pid));
        assert!(!second.server.is_empty() && !second.tool.is_empty());
        let d = delta(&first.tool, &second.tool);
        assert!(d.other_on_cpu_ns > 0, "{d:?}");
        assert!(
            second.machine.busy + second.machine.idle > 0,
            "{:?}",
            second.machine
        );
    }
}
