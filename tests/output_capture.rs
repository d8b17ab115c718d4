//! What a test shows: errors readable through `unwrap()`, and the server's output in the right
//! place.
//!
//! - `Debug` of `Error` is its multi-line `Display` (what `unwrap`, `expect` and `?` print), and
//!   every error names the program;
//! - the dump of a server's output when a test panics, and the live echo of its lines
//!   (`Builder::echo_output`, `PROCESS_FIXTURE_ECHO`), go through the test harness's capture: a
//!   failing test shows them in its own section, `--nocapture` shows them live.
//!
//! The capture tests run tests of this binary in a child process (the `PF_CAPTURE_CHILD`
//! variable enables them), because only libtest's own report shows where output landed.
#![cfg(target_os = "linux")]

mod support;

use std::process::Command;
use std::time::Duration;

use process_fixture::{Error, ProcessFixture, Ready};

const CHILD: &str = "PF_CAPTURE_CHILD";

fn child_mode(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// Runs test `name` of this binary in a child; returns (success, stdout).
fn run_child(name: &str, extra: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads", "1"])
        .args(extra)
        .env(CHILD, name)
        .envs(env.iter().copied())
        .output()
        .expect("running this test binary again");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The section libtest prints for a failed test's captured output.
fn failure_section<'a>(report: &'a str, name: &str) -> &'a str {
    let head = format!("---- {name} stdout ----");
    let start = report
        .find(&head)
        .unwrap_or_else(|| panic!("no {head} in:\n{report}"));
    let rest = &report[start + head.len()..];
    let end = rest.find("\nfailures:").unwrap_or(rest.len());
    &rest[..end]
}

fn never_ready() -> Error {
    ProcessFixture::builder("sh")
        .args(["-c", "echo line one; echo line two >&2; exec sleep 60"])
        .ready(Ready::stdout("never printed"))
        .ready_timeout(Duration::from_millis(200))
        .spawn()
        .expect_err("never ready")
}

#[test]
fn debug_of_an_error_is_its_multiline_display() {
    let e = never_ready();
    assert_eq!(format!("{e:?}"), e.to_string());
    let debug = format!("{e:?}");
    assert!(
        debug.contains("\n--- stdout (last lines):\nline one\n"),
        "{debug}"
    );
    assert!(!debug.contains("\\n"), "escaped newlines: {debug}");
    // What `unwrap()` prints:
    let failing = || {
        ProcessFixture::builder("sh")
            .args(["-c", "echo line two >&2; exec sleep 60"])
            .ready(Ready::stdout("never printed"))
            .ready_timeout(Duration::from_millis(200))
            .spawn()
    };
    let panic = std::panic::catch_unwind(|| failing().unwrap()).expect_err("unwrap panics");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(
        message.contains("\n--- stderr (last lines):\nline two"),
        "{message}"
    );
}

#[test]
fn every_error_names_the_program() {
    let errors = [
        never_ready(),
        ProcessFixture::builder("surely-not-a-program")
            .spawn()
            .unwrap_err(),
        ProcessFixture::builder("true")
            .ready(Ready::stdout("("))
            .spawn()
            .unwrap_err(),
        ProcessFixture::builder("true")
            .arg("a\0b")
            .spawn()
            .unwrap_err(),
        ProcessFixture::builder("true")
            .current_dir("/no/such/dir")
            .spawn()
            .unwrap_err(),
        ProcessFixture::builder("true")
            .user("no-such-user-here")
            .spawn()
            .unwrap_err(),
        ProcessFixture::builder("false")
            .ready(Ready::stdout("x"))
            .spawn()
            .unwrap_err(),
    ];
    for e in errors {
        assert!(!e.program().is_empty(), "{e}");
        assert!(e.to_string().contains(e.program()), "{e}");
    }
}

#[test]
fn panic_dump_lands_in_the_failing_tests_own_output() {
    let name = "child_panics_holding_a_fixture";
    let (ok, report) = run_child(name, &[], &[]);
    assert!(!ok, "the child test was meant to fail:\n{report}");
    let section = failure_section(&report, name);
    assert!(
        section.contains("was running when the test panicked"),
        "{report}"
    );
    assert!(section.contains("marker line from the server"), "{report}");
}

