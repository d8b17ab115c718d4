//! `fixture-server`: a tiny HTTP server with selectable, deterministic
//! misbehaviours, used by process-fixture's integration tests.
//!
//! ```text
//! fixture-server --mode MODE [--port N] [--workers N] [--bytes N]
//!                [--exit-code N] [--stream stdout|stderr] [--delay-ms N]
//! ```
//!
//! See README.md next to Cargo.toml for one line per mode. Every mode first
//! prints `fixture-server mode=<mode> pid=<pid>` to stderr.

use fixtures_bin::monotonic_ns;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const USAGE: &str = "usage: fixture-server --mode MODE [--port N] [--workers N] [--bytes N] \
[--exit-code N] [--stream stdout|stderr] [--delay-ms N] [--note PATH] [--starts PATH] \
[--burn-ms N] [--worker-mib N]";

/// Upper bound on the request head we read before answering.
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Per-connection I/O timeout, so a silent client cannot wedge a server.
const CONN_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of one write in `flood` mode.
const FLOOD_CHUNK_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

macro_rules! modes {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        enum Mode { $($variant),+ }

        impl Mode {
            const ALL: &'static [Mode] = &[$(Mode::$variant),+];

            fn name(self) -> &'static str {
                match self { $(Mode::$variant => $name),+ }
            }
        }
    };
}

modes! {
    WellBehaved => "well-behaved",
    ForkingMaster => "forking-master",
    WorkersIgnoreTerm => "workers-ignore-term",
    WorkersBlockTerm => "workers-block-term",
    IgnoreTerm => "ignore-term",
    BlockTerm => "block-term",
    SetsidEscapee => "setsid-escapee",
    GrandchildHoldsStdout => "grandchild-holds-stdout",
    CrashBeforeBind => "crash-before-bind",
    NeverBinds => "never-binds",
    Flood => "flood",
    ReadyLine => "ready-line",
    Daemonize => "daemonize",
    ForkChurn => "fork-churn",
    ForkStorm => "fork-storm",
    ExitAfterReady => "exit-after-ready",
    HttpWarmup => "http-warmup",
    CrashWithHelper => "crash-with-helper",
    OtherGroupWorker => "other-group-worker",
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.iter().copied().find(|m| m.name() == s)
    }

    /// Whether the mode binds a port (and so needs `--port`).
    fn binds(self) -> bool {
        !matches!(
            self,
            Mode::CrashBeforeBind | Mode::NeverBinds | Mode::CrashWithHelper
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
struct Opts {
    mode: Mode,
    port: u16,
    workers: u32,
    bytes: u64,
    exit_code: i32,
    stream: Stream,
    delay: Duration,
    /// Where `other-group-worker`'s worker notes the signal it got.
    note: Option<String>,
    /// A file to append `<pid>` to on start: counts how many times a server was started.
    starts: Option<String>,
    /// CPU to burn (a busy loop) before anything else: a known cost for the stop report.
    burn: Duration,
    /// `forking-master`: memory each worker writes to and keeps (MiB): a known tree peak.
    worker_mib: usize,
}

/// Prints `msg` and the usage line to stderr and exits 2.
fn usage_error(msg: &str) -> ! {
    say(Stream::Stderr, &format!("fixture-server: {msg}\n{USAGE}"));
    std::process::exit(2)
}

fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage_error(&format!("invalid value for {flag}: {value:?}")))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Opts {
    let mut mode = None;
    let mut port = None;
    let mut opts = Opts {
        mode: Mode::WellBehaved,
        port: 0,
        workers: 2,
        bytes: 64 * 1024 * 1024,
        exit_code: 3,
        stream: Stream::Stdout,
        delay: Duration::ZERO,
        note: None,
        starts: None,
        burn: Duration::ZERO,
        worker_mib: 0,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            usage_error(&format!("unknown argument or missing value: {flag:?}"))
        };
        match flag.as_str() {
            "--mode" => {
                mode = Some(
                    Mode::parse(&value)
                        .unwrap_or_else(|| usage_error(&format!("unknown mode: {value:?}"))),
                )
            }
            "--port" => port = Some(parse_num(&flag, &value)),
            "--workers" => opts.workers = parse_num(&flag, &value),
            "--bytes" => opts.bytes = parse_num(&flag, &value),
            "--exit-code" => opts.exit_code = parse_num(&flag, &value),
            "--delay-ms" => opts.delay = Duration::from_millis(parse_num(&flag, &value)),
            "--note" => opts.note = Some(value),
            "--starts" => opts.starts = Some(value),
            "--burn-ms" => opts.burn = Duration::from_millis(parse_num(&flag, &value)),
            "--worker-mib" => opts.worker_mib = parse_num(&flag, &value),
            "--stream" => {
                opts.stream = match value.as_str() {
                    "stdout" => Stream::Stdout,
                    "stderr" => Stream::Stderr,
                    _ => usage_error(&format!("invalid value for --stream: {value:?}")),
                }
            }
            _ => usage_error(&format!("unknown argument: {flag:?}")),
        }
    }
    opts.mode = mode.unwrap_or_else(|| usage_error("--mode is required"));
    match port {
        Some(p) => opts.port = p,
        None if opts.mode.binds() => {
            usage_error(&format!("--port is required for mode {}", opts.mode.name()))
        }
        None => {}
    }
    opts
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Writes one line to `stream` and flushes. Errors (closed pipe, ...) are
/// ignored: a helper server must never die because nobody reads its output.
fn say(stream: Stream, line: &str) {
    let _ = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}").and_then(|()| out.flush())
        }
        Stream::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
    };
}

