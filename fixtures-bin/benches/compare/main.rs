//! process-fixture side by side with what its users would pick instead: the same servers, the
//! same machine, the same run. Figures for BENCHMARKS.md ("Side by side"), plots into
//! `docs/plots/compare-*.svg`.
//!
//! ```text
//! PF_BENCH_N=100 cargo bench -p fixtures-bin --bench compare    # the published figures
//! PF_BENCH_QUICK=1 cargo bench -p fixtures-bin --bench compare  # seconds: it builds and runs (CI)
//! ```
//!
//! The tools are in `tools.rs`; mirakuru comes from a venv the bench makes (or
//! `PF_MIRAKURU_PYTHON`), and is skipped with the reason when it cannot be had. Figures:
//! 1. readiness notice latency after `listen()` of servers that listen after 5, 20, 150 ms and
//!    2 s (`ready-server`): the distribution per tool (CDF plot);
//! 2. the spawn → ready → stop cycle of `fixture-server --mode well-behaved`: wall time and CPU
//!    per cycle (this process and its children, and for process-fixture its zygote, which reaps
//!    the guardians; mirakuru: the Python process and its children), as ratios to naive;
//! 3. cycles per second with 1, 2, 4 and 8 threads;
//! 4. spawn + stop against this process's touched heap (0, 1, 2, 4 GiB): process-fixture's
//!    zygote, its fork fallback (`PROCESS_FIXTURE_FORCE=no-zygote`, in a child run of this
//!    bench), naive;
//! 5. the stop per misbehaviour, and what each tool leaves running afterwards: this bench is a
//!    subreaper, so whatever a stop leaves re-parents to it, however it escaped; what is still
//!    alive 300 ms after the stop returned is counted, then killed;
//! 6. real servers (nginx with 4 workers, redis, gunicorn with 2 workers, PostgreSQL; each one
//!    skipped with the reason when it is not installed): start to ready, stop, and what each
//!    tool's stop leaves running.
//!
//! Nothing is asserted: this prints figures. `PF_COMPARE_ONLY=1,6` runs only those figures.

mod mirakuru;
mod plot;
mod real;
mod tools;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fixtures_bin::{monotonic_ns, rounds, summary};
use plot::Series;
use tools::{Spec, Tool};

const READY_SERVER: &str = env!("CARGO_BIN_EXE_ready-server");
const FIXTURE_SERVER: &str = env!("CARGO_BIN_EXE_fixture-server");
const DELAYS_MS: [u64; 4] = [5, 20, 150, 2000];
/// Each sample's server listens after its delay plus 0–9 ms (as many samples of each).
const JITTER_MS: u64 = 10;
const THREADS: [usize; 4] = [1, 2, 4, 8];
const GIB: usize = 1 << 30;
/// Set on the child run that measures the fork fallback against the heap.
const HEAP_PHASE: &str = "PF_COMPARE_HEAP_PHASE";
/// Set on a child run that only runs cycles (`<tool>:<n>`), whose CPU the parent measures.
const CYCLE_PHASE: &str = "PF_COMPARE_CYCLE_PHASE";

struct Run {
    n: usize,
    quick: bool,
    python: Option<PathBuf>,
    plots: bool,
}

fn main() {
    let quick = std::env::var_os("PF_BENCH_QUICK").is_some();
    let n = if quick { 3 } else { rounds(50) };
    if std::env::var_os(HEAP_PHASE).is_some() {
        return heap_child(n, quick);
    }
    if let Ok(what) = std::env::var(CYCLE_PHASE) {
        return cycle_child(&what);
    }
    if !cfg!(target_os = "linux") {
        return println!("compare bench: Linux only (it reads /proc; it needs a subreaper)");
    }
    // The zygotes of child runs come back to us when a run exits, so that their CPU is counted,
    // and whatever a tool leaves behind re-parents here, so that it is counted and killed.
    // SAFETY: plain syscall.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1)
    };
    let python = match mirakuru::python() {
        Ok(p) => Some(p),
        Err(reason) => {
            println!("mirakuru skipped: {reason}");
            None
        }
    };
    let plots = match plot::init() {
        Ok(()) => !quick,
        Err(reason) => {
            println!("no plots: {reason}");
            false
        }
    };
    let run = Run {
        n,
        quick,
        python,
        plots,
    };
    println!(
        "compare bench, n={n}{}",
        if quick { " (quick)" } else { "" }
    );
    warm_up(&run);
    let sections: [fn(&Run); 6] = [readiness, cycles, threads, heap, misbehaviour, real_servers];
    let only = std::env::var("PF_COMPARE_ONLY").unwrap_or_default();
    for (i, section) in sections.iter().enumerate() {
        let number = (i + 1).to_string();
        if only.is_empty() || only.split(',').any(|o| o == number) {
            section(&run);
        }
    }
}

