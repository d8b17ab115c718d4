//! Figures for BENCHMARKS.md: how soon `Ready::tcp()` notices a port that starts listening, what
//! the wait costs, and whether anything knocks on the server before the test does.
//!
//! ```text
//! PF_BENCH_N=100 cargo bench -p fixtures-bin --bench readiness
//! ```
//!
//! Every fixture is `ready-server --delay-ms D --listen 127.0.0.1:{port}` with `Ready::tcp()`, for
//! D = 0 (the baseline: what a spawn costs without waiting), 5, 20, 150 and 2000 ms: N samples
//! per mode up to 150 ms, N/10 (at least 3) for 2 s.
//! Two modes, alternated sample by sample (which goes first alternates too):
//! - *events*: the builder's default. For a privileged test process (root) on Linux, the guardian
//!   hears of each `listen()` of the server from the kernel (seccomp user notification);
//! - *poll*: `listen_events(false)`, what an unprivileged user gets by default: the test side
//!   reads the listening sockets (sock_diag) every ≤ 2 ms and matches them by inode.
//!
//! Whether the server really ran under the `listen()` filter is checked on each sample: its
//! `Seccomp_filters` count in `/proc/<pid>/status` exceeds this process's.
//!
//! What is printed, per delay and mode:
//! 1. Notice latency: CLOCK_MONOTONIC when `spawn()` returned minus the server's `listen_ns`
//!    stamp, taken right after its `listen()` returned (same clock; read from `stderr()`, polled,
//!    because stderr may arrive just after readiness). Signed: with events, the guardian may
//!    report the listening socket before the server's `listen()` has returned and stamped.
//! 2. CPU of this process across `spawn()` (Δ utime+stime of `getrusage(RUSAGE_SELF)`: the
//!    waiting thread and the output monitor thread; nothing else runs), in ms and as a share of
//!    one core over the wall time of `spawn()` (which includes starting the server: ≈ 1–2 ms, and
//!    its CPU). The guardian's time on CPU from its birth to `spawn()` returning
//!    (`/proc/<guardian>/schedstat`, read at once; it includes launching the server), the same way.
//! 3. Connections: after `spawn()`, one `GET /`; the server answers `conn=<n>`, n counting the
//!    connections it accepted: `conn=1` means that no probe connected before the test.
//!
//! Then the targets of the issue, with verdicts: notice latency p50 ≤ 1 ms and p90 ≤ 2 ms for the
//! 5 ms, 20 ms, 150 ms and 2 s servers; the test process's CPU while waiting ≤ 2 % of a core for the 150 ms and 2 s servers (the
//! aggregate Σ CPU / Σ wall and the per-sample p90, both including the spawn's fixed cost; also
//! shown: the waiting alone, Δ mean CPU / Δ mean wall against the 0 ms server); no connection
//! before the test's.
//!
//! Nothing is asserted about time: this prints figures.

use fixtures_bin::monotonic_ns;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use process_fixture::{ProcessFixture, Ready};

const SERVER: &str = env!("CARGO_BIN_EXE_ready-server");
/// The servers' delays; 0 is the baseline (the fixed cost of a spawn), not a target.
const DELAYS_MS: [u64; 5] = [0, 5, 20, 150, 2000];
const NOTICE_TARGET_DELAYS_MS: [u64; 4] = [5, 20, 150, 2000];
/// The delays whose wait is long enough for its CPU share to be a target.
const CPU_TARGET_DELAYS_MS: [u64; 2] = [150, 2000];
const NOTICE_P50_MAX: Duration = Duration::from_millis(1);
const NOTICE_P90_MAX: Duration = Duration::from_millis(2);
const CPU_SHARE_MAX: f64 = 0.02;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Events,
    Poll,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Events => "events",
            Mode::Poll => "poll",
        }
    }
}

const MODES: [Mode; 2] = [Mode::Events, Mode::Poll];

/// utime + stime of this process (every thread).
fn self_cpu() -> Duration {
    fixtures_bin::rusage_cpu(libc::RUSAGE_SELF)
}

/// Time on a CPU of a live process since it started (`/proc/<pid>/schedstat`, Linux).
fn on_cpu(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// `Seccomp_filters` of `/proc/<pid>/status` (Linux ≥ 5.9), `self` for this process.
fn seccomp_filters(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The server's `listen_ns=` stamp on stderr, polled: stderr may arrive just after readiness.
fn listen_stamp(fx: &ProcessFixture) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = fx.stderr();
        if let Some(value) = text.lines().find_map(|l| l.strip_prefix("listen_ns=")) {
            return value.trim().parse().expect("a number");
        }
        assert!(Instant::now() < deadline, "no listen_ns= in {text:?}");
        std::thread::yield_now();
    }
}

/// The body of `GET /` on 127.0.0.1:`port`: `conn=<n>`.
fn get(port: u16) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    text.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.trim().to_owned())
}