fn write_chunk(stream: Stream, chunk: &[u8]) -> std::io::Result<()> {
    match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(chunk).and_then(|()| out.flush())
        }
        Stream::Stderr => std::io::stderr().lock().write_all(chunk),
    }
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

/// Binds 127.0.0.1:`port` (0 picks a free port) or exits 1. Prints
/// `bound_ns=<CLOCK_MONOTONIC ns>` to stderr once the port accepts connections.
fn bind(port: u16) -> TcpListener {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        say(
            Stream::Stderr,
            &format!("fixture-server: cannot bind 127.0.0.1:{port}: {e}"),
        );
        std::process::exit(1)
    });
    say(Stream::Stderr, &format!("bound_ns={}", monotonic_ns()));
    listener
}

fn local_port(listener: &TcpListener) -> u16 {
    listener.local_addr().map(|a| a.port()).unwrap_or(0)
}

fn say_listening(listener: &TcpListener) {
    say(
        Stream::Stdout,
        &format!("listening on 127.0.0.1:{}", local_port(listener)),
    );
}

/// Blocking accept loop answering every connection with `ok pid=<pid>`.
fn serve(listener: &TcpListener) -> ! {
    serve_with(listener, || "200 OK")
}

/// Blocking accept loop answering every connection with the status `status()` gives then.
fn serve_with(listener: &TcpListener, status: impl Fn() -> &'static str) -> ! {
    loop {
        match listener.accept() {
            Ok((conn, _)) => answer(conn, status()),
            // E.g. EMFILE: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads the request head (bounded) and writes the fixed response. All
/// errors are ignored: a broken connection only affects itself.
fn answer(mut conn: TcpStream, status: &str) {
    let _ = conn.set_read_timeout(Some(CONN_TIMEOUT));
    let _ = conn.set_write_timeout(Some(CONN_TIMEOUT));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < MAX_REQUEST_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = format!("ok pid={}\n", std::process::id());
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes());
}

// ---------------------------------------------------------------------------
// Signals and processes
// ---------------------------------------------------------------------------

fn sigterm_set() -> libc::sigset_t {
    // SAFETY: sigemptyset fully initialises the set before it is read.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGTERM in the calling thread. Must be called while the process is
/// still single-threaded, before any fork, so that every later thread
/// inherits the mask and no SIGTERM can slip in before `exit_on_sigterm`.
/// Also resets an inherited SIG_IGN disposition, which would discard SIGTERM.
fn block_sigterm() {
    let set = sigterm_set();
    // SAFETY: plain syscalls with a valid set pointer; a null old-set pointer
    // is allowed.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits (with SIGTERM blocked, see `block_sigterm`) for SIGTERM, then prints
/// `shutting down` and exits 0.
fn wait_for_sigterm_then_exit() -> ! {
    let set = sigterm_set();
    loop {
        let mut sig = 0;
        // SAFETY: valid pointers to a set and an int.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 && sig == libc::SIGTERM {
            say(Stream::Stderr, "shutting down");
            std::process::exit(0);
        }
    }
}

/// Makes the process exit 0 on SIGTERM via a dedicated `sigwait` thread.
/// `block_sigterm` must have been called first.
fn exit_on_sigterm() {
    std::thread::spawn(|| wait_for_sigterm_then_exit());
}

/// What a (forked) process does on SIGTERM.
#[derive(Clone, Copy)]
enum OnTerm {
    Die,
    Ignore,
    /// Blocked: pending, never delivered, but not *ignored* (SigIgn stays clear), so a stop
    /// must give it its grace.
    Block,
}

/// Sets the SIGTERM disposition and clears the signal mask, undoing any
/// blocked mask or ignored disposition inherited from the parent.
fn set_sigterm(on_term: OnTerm) {
    let handler = match on_term {
        OnTerm::Die | OnTerm::Block => libc::SIG_DFL,
        OnTerm::Ignore => libc::SIG_IGN,
    };
    // SAFETY: plain syscalls with valid arguments; the empty set is
    // initialised by sigemptyset.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        if let OnTerm::Block = on_term {
            libc::sigaddset(&mut mask, libc::SIGTERM);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
    }
}

/// Forks; the child runs `child` and then `_exit(0)`s, the parent gets the
/// child's pid. The process must be single-threaded when this is called.
fn fork_child(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the process is single-threaded (callers fork before spawning
    // any thread), so the child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => {
            say(Stream::Stderr, "fixture-server: fork failed");
            std::process::exit(1)
        }
        0 => {
            child();
            // SAFETY: terminating the child without running the parent's
            // atexit handlers is exactly what we want.
            unsafe { libc::_exit(0) }
        }
        pid => pid,
    }
}

fn setsid() {
    // SAFETY: plain syscall; fails only if already a group leader.
    unsafe { libc::setsid() };
}

fn pause_forever() -> ! {
    loop {
        // SAFETY: plain syscall.
        unsafe { libc::pause() };
    }
}

// ---------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------

fn well_behaved(opts: &Opts) -> ! {
    block_sigterm();
    let listener = bind(opts.port);
    say_listening(&listener);
    exit_on_sigterm();
    serve(&listener)
}

/// `forking-master`, `workers-ignore-term` and `workers-block-term`: workers serve the shared
/// listener; the master only waits for SIGTERM and exits 0 without touching
/// its workers.
fn forking_master(opts: &Opts, workers_on_term: OnTerm) -> ! {
    block_sigterm();
    let listener = bind(opts.port);
    for _ in 0..opts.workers {
        fork_child(|| {
            set_sigterm(workers_on_term);
            // One write per page: resident, and the worker's own (not shared with the master).
            let mut kept = vec![0u8; opts.worker_mib << 20];
            kept.iter_mut().step_by(4096).for_each(|b| *b = 1);
            std::hint::black_box(&kept);
            serve(&listener)
        });
    }
    say(Stream::Stdout, "master ready");
    wait_for_sigterm_then_exit()
}

fn ignore_term(opts: &Opts) -> ! {
    set_sigterm(OnTerm::Ignore);
    serve(&bind(opts.port))
}

/// Blocks SIGTERM (pending, never delivered) but does not ignore it: a stop owes it its grace,
/// then SIGKILL.
fn block_term(opts: &Opts) -> ! {
    set_sigterm(OnTerm::Block);
    serve(&bind(opts.port))
}

fn setsid_escapee(opts: &Opts) -> ! {
    block_sigterm();
    let listener = bind(opts.port);
    let escapee = fork_child(|| {
        setsid();
        set_sigterm(OnTerm::Die);
        serve(&listener)
    });
    say(Stream::Stdout, &format!("escapee pid={escapee}"));
    wait_for_sigterm_then_exit()
}

fn grandchild_holds_stdout(opts: &Opts) -> ! {
    block_sigterm();
    // Fork before binding so the holder keeps only stdout/stderr, not the port.
    let holder = fork_child(|| {
        setsid();
        set_sigterm(OnTerm::Die);
        pause_forever()
    });
    let listener = bind(opts.port);
    say(Stream::Stdout, &format!("holder pid={holder}"));
    exit_on_sigterm();
    serve(&listener)
}

fn crash_before_bind(opts: &Opts) -> ! {
    say(Stream::Stdout, "starting");
    say(Stream::Stderr, "fatal: simulated crash before bind");
    std::process::exit(opts.exit_code)
}

fn never_binds() -> ! {
    set_sigterm(OnTerm::Die);
    say(Stream::Stdout, "starting, will never bind");
    pause_forever()
}

fn flood(opts: &Opts) -> ! {
    block_sigterm();
    // Installed before flooding so SIGTERM is graceful even mid-flood.
    exit_on_sigterm();
    let line = format!("{}...\n", "flood ".repeat(10)); // 64 bytes
    let chunk = line.repeat(FLOOD_CHUNK_BYTES / line.len());
    let mut left = opts.bytes;
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        // The tail of a chunk ends with '\n', so later output starts a line.
        if write_chunk(opts.stream, &chunk.as_bytes()[chunk.len() - n..]).is_err() {
            break; // EPIPE etc.: stop flooding, keep going.
        }
        left -= n as u64;
    }
    let listener = bind(opts.port);
    say_listening(&listener);
    serve(&listener)
}

