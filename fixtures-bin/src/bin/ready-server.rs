//! `ready-server`: a server that becomes ready late, in whichever ways it is told, and counts the
//! connections it accepts, for process-fixture's readiness tests and benchmark.
//!
//! ```text
//! ready-server [--delay-ms N] [--listen ADDR]... [--listen-any-port] [--http-status CODE]
//!              [--unix PATH] [--file PATH] [--notify] [--say LINE] [--stream stdout|stderr]
//!              [--later LINE --later-ms N] [--exit-after-ms N] [--exit-code N] [--exit-signal N]
//!              [--http-silent] [--log-requests] [--once PATH]
//! ```
//! With `--once PATH` it starts only once: if PATH exists it prints `already ran` on stderr and
//! exits 4, else it creates PATH and goes on (a server that does not come back after a restart).
//! It prints `starting` on stdout at once, and with `--notify` sends `STATUS=warming up` to
//! `NOTIFY_SOCKET`. After `--delay-ms` (default 0) it does, in this order:
//! - `--listen ADDR` (repeatable, e.g. `127.0.0.1:8080`, `[::1]:8080`): binds and listens, and
//!   prints `listen_ns=<CLOCK_MONOTONIC ns>` on stderr right after `listen()` returned;
//! - `--listen-any-port`: binds `127.0.0.1:0` and prints `listening on 127.0.0.1:<port>` (stdout);
//! - `--unix PATH`: listens on a unix socket there; `--file PATH`: creates the file;
//! - `--notify`: sends `READY=1` and `STATUS=serving`; `--say LINE`: prints LINE on `--stream`.
//!
//! Every TCP or unix connection is answered `HTTP/1.1 <--http-status, default 200>` with the body
//! `conn=<n>`, n counting the connections accepted so far (so a test's first request, answered
//! `conn=1`, proves that no probe connected before it); with `--http-silent` a connection is
//! read and never answered (held until the client closes it), and `--log-requests` prints each
//! request's first line on stderr as `request=<line>`. `--later LINE` prints LINE `--later-ms`
//! after that; `--exit-after-ms N` exits `--exit-code` (default 3) N ms after being ready, or with
//! `--exit-signal N` dies of signal N then (a crash: SIGSEGV is 11). It dies on SIGTERM (default
//! disposition).

use fixtures_bin::monotonic_ns;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Opts {
    delay: Duration,
    listen: Vec<SocketAddr>,
    listen_any: bool,
    status: u16,
    unix: Option<String>,
    file: Option<String>,
    notify: bool,
    say: Option<String>,
    stderr: bool,
    later: Option<String>,
    later_after: Duration,
    exit_after: Option<Duration>,
    exit_code: i32,
    exit_signal: Option<i32>,
    silent: bool,
    log_requests: bool,
    once: Option<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!("ready-server: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Opts {
    let mut o = Opts {
        status: 200,
        exit_code: 3,
        ..Opts::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("missing value for {flag}")))
        };
        let ms = |v: String| Duration::from_millis(v.parse().unwrap_or_else(|_| usage(&v)));
        match flag.as_str() {
            "--delay-ms" => o.delay = ms(value()),
            "--listen" => {
                let v = value();
                o.listen.push(
                    v.parse()
                        .unwrap_or_else(|_| usage(&format!("bad address {v}"))),
                );
            }
            "--listen-any-port" => o.listen_any = true,
            "--http-status" => o.status = value().parse().unwrap_or_else(|_| usage("bad status")),
            "--unix" => o.unix = Some(value()),
            "--file" => o.file = Some(value()),
            "--notify" => o.notify = true,
            "--say" => o.say = Some(value()),
            "--stream" => o.stderr = value() == "stderr",
            "--later" => o.later = Some(value()),
            "--later-ms" => o.later_after = ms(value()),
            "--exit-after-ms" => o.exit_after = Some(ms(value())),
            "--exit-code" => o.exit_code = value().parse().unwrap_or_else(|_| usage("bad code")),
            "--once" => o.once = Some(value()),
            "--exit-signal" => {
                o.exit_signal = Some(value().parse().unwrap_or_else(|_| usage("bad signal")))
            }
            "--http-silent" => o.silent = true,
            "--log-requests" => o.log_requests = true,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    o
}

