//! Readiness, output capture and ports, against real `fixture-server` processes.
//!
//! What it proves:
//! - `Ready::tcp` and the line probes (`stdout`, `stderr`, `output`) return once the server is
//!   usable, and a pattern watched on the wrong stream times out with `Error::NotReady` naming it;
//! - a server that dies before it is ready fails `spawn` at once with `Error::ExitedBeforeReady`,
//!   its exit status and output tail, instead of waiting out the deadline;
//! - a server that never gets ready fails with `Error::NotReady` (last probe error and output
//!   tail) and is stopped: no process of it is left;
//! - R6.1 (docs/design.md): a server writing 64 MiB to a pipe is never blocked on it, only the last
//!   `OUTPUT_CAP` bytes are kept, and the test process's memory does not grow with the flood;
//! - ports: fixtures alive at once get distinct ports, a stopped fixture's port binds again, and a
//!   fixed port that something holds is refused with `Error::PortInUse` naming the holder.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use support::{marked_processes, marker, MARKER_VAR};

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use process_fixture::{Builder, Diagnosis, Error, ProcessFixture, Ready, OUTPUT_CAP};

/// Deadline for things that must happen soon. Generous: the tests run in parallel on a loaded
/// machine.
const SOON: Duration = Duration::from_secs(10);

/// A builder for `fixture-server --mode <mode> --port {port} <extra>` with `ready`.
fn server(mode: &str, extra: &[&str], ready: Ready) -> Builder {
    let mut b = ProcessFixture::builder(support::server());
    b.args(["--mode", mode, "--port", "{port}"])
        .args(extra)
        .ready(ready)
        .ready_timeout(Duration::from_secs(30));
    b
}

/// `VmRSS` of the test process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

fn listening_line(port: u16) -> String {
    format!("listening on 127.0.0.1:{port}")
}

#[test]
fn tcp_probe_waits_for_a_serving_port() {
    let fx = server("well-behaved", &[], Ready::tcp())
        .spawn()
        .expect("spawn");
    assert_eq!(fx.url(), format!("http://127.0.0.1:{}", fx.port()));
    let body = support::http_get(fx.port(), "/").expect("HTTP GET right after spawn");
    assert_eq!(body.trim(), format!("ok pid={}", fx.pid()));
    // `{port}` was substituted: the server bound the fixture's port.
    let line = listening_line(fx.port());
    assert!(
        support::wait_until(SOON, || fx.stdout().contains(&line)),
        "stdout {:?} lacks {line:?}",
        fx.stdout()
    );
}

#[test]
fn stdout_line_probe() {
    let fx = server("well-behaved", &[], Ready::stdout("^listening on"))
        .spawn()
        .expect("spawn");
    // The matched line is captured before the waiter is woken.
    assert!(
        fx.stdout().contains(&listening_line(fx.port())),
        "stdout {:?}",
        fx.stdout()
    );
    support::http_get(fx.port(), "/").expect("the server binds before it prints the line");
}

#[test]
fn stderr_line_probe() {
    let fx = server(
        "ready-line",
        &["--stream", "stderr", "--delay-ms", "100"],
        Ready::stderr(r"^READY port=\d+$"),
    )
    .spawn()
    .expect("spawn");
    let line = format!("READY port={}", fx.port());
    assert!(fx.stderr().contains(&line), "stderr {:?}", fx.stderr());
    assert!(!fx.stdout().contains("READY"), "stdout {:?}", fx.stdout());
    support::http_get(fx.port(), "/").expect("the server binds before it prints the line");
}

#[test]
fn output_line_probe_matches_either_stream() {
    for stream in ["stdout", "stderr"] {
        let fx = server(
            "ready-line",
            &["--stream", stream, "--delay-ms", "100"],
            Ready::output(r"^READY port=\d+$"),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("READY on {stream}: {e}"));
        let line = format!("READY port={}", fx.port());
        let text = if stream == "stdout" {
            fx.stdout()
        } else {
            fx.stderr()
        };
        assert!(text.contains(&line), "{stream}: {text:?}");
        support::http_get(fx.port(), "/").expect("HTTP GET");
    }
}