/// A few unmeasured cycles of each tool first: the zygote starts, the binaries are in the page
/// cache.
fn warm_up(_run: &Run) {
    for tool in Tool::RUST {
        for _ in 0..3 {
            tools::start(tool, &Spec::new(FIXTURE_SERVER, &WELL_BEHAVED)).stop();
        }
    }
}

impl Run {
    /// mirakuru's driver in `mode`: `lead` (its counts), then the server's command line.
    fn mirakuru(
        &self,
        mode: &str,
        lead: &[String],
        program: &str,
        args: &[&str],
    ) -> mirakuru::Figures {
        let mut argv = lead.to_vec();
        argv.push(program.to_owned());
        argv.extend(args.iter().map(|a| a.to_string()));
        mirakuru::drive(self.python(), mode, &argv)
    }

    fn python(&self) -> &Path {
        self.python
            .as_deref()
            .expect("mirakuru runs only with a python")
    }
}

fn tools(run: &Run) -> Vec<Tool> {
    let mut all = Tool::RUST.to_vec();
    if run.python.is_some() {
        all.push(Tool::Mirakuru);
    }
    all
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn save(made: Result<PathBuf, String>) {
    match made {
        Ok(path) => println!("   plot: {}", path.display()),
        Err(e) => println!("   plot failed: {e}"),
    }
}

// 1. ------------------------------------------------------------------------------------------

fn readiness(run: &Run) {
    println!("\n1. readiness notice latency after listen() (ms)");
    let mut panels = Vec::new();
    for delay in DELAYS_MS {
        let n = if delay >= 1000 {
            (run.n / 10).max(if run.quick { 1 } else { 3 })
        } else {
            run.n
        };
        let mut series = Vec::new();
        for tool in tools(run) {
            let mut samples = match tool {
                Tool::Mirakuru => mirakuru_latencies(run, n, delay),
                _ => (0..n).map(|i| latency(tool, delay, i)).collect(),
            };
            let points = plot::cdf_points(&samples.iter().map(|&d| ms(d)).collect::<Vec<_>>());
            println!(
                "   {delay} ms server, {}: {}",
                tool.name(),
                summary(&mut samples)
            );
            series.push(Series {
                name: tool.name(),
                points,
            });
        }
        panels.push((format!("server listening after {delay} ms"), series));
    }
    if run.plots {
        save(plot::cdfs(
            "compare-readiness.svg",
            "Readiness: when each tool notices a listening port",
            &panels,
        ));
    }
}

/// The extra start-up delay of sample `i`, spread evenly over [0, JITTER_MS) in a scrambled
/// order: a server that always listened after the same delay would meet a tool's poll loop at
/// the same phase every time, and its latency would be that phase's luck, not a distribution.
fn jitter_ms(i: usize) -> u64 {
    (i as u64).wrapping_mul(7) % JITTER_MS
}

fn latency(tool: Tool, delay: u64, i: usize) -> Duration {
    let delay = (delay + jitter_ms(i)).to_string();
    let args = ["--delay-ms", &delay, "--listen", "127.0.0.1:{port}"];
    let started = tools::start(tool, &Spec::new(READY_SERVER, &args));
    let ready = monotonic_ns();
    let listened = started.listen_stamp().expect("listen_ns");
    started.stop();
    Duration::from_nanos(ready.saturating_sub(listened))
}

fn mirakuru_latencies(run: &Run, n: usize, delay: u64) -> Vec<Duration> {
    let args = ["--delay-ms", "{delay}", "--listen", "127.0.0.1:{port}"];
    let lead = [n.to_string(), delay.to_string()];
    run.mirakuru("readiness", &lead, READY_SERVER, &args)
        .durations("latency_ns")
}

// 2. ------------------------------------------------------------------------------------------

const WELL_BEHAVED: [&str; 4] = ["--mode", "well-behaved", "--port", "{port}"];

fn cycles(run: &Run) {
    println!("\n2. spawn -> ready -> stop of fixture-server (well-behaved), per cycle");
    let mut figures = Vec::new();
    let rust_cpu = rust_cpu(run);
    for tool in tools(run) {
        let (mut walls, cpu) = match tool {
            Tool::Mirakuru => mirakuru_cycles(run),
            _ => (rust_walls(tool, run.n), rust_cpu[&tool]),
        };
        let wall = median(&mut walls);
        println!(
            "   {}: wall {}, CPU {:.3} ms per cycle",
            tool.name(),
            summary(&mut walls),
            ms(cpu)
        );
        figures.push((tool, wall, cpu));
    }
    let naive = figures
        .iter()
        .find(|f| f.0 == Tool::Naive)
        .map(|f| (f.1, f.2))
        .expect("naive");
    let mut bars = Vec::new();
    for (tool, wall, cpu) in &figures {
        let (w, c) = (ms(*wall) / ms(naive.0), ms(*cpu) / ms(naive.1));
        println!(
            "   {}: {w:.2}x naive's wall time, {c:.2}x its CPU",
            tool.name()
        );
        bars.push((format!("{}: wall", tool.name()), w));
        bars.push((format!("{}: CPU", tool.name()), c));
    }
    if run.plots {
        save(plot::ratios(
            "compare-cycle.svg",
            "A spawn -> ready -> stop cycle, relative to naive",
            "x naive (median wall time; CPU per cycle)",
            &bars,
        ));
    }
}

/// Wall time of each cycle.
fn rust_walls(tool: Tool, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            tools::start(tool, &Spec::new(FIXTURE_SERVER, &WELL_BEHAVED)).stop();
            t.elapsed()
        })
        .collect()
}

