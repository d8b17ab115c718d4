//! rstest idioms, to copy: a `ProcessFixture` as an rstest `#[fixture]`, a parametrised test over
//! the ways a server can end, and a `#[once]` server shared by every test of the binary.
//!
//! - `#[fixture] fn server() -> ProcessFixture`: each test that names `server` gets its own
//!   server, stopped when the test ends (the fixture is an ordinary value, dropped with the
//!   test's other locals, and `Drop` runs the full stop sequence).
//! - `#[rstest] #[case(...)]`: one test per case; here the mode of `fixture-server` and the stop
//!   signal, each checked against the `StopReport`.
//! - `#[fixture] #[once] fn shared_server() -> ProcessFixture`: rstest keeps the value in a
//!   static and hands out `&'static ProcessFixture`; it is never dropped. The server still ends
//!   with the test binary, because its guardian watches the test process and stops the server
//!   when that process goes away. `the_shared_server_ends_when_the_test_binary_exits` checks it
//!   by running this binary again, filtered to that one test, and checking that the server
//!   that run started is gone within 1 s of its exit.
//!
//! Under `cargo test` the tests of this binary share one `#[once]` server; under
//! `cargo nextest run` each test is a process of its own, with its own.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use process_fixture::{ProcessFixture, Ready, Signal};
use rstest::{fixture, rstest};
use support::Proc;

/// A bound for anything that only has to happen eventually (a loaded CI machine).
const EVENTUALLY: Duration = Duration::from_secs(20);
/// How soon the server of a test binary that exited must be gone (the README's claim for a
/// server held in a static).
const GONE_WITHIN: Duration = Duration::from_secs(1);

/// `fixture-server --mode MODE --port {port}`, ready once its port listens.
fn spawn_fixture_server(mode: &str, stop_signal: Signal) -> ProcessFixture {
    ProcessFixture::builder(support::server())
        .args(["--mode", mode, "--port", "{port}"])
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY)
        .stop_signal(stop_signal)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning fixture-server --mode {mode}: {e}"))
}

/// The server answers HTTP, from its own process.
fn assert_serves(srv: &ProcessFixture) {
    let body =
        support::http_get(srv.port(), "/").unwrap_or_else(|e| panic!("GET {}/: {e}", srv.url()));
    assert_eq!(
        body,
        format!("ok pid={}\n", srv.pid()),
        "from {}",
        srv.url()
    );
}

// -------------------------------------------------------------------------------------------
// A server per test
// -------------------------------------------------------------------------------------------

/// A fresh server for each test that asks for one.
#[fixture]
fn server() -> ProcessFixture {
    ProcessFixture::builder(support::server())
        .args(["--mode", "well-behaved", "--port", "{port}"])
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY)
        .spawn()
        .expect("spawning fixture-server --mode well-behaved")
}

#[rstest]
fn a_test_gets_a_running_server(server: ProcessFixture) {
    assert_serves(&server);
    assert_eq!(
        server.stdout(),
        format!("listening on 127.0.0.1:{}\n", server.port())
    );
}

#[rstest]
fn the_per_test_server_ends_with_its_fixture(server: ProcessFixture) {
    let (pgid, port) = (server.pgid(), server.port());
    let leader = Proc::read(server.pid()).expect("the server's leader");
    assert!(!support::port_is_free(port), "the server holds port {port}");
    drop(server); // what happens at the end of every test that takes `server`
    assert!(!leader.still_exists(), "the leader outlived its fixture");
    support::assert_nothing_left(pgid, &[], port);
}

// -------------------------------------------------------------------------------------------
// A parametrised test: how each kind of server ends
// -------------------------------------------------------------------------------------------

/// How the leader ended, as its exit status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Code(i32),
    Signal(i32),
}

