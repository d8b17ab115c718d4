//! Figures for BENCHMARKS.md: readiness latency, stop time, cycle rate, with real processes.
//!
//! ```text
//! cargo bench -p fixtures-bin --bench lifecycle            # PF_BENCH_N=200 for more samples
//! ```
//!
//! Readiness *notice delay* is the time from the server's own bind (it prints `bound_ns=` from
//! CLOCK_MONOTONIC right after `bind`+`listen`) to `spawn()` returning in this process (the same
//! clock): how late the fixture noticed that the server was ready.

use std::time::{Duration, Instant};

use process_fixture::{ProcessFixture, Ready};

const SERVER: &str = env!("CARGO_BIN_EXE_fixture-server");

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn fixture(mode: &str, ready: Ready) -> ProcessFixture {
    ProcessFixture::builder(SERVER)
        .args(["--mode", mode, "--port", "{port}", "--workers", "2"])
        .ready(ready)
        .grace_period(Duration::from_millis(100))
        .spawn()
        .unwrap_or_else(|e| panic!("{mode}: {e}"))
}

/// The server's `<key>=<ns>` line on stderr. Its stdout and stderr are two pipes with no order
/// between them, so the stamp may arrive just after a stdout line made the fixture ready: poll.
fn stamp(fx: &ProcessFixture, key: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = fx.stderr();
        if let Some(value) = text.lines().find_map(|l| l.strip_prefix(key)) {
            return value.trim().parse().expect("a number");
        }
        assert!(Instant::now() < deadline, "no {key} in {text:?}");
        std::thread::yield_now();
    }
}

struct Samples(Vec<Duration>);

impl Samples {
    fn print(mut self, name: &str) {
        self.0.sort();
        let at = |q: f64| self.0[((self.0.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {name} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {} |",
            at(0.0),
            at(0.5),
            at(0.9),
            at(1.0),
            self.0.len()
        );
    }
}

fn main() {
    let n: usize = std::env::var("PF_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    println!("| measurement | min | median | p90 | max | samples |");
    println!("|---|---|---|---|---|---|");

    let (mut spawn, mut notice_tcp, mut stop_wall, mut stop_report) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let t = Instant::now();
        let fx = fixture("well-behaved", Ready::tcp());
        let returned = monotonic_ns();
        spawn.push(t.elapsed());
        notice_tcp.push(Duration::from_nanos(
            returned.saturating_sub(stamp(&fx, "bound_ns=")),
        ));
        let t = Instant::now();
        let report = fx.stop().expect("stop");
        stop_wall.push(t.elapsed());
        stop_report.push(report.elapsed);
        assert!(!report.escalated);
    }
    Samples(spawn).print("well-behaved: spawn() until ready (Ready::tcp), total");
    Samples(notice_tcp).print("well-behaved: readiness notice delay after bind (Ready::tcp)");
    Samples(stop_wall).print("well-behaved: stop(), wall time (SIGTERM → exit 0)");
    Samples(stop_report).print("well-behaved: StopReport.elapsed");

    let mut notice_line = vec![];
    for _ in 0..n {
        let fx = fixture("ready-line", Ready::stdout("^READY port="));
        let returned = monotonic_ns();
        notice_line.push(Duration::from_nanos(
            returned.saturating_sub(stamp(&fx, "ready_ns=")),
        ));
    }
    Samples(notice_line).print("ready-line: notice delay after the line (Ready::stdout)");

    let mut forking = vec![];
    for _ in 0..n {
        let fx = fixture("forking-master", Ready::tcp());
        let t = Instant::now();
        let report = fx.stop().expect("stop");
        forking.push(t.elapsed());
        assert!(!report.escalated);
    }
    Samples(forking).print("forking-master (2 orphaned workers): stop(), wall");

    let mut escalation = vec![];
    for _ in 0..n.min(20) {
        let fx = fixture("ignore-term", Ready::tcp());
        let t = Instant::now();
        let report = fx.stop().expect("stop");
        // grace 100 ms for the leader, then min(grace, 1 s) = 100 ms for the group, then SIGKILL.
        escalation.push(t.elapsed().saturating_sub(Duration::from_millis(200)));
        assert!(report.escalated);
    }
    Samples(escalation).print("ignore-term: stop() beyond the 2 × 100 ms grace (KILL + confirm)");

    let cycles = n * 2;
    let t = Instant::now();
    for _ in 0..cycles {
        drop(fixture("well-behaved", Ready::tcp()));
    }
    let rate = cycles as f64 / t.elapsed().as_secs_f64();
    println!("\nspawn+ready+stop cycles, sequential: {rate:.0}/s ({cycles} cycles)");

    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..cycles / 4 {
                    drop(fixture("well-behaved", Ready::tcp()));
                }
            });
        }
    });
    let rate = (cycles / 4 * 4) as f64 / t.elapsed().as_secs_f64();
    println!(
        "spawn+ready+stop cycles, 4 threads: {rate:.0}/s ({} cycles)",
        cycles / 4 * 4
    );
}
