//! Figures for BENCHMARKS.md: what a fixture's guardian costs the test process and the machine.
//!
//! ```text
//! PF_BENCH_N=100 cargo bench -p fixtures-bin --bench guardian_cost
//! PROCESS_FIXTURE_FORCE=no-zygote cargo bench -p fixtures-bin --bench guardian_cost  # forked guardians
//! ```
//!
//! Every fixture is `fixture-server --mode well-behaved --port {port}` with `Ready::tcp()`.
//! "Touched heap" is a `Vec<u8>` in this process with one write per 4096-byte page, kept alive
//! while measured. The zygote is the guardian's parent when that is not this process; with
//! guardians forked from this process there is no zygote and its figures are left out. What is
//! printed, numbered as the targets of the issue:
//!
//! 1. `spawn()`+`stop()` wall time, and each alone, over N cycles, with 0 and with 4 GiB of
//!    touched heap (4 alternating rounds of N/4 cycles each, the 4 GiB allocated anew each round).
//! 2. Private memory (`Private_Clean + Private_Dirty` of `/proc/<pid>/smaps_rollup`), `Rss`, `Pss`,
//!    and page tables (`VmPTE`) of a guardian and of the zygote, with 0 and 4 GiB of touched heap.
//! 3. Time to write one byte per page of a touched 1 GiB buffer, with no fixture alive and with 3
//!    alive (spawned before each repetition, untimed); 7 alternating repetitions, median.
//! 4. Idle cost: CPU (utime+stime of `/proc/<pid>/stat`; also the ns on CPU of
//!    `/proc/<pid>/schedstat`) and context switches (voluntary + nonvoluntary, `/proc/<pid>/status`)
//!    of 128 idle guardians and the zygote over 5 s.
//! 5. CPU per spawn→ready→stop cycle: for the fixture, Δ of this process's `RUSAGE_SELF` +
//!    `RUSAGE_CHILDREN` + the zygote's utime+stime+cutime+cstime (read once it has reaped every
//!    guardian); for a naive `Command` + connect loop + `kill` + `wait`, Δ `RUSAGE_SELF` +
//!    `RUSAGE_CHILDREN`.
//! 6. Cycles per second with 1, 2, 4 and 8 threads, fixture and naive (2N cycles per figure).
//! 7. Spawn latency: `spawn()` until ready at 0 heap (the spawn row of 1).
//! 8. Stall of another thread: while this thread runs N spawn+stop cycles, a second one sleeps
//!    1 ms in a loop; the largest oversleep beyond 1 ms, at 0 and 4 GiB of touched heap. Then the
//!    same with a sleeper that writes one byte of the heap after each sleep: a fork of this
//!    process holds up that write's page fault.
//!
//! Nothing is asserted about time: this prints figures.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fixtures_bin::rusage_cpu;
use process_fixture::{ProcessFixture, Ready};

const SERVER: &str = env!("CARGO_BIN_EXE_fixture-server");
const GIB: usize = 1 << 30;
const PAGE: usize = 4096;
const IDLE_FIXTURES: usize = 128;
const IDLE_WINDOW: Duration = Duration::from_secs(5);
const REWRITE_REPS: usize = 7;
/// Rounds of 0 GiB then 4 GiB for 1, 2 and 8.
const HEAP_ROUNDS: usize = 4;
const REWRITE_FIXTURES: usize = 3;
const THREADS: [usize; 4] = [1, 2, 4, 8];

fn fixture() -> ProcessFixture {
    ProcessFixture::builder(SERVER)
        .args(["--mode", "well-behaved", "--port", "{port}"])
        .ready(Ready::tcp())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"))
}

fn cycle() {
    let report = fixture().stop().expect("stop");
    assert!(!report.escalated, "well-behaved needed SIGKILL");
}

// ---- figures and their rows ----

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn at(&self, q: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }

    fn median(&self) -> Duration {
        self.at(0.5)
    }

    fn row(&self, name: &str) {
        println!(
            "| {name} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {} |",
            self.at(0.0),
            self.at(0.5),
            self.at(0.9),
            self.at(1.0),
            self.0.len()
        );
    }
}

fn ratio(name: &str, a: Duration, b: Duration) {
    println!("{name}: {:.2}×", a.as_secs_f64() / b.as_secs_f64());
}

