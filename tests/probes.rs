//! Every readiness probe against `ready-server` (fixtures-bin), a server that becomes ready late
//! in the way it is told and counts the connections it accepted. Each test proves the probe
//! waited (the server is ready only after its delay), and the port probes that nothing knocked
//! before the test's own request (the answer says `conn=1`).
//!
//! Failure paths: a stranger listening on the fixture's port, the server listening on another
//! port than `{port}`, a probe that never holds, a server that dies while a later line is
//! awaited, a custom probe's error; and the diagnostics: the hint for a missing `{port}`, the
//! sd_notify status, a progress line for a slow start.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process_fixture::{Builder, Error, ProcessFixture, Ready};

/// How late the server gets ready: long enough that a probe that did not wait is caught.
const LATE: Duration = Duration::from_millis(150);
const LATE_MS: &str = "150";
const SOON: Duration = Duration::from_secs(10);

fn ready_server() -> std::path::PathBuf {
    support::bin("ready-server")
}

/// `ready-server --delay-ms 150 <extra>` with `ready`.
fn late(extra: &[&str], ready: Ready) -> Builder {
    let mut b = ProcessFixture::builder(ready_server());
    b.args(["--delay-ms", LATE_MS])
        .args(extra)
        .ready(ready)
        .ready_timeout(Duration::from_secs(30));
    b
}

/// Spawns and checks that it took at least the server's delay: the probe waited.
fn spawn_late(b: &Builder) -> ProcessFixture {
    let t = Instant::now();
    let fx = b.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    assert!(
        t.elapsed() >= LATE,
        "ready after {:?}: the probe did not wait",
        t.elapsed()
    );
    fx
}

/// The body of `GET /` on `addr`: `conn=<n>`.
fn get(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(SOON)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.trim().to_owned())
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A port outside the picked range, free now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn tcp_waits_for_the_listener_and_never_knocks() {
    let fx = spawn_late(&late(&["--listen", "127.0.0.1:{port}"], Ready::tcp()));
    assert_eq!(
        get(local(fx.port())),
        "conn=1",
        "a probe connected before the test did"
    );
}

#[test]
fn tcp_is_the_default() {
    let mut b = ProcessFixture::builder(ready_server());
    b.args(["--delay-ms", LATE_MS, "--listen", "127.0.0.1:{port}"]);
    let fx = spawn_late(&b);
    assert_eq!(get(local(fx.port())), "conn=1");
}

#[test]
fn tcp_addr_waits_for_another_address() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let port = free_port();
    let addr: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let fx = spawn_late(&late(
        &["--listen", &addr.to_string()],
        Ready::tcp_addr(addr),
    ));
    assert_eq!(get(addr), "conn=1");
    drop(fx);
}

#[test]
fn http_is_asked_only_once_the_port_listens_and_takes_the_codes_given() {
    let fx = spawn_late(&late(
        &["--listen", "127.0.0.1:{port}", "--http-status", "401"],
        Ready::http_status("/health", [200, 401]),
    ));
    // One GET by the probe, none before the port listened: ours is the second connection.
    assert_eq!(get(local(fx.port())), "conn=2");
    let not_2xx = late(
        &["--listen", "127.0.0.1:{port}", "--http-status", "401"],
        Ready::http("/"),
    )
    .ready_timeout(Duration::from_millis(700))
    .spawn();
    match not_2xx {
        Err(Error::NotReady { diagnosis, .. }) => {
            let last = diagnosis.last_error.clone().unwrap_or_default();
            assert!(last.starts_with("GET / answered 401"), "{last}");
        }
        other => panic!("401 is not 2xx: {other:?}"),
    }
}

#[test]
fn unix_socket_waits_for_a_listener_there() {
    let fx = spawn_late(&late(
        &["--unix", "{dir}/s.sock"],
        Ready::unix_socket("{dir}/s.sock"),
    ));
    assert!(fx.dir().unwrap().join("s.sock").exists());
}