#[test]
fn pattern_on_the_wrong_stream_is_not_ready() {
    let marker = marker("readiness");
    let started = Instant::now();
    let result = server(
        "ready-line",
        &["--stream", "stderr", "--delay-ms", "100"],
        Ready::stdout(r"^READY port=\d+$"),
    )
    .env(MARKER_VAR, &marker)
    .ready_timeout(Duration::from_millis(500))
    .spawn();
    let took = started.elapsed();
    match result {
        Err(Error::NotReady {
            diagnosis, output, ..
        }) => {
            let Diagnosis {
                awaited, waited, ..
            } = *diagnosis;
            assert!(awaited.contains("READY port="), "awaited: {awaited}");
            assert!(awaited.contains("stdout"), "awaited: {awaited}");
            assert!(!awaited.contains("stderr"), "awaited: {awaited}");
            assert!(waited >= Duration::from_millis(500), "waited {waited:?}");
            // The line did come, on stderr, and the error shows it.
            assert!(
                output.stderr.contains("READY port="),
                "stderr tail {:?}",
                output.stderr
            );
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert!(took < SOON, "spawn took {took:?} for a 500 ms timeout");
    let left = marked_processes(&marker);
    assert!(left.is_empty(), "processes left after NotReady: {left:?}");
}

#[test]
fn crash_before_bind_fails_fast_with_status_and_output() {
    let started = Instant::now();
    let result = server("crash-before-bind", &[], Ready::tcp())
        .ready_timeout(Duration::from_secs(30))
        .spawn();
    let took = started.elapsed();
    let err = match result {
        Err(e) => e,
        Ok(fx) => panic!("spawn succeeded: {fx:?}"),
    };
    let display = err.to_string();
    match &err {
        Error::ExitedBeforeReady { status, output, .. } => {
            assert_eq!(status.code(), Some(3), "{status:?}");
            assert!(output.stdout.contains("starting"), "{output:?}");
            assert!(
                output.stderr.contains("fatal: simulated crash"),
                "{output:?}"
            );
        }
        other => panic!("expected ExitedBeforeReady, got {other:?}"),
    }
    assert!(display.contains("starting"), "Display: {display}");
    assert!(
        display.contains("fatal: simulated crash"),
        "Display: {display}"
    );
    assert!(
        took < SOON,
        "spawn took {took:?}: it waited for the 30 s deadline instead of seeing the exit"
    );
}

#[test]
fn crash_reports_the_exit_code_given() {
    let result = server("crash-before-bind", &["--exit-code", "42"], Ready::tcp()).spawn();
    match result {
        Err(Error::ExitedBeforeReady { status, .. }) => {
            assert_eq!(status.code(), Some(42), "{status:?}");
            assert_eq!(status.signal(), None);
        }
        other => panic!("expected ExitedBeforeReady, got {other:?}"),
    }
}

#[test]
fn never_binding_server_is_not_ready_and_is_stopped() {
    // Positive control: the marker scan does find a running fixture.
    let control = marker("readiness");
    let fx = server("well-behaved", &[], Ready::tcp())
        .env(MARKER_VAR, &control)
        .spawn()
        .expect("spawn");
    assert_eq!(marked_processes(&control), vec![fx.pid()]);
    drop(fx);
    assert!(marked_processes(&control).is_empty());

    let marker = marker("readiness");
    let result = server("never-binds", &[], Ready::tcp())
        .env(MARKER_VAR, &marker)
        .ready_timeout(Duration::from_millis(300))
        .spawn();
    match result {
        Err(Error::NotReady {
            diagnosis, output, ..
        }) => {
            let Diagnosis {
                awaited,
                waited,
                last_error,
                ..
            } = *diagnosis;
            assert!(
                awaited.starts_with("127.0.0.1:") && awaited.ends_with("to listen"),
                "awaited: {awaited}"
            );
            assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
            let last = last_error.expect("the last probe error");
            // Seen from the listening sockets (Linux), or from a refused connection (elsewhere).
            assert!(
                last.contains("nothing listens") || last.to_lowercase().contains("refused"),
                "last_error: {last}"
            );
            assert!(output.stdout.contains("starting"), "{output:?}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    // Checked once, right away: spawn tears the tree down before returning the error.
    let left = marked_processes(&marker);
    assert!(left.is_empty(), "processes left after NotReady: {left:?}");
}

/// Floods `stream` with 64 MiB, then checks readiness, what was kept, and the test's memory.
fn flood(stream: &str) {
    let before = rss();
    let fx = server(
        "flood",
        &["--bytes", "67108864", "--stream", stream],
        Ready::tcp(),
    )
    .ready_timeout(Duration::from_secs(60))
    .spawn()
    .unwrap_or_else(|e| panic!("flood on {stream}: {e}"));
    let line = listening_line(fx.port());
    assert!(
        support::wait_until(SOON, || fx.stdout().contains(&line)),
        "no {line:?} on stdout"
    );
    let (out, err) = (fx.stdout(), fx.stderr());
    // The flood is ASCII, so lossy decoding adds nothing: the cap holds exactly.
    assert!(out.len() <= OUTPUT_CAP, "stdout kept {} bytes", out.len());
    assert!(err.len() <= OUTPUT_CAP, "stderr kept {} bytes", err.len());
    let flooded = if stream == "stdout" { &out } else { &err };
    assert!(
        flooded.len() > OUTPUT_CAP / 2,
        "{stream} kept only {} bytes of the flood",
        flooded.len()
    );
    assert!(
        flooded.contains("flood flood"),
        "{stream} tail lacks the flood"
    );
    if stream == "stdout" {
        assert!(
            out.ends_with(&format!("{line}\n")),
            "stdout tail ends with {:?}",
            &out[out.len().saturating_sub(100)..]
        );
    } else {
        assert!(!out.contains("flood"), "stdout got the flood");
    }
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 48 << 20,
        "the test process grew by {} MiB during a 64 MiB flood on {stream}",
        grown >> 20
    );
    let port = fx.port();
    let report = fx.stop().expect("stop");
    assert!(!report.escalated, "{report:?}");
    assert!(support::port_is_free(port));
}

#[test]
fn flood_on_stdout_never_blocks_and_is_capped() {
    flood("stdout");
}

#[test]
fn flood_on_stderr_never_blocks_and_is_capped() {
    flood("stderr");
}

#[test]
fn fixtures_alive_at_once_get_distinct_ports() {
    let fixtures: Vec<ProcessFixture> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    server("well-behaved", &[], Ready::tcp())
                        .spawn()
                        .expect("spawn")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports: Vec<u16> = fixtures.iter().map(ProcessFixture::port).collect();
    for fx in &fixtures {
        let body = support::http_get(fx.port(), "/").expect("HTTP GET");
        assert_eq!(body.trim(), format!("ok pid={}", fx.pid()));
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), fixtures.len(), "ports {ports:?}");
    for fx in fixtures {
        let port = fx.port();
        fx.stop().expect("stop");
        assert!(support::port_is_free(port), "port {port} still bound");
    }
}

/// Listens on a port below both the kernel's ephemeral range (from 32768) and the range the
/// crate picks from (20000 to 32000), so that once we let it go no other socket is handed it
/// before the fixture binds it.
fn listen_outside_shared_ranges() -> (TcpListener, u16) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    (0..1000)
        .find_map(|i: u32| {
            let port = 10_000 + (seed.wrapping_add(i.wrapping_mul(7919)) % 10_000) as u16;
            let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).ok()?;
            Some((listener, port))
        })
        .expect("a free port in 10000..20000")
}

#[test]
fn a_held_fixed_port_is_refused_and_a_free_one_is_used() {
    let (listener, port) = listen_outside_shared_ranges();
    match server("well-behaved", &[], Ready::tcp()).port(port).spawn() {
        Err(Error::PortInUse {
            port: p, holder, ..
        }) => {
            assert_eq!(p, port);
            assert_eq!(holder.map(|h| h.pid), Some(std::process::id()));
        }
        other => panic!("expected PortInUse, got {other:?}"),
    }
    drop(listener);
    // Another test's guardian, forked from this process while the listener was open, holds a
    // copy of it until it closes its inherited fds: the port may stay bound for an instant after
    // our drop. Polled, so only a port that stays taken fails the test.
    let mut b = server("well-behaved", &[], Ready::tcp());
    b.port(port);
    let mut spawned = None;
    let mut last = None;
    support::wait_until(SOON, || match b.spawn() {
        Ok(fx) => {
            spawned = Some(fx);
            true
        }
        Err(e @ Error::PortInUse { .. }) => {
            last = Some(e);
            false
        }
        Err(e) => panic!("spawn on a fixed free port: {e}"),
    });
    let fx = spawned.unwrap_or_else(|| panic!("port {port} stayed in use: {last:?}"));
    assert_eq!(fx.port(), port);
    assert!(
        support::wait_until(SOON, || fx.stdout().contains(&listening_line(port))),
        "stdout {:?}",
        fx.stdout()
    );
    support::http_get(port, "/").expect("HTTP GET on the fixed port");
    drop(fx);
    assert!(support::port_is_free(port), "port {port} still bound");
}

/// The status code of `GET /health` right now.
fn http_status_now(port: u16) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status")
}

