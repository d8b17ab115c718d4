//! The other probes: `Ready::unix_socket` and `Ready::file` (an empty path is refused, a file
//! left from before the start is not readiness), `Ready::sd_notify` (its last `STATUS=` is
//! reported), `Ready::custom` (its error is reported), `Ready::all` and `Ready::any`, and
//! `Ready::none` for a program that listens on nothing.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use support::not_ready;
use support::ready_server::{get, late, local, ready_server, server, spawn_late, LATE};
use support::SOON;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use process_fixture::{Error, ProcessFixture, Ready};

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
fn an_empty_file_probe_is_an_invalid_probe() {
    for ready in [Ready::file(""), Ready::unix_socket("")] {
        let what = format!("{ready:?}");
        match ProcessFixture::builder("sleep")
            .arg("60")
            .ready(ready)
            .spawn()
        {
            Err(Error::InvalidProbe { reason, .. }) => {
                assert!(reason.contains("empty"), "{reason}")
            }
            other => panic!("{what}: expected InvalidProbe, got {other:?}"),
        }
    }
}

#[test]
fn a_file_from_before_the_start_is_not_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("server.pid");
    std::fs::write(&pid_file, "12345\n").unwrap(); // an earlier run's leftover
    let path = pid_file.to_str().unwrap();
    // The server never writes it: the stale file must not make it ready.
    let (diagnosis, text) = not_ready(&server(&[], Ready::file(path), 500));
    assert!(diagnosis.awaited.contains("server.pid"), "{text}");
    // The server writes it (after its delay): ready, even though it existed before.
    let started = Instant::now();
    let fx = server(
        &["--delay-ms", "150", "--file", path],
        Ready::file(path),
        10_000,
    )
    .spawn()
    .expect("ready once rewritten");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "ready\n");
    drop(fx);
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