fn ready_line(opts: &Opts) -> ! {
    block_sigterm();
    exit_on_sigterm();
    std::thread::sleep(opts.delay);
    let listener = bind(opts.port);
    say(Stream::Stderr, &format!("ready_ns={}", monotonic_ns()));
    say(
        opts.stream,
        &format!("READY port={}", local_port(&listener)),
    );
    serve(&listener)
}

fn daemonize(opts: &Opts) -> ! {
    fork_child(|| {
        setsid();
        set_sigterm(OnTerm::Die);
        let listener = bind(opts.port);
        say(
            Stream::Stderr,
            &format!("daemon pid={}", std::process::id()),
        );
        serve(&listener)
    });
    std::process::exit(0)
}

fn fork_churn(opts: &Opts) -> ! {
    set_sigterm(OnTerm::Die);
    let listener = bind(opts.port);
    for _ in 0..opts.workers {
        fork_child(churn_forever);
    }
    serve(&listener)
}

/// A fork bomb held in check only by RLIMIT_NPROC (`--workers` processes for this user; root
/// is exempt, so run it as another user): binds, then one child starts forking, and every
/// process it makes forks too, forever, each in a session of its own (out of the group) and
/// ignoring SIGTERM. The leader serves and dies on SIGTERM.
fn fork_storm(opts: &Opts) -> ! {
    set_sigterm(OnTerm::Die);
    let cap = opts.workers as libc::rlim_t;
    let limit = libc::rlimit {
        rlim_cur: cap,
        rlim_max: cap,
    };
    // SAFETY: plain syscall with a live local.
    unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &limit) };
    let listener = bind(opts.port);
    fork_child(storm_forever);
    serve(&listener)
}