fn warmup(delay_ms: u64) -> Builder {
    let mut b = ProcessFixture::builder(support::server());
    b.args(["--mode", "http-warmup", "--port", "{port}", "--delay-ms"])
        .arg(delay_ms.to_string())
        .ready_timeout(Duration::from_secs(20));
    b
}

#[test]
fn http_probe_waits_for_a_2xx_answer_not_just_an_open_port() {
    // Negative control: the port accepts at once, so a TCP probe returns while the server
    // still answers 503.
    let early = warmup(400).ready(Ready::tcp()).spawn().expect("spawn");
    assert_eq!(http_status_now(early.port()), 503, "the warm-up is real");
    drop(early);
    let fx = warmup(400)
        .ready(Ready::http("/health"))
        .spawn()
        .expect("spawn");
    assert_eq!(http_status_now(fx.port()), 200);
}

#[test]
fn http_probe_not_ready_names_the_url_and_the_last_status() {
    let e = warmup(60_000)
        .ready(Ready::http("/health"))
        .ready_timeout(Duration::from_millis(300))
        .spawn()
        .expect_err("never 2xx within the timeout");
    match &e {
        Error::NotReady { diagnosis, .. } => {
            let awaited = &diagnosis.awaited;
            assert!(
                awaited.contains("GET http://127.0.0.1:") && awaited.ends_with("/health"),
                "{awaited}"
            );
            let last = diagnosis.last_error.as_deref().unwrap_or_default();
            assert!(last.starts_with("GET /health answered 503"), "{last}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
}

#[test]
fn a_leader_that_crashes_while_its_helper_lives_fails_at_once_with_its_status() {
    // Only a leader that exits 0 while its descendants live has daemonised. This one exits 3
    // before binding and leaves a helper behind: spawn must fail at once with that status, not
    // wait out the readiness timeout (60 s here) and report NotReady.
    let m = marker("crash-helper");
    let started = Instant::now();
    let result = server("crash-with-helper", &["--exit-code", "3"], Ready::tcp())
        .env(MARKER_VAR, &m)
        .ready_timeout(Duration::from_secs(60))
        .spawn();
    let took = started.elapsed();
    match result {
        Err(Error::ExitedBeforeReady { status, output, .. }) => {
            assert_eq!(status.code(), Some(3), "{status:?}");
            assert!(output.stdout.contains("helper pid="), "{output:?}");
        }
        other => panic!("expected ExitedBeforeReady after {took:?}, got {other:?}"),
    }
    assert!(took < Duration::from_secs(30), "spawn waited {took:?}");
    assert!(
        marked_processes(&m).is_empty(),
        "the helper survived the failed spawn: {:?}",
        marked_processes(&m)
    );
}

#[test]
fn an_extreme_ready_timeout_means_as_long_as_it_takes() {
    // `Instant + Duration::MAX` once panicked in spawn and left a zombie guardian behind.
    let fx = server("well-behaved", &[], Ready::tcp())
        .ready_timeout(Duration::MAX)
        .spawn()
        .expect("spawn with ready_timeout(Duration::MAX)");
    support::http_get(fx.port(), "/").expect("it serves");
    let crash = server("crash-before-bind", &[], Ready::tcp())
        .ready_timeout(Duration::MAX)
        .spawn();
    assert!(
        matches!(crash, Err(Error::ExitedBeforeReady { .. })),
        "{crash:?}"
    );
}