#[rstest]
#[case::term_is_graceful("well-behaved", Signal::TERM, 0, Ended::Code(0), false)]
#[case::int_ends_the_leader("well-behaved", Signal::INT, 0, Ended::Signal(libc::SIGINT), false)]
#[case::hup_ends_the_leader("well-behaved", Signal::HUP, 0, Ended::Signal(libc::SIGHUP), false)]
#[case::workers_are_stopped_after_their_master(
    "forking-master",
    Signal::TERM,
    2,
    Ended::Code(0),
    false
)]
#[case::an_ignored_signal_escalates_to_sigkill(
    "ignore-term",
    Signal::TERM,
    0,
    Ended::Signal(libc::SIGKILL),
    true
)]
fn the_stop_report_says_how_the_server_ended(
    #[case] mode: &str,
    #[case] stop_signal: Signal,
    #[case] workers: usize,
    #[case] ended: Ended,
    #[case] escalated: bool,
) {
    let srv = spawn_fixture_server(mode, stop_signal);
    let (pgid, port) = (srv.pgid(), srv.port());
    // Readiness is the port: a forking master may not have forked its workers yet.
    let complete = support::wait_until(EVENTUALLY, || support::live_members(pgid).len() > workers);
    let tree = support::live_members(pgid);
    assert!(
        complete && tree.len() == workers + 1,
        "{mode}: expected the leader and {workers} workers in group {pgid}, found {tree:?}"
    );

    let report = srv.stop().expect("stop");

    let status = report.exit_status.expect("the leader was reaped");
    let how = match (
        std::os::unix::process::ExitStatusExt::signal(&status),
        status.code(),
    ) {
        (Some(signal), _) => Ended::Signal(signal),
        (None, Some(code)) => Ended::Code(code),
        (None, None) => panic!("{mode}: neither a code nor a signal: {status:?}"),
    };
    assert_eq!(how, ended, "{mode}: {report}");
    assert_eq!(report.escalated, escalated, "{mode}: {report}");
    assert_eq!(report.processes_signalled, workers, "{mode}: {report}");
    assert!(!report.exited_before_stop, "{mode}: {report}");
    support::assert_nothing_left(pgid, &tree, port);
}

// -------------------------------------------------------------------------------------------
// One server shared by every test of the binary
// -------------------------------------------------------------------------------------------

/// Started by the first test that asks for it; never dropped (rstest keeps it in a static).
#[fixture]
#[once]
fn shared_server() -> ProcessFixture {
    spawn_fixture_server("well-behaved", Signal::TERM)
}

/// Every test of this process that uses the shared server sees the same one.
fn assert_same_as_other_tests(srv: &ProcessFixture) {
    static FIRST_SEEN: OnceLock<(u32, u16)> = OnceLock::new();
    let first = *FIRST_SEEN.get_or_init(|| (srv.pid(), srv.port()));
    assert_eq!(
        first,
        (srv.pid(), srv.port()),
        "another test of this process saw another shared server"
    );
}

#[rstest]
fn the_shared_server_serves(shared_server: &ProcessFixture) {
    assert_same_as_other_tests(shared_server);
    assert!(shared_server.is_running());
    assert_serves(shared_server);
}

#[rstest]
fn the_shared_server_is_started_once(
    #[from(shared_server)] first: &ProcessFixture,
    #[from(shared_server)] second: &ProcessFixture,
) {
    assert_same_as_other_tests(first);
    assert!(
        std::ptr::eq(first, second),
        "two requests, two servers: pids {} and {}",
        first.pid(),
        second.pid()
    );
    assert_serves(second);
}

#[rstest]
fn a_test_can_have_both_a_shared_and_its_own_server(
    shared_server: &ProcessFixture,
    server: ProcessFixture,
) {
    assert_same_as_other_tests(shared_server);
    assert_ne!(shared_server.pid(), server.pid());
    assert_ne!(shared_server.port(), server.port());
    assert_serves(shared_server);
    assert_serves(&server);
}

/// Set in the copy of this binary that the test below runs.
const CHILD_VAR: &str = "PF_RSTEST_ONCE_CHILD";
/// The line that copy prints about its shared server.
const REPORT_PREFIX: &str = "once-server ";

/// What the child run reported about its `#[once]` server.
#[derive(Debug)]
struct ChildServer {
    pid: u32,
    pgid: u32,
    port: u16,
    guardian: u32,
}

impl ChildServer {
    fn parse(fields: &str) -> Option<ChildServer> {
        let field = |name: &str| -> Option<u32> {
            fields
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        };
        Some(ChildServer {
            pid: field("pid")?,
            pgid: field("pgid")?,
            port: u16::try_from(field("port")?).ok()?,
            guardian: field("guardian")?,
        })
    }
}

/// Reads `stream` on a thread and sends each line (`\n` included) as it arrives; the channel
/// closes at end of file. A bounded `recv_timeout` then never hangs on a stuck child.
fn lines_on_a_thread(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if tx.send(line).is_err() => return,
                Ok(_) => {}
            }
        }
    });
    rx
}

/// Everything `lines` still sends until it closes; `Err` with what came if it is still open
/// after `timeout` (a process that inherited the pipe lives on).
fn rest_of(lines: &Receiver<String>, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut text = String::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => text.push_str(&line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(text),
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(text),
        }
    }
}