/// One spawn, measured.
struct Sample {
    /// `spawn()` returned − `listen_ns`, ns (signed).
    notice_ns: i64,
    /// Wall time of `spawn()`.
    wait: Duration,
    /// This process's CPU across `spawn()`.
    cpu: Duration,
    /// The guardian's time on CPU until `spawn()` returned.
    guardian_cpu: Option<Duration>,
    /// Whether the server ran under the `listen()` filter (`None`: cannot tell).
    filtered: Option<bool>,
    /// The body of the test's first request.
    body: String,
}

fn sample(mode: Mode, delay_ms: u64) -> Sample {
    let mut builder = ProcessFixture::builder(SERVER);
    builder
        .args([
            "--delay-ms",
            &delay_ms.to_string(),
            "--listen",
            "127.0.0.1:{port}",
        ])
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_secs(30));
    if mode == Mode::Poll {
        builder.listen_events(false);
    }
    let cpu_before = self_cpu();
    let t = Instant::now();
    let fx = builder
        .spawn()
        .unwrap_or_else(|e| panic!("{} {delay_ms} ms: {e}", mode.name()));
    let returned = monotonic_ns() as i64;
    let wait = t.elapsed();
    let cpu = self_cpu().saturating_sub(cpu_before);
    let guardian_cpu = on_cpu(fx.guardian_pid());
    let filtered = seccomp_filters(&fx.pid().to_string())
        .zip(seccomp_filters("self"))
        .map(|(server, own)| server > own);
    let notice_ns = returned - listen_stamp(&fx);
    let body = get(fx.port());
    drop(fx);
    Sample {
        notice_ns,
        wait,
        cpu,
        guardian_cpu,
        filtered,
        body,
    }
}

/// Nearest-rank quantiles of `values` (sorted here): min, median, p90, max.
fn quantiles(values: &[f64]) -> [f64; 4] {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    [at(0.0), at(0.5), at(0.9), at(1.0)]
}

fn ms(v: f64) -> String {
    format!("{v:.3} ms")
}

fn percent(v: f64) -> String {
    format!("{:.2} %", v * 100.0)
}

fn row(name: &str, values: &[f64], unit: fn(f64) -> String) {
    if values.is_empty() {
        println!("| {name} | – | – | – | – | 0 |");
        return;
    }
    let [min, median, p90, max] = quantiles(values);
    println!(
        "| {name} | {} | {} | {} | {} | {} |",
        unit(min),
        unit(median),
        unit(p90),
        unit(max),
        values.len()
    );
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

struct Run {
    delay_ms: u64,
    mode: Mode,
    samples: Vec<Sample>,
}

impl Run {
    fn label(&self) -> String {
        format!("{} ms server, {}", self.delay_ms, self.mode.name())
    }

    fn notice_ms(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| s.notice_ns as f64 / 1e6)
            .collect()
    }

    fn cpu_share(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| s.cpu.as_secs_f64() / s.wait.as_secs_f64())
            .collect()
    }

    /// Σ CPU / Σ wall.
    fn cpu_aggregate(&self) -> f64 {
        let cpu: f64 = self.samples.iter().map(|s| s.cpu.as_secs_f64()).sum();
        let wall: f64 = self.samples.iter().map(|s| s.wait.as_secs_f64()).sum();
        cpu / wall
    }

    fn cpu_mean(&self) -> f64 {
        let cpu: f64 = self.samples.iter().map(|s| s.cpu.as_secs_f64()).sum();
        cpu / self.samples.len() as f64
    }

    fn wall_mean(&self) -> f64 {
        let wall: f64 = self.samples.iter().map(|s| s.wait.as_secs_f64()).sum();
        wall / self.samples.len() as f64
    }

    fn guardian_share(&self) -> Vec<f64> {
        self.samples
            .iter()
            .filter_map(|s| Some(s.guardian_cpu?.as_secs_f64() / s.wait.as_secs_f64()))
            .collect()
    }

    /// Samples whose first request was answered `conn=1`.
    fn first_conns(&self) -> usize {
        self.samples.iter().filter(|s| s.body == "conn=1").count()
    }

    fn filtered(&self) -> (usize, usize) {
        let known: Vec<bool> = self.samples.iter().filter_map(|s| s.filtered).collect();
        (known.iter().filter(|&&f| f).count(), known.len())
    }
}

