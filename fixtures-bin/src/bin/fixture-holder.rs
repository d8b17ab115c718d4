//! `fixture-holder`: holds a `process_fixture::ProcessFixture` and then dies in a chosen way, so
//! that `tests/process_death.rs` can check that the fixture's guardian cleans up after a test
//! process that never ran (or could not run) `Drop` (docs/design.md, R4.1, R4.2, R4.3; the
//! R-numbers below are its requirements too).
//!
//! ```text
//! fixture-holder --server PATH --mode MODE --then wait|pause-wait|restart-loop|abort|exit-static|panic|thread-exit|drop|kill-own-group
//! ```
//!
//! It spawns `PATH --mode MODE --port {port}` (plus `--workers 2` for `forking-master`) with
//! `Ready::tcp()`, prints one line to stdout,
//! `pid=<leader> pgid=<pgid> port=<port> guardian=<guardian pid>`, flushes, and then (for
//! `abort`, `exit-static`, `panic` and `drop-on-go`, only once a line or EOF arrives on stdin, so
//! that the test can look at the server's processes first):
//! - `wait`: blocks forever (the test SIGKILLs it); `pause-wait` the same with the server paused
//!   (`ProcessFixture::pause`) before the line is printed; `restart-loop` restarts the server
//!   over and over, printing `restarted pid=<leader>` after each (the test SIGKILLs it at
//!   some moment of a restart);
//! - `abort`: `std::process::abort()` (no `Drop`, like `panic = "abort"`);
//! - `exit-static`: the fixture lives in a static, which is never dropped, and `main` returns;
//! - `panic`: panics with the fixture in a local: `Drop` runs while unwinding and prints the
//!   server's last output lines to stderr; exit code 101;
//! - `thread-exit`: the fixture was spawned on a thread that has exited since (R4.2); prints
//!   `still-alive` once the server still answers after that thread is gone, then blocks forever;
//! - `drop`: a passing test: the server answers, the fixture is stopped (`stopped: <report>` or
//!   `stop failed: <error>`), `dropped` is printed, exit 0 (tests/terminal.rs runs it in
//!   `cmd 2>&1 | tee log` under job control, R5.1); `drop-on-go` the same once the test says go;
//! - `kill-own-group`: the vLLM bug on purpose, the negative control of that test: the holder
//!   calls `setpgid(0, 0)` itself, ignores SIGTERM and sends it to its own process group, which
//!   under job control is the whole pipeline, `tee` included;
//! - `fork-and-wait`: the holder forks a child without exec (as a forking test helper or a
//!   daemonising library would), which inherits every fd of the holder, the fixture's included,
//!   and pauses forever; prints `forked pid=<pid>`, then blocks forever (the test SIGKILLs the
//!   holder, and must then find the server gone although the child still holds those fds).
//!
//! With `PF_HOLDER_IGNORE_SIGCHLD` set it ignores SIGCHLD first, as some hosts do (docs/design.md,
//! R1.4).
//! With `PF_HOLDER_TEMP_DIR` set the fixture gets a temporary directory (`Builder::temp_dir`),
//! and the line ends with ` dir=<path>`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use process_fixture::{ProcessFixture, Ready};

/// The fixture of `--then exit-static`: a static is never dropped (R4.3).
static FIXTURE: OnceLock<Mutex<ProcessFixture>> = OnceLock::new();

const USAGE: &str = "usage: fixture-holder --server PATH --mode MODE \
                     --then wait|pause-wait|restart-loop|abort|exit-static|panic|thread-exit|drop|drop-on-go|kill-own-group|fork-and-wait";

fn usage(msg: &str) -> ! {
    eprintln!("fixture-holder: {msg}\n{USAGE}");
    std::process::exit(2)
}

struct Opts {
    server: String,
    mode: String,
    then: String,
}

fn parse_args() -> Opts {
    let (mut server, mut mode, mut then) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("missing value for {flag:?}")));
        match flag.as_str() {
            "--server" => server = Some(value),
            "--mode" => mode = Some(value),
            "--then" => then = Some(value),
            _ => usage(&format!("unknown argument {flag:?}")),
        }
    }
    Opts {
        server: server.unwrap_or_else(|| usage("--server is required")),
        mode: mode.unwrap_or_else(|| usage("--mode is required")),
        then: then.unwrap_or_else(|| usage("--then is required")),
    }
}

fn spawn(opts: &Opts) -> ProcessFixture {
    let mut builder = ProcessFixture::builder(&opts.server);
    builder
        .args(["--mode", opts.mode.as_str(), "--port", "{port}"])
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_secs(30));
    if opts.mode == "forking-master" {
        builder.args(["--workers", "2"]);
    }
    if std::env::var_os("PF_HOLDER_TEMP_DIR").is_some() {
        builder.temp_dir();
    }
    builder
        .spawn()
        .unwrap_or_else(|e| panic!("fixture-holder: spawning the fixture failed: {e}"))
}

fn announce(fx: &ProcessFixture) {
    let mut out = std::io::stdout().lock();
    let dir = fx
        .dir()
        .map_or_else(String::new, |d| format!(" dir={}", d.display()));
    writeln!(
        out,
        "pid={} pgid={} port={} guardian={}{dir}",
        fx.pid(),
        fx.pgid(),
        fx.port(),
        fx.guardian_pid()
    )
    .and_then(|()| out.flush())
    .expect("writing to stdout");
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .expect("writing to stdout");
}

