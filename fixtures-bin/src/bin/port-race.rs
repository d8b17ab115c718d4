//! `port-race`: spawns fixtures on one fixed port over and over, so that two of these processes
//! running at once show whether the cross-process port lock ever lets both hold the port
//! (tests/ports.rs).
//!
//! ```text
//! port-race --server PATH --port N [--millis N] [--as-user UID]
//! ```
//! For `--millis` (default 1500), it spawns `PATH --mode well-behaved --port N` with
//! `Builder::port(N)` and `Ready::tcp()`, and stops it, then pauses up to half a millisecond (a
//! varying amount); refused, it tries again at once. So two racers take turns, and at every
//! hand-over one of them is hammering the lock: where a racy lock fails. It counts `ok` (spawned: the server bound the port), `busy`
//! (`Error::PortInUse`: refused, correctly, while the other process held it), `double` (the server
//! could not bind although the lock was ours: both processes held the port) and `other` errors,
//! and prints `ok=.. busy=.. double=.. other=..` (then each other error on a line of its own).
//! With `--millis 0` it makes one attempt and prints the error's text, for checking one refusal.
//! `--as-user UID` drops to that user (and its group id) first; it needs root.

use std::time::{Duration, Instant};

use process_fixture::{Error, ProcessFixture, Ready};

fn usage(msg: &str) -> ! {
    eprintln!(
        "port-race: {msg}\nusage: port-race --server PATH --port N [--rounds N] [--as-user UID]"
    );
    std::process::exit(2)
}

struct Opts {
    server: String,
    port: u16,
    millis: u64,
    as_user: Option<u32>,
}

fn parse_args() -> Opts {
    let mut opts = Opts {
        server: String::new(),
        port: 0,
        millis: 1500,
        as_user: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("missing value for {flag}")));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("bad number {value:?}")))
        };
        match flag.as_str() {
            "--server" => opts.server = value.clone(),
            "--port" => opts.port = number() as u16,
            "--millis" => opts.millis = number(),
            "--as-user" => opts.as_user = Some(number() as u32),
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    if opts.server.is_empty() || opts.port == 0 {
        usage("--server and --port are required");
    }
    opts
}

/// Becomes `uid` (group id the same number), dropping supplementary groups.
fn drop_to(uid: u32) {
    // SAFETY: plain syscalls, before any thread exists.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(uid as libc::gid_t) == 0
            && libc::setuid(uid as libc::uid_t) == 0
    };
    if !ok {
        usage(&format!(
            "cannot become uid {uid}: {}",
            std::io::Error::last_os_error()
        ));
    }
}

/// A pause of 0–1000 µs, different for each round and process.
fn pause(round: usize) {
    let seed =
        (std::process::id() as usize).wrapping_mul(2_654_435_761) ^ round.wrapping_mul(40_503);
    std::thread::sleep(Duration::from_micros((seed % 1000) as u64));
}

fn main() {
    let opts = parse_args();
    if let Some(uid) = opts.as_user {
        drop_to(uid);
    }
    let mut builder = ProcessFixture::builder(&opts.server);
    builder
        .args(["--mode", "well-behaved", "--port", "{port}"])
        .port(opts.port)
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_secs(20));
    if opts.millis == 0 {
        match builder.spawn() {
            Ok(fx) => println!(
                "spawned: {}",
                fx.stop().map_or_else(|e| e.to_string(), |r| r.to_string())
            ),
            Err(e) => println!("error: {}", chain(&e)),
        }
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(opts.millis);
    let (mut ok, mut busy, mut double, mut other) = (0, 0, 0, Vec::new());
    let mut round = 0;
    while Instant::now() < deadline {
        match builder.spawn() {
            Ok(fx) => {
                ok += 1;
                if let Err(e) = fx.stop() {
                    other.push(e.to_string());
                }
                round += 1;
                pause(round);
            }
            Err(Error::PortInUse { .. }) => busy += 1,
            Err(e @ Error::ExitedBeforeReady { .. }) => {
                double += 1;
                if std::env::var_os("PORT_RACE_VERBOSE").is_some() {
                    eprintln!("double: {e}");
                }
            }
            Err(e) => other.push(e.to_string()),
        }
    }
    println!("ok={ok} busy={busy} double={double} other={}", other.len());
    for e in other {
        println!("{e}");
    }
}

/// The error and its causes, one after the other.
fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