/// CPU per cycle of each Rust tool, from child runs of many more cycles than are timed, five
/// times over and the tools taking turns (the median of each): the difference of two runs'
/// CPU varies by milliseconds, and the machine drifts over a minute.
fn rust_cpu(run: &Run) -> std::collections::HashMap<Tool, Duration> {
    let (few, many, times) = if run.quick {
        (2, 2 + run.n, 1)
    } else {
        (10, 10 + 4 * run.n, 5)
    };
    let mut samples: std::collections::HashMap<Tool, Vec<Duration>> = Default::default();
    for _ in 0..times {
        for tool in Tool::RUST {
            samples
                .entry(tool)
                .or_default()
                .push(cpu_per_cycle(tool, few, many));
        }
    }
    samples
        .into_iter()
        .map(|(tool, mut s)| (tool, median(&mut s)))
        .collect()
}

fn mirakuru_cycles(run: &Run) -> (Vec<Duration>, Duration) {
    let figures = run.mirakuru("cycle", &[run.n.to_string()], FIXTURE_SERVER, &WELL_BEHAVED);
    let cpu = figures.durations("cpu_ns")[0];
    (figures.durations("wall_ns"), cpu / run.n as u32)
}

/// CPU per cycle of `tool`: that of the whole tree of a child run of `many` cycles, less that of
/// a run of `few` (which cancels what a run costs once: the process, its zygote), over the
/// difference. Every process counts, the zygote and the guardians too, to the nanosecond: the
/// child and its servers are reaped by us, its zygote (orphaned when it exits) as well, since
/// this process is a subreaper ([`main`]).
fn cpu_per_cycle(tool: Tool, few: usize, many: usize) -> Duration {
    let cost = |n: usize| {
        let before = children_cpu();
        let status = std::process::Command::new(std::env::current_exe().expect("current_exe"))
            .env(CYCLE_PHASE, format!("{tool:?}:{n}"))
            .status()
            .expect("a cycle run");
        assert!(status.success(), "the cycle run failed: {status}");
        reap_orphans();
        children_cpu() - before
    };
    cost(many).saturating_sub(cost(few)) / (many - few) as u32
}