#[rstest]
fn the_shared_server_ends_when_the_test_binary_exits(shared_server: &ProcessFixture) {
    const NAME: &str = "the_shared_server_ends_when_the_test_binary_exits";
    if std::env::var(CHILD_VAR).as_deref() == Ok(NAME) {
        // The child run: report the shared server, wait until told to finish, and return. The
        // test binary then exits with the server still in rstest's static.
        assert_serves(shared_server);
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{REPORT_PREFIX}pid={} pgid={} port={} guardian={}",
            shared_server.pid(),
            shared_server.pgid(),
            shared_server.port(),
            shared_server.guardian_pid()
        )
        .and_then(|()| out.flush())
        .expect("writing the report");
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        return;
    }
    assert_same_as_other_tests(shared_server);

    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([NAME, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_VAR, NAME)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running this test binary again");
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = lines_on_a_thread(child.stdout.take().expect("piped stdout"));
    let stderr = lines_on_a_thread(child.stderr.take().expect("piped stderr"));
    // libtest prints `test NAME ... ` before the test's own output, on the same line.
    let deadline = Instant::now() + EVENTUALLY;
    let mut seen = String::new();
    let reported = loop {
        let Ok(line) = stdout.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            break None; // closed (the child ended) or nothing within EVENTUALLY
        };
        seen.push_str(&line);
        if let Some((_, fields)) = line.trim_end().split_once(REPORT_PREFIX) {
            break ChildServer::parse(fields);
        }
    };
    let Some(theirs) = reported else {
        let _ = child.kill();
        let _ = child.wait();
        let err = rest_of(&stderr, EVENTUALLY).unwrap_or_else(|e| e);
        panic!(
            "the child run did not report its shared server within {EVENTUALLY:?}:\n\
             --- stdout\n{seen}\n--- stderr\n{err}"
        );
    };

    // While the child runs, its shared server is alive, leads its group and holds its port.
    let leader = Proc::read(theirs.pid).expect("the child's server");
    assert!(
        leader.is_live() && leader.pgrp == theirs.pgid,
        "{theirs:?}: {leader:?}"
    );
    assert!(
        !support::port_is_free(theirs.port),
        "the child's server does not hold port {}",
        theirs.port
    );
    assert_ne!(
        theirs.pid,
        shared_server.pid(),
        "a test process has a shared server of its own"
    );
    let mut tree = support::descendants(theirs.guardian);
    for p in support::live_members(theirs.pgid) {
        if !tree.iter().any(|t| t.pid == p.pid) {
            tree.push(p);
        }
    }
    assert!(
        tree.iter().any(|p| p.pid == theirs.pid),
        "the leader is not under its guardian: {tree:?}"
    );
    let guardian = Proc::read(theirs.guardian).expect("the child's guardian");

    // Let the child's test return: its binary exits, the static is never dropped.
    drop(stdin);
    let exited = support::wait_until(EVENTUALLY, || matches!(child.try_wait(), Ok(Some(_))));
    let exited_at = Instant::now();
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().expect("waiting for the child run");
    let out = rest_of(&stdout, EVENTUALLY);
    let err = rest_of(&stderr, EVENTUALLY);
    assert!(
        exited,
        "the child run did not exit within {EVENTUALLY:?} of being told to"
    );
    let (Ok(out), Ok(err)) = (out, err) else {
        panic!("the child run exited, but something still holds its stdout or stderr");
    };
    seen.push_str(&out);
    assert!(
        status.success() && seen.contains("1 passed"),
        "the child run failed ({status:?}):\n--- stdout\n{seen}\n--- stderr\n{err}"
    );

    // Its server is gone with it, within GONE_WITHIN of its exit: no process left in its
    // group, none of its processes exists (not even a zombie), and its port binds again.
    let gone = support::wait_until(GONE_WITHIN.saturating_sub(exited_at.elapsed()), || {
        support::group_members(theirs.pgid).is_empty()
            && tree.iter().all(|p| !p.still_exists())
            && support::port_is_free(theirs.port)
    });
    assert!(
        gone,
        "the #[once] server of a test binary that exited was still there {:?} later \
         ({theirs:?}): group members {:?}, processes still there {:?}, port {} free: {}",
        exited_at.elapsed(),
        support::group_members(theirs.pgid),
        tree.iter().filter(|p| p.still_exists()).collect::<Vec<_>>(),
        theirs.port,
        support::port_is_free(theirs.port)
    );
    assert!(
        support::wait_until(EVENTUALLY, || !guardian.still_live()),
        "the guardian outlived its stop: {guardian:?}"
    );

    // And ours, in this process, is untouched.
    assert!(shared_server.is_running());
    assert_serves(shared_server);
}