fn storm_forever() {
    // SAFETY: plain syscalls in a single-threaded process; every child runs this same loop.
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        loop {
            if libc::fork() == 0 {
                libc::setsid();
            } else {
                libc::sched_yield();
            }
        }
    }
}

/// Forks short-lived grandchildren back to back, forever.
fn churn_forever() {
    loop {
        // SAFETY: this process is single-threaded; the grandchild only
        // sleeps and `_exit`s.
        match unsafe { libc::fork() } {
            -1 => std::thread::sleep(Duration::from_millis(1)),
            0 => unsafe {
                libc::usleep(1000);
                libc::_exit(0)
            },
            pid => unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            },
        }
    }
}

fn exit_after_ready(opts: &Opts) -> ! {
    let listener = bind(opts.port);
    say_listening(&listener);
    std::thread::spawn(move || serve(&listener));
    std::thread::sleep(opts.delay);
    std::process::exit(opts.exit_code)
}

/// Accepts connections at once but answers `503 Service Unavailable` until `--delay-ms` after the
/// bind, then `200 OK`: a port that accepts is not yet a service that works.
fn http_warmup(opts: &Opts) -> ! {
    block_sigterm();
    let listener = bind(opts.port);
    let warm_at = std::time::Instant::now() + opts.delay;
    say_listening(&listener);
    exit_on_sigterm();
    serve_with(&listener, || {
        if std::time::Instant::now() < warm_at {
            "503 Service Unavailable"
        } else {
            "200 OK"
        }
    })
}