#[test]
fn child_panics_holding_a_fixture() {
    if !child_mode("child_panics_holding_a_fixture") {
        return;
    }
    let _fx = ProcessFixture::builder("sh")
        .args(["-c", "echo marker line from the server; exec sleep 60"])
        .ready(Ready::stdout("marker"))
        .spawn()
        .expect("spawn");
    panic!("on purpose");
}

/// A test that panics while its server had crashed: Drop does not panic again (that would abort
/// the whole test binary) but the crash is in the failing test's own output.
#[test]
fn a_crash_found_while_panicking_is_reported_with_the_test() {
    let name = "child_panics_after_its_server_crashed";
    let (ok, report) = run_child(name, &[], &[]);
    assert!(!ok, "the child test was meant to fail:\n{report}");
    let section = failure_section(&report, name);
    assert!(section.contains("on purpose"), "{report}");
    assert!(
        section.contains("had exited on its own before the stop") && section.contains("SIGSEGV"),
        "{report}"
    );
    assert!(report.contains("test result: FAILED. 1 passed") || report.contains("1 failed"));
}

#[test]
fn child_panics_after_its_server_crashed() {
    if !child_mode("child_panics_after_its_server_crashed") {
        return;
    }
    let args = [
        "--say",
        "up",
        "--exit-after-ms",
        "10",
        "--exit-signal",
        "11",
    ];
    let fx = support::ready_server::late(&args, Ready::stdout("^up$"))
        .spawn()
        .expect("spawn");
    assert!(support::wait_until(support::SOON, || !fx.is_running()));
    panic!("on purpose");
}

#[test]
fn echoed_lines_show_with_the_test_and_live_with_nocapture() {
    let name = "child_echoes";
    let (ok, report) = run_child(name, &[], &[]);
    assert!(!ok, "the child test was meant to fail:\n{report}");
    let section = failure_section(&report, name);
    assert!(section.contains("[sh] echoed out"), "{report}");
    assert!(section.contains("[sh] echoed err"), "{report}");
    let (ok, report) = run_child(name, &["--nocapture"], &[("PF_CHILD_PASS", "1")]);
    assert!(ok, "{report}");
    assert!(report.contains("[sh] echoed out"), "{report}");
}

#[test]
fn the_environment_turns_echo_on_for_every_fixture() {
    let name = "child_echoes_by_env";
    let (ok, report) = run_child(name, &["--nocapture"], &[("PROCESS_FIXTURE_ECHO", "1")]);
    assert!(ok, "{report}");
    assert!(report.contains("[sh] from the environment"), "{report}");
    let (ok, report) = run_child(name, &["--nocapture"], &[]);
    assert!(ok, "{report}");
    assert!(
        !report.contains("[sh] from the environment"),
        "echoed without being asked: {report}"
    );
}

#[test]
fn child_echoes() {
    if !child_mode("child_echoes") {
        return;
    }
    let fx = ProcessFixture::builder("sh")
        .args([
            "-c",
            "echo echoed out; echo echoed err >&2; echo done; exec sleep 60",
        ])
        .echo_output(true)
        .ready(Ready::stdout("^done$"))
        .spawn()
        .expect("spawn");
    fx.wait_for_output("^done$", Duration::from_secs(10))
        .expect("done");
    // The echo goes through the monitor thread: wait until the stderr line was read too.
    assert!(support::wait_until(Duration::from_secs(10), || fx
        .stderr()
        .contains("echoed err")));
    drop(fx);
    assert!(
        std::env::var_os("PF_CHILD_PASS").is_some(),
        "fail, to show the captured output"
    );
}

#[test]
fn child_echoes_by_env() {
    if !child_mode("child_echoes_by_env") {
        return;
    }
    let fx = ProcessFixture::builder("sh")
        .args(["-c", "echo from the environment; exec sleep 60"])
        .ready(Ready::stdout("environment"))
        .spawn()
        .expect("spawn");
    drop(fx);
}
