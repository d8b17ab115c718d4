//! A server that crashes or never gets ready. One that dies before it is ready fails `spawn` at
//! once with `Error::ExitedBeforeReady`, its exit status and output tail, instead of waiting out
//! the deadline (also a leader that crashes while a helper it started lives on); one that never
//! gets ready fails with `Error::NotReady` and is stopped, no process of it left; an extreme
//! readiness timeout means as long as it takes. A server that crashes after it was ready fails
//! the test when its fixture is dropped.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use support::fixture_server::server;
use support::ready_server::late;
use support::{marked_processes, marker, MARKER_VAR, SOON};

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use process_fixture::{Diagnosis, Error, Ready};

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

/// A crash by a signal (SIGSEGV) fails the test the same way, naming the signal; a server that
/// exits with status 0 on its own is no crash, and its Drop is quiet.
#[test]
fn a_server_killed_by_a_signal_mid_test_fails_the_test_and_exit_0_does_not() {
    let exits = |how: &[&str]| {
        let mut args = vec!["--say", "up", "--exit-after-ms", "10"];
        args.extend_from_slice(how);
        let fx = late(&args, Ready::stdout("^up$")).spawn().expect("spawn");
        assert!(support::wait_until(SOON, || !fx.is_running()));
        fx
    };
    let fx = exits(&["--exit-signal", "11"]);
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(fx)))
        .expect_err("Drop of a server killed by SIGSEGV panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("had exited on its own before the stop") && message.contains("SIGSEGV"),
        "the panic names the signal: {message}"
    );
    match exits(&["--exit-signal", "11"]).stop() {
        Err(Error::ExitedBeforeStop { status, .. }) => assert_eq!(status.signal(), Some(11)),
        other => panic!("expected ExitedBeforeStop, got {other:?}"),
    }

    let report = exits(&["--exit-code", "0"])
        .stop()
        .expect("exit 0 is no crash");
    assert!(report.exited_before_stop, "{report}");
    assert_eq!(report.exit_status.and_then(|s| s.code()), Some(0));
    drop(exits(&["--exit-code", "0"])); // no panic
}