/// The child run: `<tool>:<n>` cycles, nothing else.
fn cycle_child(what: &str) {
    let (tool, n) = what.split_once(':').expect("<tool>:<n>");
    let tool = Tool::ALL
        .into_iter()
        .find(|t| format!("{t:?}") == tool)
        .expect("a tool");
    for _ in 0..n.parse::<usize>().expect("a count") {
        tools::start(tool, &Spec::new(FIXTURE_SERVER, &WELL_BEHAVED)).stop();
    }
}

/// User + system time of every child reaped so far, and of what they reaped.
fn children_cpu() -> Duration {
    fixtures_bin::rusage_cpu(libc::RUSAGE_CHILDREN)
}

/// Reaps what a child run left to us (its zygote, which exits once the run has), bounded.
fn reap_orphans() {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = orphans();
        if left.is_empty() || Instant::now() > deadline {
            return;
        }
        reap_dead(&left);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// This process's children (those of each of its threads).
fn children() -> Vec<i32> {
    children_of(std::process::id() as i32)
}

/// The children of `pid` (those of each of its threads).
fn children_of(pid: i32) -> Vec<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// This process's zygote (its child named `pf-zygote`).
fn zygote() -> Option<u32> {
    children().into_iter().map(|p| p as u32).find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "pf-zygote")
    })
}

// 3. ------------------------------------------------------------------------------------------

fn threads(run: &Run) {
    println!("\n3. cycles per second, by threads (each thread spawns and stops in a loop)");
    let mut series = Vec::new();
    for tool in tools(run) {
        let mut points = Vec::new();
        for threads in THREADS {
            let per_thread = (run.n / threads).max(2);
            let elapsed = match tool {
                Tool::Mirakuru => mirakuru_threads(run, threads, per_thread),
                _ => rust_threads(tool, threads, per_thread),
            };
            let rate = (threads * per_thread) as f64 / elapsed.as_secs_f64();
            println!(
                "   {}, {threads} thread(s): {rate:.0} cycles/s",
                tool.name()
            );
            points.push((threads as f64, rate));
        }
        series.push(Series {
            name: tool.name(),
            points,
        });
    }
    if run.plots {
        save(plot::lines(
            "compare-threads.svg",
            "Spawn -> ready -> stop cycles per second",
            "threads",
            "cycles per second",
            &series,
        ));
    }
}

/// Wall time of `threads` threads doing `per_thread` cycles each.
fn rust_threads(tool: Tool, threads: usize, per_thread: usize) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    tools::start(tool, &Spec::new(FIXTURE_SERVER, &WELL_BEHAVED)).stop();
                }
            });
        }
    });
    t.elapsed()
}

/// The same in the driver, with Python threads.
fn mirakuru_threads(run: &Run, threads: usize, per_thread: usize) -> Duration {
    let lead = [(threads * per_thread).to_string(), threads.to_string()];
    run.mirakuru("threads", &lead, FIXTURE_SERVER, &WELL_BEHAVED)
        .durations("elapsed_ns")[0]
}

// 4. ------------------------------------------------------------------------------------------

fn heap_sizes(quick: bool) -> &'static [usize] {
    if quick {
        &[0, 1]
    } else {
        &[0, 1, 2, 4]
    }
}

fn heap(run: &Run) {
    println!("\n4. spawn + stop against this process's touched heap (median ms)");
    let mut zygote = Vec::new();
    let mut naive = Vec::new();
    for &gib in heap_sizes(run.quick) {
        let heap = touched(gib);
        let z = heap_cycle(Tool::Events, run.n);
        let v = heap_cycle(Tool::Naive, run.n);
        drop(heap);
        println!(
            "   {gib} GiB: zygote {:.3} ms, naive {:.3} ms",
            ms(z),
            ms(v)
        );
        zygote.push((gib as f64, ms(z)));
        naive.push((gib as f64, ms(v)));
    }
    let forked = heap_forked(run.quick);
    let mut series = vec![
        Series {
            name: "process-fixture (zygote)",
            points: zygote,
        },
        Series {
            name: "naive Command + kill",
            points: naive,
        },
    ];
    if !forked.is_empty() {
        series.insert(
            1,
            Series {
                name: "process-fixture (fork fallback)",
                points: forked,
            },
        );
    }
    if run.plots {
        save(plot::lines(
            "compare-heap.svg",
            "Spawn + stop against the test process's touched heap",
            "touched heap (GiB)",
            "median spawn + stop (ms)",
            &series,
        ));
    }
}