fn bench_n() -> usize {
    std::env::var("PF_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

// ---- this process ----

/// A heap buffer of `bytes`, every page written once.
fn touched_heap(bytes: usize) -> Vec<u8> {
    let mut heap = vec![0u8; bytes];
    write_pages(&mut heap, 1);
    heap
}

/// Writes `value` to the first byte of every page of `buf`.
fn write_pages(buf: &mut [u8], value: u8) {
    buf.iter_mut().step_by(PAGE).for_each(|b| *b = value);
    std::hint::black_box(buf);
}

/// 128 fixtures need a few hundred fds.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn rusage(who: libc::c_int) -> libc::rusage {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    usage
}

// ---- other processes, from /proc ----

/// The fields of `/proc/<pid>/stat` used here; times in clock ticks.
struct Stat {
    comm: String,
    ppid: u32,
    /// utime + stime.
    cpu: u64,
    /// cutime + cstime: the reaped children's, recursively.
    children_cpu: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    // tail[0] is field 3 (state).
    let fields: Vec<u64> = tail
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some(Stat {
        comm,
        ppid: fields[1] as u32,
        cpu: fields[11] + fields[12],
        children_cpu: fields[13] + fields[14],
    })
}

fn ticks(n: u64) -> Duration {
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Duration::from_secs_f64(n as f64 / per_second)
}

/// The number after `key:` in `/proc/<pid>/<file>` (kB for memory figures), 0 if absent.
fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix(':')?;
            value.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

fn context_switches(pid: u32) -> u64 {
    proc_field(pid, "status", "voluntary_ctxt_switches")
        + proc_field(pid, "status", "nonvoluntary_ctxt_switches")
}

/// The guardian's parent, when it is not this process.
fn zygote_of(guardian: u32) -> Option<u32> {
    let parent = stat(guardian)?.ppid;
    (parent != std::process::id()).then_some(parent)
}

/// Children of `parent` named `pf-guardian`, zombies included (not yet reaped).
fn guardian_children(parent: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .filter(|s| s.ppid == parent && s.comm == "pf-guardian")
        .count()
}

/// Waits (up to 5 s) until `parent` has reaped all its guardians.
fn wait_guardians_reaped(parent: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while guardian_children(parent) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---- 1, 7: spawn and stop ----

#[derive(Default)]
struct SpawnStop {
    spawn: Samples,
    stop: Samples,
    both: Samples,
}

/// Adds `n` spawn+stop cycles to `into`.
fn spawn_stop(n: usize, into: &mut SpawnStop) {
    for _ in 0..n {
        let t = Instant::now();
        let fx = fixture();
        let spawned = t.elapsed();
        assert!(!fx.stop().expect("stop").escalated);
        let total = t.elapsed();
        into.spawn.0.push(spawned);
        into.stop.0.push(total - spawned);
        into.both.0.push(total);
    }
}

// ---- 2: memory ----

/// kB figures of one process.
#[derive(Default)]
struct Memory {
    private: u64,
    rss: u64,
    pss: u64,
    page_tables: u64,
}

fn memory(pid: u32) -> Memory {
    let rollup = |key| proc_field(pid, "smaps_rollup", key);
    Memory {
        private: rollup("Private_Clean") + rollup("Private_Dirty"),
        rss: rollup("Rss"),
        pss: rollup("Pss"),
        page_tables: proc_field(pid, "status", "VmPTE"),
    }
}

impl Memory {
    fn row(&self, name: &str) {
        let mib = |kb: u64| format!("{:.2} MiB", kb as f64 / 1024.0);
        println!(
            "| {name} | {} | {} | {} | {} |",
            mib(self.private),
            mib(self.rss),
            mib(self.pss),
            mib(self.page_tables)
        );
    }
}

/// A guardian's memory and its zygote's, while one fixture is alive.
fn guardian_memory() -> (Memory, Option<Memory>) {
    let fx = fixture();
    let guardian = fx.guardian_pid();
    let figures = (memory(guardian), zygote_of(guardian).map(memory));
    drop(fx);
    figures
}

// ---- 8: stall of another thread ----

/// Sleeps 1 ms in a loop until `done`, then writes to `byte` if given (a thread that works on
/// memory: a fork of this process holds up its page faults); the largest oversleep.
fn max_oversleep(done: &AtomicBool, mut byte: Option<&mut u8>) -> Duration {
    let mut worst = Duration::ZERO;
    while !done.load(Ordering::Relaxed) {
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        if let Some(byte) = byte.as_deref_mut() {
            *byte = std::hint::black_box(byte.wrapping_add(1));
        }
        worst = worst.max(t.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    worst
}

fn stall_during_cycles(cycles: usize, byte: Option<&mut u8>) -> Duration {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sleeper = s.spawn(|| max_oversleep(&done, byte));
        for _ in 0..cycles {
            cycle();
        }
        done.store(true, Ordering::Relaxed);
        sleeper.join().expect("sleeper")
    })
}

/// What 1, 2 and 8 measure at one heap size.
#[derive(Default)]
struct AtHeap {
    cycles: SpawnStop,
    guardian: Memory,
    zygote: Option<Memory>,
    stall: Duration,
    stall_writing: Duration,
}

impl AtHeap {
    /// One round: spawn+stop cycles, a memory reading, cycles beside a sleeping thread, then
    /// beside one that writes to the first page of `heap` after each sleep.
    fn measure(&mut self, cycles: usize, heap: &mut [u8]) {
        spawn_stop(cycles, &mut self.cycles);
        (self.guardian, self.zygote) = guardian_memory();
        self.stall = self.stall.max(stall_during_cycles(cycles, None));
        let writing = stall_during_cycles(cycles, Some(&mut heap[0]));
        self.stall_writing = self.stall_writing.max(writing);
    }
}

/// 1, 2 and 8 at 0 and at 4 GiB of touched heap, in alternating rounds, so that a slow spell of
/// the machine (another build) is shared by both sizes. At "0 GiB" the heap is one page.
fn by_heap(n: usize) -> [AtHeap; 2] {
    let mut at: [AtHeap; 2] = Default::default();
    let mut page = vec![0u8; PAGE];
    for _ in 0..HEAP_ROUNDS {
        at[0].measure(n.div_ceil(HEAP_ROUNDS), &mut page);
        let mut heap = touched_heap(4 * GIB);
        at[1].measure(n.div_ceil(HEAP_ROUNDS), &mut heap);
    }
    at
}

fn print_at_heap(empty: &AtHeap, full: &AtHeap) {
    println!("\n### 1, 7. spawn() and stop(), well-behaved, Ready::tcp()\n");
    println!("| measurement | min | median | p90 | max | samples |");
    println!("|---|---|---|---|---|---|");
    for (heap, at) in [("0 GiB", empty), ("4 GiB", full)] {
        at.cycles.both.row(&format!("spawn()+stop(), {heap} heap"));
        at.cycles
            .spawn
            .row(&format!("spawn() until ready, {heap} heap"));
        at.cycles.stop.row(&format!("stop(), {heap} heap"));
    }
    println!();
    let (a, b) = (&full.cycles, &empty.cycles);
    ratio(
        "spawn+stop 4 GiB / 0 GiB, median",
        a.both.median(),
        b.both.median(),
    );
    ratio(
        "spawn+stop 4 GiB / 0 GiB, p90",
        a.both.at(0.9),
        b.both.at(0.9),
    );
    ratio(
        "spawn 4 GiB / 0 GiB, median",
        a.spawn.median(),
        b.spawn.median(),
    );
    ratio(
        "stop 4 GiB / 0 GiB, median",
        a.stop.median(),
        b.stop.median(),
    );

    println!("\n### 2. memory of a guardian and of the zygote\n");
    println!("| process | Private_Clean+Private_Dirty | Rss | Pss | VmPTE |");
    println!("|---|---|---|---|---|");
    for (heap, at) in [("0 GiB", empty), ("4 GiB", full)] {
        at.guardian
            .row(&format!("guardian, test process at {heap} heap"));
        if let Some(zygote) = &at.zygote {
            zygote.row(&format!("zygote, test process at {heap} heap"));
        }
    }

    println!("\n### 8. largest oversleep of a 1 ms sleep in another thread, during spawn+stop\n");
    println!("| heap | sleeping only | sleeping, then writing a byte of the heap |");
    println!("|---|---|---|");
    for (heap, at) in [("0 GiB", empty), ("4 GiB", full)] {
        println!("| {heap} | {:.2?} | {:.2?} |", at.stall, at.stall_writing);
    }
}

// ---- 3: rewriting the heap ----

/// Times writing `value` once per page of `buf` with `fixtures_alive` fixtures alive (spawned
/// before, untimed).
fn rewrite_once(buf: &mut [u8], fixtures_alive: usize, value: u8) -> Duration {
    let fixtures: Vec<_> = (0..fixtures_alive).map(|_| fixture()).collect();
    let t = Instant::now();
    write_pages(buf, value);
    let elapsed = t.elapsed();
    drop(fixtures);
    elapsed
}

fn rewrite() {
    let mut buf = touched_heap(GIB);
    let (mut alone, mut with) = (Samples::default(), Samples::default());
    for rep in 0..REWRITE_REPS as u8 {
        alone.0.push(rewrite_once(&mut buf, 0, 2 * rep + 2));
        with.0
            .push(rewrite_once(&mut buf, REWRITE_FIXTURES, 2 * rep + 3));
    }
    println!("\n### 3. writing one byte per page of a touched 1 GiB buffer\n");
    println!("| measurement | min | median | p90 | max | samples |");
    println!("|---|---|---|---|---|---|");
    alone.row("rewrite 1 GiB, no fixture alive");
    with.row(&format!("rewrite 1 GiB, {REWRITE_FIXTURES} fixtures alive"));
    println!();
    ratio(
        &format!("rewrite {REWRITE_FIXTURES} fixtures / none, median"),
        with.median(),
        alone.median(),
    );
}

// ---- 4: idle cost ----

/// CPU time and context switches of one process, so far.
struct Usage {
    /// utime + stime (whole clock ticks per process).
    cpu: Duration,
    /// Time on a CPU, in ns (`/proc/<pid>/schedstat`): what a few µs of work per wake-up add up to.
    on_cpu: Duration,
    switches: u64,
}

fn usage(pid: u32) -> Usage {
    let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let on_cpu_ns = schedstat
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok());
    Usage {
        cpu: stat(pid).map_or(Duration::ZERO, |s| ticks(s.cpu)),
        on_cpu: Duration::from_nanos(on_cpu_ns.unwrap_or(0)),
        switches: context_switches(pid),
    }
}

/// This process, all threads.
fn self_usage() -> Usage {
    let usage = rusage(libc::RUSAGE_SELF);
    let cpu = rusage_cpu(libc::RUSAGE_SELF);
    Usage {
        cpu,
        on_cpu: cpu,
        switches: (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
    }
}

fn usage_row(name: &str, before: &[Usage], after: &[Usage]) {
    let total =
        |usages: &[Usage], f: fn(&Usage) -> Duration| usages.iter().map(f).sum::<Duration>();
    let cpu = total(after, |u| u.cpu) - total(before, |u| u.cpu);
    let on_cpu = total(after, |u| u.on_cpu) - total(before, |u| u.on_cpu);
    let switches: u64 = after.iter().map(|u| u.switches).sum::<u64>()
        - before.iter().map(|u| u.switches).sum::<u64>();
    println!(
        "| {name} | {cpu:.0?} | {on_cpu:.2?} | {switches} | {:.2} |",
        switches as f64 / before.len() as f64
    );
}

fn idle_cost() {
    let fixtures: Vec<_> = (0..IDLE_FIXTURES).map(|_| fixture()).collect();
    let guardians: Vec<u32> = fixtures.iter().map(|f| f.guardian_pid()).collect();
    let zygote: Vec<u32> = zygote_of(guardians[0]).into_iter().collect();
    std::thread::sleep(Duration::from_millis(200)); // let the last spawns settle
    let read = |pids: &[u32]| pids.iter().map(|&p| usage(p)).collect::<Vec<_>>();
    let (g0, z0, s0) = (read(&guardians), read(&zygote), [self_usage()]);
    std::thread::sleep(IDLE_WINDOW);
    let s1 = [self_usage()]; // before reading /proc, which costs this process CPU
    let (g1, z1) = (read(&guardians), read(&zygote));
    drop(fixtures);

    println!(
        "\n### 4. {IDLE_FIXTURES} idle fixtures over {:?}\n",
        IDLE_WINDOW
    );
    println!(
        "| processes | CPU (utime+stime) | on CPU (schedstat) | context switches | per process |"
    );
    println!("|---|---|---|---|---|");
    usage_row(&format!("{IDLE_FIXTURES} guardians"), &g0, &g1);
    if !zygote.is_empty() {
        usage_row("zygote", &z0, &z1);
    }
    usage_row("test process (all threads)", &s0, &s1);
}

// ---- 5, 6: CPU per cycle and cycle rate, against a naive baseline ----

/// A port free at this instant.
fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("local_addr").port()
}

/// Connects until the server accepts (true) or exits first (false: its port was taken).
fn connect_loop(child: &mut Child, port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    loop {
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The usual glue: spawn, connect loop, kill, wait. Retries with another port if the picked one
/// was taken meanwhile.
fn naive_cycle() {
    loop {
        let port = free_port().to_string();
        let mut child = Command::new(SERVER)
            .args(["--mode", "well-behaved", "--port", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let ready = connect_loop(&mut child, port.parse().expect("port"));
        let _ = child.kill();
        child.wait().expect("wait");
        if ready {
            return;
        }
    }
}

/// utime+stime of this process and of its reaped children.
fn own_cpu() -> [Duration; 2] {
    [
        rusage_cpu(libc::RUSAGE_SELF),
        rusage_cpu(libc::RUSAGE_CHILDREN),
    ]
}

/// Of the zygote: utime+stime, and cutime+cstime (the guardians it reaped, and their servers).
fn zygote_cpu(zygote: Option<u32>) -> [Duration; 2] {
    zygote.and_then(stat).map_or([Duration::ZERO; 2], |s| {
        [ticks(s.cpu), ticks(s.children_cpu)]
    })
}

/// CPU per cycle: this process, its reaped children, the zygote, the zygote's reaped children.
/// This process's figures are read before the `/proc` scan that waits for the zygote.
fn cpu_per_cycle(n: usize, cycle: fn(), zygote: Option<u32>) -> [Duration; 4] {
    let (own_before, zygote_before) = (own_cpu(), zygote_cpu(zygote));
    for _ in 0..n {
        cycle();
    }
    let own_after = own_cpu();
    if let Some(zygote) = zygote {
        wait_guardians_reaped(zygote);
    }
    let zygote_after = zygote_cpu(zygote);
    let before = [own_before, zygote_before].concat();
    let after = [own_after, zygote_after].concat();
    [0, 1, 2, 3].map(|i| (after[i] - before[i]) / n as u32)
}

fn cpu_row(name: &str, cpu: [Duration; 4]) -> Duration {
    let total = cpu.iter().sum();
    println!(
        "| {name} | {total:.2?} | {:.2?} | {:.2?} | {:.2?} | {:.2?} |",
        cpu[0], cpu[1], cpu[2], cpu[3]
    );
    total
}

fn cpu_cost(n: usize, zygote: Option<u32>) {
    let ours = cpu_per_cycle(n, cycle, zygote);
    let naive = cpu_per_cycle(n, naive_cycle, None);
    println!("\n### 5. CPU per spawn→ready→stop cycle ({n} cycles)\n");
    println!(
        "| cycle | total | this process | its reaped children | zygote | zygote's reaped children |"
    );
    println!("|---|---|---|---|---|---|");
    let ours = cpu_row("process-fixture", ours);
    let naive = cpu_row("naive Command + connect loop + kill", naive);
    println!();
    ratio("CPU per cycle, process-fixture / naive", ours, naive);
}

fn cycle_rate(threads: usize, total: usize, cycle: fn()) -> f64 {
    let per_thread = total / threads;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| (0..per_thread).for_each(|_| cycle()));
        }
    });
    (per_thread * threads) as f64 / t.elapsed().as_secs_f64()
}

fn cycle_rates(total: usize) {
    println!("\n### 6. spawn→ready→stop cycles per second ({total} cycles per figure)\n");
    println!("| threads | process-fixture | naive | process-fixture / naive |");
    println!("|---|---|---|---|");
    for threads in THREADS {
        let ours = cycle_rate(threads, total, cycle);
        let naive = cycle_rate(threads, total, naive_cycle);
        println!(
            "| {threads} | {ours:.0}/s | {naive:.0}/s | {:.2}× |",
            ours / naive
        );
    }
}

/// Progress on stderr, so that a slow phase shows.
fn phase(start: Instant, name: &str) {
    eprintln!("[{:>6.1?}] {name}", start.elapsed());
}

fn main() {
    raise_fd_limit();
    let n = bench_n();
    let start = Instant::now();
    let first = fixture();
    let zygote = zygote_of(first.guardian_pid());
    let report = first.stop().expect("stop");
    println!(
        "guardian: {:?}; zygote: {zygote:?}; N = {n}",
        report.guardian
    );

    phase(start, "1, 2, 8: 0 and 4 GiB of heap");
    let [empty, full] = by_heap(n);
    print_at_heap(&empty, &full);

    phase(start, "3: rewrite 1 GiB");
    rewrite();
    phase(start, "4: idle");
    idle_cost();
    phase(start, "5: CPU per cycle");
    cpu_cost(n, zygote);
    phase(start, "6: cycle rates");
    cycle_rates(2 * n);
    phase(start, "done");
}