#[test]
fn file_waits_for_the_file() {
    let fx = spawn_late(&late(
        &["--file", "{dir}/ready"],
        Ready::file("{dir}/ready"),
    ));
    drop(fx);
    // A relative path is taken from the server's working directory.
    let b = late(&["--file", "marker"], Ready::file("marker"));
    let mut b = b;
    b.current_dir("{dir}");
    let fx = spawn_late(&b);
    assert!(fx.dir().unwrap().join("marker").exists());
}

#[test]
fn sd_notify_waits_for_ready_1_and_reports_status() {
    let fx = spawn_late(&late(&["--notify"], Ready::sd_notify()));
    drop(fx);
    // Never READY (no --notify): the error shows the last STATUS, here none; with a status:
    let e = late(&["--delay-ms", "100000", "--notify"], Ready::sd_notify())
        .ready_timeout(Duration::from_millis(400))
        .spawn()
        .expect_err("never READY=1");
    assert!(
        e.to_string().contains("sd_notify STATUS: warming up"),
        "{e}"
    );
}

#[test]
fn custom_probe_gets_the_fixture_and_its_error_is_reported() {
    let fx = spawn_late(&late(
        &["--listen", "127.0.0.1:{port}"],
        Ready::custom(|fx: &ProcessFixture| {
            std::net::TcpStream::connect(local(fx.port())).map(|_| true)
        }),
    ));
    drop(fx);
    let e = late(
        &[],
        Ready::custom(|_: &ProcessFixture| -> Result<bool, String> {
            Err("the database is not up".into())
        }),
    )
    .ready_timeout(Duration::from_millis(300))
    .spawn()
    .expect_err("never ready");
    match &e {
        Error::NotReady { diagnosis, .. } => {
            assert_eq!(
                diagnosis.last_error.as_deref(),
                Some("the database is not up"),
                "{e}"
            );
        }
        other => panic!("expected NotReady, got {other}"),
    }
}

#[test]
fn all_waits_for_every_probe_and_any_for_one() {
    // "starting" is printed at once; the port listens only after the delay.
    let fx = spawn_late(&late(
        &["--listen", "127.0.0.1:{port}"],
        Ready::all([Ready::stdout("^starting$"), Ready::tcp()]),
    ));
    assert_eq!(get(local(fx.port())), "conn=1");
    drop(fx);
    let fx = spawn_late(&late(
        &["--file", "{dir}/up"],
        Ready::any([Ready::stdout("never printed"), Ready::file("{dir}/up")]),
    ));
    drop(fx);
    let t = Instant::now();
    let quick = late(
        &[],
        Ready::any([Ready::stdout("^starting$"), Ready::file("{dir}/never")]),
    )
    .spawn()
    .expect("any: the first probe holds at once");
    assert!(t.elapsed() < LATE + Duration::from_secs(5));
    drop(quick);
}

#[test]
fn a_port_captured_from_a_line_becomes_the_fixtures_port() {
    // The server binds port 0 and prints the port it got: no pick-then-bind race at all.
    let fx = late(
        &["--listen-any-port"],
        Ready::all([
            Ready::stdout(r"^listening on 127\.0\.0\.1:(?P<port>\d+)$"),
            Ready::tcp(),
        ]),
    )
    .spawn()
    .expect("spawn");
    let printed: u16 = fx
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("listening on 127.0.0.1:")?.parse().ok())
        .expect("the printed port");
    assert_eq!(fx.port(), printed);
    assert_eq!(fx.url(), format!("http://127.0.0.1:{printed}"));
    assert_eq!(get(local(fx.port())), "conn=1");
}

#[test]
fn named_ports_are_reserved_and_substituted() {
    // ready-server listens in the order given: the admin port first, so that `{port}`
    // listening (what Ready::tcp() waits for) means the admin port listens too.
    let fx = spawn_late(&late(
        &[
            "--listen",
            "127.0.0.1:{port:admin}",
            "--listen",
            "127.0.0.1:{port}",
        ],
        Ready::tcp(),
    ));
    let admin = fx.named_port("admin");
    assert_ne!(admin, fx.port());
    assert_eq!(get(local(admin)), "conn=1");
    assert_eq!(get(local(fx.port())), "conn=2");
}