fn main() {
    let n: usize = std::env::var("PF_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .max(1);
    // Warm-up, discarded: the zygote starts with the first fixture.
    for mode in MODES {
        for _ in 0..3 {
            sample(mode, 0);
        }
    }

    let started = Instant::now();
    let mut runs = Vec::new();
    for delay_ms in DELAYS_MS {
        let count = if delay_ms >= 1000 { (n / 10).max(3) } else { n };
        eprintln!("readiness: {delay_ms} ms server, {count} samples per mode");
        let mut by_mode: Vec<Run> = MODES
            .iter()
            .map(|&mode| Run {
                delay_ms,
                mode,
                samples: Vec::new(),
            })
            .collect();
        for i in 0..count {
            // Alternate which mode goes first, so neither always follows the other's teardown.
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            for k in order {
                let s = sample(by_mode[k].mode, delay_ms);
                by_mode[k].samples.push(s);
            }
        }
        runs.extend(by_mode);
    }
    eprintln!("readiness: measured in {:.1?}", started.elapsed());

    println!("| measurement | min | median | p90 | max | samples |");
    println!("|---|---|---|---|---|---|");
    for run in &runs {
        row(
            &format!(
                "{}: notice latency (spawn() returned − listen_ns)",
                run.label()
            ),
            &run.notice_ms(),
            ms,
        );
    }
    for run in &runs {
        let wall: Vec<f64> = run
            .samples
            .iter()
            .map(|s| s.wait.as_secs_f64() * 1e3)
            .collect();
        row(&format!("{}: spawn(), wall", run.label()), &wall, ms);
    }
    for run in &runs {
        let cpu: Vec<f64> = run
            .samples
            .iter()
            .map(|s| s.cpu.as_secs_f64() * 1e3)
            .collect();
        row(
            &format!("{}: test process CPU across spawn()", run.label()),
            &cpu,
            ms,
        );
        row(
            &format!("{}: test process CPU / spawn() wall", run.label()),
            &run.cpu_share(),
            percent,
        );
    }
    for run in &runs {
        let cpu: Vec<f64> = run
            .samples
            .iter()
            .filter_map(|s| Some(s.guardian_cpu?.as_secs_f64() * 1e3))
            .collect();
        row(
            &format!("{}: guardian on CPU until ready", run.label()),
            &cpu,
            ms,
        );
        row(
            &format!("{}: guardian on CPU / spawn() wall", run.label()),
            &run.guardian_share(),
            percent,
        );
    }

    println!();
    println!("| server | mode | first GET answered `conn=1` | server under the listen() filter |");
    println!("|---|---|---|---|");
    for run in &runs {
        let (filtered, known) = run.filtered();
        println!(
            "| {} ms | {} | {} / {} | {filtered} / {known} |",
            run.delay_ms,
            run.mode.name(),
            run.first_conns(),
            run.samples.len(),
        );
    }

    println!();
    println!("| target | events | poll |");
    println!("|---|---|---|");
    let of = |delay_ms: u64, mode: Mode| {
        runs.iter()
            .find(|r| r.delay_ms == delay_ms && r.mode == mode)
            .expect("every delay and mode ran")
    };
    for delay_ms in NOTICE_TARGET_DELAYS_MS {
        let cell = |mode: Mode| {
            let [_, p50, p90, _] = quantiles(&of(delay_ms, mode).notice_ms());
            let met = p50 <= NOTICE_P50_MAX.as_secs_f64() * 1e3
                && p90 <= NOTICE_P90_MAX.as_secs_f64() * 1e3;
            format!("{} / {}: {}", ms(p50), ms(p90), verdict(met))
        };
        println!(
            "| notice latency p50 ≤ 1 ms / p90 ≤ 2 ms, {delay_ms} ms server | {} | {} |",
            cell(Mode::Events),
            cell(Mode::Poll)
        );
    }
    for delay_ms in CPU_TARGET_DELAYS_MS {
        let cell = |mode: Mode| {
            let run = of(delay_ms, mode);
            let aggregate = run.cpu_aggregate();
            let [_, _, p90, _] = quantiles(&run.cpu_share());
            let met = aggregate <= CPU_SHARE_MAX && p90 <= CPU_SHARE_MAX;
            let baseline = of(0, mode);
            let marginal =
                (run.cpu_mean() - baseline.cpu_mean()) / (run.wall_mean() - baseline.wall_mean());
            format!(
                "{} (p90 {}; beyond the 0 ms spawn: {}): {}",
                percent(aggregate),
                percent(p90),
                percent(marginal),
                verdict(met)
            )
        };
        println!(
            "| test process CPU ≤ 2 % of a core while waiting, {delay_ms} ms server: Σ CPU / Σ wall (p90 per sample; Δ mean CPU / Δ mean wall against the 0 ms server) | {} | {} |",
            cell(Mode::Events),
            cell(Mode::Poll)
        );
    }
    let cell = |mode: Mode| {
        let (mut first, mut all) = (0, 0);
        for run in runs.iter().filter(|r| r.mode == mode) {
            first += run.first_conns();
            all += run.samples.len();
        }
        format!(
            "{first} of {all} answered `conn=1`: {}",
            verdict(first == all)
        )
    };
    println!(
        "| no connection before the test's (first GET answered `conn=1`), all delays | {} | {} |",
        cell(Mode::Events),
        cell(Mode::Poll)
    );
}