fn say(stderr: bool, line: &str) {
    if stderr {
        let _ = writeln!(std::io::stderr(), "{line}");
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

fn notify(message: &str) {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let addr = addr.to_string_lossy().into_owned();
    #[cfg(target_os = "linux")]
    if let Some(name) = addr.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(a) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
            let _ = sock.send_to_addr(message.as_bytes(), &a);
        }
        return;
    }
    let _ = sock.send_to(message.as_bytes(), addr);
}

/// How a connection is answered.
#[derive(Clone, Copy)]
struct Answer {
    status: u16,
    silent: bool,
    log_requests: bool,
}

/// Answers one connection: reads what the client sent (bounded), writes the fixed response.
fn answer(mut conn: impl Read + Write, how: Answer) {
    let n = CONNECTIONS.fetch_add(1, Ordering::SeqCst) + 1;
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => head.extend_from_slice(&buf[..k]),
        }
    }
    if how.log_requests {
        let line = head
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        say(true, &format!("request={}", String::from_utf8_lossy(line)));
    }
    if how.silent {
        while matches!(conn.read(&mut buf), Ok(k) if k > 0) {} // until the client gives up
        return;
    }
    let status = how.status;
    let body = format!("conn={n}\n");
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn serve_tcp(listener: TcpListener, how: Answer) {
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            if !how.silent {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            }
            std::thread::spawn(move || answer(conn, how));
        }
    });
}

fn main() {
    let o = parse_args();
    let how = Answer {
        status: o.status,
        silent: o.silent,
        log_requests: o.log_requests,
    };
    if let Some(path) = &o.once {
        if std::path::Path::new(path).exists() {
            eprintln!("already ran");
            std::process::exit(4);
        }
        std::fs::write(path, "").unwrap_or_else(|e| usage(&format!("--once {path}: {e}")));
    }
    say(false, "starting");
    if o.notify {
        notify("STATUS=warming up");
    }
    std::thread::sleep(o.delay);
    for addr in &o.listen {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
            eprintln!("ready-server: cannot listen on {addr}: {e}");
            std::process::exit(1)
        });
        say(true, &format!("listen_ns={}", monotonic_ns()));
        serve_tcp(listener, how);
    }
    if o.listen_any {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| usage(&e.to_string()));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        say(false, &format!("listening on 127.0.0.1:{port}"));
        serve_tcp(listener, how);
    }
    if let Some(path) = &o.unix {
        let listener = UnixListener::bind(path).unwrap_or_else(|e| usage(&e.to_string()));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                answer(conn, how);
            }
        });
    }
    if let Some(path) = &o.file {
        std::fs::write(path, "ready\n").unwrap_or_else(|e| usage(&e.to_string()));
    }
    if o.notify {
        notify("READY=1\nSTATUS=serving");
    }
    if let Some(line) = &o.say {
        say(o.stderr, line);
    }
    if let Some(line) = &o.later {
        std::thread::sleep(o.later_after);
        say(false, line);
    }
    if let Some(after) = o.exit_after {
        std::thread::sleep(after);
        if let Some(signal) = o.exit_signal {
            die_of(signal);
        }
        std::process::exit(o.exit_code);
    }
    loop {
        std::thread::park();
    }
}

/// Dies of `signal` as a crash would: its default action restored and unblocked, then raised.
fn die_of(signal: i32) {
    // SAFETY: plain libc calls on this thread's own signal state, with a valid signal number
    // or an error return that leaves the exit below as the fallback.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
    usage("the signal did not end the process");
}
