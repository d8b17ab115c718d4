//! `pause()` freezes the whole server tree (leader, workers, and an escapee the subreaper
//! caught) and `resume()` thaws it; a request sent while paused is answered only after the
//! resume; a paused fixture stops as a running one does, and leaves nothing when its test
//! process is SIGKILLed. Real processes, states read from /proc.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use process_fixture::{Containment, Error, PauseFailure, ProcessFixture, Ready};
use support::fixture_server::server;
use support::{Proc, SOON};

/// The processes of the fixture and their states, read from /proc.
fn states(fx: &ProcessFixture) -> Vec<Proc> {
    fx.processes()
        .iter()
        .filter_map(|p| Proc::read(p.pid))
        .collect()
}

/// Stopped by signals, or frozen in their cgroup (`Containment::Cgroup`, where available).
fn all_stopped(procs: &[Proc]) -> bool {
    procs.iter().all(Proc::is_paused)
}

fn pidfd_forced_off() -> bool {
    std::env::var("PROCESS_FIXTURE_FORCE").is_ok_and(|v| v.contains("no-pidfd"))
}

/// Without pidfds, an escapee that is not the guardian's child cannot be signalled without the
/// risk of its pid being a stranger's by then: the pause fails and leaves everything running.
#[test]
fn without_pidfds_a_pause_that_cannot_reach_an_escapee_fails_and_leaves_it_running() {
    if !pidfd_forced_off() {
        return; // run by .ci/run with PROCESS_FIXTURE_FORCE=no-pidfd
    }
    // A cgroup freezes the escapee with the rest: this is about signals.
    let fx = server("setsid-escapee", &[], Ready::tcp())
        .containment(Containment::Subreaper)
        .spawn()
        .expect("spawn");
    assert!(support::wait_until(SOON, || states(&fx).len() == 2));
    match fx.pause() {
        Err(Error::PauseFailed {
            failure: PauseFailure::NotAllStopped { running: 1 },
            resuming: false,
            ..
        }) => {}
        other => panic!("expected PauseFailed, got {other:?}"),
    }
    assert!(!fx.is_paused());
    let procs = states(&fx);
    assert!(procs.iter().all(|p| !p.is_paused()), "{procs:?}");
    assert!(support::http_get(fx.port(), "/").is_ok());
}

#[test]
fn pause_stops_every_process_and_resume_continues_them() {
    let escapee = if pidfd_forced_off() {
        None // see the test below
    } else {
        Some(("setsid-escapee", 2))
    };
    for (mode, expected) in std::iter::once(("forking-master", 3)).chain(escapee) {
        let fx = server(mode, &["--workers", "2"], Ready::tcp())
            .spawn()
            .expect("spawn");
        assert!(
            support::wait_until(SOON, || states(&fx).len() == expected),
            "{mode}: {:?}",
            states(&fx)
        );
        assert!(!fx.is_paused());
        fx.pause().expect("pause");
        let paused = states(&fx);
        assert_eq!(paused.len(), expected, "{mode}: {paused:?}");
        assert!(all_stopped(&paused), "{mode}: not all stopped: {paused:?}");
        assert!(fx.is_paused());
        fx.pause().expect("pausing twice is harmless");

        fx.resume().expect("resume");
        assert!(!fx.is_paused());
        let resumed = states(&fx);
        assert!(
            resumed.iter().all(|p| !p.is_paused()),
            "{mode}: still stopped after resume: {resumed:?}"
        );
        assert!(
            support::http_get(fx.port(), "/").is_ok_and(|b| b.starts_with("ok")),
            "{mode}: serves again"
        );
        fx.resume().expect("resuming a running server is harmless");
        let report = fx.stop().expect("stop");
        assert!(!report.escalated, "{mode}: {report}");
    }
}

#[test]
fn a_request_sent_while_paused_is_answered_after_the_resume() {
    let fx = server("well-behaved", &[], Ready::tcp())
        .spawn()
        .expect("spawn");
    fx.pause().expect("pause");
    let mut conn = TcpStream::connect(("127.0.0.1", fx.port())).expect("queued in the backlog");
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let early = conn.read(&mut buf);
    assert!(early.is_err(), "answered while paused: {early:?}");
    fx.resume().expect("resume");
    conn.set_read_timeout(Some(SOON)).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("the answer");
    assert!(answer.contains("200 OK"), "{answer}");
}

#[test]
fn a_paused_fixture_stops_like_a_running_one_and_leaves_nothing() {
    let fx = server("forking-master", &["--workers", "2"], Ready::tcp())
        .grace_period(Duration::from_secs(20))
        .spawn()
        .expect("spawn");
    assert!(support::wait_until(SOON, || states(&fx).len() == 3));
    let procs = states(&fx);
    let (pgid, port) = (fx.pgid(), fx.port());
    fx.pause().expect("pause");
    let report = fx.stop().expect("stop");
    assert!(!report.escalated, "{report}");
    assert_eq!(
        report.exit_status.and_then(|s| s.code()),
        Some(0),
        "the leader shut down gracefully: {report}"
    );
    support::assert_nothing_left(pgid, &procs, port);
}

#[test]
fn a_paused_fixture_whose_test_process_is_sigkilled_leaves_nothing() {
    let (mut holder, line) = support::holder::start("forking-master", "pause-wait");
    let field = |name| support::holder::number(&line, name);
    let (pgid, port) = (field("pgid"), field("port") as u16);
    let members = support::live_members(pgid);
    assert!(
        !members.is_empty() && all_stopped(&members),
        "paused: {members:?}"
    );
    holder.kill().expect("SIGKILL the holder");
    holder.wait().expect("reaping the holder");
    assert!(
        support::wait_until(SOON, || support::group_members(pgid).is_empty()),
        "left after the holder was SIGKILLed: {:?}",
        support::group_members(pgid)
    );
    assert!(support::wait_until(SOON, || support::port_is_free(port)));
    for p in members {
        assert!(!p.still_exists(), "{p:?} survived");
    }
}