/// `gib` GiB written to, one byte per page, kept alive by the caller.
fn touched(gib: usize) -> Vec<u8> {
    let mut heap = vec![0u8; gib * GIB];
    heap.iter_mut().step_by(4096).for_each(|b| *b = 1);
    std::hint::black_box(heap)
}

fn heap_cycle(tool: Tool, n: usize) -> Duration {
    let mut samples: Vec<Duration> = (0..n.div_ceil(2).max(3))
        .map(|_| {
            let t = Instant::now();
            tools::start(tool, &Spec::new(FIXTURE_SERVER, &WELL_BEHAVED)).stop();
            t.elapsed()
        })
        .collect();
    median(&mut samples)
}

/// The fork fallback's figures, from a child run of this bench with the zygote forced off.
fn heap_forked(quick: bool) -> Vec<(f64, f64)> {
    let out = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .env(HEAP_PHASE, "1")
        .env("PROCESS_FIXTURE_FORCE", "no-zygote")
        .output()
        .expect("the fork-fallback run");
    let text = String::from_utf8_lossy(&out.stdout);
    let points: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let (gib, ms) = l.strip_prefix("forked ")?.split_once(' ')?;
            Some((gib.parse().ok()?, ms.parse().ok()?))
        })
        .collect();
    for (gib, ms) in &points {
        println!("   {gib} GiB: fork fallback {ms:.3} ms");
    }
    let _ = quick;
    points
}

fn heap_child(n: usize, quick: bool) {
    for _ in 0..3 {
        tools::start(Tool::Events, &Spec::new(FIXTURE_SERVER, &WELL_BEHAVED)).stop();
    }
    for &gib in heap_sizes(quick) {
        let heap = touched(gib);
        println!("forked {gib} {:.3}", ms(heap_cycle(Tool::Events, n)));
        drop(heap);
    }
}

// 5. ------------------------------------------------------------------------------------------

const MISBEHAVIOURS: [(&str, &str); 4] = [
    ("cooperative", "well-behaved"),
    ("orphaned workers (2, master exits first)", "forking-master"),
    ("TERM ignored by leader and workers", "workers-ignore-term"),
    ("a setsid escapee", "setsid-escapee"),
];

fn misbehaviour(run: &Run) {
    println!("\n5. the stop per misbehaviour: time, and processes left running");
    for (what, mode) in MISBEHAVIOURS {
        for tool in tools(run) {
            if tool == Tool::Poll {
                continue; // the stop is the same as with events
            }
            let args = ["--mode", mode, "--workers", "2", "--port", "{port}"];
            let took = match tool {
                Tool::Mirakuru => run
                    .mirakuru("stop", &[workers(mode).to_string()], FIXTURE_SERVER, &args)
                    .durations("stop_ns")[0],
                _ => {
                    let started = tools::start(tool, &Spec::new(FIXTURE_SERVER, &args));
                    wait_for_workers(started.pid(), mode);
                    let t = Instant::now();
                    started.stop();
                    t.elapsed()
                }
            };
            let left = left_after();
            println!(
                "   {what}, {}: stop {:.2} ms, left running: {left}",
                tool.name(),
                ms(took)
            );
        }
    }
}

/// How many processes `mode` runs once it is up: the leader and at least two others.
fn workers(mode: &str) -> usize {
    if mode == "well-behaved" {
        1
    } else {
        3
    }
}