/// The leader forks a helper that stays in its group and sleeps, prints `helper pid=<pid>`, and
/// exits `--exit-code` before it ever binds: a crash, with a process of the fixture still alive.
fn crash_with_helper(opts: &Opts) -> ! {
    let helper = fork_child(|| {
        set_sigterm(OnTerm::Die);
        pause_forever()
    });
    say(Stream::Stdout, &format!("helper pid={helper}"));
    say(
        Stream::Stderr,
        "fatal: simulated crash, helper left running",
    );
    std::process::exit(opts.exit_code)
}

/// The leader blocks SIGTERM (it needs SIGKILL), binds and serves; its worker moves to a
/// process group of its own (same session) and, on SIGTERM, writes `TERM` to `--note` and
/// exits 0. Prints `worker pid=<pid>` once the worker has left the group.
fn other_group_worker(opts: &Opts) -> ! {
    let note = opts
        .note
        .clone()
        .unwrap_or_else(|| usage_error("--note is required for other-group-worker"));
    let listener = bind(opts.port);
    let (ready_r, ready_w) = pipe();
    let worker = fork_child(|| {
        // SAFETY: plain syscalls on this process.
        unsafe { libc::setpgid(0, 0) };
        let set = sigterm_set();
        // SAFETY: a valid set; the mask is this (single-threaded) process's.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        // SAFETY: writing one byte to our end of the pipe.
        unsafe { libc::write(ready_w, b"x".as_ptr().cast(), 1) };
        let mut sig = 0;
        // SAFETY: valid pointers.
        while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
        let _ = std::fs::write(&note, "TERM");
        std::process::exit(0)
    });
    let mut byte = [0u8; 1];
    // SAFETY: reading one byte from our end of the pipe.
    unsafe { libc::read(ready_r, byte.as_mut_ptr().cast(), 1) };
    // Blocked before the line: a test that stops the server as soon as it reads it must find
    // the leader blocking SIGTERM already.
    block_sigterm();
    say(Stream::Stdout, &format!("worker pid={worker}"));
    serve(&listener)
}

/// A pipe `(read, write)`.
fn pipe() -> (libc::c_int, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        usage_error("pipe failed");
    }
    (fds[0], fds[1])
}

/// Appends one line, `<pid>`, to `path` (one `write` of a short line with `O_APPEND`: lines
/// of servers starting at once do not interleave).
fn note_start(path: &str) {
    let line = format!("{}\n", std::process::id());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if file.and_then(|mut f| f.write_all(line.as_bytes())).is_err() {
        usage_error(&format!("cannot append to --starts {path:?}"));
    }
}

/// Spins for `cpu` of CPU time (its own, measured by the clock of this process's CPU).
fn burn(cpu: Duration) {
    let used = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let start = used();
    let mut x = 0u64;
    while used() - start < cpu {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn main() {
    let opts = parse_args(std::env::args().skip(1));
    if let Some(path) = &opts.starts {
        note_start(path);
    }
    burn(opts.burn);
    say(
        Stream::Stderr,
        &format!(
            "fixture-server mode={} pid={}",
            opts.mode.name(),
            std::process::id()
        ),
    );
    match opts.mode {
        Mode::WellBehaved => well_behaved(&opts),
        Mode::ForkingMaster => forking_master(&opts, OnTerm::Die),
        Mode::WorkersIgnoreTerm => forking_master(&opts, OnTerm::Ignore),
        Mode::WorkersBlockTerm => forking_master(&opts, OnTerm::Block),
        Mode::IgnoreTerm => ignore_term(&opts),
        Mode::BlockTerm => block_term(&opts),
        Mode::SetsidEscapee => setsid_escapee(&opts),
        Mode::GrandchildHoldsStdout => grandchild_holds_stdout(&opts),
        Mode::CrashBeforeBind => crash_before_bind(&opts),
        Mode::NeverBinds => never_binds(),
        Mode::Flood => flood(&opts),
        Mode::ReadyLine => ready_line(&opts),
        Mode::Daemonize => daemonize(&opts),
        Mode::ForkChurn => fork_churn(&opts),
        Mode::ForkStorm => fork_storm(&opts),
        Mode::ExitAfterReady => exit_after_ready(&opts),
        Mode::HttpWarmup => http_warmup(&opts),
        Mode::CrashWithHelper => crash_with_helper(&opts),
        Mode::OtherGroupWorker => other_group_worker(&opts),
    }
}