#[test]
#[should_panic(expected = "no port named \"nope\"")]
fn an_unknown_named_port_is_a_clear_panic() {
    let fx = late(&[], Ready::none()).spawn().expect("spawn");
    let _ = fx.named_port("nope");
}

#[test]
fn a_stranger_listening_on_the_port_is_named_not_taken_for_ready() {
    // A leftover server that binds late: free at our pre-spawn check, taken before ours binds.
    let port = free_port();
    let mut stranger = Command::new(ready_server())
        .args(["--delay-ms", "50", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the stranger");
    let result = late(
        &["--delay-ms", "2000", "--listen", "127.0.0.1:{port}"],
        Ready::tcp(),
    )
    .port(port)
    .spawn();
    let _ = stranger.kill();
    let _ = stranger.wait();
    match result {
        Err(Error::PortInUse {
            port: p, holder, ..
        }) => {
            assert_eq!(p, port);
            let holder = holder.expect("the stranger is named");
            assert_eq!(holder.pid, stranger.id());
            assert!(holder.command.contains("ready-server"), "{holder:?}");
        }
        other => panic!("expected PortInUse naming the stranger, got {other:?}"),
    }
}

#[test]
fn listening_on_another_port_than_port_is_pointed_out() {
    let e = late(&["--listen", "127.0.0.1:{port:other}"], Ready::tcp())
        .ready_timeout(Duration::from_millis(600))
        .spawn()
        .expect_err("it never listens on {port}");
    let text = e.to_string();
    match &e {
        Error::NotReady { diagnosis, .. } => {
            assert_eq!(diagnosis.listening.len(), 1, "{text}");
            let hint = diagnosis.hint.as_deref().unwrap_or_default();
            assert!(hint.contains("`{port}` missing"), "{text}");
            assert!(hint.contains(&diagnosis.listening[0].to_string()), "{text}");
        }
        other => panic!("expected NotReady, got {other}"),
    }
}

#[test]
fn a_missing_port_placeholder_is_hinted() {
    // The server is never told {port}: the wait on it can only time out, and the error says why.
    let e = late(&["--listen-any-port"], Ready::tcp())
        .ready_timeout(Duration::from_millis(500))
        .spawn()
        .expect_err("it listens on a port of its own");
    let text = e.to_string();
    assert!(text.contains("hint:"), "{text}");
    assert!(text.contains("{port}"), "{text}");
}

#[test]
fn never_ready_names_program_args_wait_processes_and_output() {
    let e = late(&["--delay-ms", "100000"], Ready::tcp())
        .ready_timeout(Duration::from_millis(400))
        .spawn()
        .expect_err("never ready");
    let text = e.to_string();
    let Error::NotReady { diagnosis, .. } = &e else {
        panic!("expected NotReady, got {text}");
    };
    assert!(
        diagnosis
            .command
            .contains("ready-server --delay-ms 150 --delay-ms 100000"),
        "{text}"
    );
    assert!(diagnosis.waited >= Duration::from_millis(400), "{text}");
    assert!(diagnosis.last_error.is_some(), "{text}");
    assert_eq!(diagnosis.alive.len(), 1, "the leader was alive: {text}");
    assert!(
        text.contains("--- stdout (last lines):\nstarting"),
        "{text}"
    );
}

#[test]
fn a_later_line_is_awaited_and_a_death_meanwhile_fails_at_once() {
    let fx = late(
        &[
            "--say",
            "up",
            "--later",
            "config reloaded",
            "--later-ms",
            "150",
        ],
        Ready::stdout("^up$"),
    )
    .spawn()
    .expect("spawn");
    let line = fx.wait_for_output("reload", SOON).expect("the later line");
    assert_eq!(line, "config reloaded");
    // Found once: asked again, it waits for another one.
    let again = fx.wait_for_output("reload", Duration::from_millis(200));
    assert!(
        matches!(again, Err(Error::OutputTimeout { .. })),
        "{again:?}"
    );
    assert!(fx.is_running());
    drop(fx);

    let fx = late(
        &["--say", "up", "--exit-after-ms", "100", "--exit-code", "4"],
        Ready::stdout("^up$"),
    )
    .spawn()
    .expect("spawn");
    let t = Instant::now();
    match fx.wait_for_output("never printed", Duration::from_secs(30)) {
        Err(Error::Exited { status, .. }) => assert_eq!(status.code(), Some(4)),
        other => panic!("expected Exited, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "it waited {:?}",
        t.elapsed()
    );
    assert!(!fx.is_running());
    match fx.stop() {
        Err(Error::ExitedBeforeStop { report, .. }) => {
            assert!(report.exited_before_stop, "{report:?}");
            assert_eq!(report.exit_status.and_then(|s| s.code()), Some(4));
        }
        other => panic!("a crash is an error of stop(): {other:?}"),
    }
}

/// Runs `body` in a fresh copy of this test binary with `--nocapture`, and returns its stderr.
fn nocapture_run(name: &str, body: impl FnOnce()) -> Option<String> {
    const VAR: &str = "PF_PROBES_NOCAPTURE";
    if std::env::var(VAR).as_deref() == Ok(name) {
        body();
        return None;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(VAR, name)
        .output()
        .expect("running this test binary again");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name}: {}\n{stderr}", out.status);
    Some(stderr)
}

#[test]
fn a_slow_start_prints_progress_lines() {
    let Some(stderr) = nocapture_run("a_slow_start_prints_progress_lines", || {
        let _fixture = late(
            &["--delay-ms", "5600", "--say", "up"],
            Ready::stdout("^up$"),
        )
        .spawn()
        .expect("spawn");
    }) else {
        return;
    };
    let line = stderr
        .lines()
        .find(|l| l.contains("still waiting for"))
        .unwrap_or_else(|| panic!("no progress line in:\n{stderr}"));
    assert!(
        line.contains("ready-server") && line.contains("matching \"^up$\""),
        "{line}"
    );
    assert!(line.contains("last output line: \"starting\""), "{line}");
}

#[test]
fn a_server_that_crashed_mid_test_fails_the_test_in_drop() {
    let crashed = || {
        let fx = late(
            &["--say", "up", "--exit-after-ms", "10"],
            Ready::stdout("^up$"),
        )
        .spawn()
        .expect("spawn");
        assert!(support::wait_until(SOON, || !fx.is_running()));
        fx
    };
    let fx = crashed();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(fx)))
        .expect_err("Drop of a crashed server panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("had exited on its own before the stop (exit status: 3)")
            && message.contains("up"),
        "the panic says what happened and shows the output: {message}"
    );

    // Already unwinding: Drop only reports (a second panic would abort the test binary).
    let fx = crashed();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _fx = fx;
        panic!("the test's own failure");
    }))
    .expect_err("the test's panic");
    assert_eq!(
        panic.downcast_ref::<&str>(),
        Some(&"the test's own failure")
    );

    // stop() says the same as a typed error, and allow_early_exit() opts out.
    match crashed().stop() {
        Err(Error::ExitedBeforeStop { status, report, .. }) => {
            assert_eq!(status.code(), Some(3));
            assert!(report.exited_before_stop, "{report}");
        }
        other => panic!("expected ExitedBeforeStop, got {other:?}"),
    }
    let allowed = late(
        &["--say", "up", "--exit-after-ms", "10"],
        Ready::stdout("^up$"),
    )
    .allow_early_exit()
    .spawn()
    .expect("spawn");
    assert!(support::wait_until(SOON, || !allowed.is_running()));
    drop(allowed); // no panic
}

#[test]
fn output_lines_of_the_notify_and_file_probes_work_without_a_port() {
    // Ready::none: a program that listens on nothing; no hint, no port wait.
    let fx = ProcessFixture::builder(ready_server())
        .args(["--say", "hello"])
        .ready(Ready::none())
        .spawn()
        .expect("spawn");
    let line = fx.wait_for_output("^hello$", SOON).expect("hello");
    assert_eq!(line, "hello");
    let stdout = fx.stdout();
    let mut lines = BufReader::new(stdout.as_bytes()).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("starting")
    );
}