/// Waits (bounded) until the tree under `leader` has all its processes.
fn wait_for_workers(leader: u32, mode: &str) {
    let want = workers(mode);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tree_size(leader as i32) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `pid` and its descendants, counted.
fn tree_size(pid: i32) -> usize {
    1 + children_of(pid).into_iter().map(tree_size).sum::<usize>()
}

/// Processes the stop just done left running: children of this process other than its zygote
/// (it is a subreaper, so whatever a tool leaves behind re-parents here, whatever it did to
/// escape), still alive 300 ms after the stop returned. They are then killed and reaped.
fn left_after() -> usize {
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut left = orphans();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        reap_dead(&left);
        left = orphans();
    }
    for &pid in &left {
        // SAFETY: plain syscall on our own child, which cannot be reaped meanwhile but by us.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    reap_orphans();
    left.len()
}

/// Our children other than our zygote.
fn orphans() -> Vec<i32> {
    let ours = zygote();
    children()
        .into_iter()
        .filter(|&p| Some(p as u32) != ours)
        .collect()
}

fn reap_dead(pids: &[i32]) {
    for &pid in pids {
        // SAFETY: plain syscall on our own child; WNOHANG: a live one is left alone.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

// 6. ------------------------------------------------------------------------------------------

fn real_servers(run: &Run) {
    println!("\n6. real servers: start to ready, and stop (median ms), and what is left running");
    let venv_bin = run.python.as_ref().and_then(|p| p.parent());
    let (found, skipped) = real::servers(Path::new(env!("CARGO_TARGET_TMPDIR")), venv_bin);
    for reason in skipped {
        println!("   {reason}");
    }
    for server in &found {
        // Unmeasured: the first start reads the server's binaries and libraries from disk.
        let data = server.data();
        server
            .with_spec(data.as_ref(), |spec| tools::start(Tool::Naive, spec))
            .stop();
        drop(data);
        left_after();
        let rounds = run.n.div_ceil(5).max(2);
        for tool in tools(run) {
            let (mut starts, mut stops, left) = match tool {
                Tool::Mirakuru => mirakuru_real(run, server, rounds),
                _ => rust_real(tool, server, rounds),
            };
            println!(
                "   {}, {}: start {:.2} ms, stop {:.2} ms, left running: {:.1} per stop",
                server.name,
                tool.name(),
                ms(median(&mut starts)),
                ms(median(&mut stops)),
                left as f64 / rounds as f64,
            );
        }
    }
}

/// Start and stop times of `rounds` starts of `server` by `tool`, and how many processes its
/// stops left running in all.
fn rust_real(
    tool: Tool,
    server: &real::Real,
    rounds: usize,
) -> (Vec<Duration>, Vec<Duration>, usize) {
    let (mut starts, mut stops, mut left) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        let data = server.data();
        let t = Instant::now();
        let started = server.with_spec(data.as_ref(), |spec| tools::start(tool, spec));
        starts.push(t.elapsed());
        let t = Instant::now();
        started.stop();
        stops.push(t.elapsed());
        left += left_after();
        drop(data);
    }
    (starts, stops, left)
}

/// The same by mirakuru: every round prepared here (port, directory, data, command line), run
/// by the driver one after the other; what its stops left is counted once it has exited.
fn mirakuru_real(
    run: &Run,
    server: &real::Real,
    rounds: usize,
) -> (Vec<Duration>, Vec<Duration>, usize) {
    let data: Vec<_> = (0..rounds).map(|_| server.data()).collect();
    let prepared: Vec<_> = data
        .iter()
        .map(|d| server.with_spec(d.as_ref(), tools::prepare))
        .collect();
    let lines: Vec<String> = prepared
        .iter()
        .map(|p| format!("{}\t{}\n", p.port, p.argv.join("\t")))
        .collect();
    let list = std::env::temp_dir().join(format!("pf-compare-real-{}", std::process::id()));
    std::fs::write(&list, lines.concat()).expect("the driver's list");
    let figures = mirakuru::drive(run.python(), "real", &[list.to_string_lossy().into_owned()]);
    let _ = std::fs::remove_file(&list);
    let left = left_after();
    (
        figures.durations("start_ns"),
        figures.durations("stop_ns"),
        left,
    )
}