/// Waits for the test's go-ahead: a line, or EOF, on stdin.
fn await_go() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn block_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// Polls `f` with a growing interval until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(500);
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause); // a poll interval: `f` decides
        pause = (pause * 3 / 2).min(Duration::from_millis(20));
    }
}

/// Does the server answer an HTTP request with its own pid (so its process ran user code)?
fn answers(port: u16, pid: u32) -> bool {
    let exchange = || -> std::io::Result<String> {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    };
    // forking-master answers from a worker; well-behaved from the leader itself.
    exchange()
        .is_ok_and(|t| t.contains("ok pid=") && (pid == 0 || t.contains(&format!("pid={pid}"))))
}

#[cfg(target_os = "linux")]
fn gettid() -> i64 {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// Elsewhere there is no /proc/self/task to watch (the tests that use it are Linux-only).
#[cfg(not(target_os = "linux"))]
fn gettid() -> i64 {
    0
}

fn main() {
    let opts = parse_args();
    // R1.4: a host process that ignores SIGCHLD has its children reaped by the kernel at once.
    if std::env::var_os("PF_HOLDER_IGNORE_SIGCHLD").is_some() {
        // SAFETY: setting a disposition before any thread or child exists.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    }
    // `abort` must not leave a core file behind, wherever this runs.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscall with a valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };

    match opts.then.as_str() {
        "wait" => {
            let fx = spawn(&opts);
            announce(&fx);
            block_forever()
        }
        "restart-loop" => {
            let mut fx = spawn(&opts);
            announce(&fx);
            loop {
                fx.restart().expect("restarting the server");
                say(&format!("restarted pid={}", fx.pid()));
            }
        }
        "pause-wait" => {
            let fx = spawn(&opts);
            fx.pause().expect("pausing the server");
            announce(&fx);
            block_forever()
        }
        "abort" => {
            let fx = spawn(&opts);
            announce(&fx);
            await_go();
            std::process::abort()
        }
        "exit-static" => {
            let fx = spawn(&opts);
            announce(&fx);
            await_go();
            if FIXTURE.set(Mutex::new(fx)).is_err() {
                unreachable!("FIXTURE is set once");
            }
            // main returns: statics are never dropped, so only the guardian can clean up.
        }
        "panic" => {
            let fx = spawn(&opts);
            announce(&fx);
            await_go();
            // Readiness is a TCP connect, which can succeed before the server's
            // `listening on ...` line has been drained; wait for it so that the dump made by
            // `Drop` while unwinding has something to show.
            let drained = wait_until(Duration::from_secs(10), || !fx.stdout().is_empty());
            eprintln!("fixture-holder: server stdout drained before the panic: {drained}");
            panic!("holder panicked on purpose");
        }
        "drop" | "drop-on-go" => {
            let fx = spawn(&opts);
            announce(&fx);
            if opts.then == "drop-on-go" {
                await_go();
            }
            assert!(answers(fx.port(), 0), "the server does not answer");
            match fx.stop() {
                Ok(report) => say(&format!("stopped: {report}")),
                Err(e) => say(&format!("stop failed: {e}")),
            }
            say("dropped");
        }
        "kill-own-group" => {
            let fx = spawn(&opts);
            announce(&fx);
            // SAFETY: plain syscalls. This is the bug process-fixture must never commit.
            unsafe {
                libc::setpgid(0, 0);
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
                libc::kill(0, libc::SIGTERM);
            }
            drop(fx);
            say("dropped");
        }
        "thread-exit" => {
            let spawner = std::thread::Builder::new()
                .name("fixture-spawner".into())
                .spawn({
                    let server = opts.server.clone();
                    let mode = opts.mode.clone();
                    move || {
                        let o = Opts {
                            server,
                            mode,
                            then: String::new(),
                        };
                        (spawn(&o), gettid())
                    }
                })
                .expect("spawning a thread");
            let (fx, tid) = spawner.join().expect("the spawning thread panicked");
            // `join` can return a little before the kernel has finished the thread's exit (and
            // sent any PDEATHSIG): wait until the thread is gone from /proc.
            let task = format!("/proc/self/task/{tid}");
            assert!(
                wait_until(Duration::from_secs(10), || !std::path::Path::new(&task)
                    .exists()),
                "the spawning thread {tid} did not go away"
            );
            announce(&fx);
            let leader = if opts.mode == "forking-master" {
                0
            } else {
                fx.pid()
            };
            if answers(fx.port(), leader) {
                say("still-alive");
            } else {
                say("server-gone");
            }
            block_forever()
        }
        "fork-and-wait" => {
            let fx = spawn(&opts);
            announce(&fx);
            // SAFETY: the child only pauses (async-signal-safe) until it is killed.
            let child = unsafe { libc::fork() };
            if child == 0 {
                // It keeps every fd of the fixture, but not our stdout/stderr: the test reads
                // those to EOF once we are dead.
                // SAFETY: plain syscalls (async-signal-safe) in the forked child.
                unsafe {
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                    libc::dup2(null, 1);
                    libc::dup2(null, 2);
                    loop {
                        libc::pause();
                    }
                }
            }
            say(&format!("forked pid={child}"));
            block_forever()
        }
        other => usage(&format!("unknown --then {other:?}")),
    }
}
