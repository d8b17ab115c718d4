//! Readiness and waits on output lines: `Ready::stdout`, `Ready::stderr` and `Ready::output`
//! return once the line is printed (and captured), a pattern watched on the wrong stream times
//! out with `Error::NotReady` naming it, `wait_for_output` waits for a later line and fails at
//! once if the server dies meanwhile, a slow start prints progress lines, and a server writing
//! 64 MiB to a pipe is never blocked on it: only the last `OUTPUT_CAP` bytes are kept and the
//! test process's memory does not grow with the flood.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use support::fixture_server::{listening_line, server};
use support::ready_server::late;
use support::{marked_processes, marker, MARKER_VAR, SOON};

use std::process::Command;
use std::time::{Duration, Instant};

use process_fixture::{Diagnosis, Error, Ready, OUTPUT_CAP};

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
    const VAR: &str = "PF_NOCAPTURE_RUN";
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
