//! The stop fault matrix: real `fixture-server` processes that misbehave in known ways, stopped
//! with `stop()` or by `drop`, and then checked through `/proc` and the port.
//!
//! What it proves (R-numbers: the requirements of docs/design.md):
//! - R2.1: after the stop no live (R2.2: not even a zombie) process is left in the leader's group,
//!   none of the processes recorded while the fixture ran still exists, and the port binds again,
//!   for a cooperative server, orphaned workers (leader-first, R1.2), workers and leaders that
//!   ignore SIGTERM (escalation), a stopped member (R2.3) and a fork-churning group (R2.4);
//! - escapees that `setsid()` (and a daemonising leader) are caught by the subreaper guardian and
//!   counted in `StopReport::escapees_killed`; a leader that exits at once while its daemon lives
//!   is not taken for a server that exited before it was ready;
//! - R6.2: a grandchild that holds the stdout pipe (with the subreaper, and escaped for good with
//!   `Containment::ProcessGroup`) does not make the stop wait for EOF;
//! - R1.3: the leader is the guardian's child while it runs, and after the stop both the leader
//!   and the guardian are reaped (no zombie left); R3.4: the test process is not a subreaper;
//! - R5.4: the server's stdin is `/dev/null` (also when the test's own stdin is a pipe) and its
//!   stdout/stderr are pipes;
//! - R6.3: only the server tree holds the write ends of its output pipes.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use process_fixture::{Builder, ProcessFixture, Ready, StopReport};
use support::Proc;

/// Deadline for things that must happen soon (a worker to exist, a line to be printed). Generous:
/// the tests run in parallel on a loaded machine.
const SOON: Duration = Duration::from_secs(10);

/// A builder for `fixture-server --mode <mode> --port {port} <extra>`, ready on TCP.
fn server(mode: &str, extra: &[&str]) -> Builder {
    let mut b = ProcessFixture::builder(support::server());
    b.args(["--mode", mode, "--port", "{port}"])
        .args(extra)
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_secs(30));
    b
}

/// Every process of the fixture right now: the guardian's descendants (leader, workers,
/// escapees) and the live members of the leader's group. The guardian itself is not included.
fn record(fx: &ProcessFixture) -> Vec<Proc> {
    let mut procs = support::descendants(fx.guardian_pid());
    for p in support::live_members(fx.pgid()) {
        if !procs.iter().any(|q| q.pid == p.pid) {
            procs.push(p);
        }
    }
    assert!(
        procs.iter().any(|p| p.pid == fx.pid()),
        "the leader {} is not among the recorded processes {procs:?}",
        fx.pid()
    );
    procs
}

/// Live members of the leader's group other than the leader.
fn workers(fx: &ProcessFixture) -> Vec<Proc> {
    support::live_members(fx.pgid())
        .into_iter()
        .filter(|p| p.pid != fx.pid())
        .collect()
}

/// Waits until the group has at least `n` live members besides the leader, and returns them.
/// Whether `pid` ignores SIGTERM (`SigIgn` in `/proc/<pid>/status` has bit 15).
fn ignores_term(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

fn wait_for_workers(fx: &ProcessFixture, n: usize) -> Vec<Proc> {
    assert!(
        support::wait_until(SOON, || workers(fx).len() >= n),
        "expected {n} workers in group {}, found {:?}",
        fx.pgid(),
        workers(fx)
    );
    workers(fx)
}

/// Waits for a line `<prefix><pid>` on the fixture's stdout (or stderr) and returns the pid.
fn wait_for_pid_line(fx: &ProcessFixture, prefix: &str, stderr: bool) -> u32 {
    let find = || {
        let text = if stderr { fx.stderr() } else { fx.stdout() };
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse::<u32>().ok())
    };
    assert!(
        support::wait_until(SOON, || find().is_some()),
        "no line {prefix:?}<pid> on {}; stdout: {:?}, stderr: {:?}",
        if stderr { "stderr" } else { "stdout" },
        fx.stdout(),
        fx.stderr()
    );
    find().unwrap()
}

/// Reads a process, waiting (bounded) until `pred` holds for it.
fn wait_for_proc(pid: u32, what: &str, pred: impl Fn(&Proc) -> bool) -> Proc {
    let mut last = None;
    let held = support::wait_until(SOON, || {
        last = Proc::read(pid);
        last.as_ref().is_some_and(&pred)
    });
    assert!(held, "{what}: process {pid} is {last:?}");
    last.unwrap()
}

/// Drops the fixture on another thread and fails if that takes longer than `bound` (the thread
/// is then left behind: a drop that waits for an EOF that never comes must fail, not hang).
fn drop_within(fx: ProcessFixture, bound: Duration) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(fx);
        let _ = done.send(());
    });
    if finished.recv_timeout(bound).is_err() {
        panic!("drop did not return within {bound:?}");
    }
}

fn exit_code(report: &StopReport) -> Option<i32> {
    report.exit_status.and_then(|s| s.code())
}

/// The HTTP answer of the server, which names the pid that served it.
fn assert_serves(port: u16) -> String {
    let body = support::http_get(port, "/").expect("HTTP GET to the fixture");
    assert!(body.starts_with("ok pid="), "unexpected body {body:?}");
    body
}

#[test]
fn well_behaved_exits_on_term_without_escalation() {
    let fx = server("well-behaved", &[]).spawn().expect("spawn");
    let body = assert_serves(fx.port());
    assert_eq!(body.trim(), format!("ok pid={}", fx.pid()));
    let (pgid, port) = (fx.pgid(), fx.port());
    let recorded = record(&fx);

    let report = fx.stop().expect("stop");
    support::assert_nothing_left(pgid, &recorded, port);
    assert_eq!(exit_code(&report), Some(0), "{report:?}");
    assert!(!report.escalated, "{report:?}");
    assert_eq!(report.processes_signalled, 0, "{report:?}");
    assert_eq!(report.escapees_signalled, 0, "{report:?}");
    #[cfg(target_os = "linux")]
    assert!(
        matches!(
            report.containment,
            process_fixture::Containment::Cgroup | process_fixture::Containment::Subreaper
        ),
        "{report:?}"
    );
}

#[test]
fn forking_master_orphaned_workers_are_terminated() {
    // The master exits on SIGTERM without touching its workers (leader-first): they are orphaned
    // into the guardian and must be stopped by the group SIGTERM, without SIGKILL.
    let fx = server("forking-master", &["--workers", "3"])
        .spawn()
        .expect("spawn");
    let pool = wait_for_workers(&fx, 3);
    assert_serves(fx.port());
    let (pgid, port) = (fx.pgid(), fx.port());
    let recorded = record(&fx);

    let report = fx.stop().expect("stop");
    support::assert_nothing_left(pgid, &recorded, port);
    for w in &pool {
        assert!(!w.still_exists(), "worker {w:?} survived");
    }
    assert_eq!(exit_code(&report), Some(0), "{report:?}");
    assert!(!report.escalated, "{report:?}");
    assert!(report.processes_signalled >= 3, "{report:?}");
    assert_eq!(
        report.escapees_signalled, 0,
        "workers stay in the group: {report:?}"
    );
}

#[test]
fn forking_master_dropped_leaves_nothing() {
    let fx = server("forking-master", &["--workers", "2"])
        .spawn()
        .expect("spawn");
    wait_for_workers(&fx, 2);
    let (pgid, port) = (fx.pgid(), fx.port());
    let recorded = record(&fx);
    drop(fx);
    support::assert_nothing_left(pgid, &recorded, port);
}

#[test]
fn group_has_no_member_not_even_a_zombie_right_after_drop() {
    // R2.2: this box's PID 1 never reaps, so an orphaned worker's zombie would stay in the group
    // forever unless the guardian reaps it. Checked once, right after drop: no polling.
    let fx = server("forking-master", &["--workers", "4"])
        .spawn()
        .expect("spawn");
    wait_for_workers(&fx, 4);
    let pgid = fx.pgid();
    drop(fx);
    let left = support::group_members(pgid);
    assert!(left.is_empty(), "group {pgid} right after drop: {left:?}");
}

#[test]
fn workers_ignoring_term_are_killed() {
    let fx = server("workers-ignore-term", &["--workers", "2"])
        .grace_period(Duration::from_millis(200))
        .spawn()
        .expect("spawn");
    let pool = wait_for_workers(&fx, 2);
    let (pgid, port) = (fx.pgid(), fx.port());
    let recorded = record(&fx);

    let report = fx.stop().expect("stop");
    support::assert_nothing_left(pgid, &recorded, port);
    for w in &pool {
        assert!(!w.still_exists(), "worker {w:?} survived");
    }
    assert!(report.escalated, "{report:?}");
    assert!(report.processes_signalled >= 2, "{report:?}");
    assert_eq!(
        exit_code(&report),
        Some(0),
        "the master exits 0: {report:?}"
    );
}

#[test]
#[cfg(target_os = "linux")]
fn setsid_escapee_is_caught_by_the_subreaper() {
    let fx = server("setsid-escapee", &[]).spawn().expect("spawn");
    let escapee_pid = wait_for_pid_line(&fx, "escapee pid=", false);
    let escapee = wait_for_proc(escapee_pid, "escapee has called setsid", |p| {
        p.pgrp == escapee_pid
    });
    assert_ne!(
        escapee.pgrp,
        fx.pgid(),
        "the escapee left the leader's group"
    );
    assert!(
        !support::group_members(fx.pgid())
            .iter()
            .any(|p| p.pid == escapee_pid),
        "the escapee must not be a member of group {}",
        fx.pgid()
    );
    let (pgid, port) = (fx.pgid(), fx.port());
    let recorded = record(&fx);
    assert!(recorded.iter().any(|p| p.pid == escapee_pid));

    let report = fx.stop().expect("stop");
    assert!(!escapee.still_exists(), "the escapee {escapee:?} survived");
    support::assert_nothing_left(pgid, &recorded, port);
    assert!(report.escapees_signalled >= 1, "{report:?}");
    assert!(
        report.processes_signalled >= report.escapees_signalled,
        "{report:?}"
    );
    assert!(!report.escalated, "the escapee dies of SIGTERM: {report:?}");
    assert_eq!(exit_code(&report), Some(0), "{report:?}");
}

#[test]
fn grandchild_holding_stdout_does_not_block_drop() {
    // R6.2: the holder setsid()s and pauses forever with the stdout/stderr pipes open, so their
    // EOF never comes on its own. Drop must come back all the same (a bound, not a benchmark).
    let fx = server("grandchild-holds-stdout", &[])
        .spawn()
        .expect("spawn");
    let holder_pid = wait_for_pid_line(&fx, "holder pid=", false);
    let holder = wait_for_proc(holder_pid, "holder has called setsid", |p| {
        p.pgrp == holder_pid
    });
    assert_ne!(holder.pgrp, fx.pgid());
    let (pgid, port) = (fx.pgid(), fx.port());
    let recorded = record(&fx);
    // The subreaper kills the holder, after which EOF would come after all. So the test process
    // holds a write end of the stdout pipe too (reopened through /proc): EOF cannot come before
    // this handle is closed, whatever the stop kills.
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{}/fd/1", fx.pid()))
        .expect("reopening the server's stdout pipe for writing");

    drop_within(fx, Duration::from_secs(10));
    assert!(!holder.still_exists(), "the holder {holder:?} survived");
    support::assert_nothing_left(pgid, &recorded, port);
    // The output reader closed its end without EOF: writing now fails with EPIPE. (Polled: another
    // test's guardian may hold a forked copy of the read end for an instant.)
    let closed = support::wait_until(SOON, || {
        use std::io::Write;
        writer
            .write(b"x")
            .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    assert!(closed, "the read end of the stdout pipe is still open");
}

/// Kills a process this test caused and the library deliberately leaves alone (an escapee under
/// `Containment::ProcessGroup`), also when the test fails. Only this very process (start time).
struct KillOnDrop(Proc);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.still_live() {
            // SAFETY: plain syscall; the pid is pinned to this process by the start-time check
            // just made (a race with its exit and a pid recycling in between is not plausible).
            unsafe { libc::kill(self.0.pid as i32, libc::SIGKILL) };
            support::wait_until(SOON, || !self.0.still_live());
        }
    }
}

#[test]
#[cfg(target_os = "linux")]
fn escaped_stdout_holder_does_not_block_drop_without_subreaper() {
    // R6.2 as docs/design.md states it: with the process group only, the setsid holder escapes the
    // stop and keeps the stdout/stderr write ends open for good, so EOF never comes at all.
    let fx = server("grandchild-holds-stdout", &[])
        .containment(process_fixture::Containment::ProcessGroup)
        .spawn()
        .expect("spawn");
    let holder_pid = wait_for_pid_line(&fx, "holder pid=", false);
    let holder = KillOnDrop(wait_for_proc(holder_pid, "holder has called setsid", |p| {
        p.pgrp == holder_pid
    }));
    let stdout_pipe = std::fs::read_link(format!("/proc/{}/fd/1", fx.pid())).expect("fd 1");
    let (pgid, port) = (fx.pgid(), fx.port());

    drop_within(fx, Duration::from_secs(10));
    assert!(
        support::live_members(pgid).is_empty(),
        "the group itself is stopped"
    );
    assert!(support::port_is_free(port), "the leader had the port");
    // The holder outlived the drop with the write end open: the drop did not wait for EOF.
    assert!(holder.0.still_live(), "{:?}", Proc::read(holder_pid));
    let held = std::fs::read_link(format!("/proc/{holder_pid}/fd/1")).expect("holder fd 1");
    assert_eq!(
        held, stdout_pipe,
        "the holder still has the server's stdout"
    );
    drop(holder);
}

#[test]
fn stopped_member_is_continued_and_terminated() {
    // R2.3: a SIGSTOPped worker keeps SIGTERM pending until SIGCONT; without the CONT it would
    // only die of SIGKILL (escalated == true).
    let fx = server("forking-master", &["--workers", "2"])
        .spawn()
        .expect("spawn");
    let pool = wait_for_workers(&fx, 2);
    let victim = pool[0];
    // SAFETY: plain syscall on a worker of our own fixture that we have just seen alive.
    assert_eq!(unsafe { libc::kill(victim.pid as i32, libc::SIGSTOP) }, 0);
    wait_for_proc(victim.pid, "worker stopped", |p| p.state == 'T');
    let (pgid, port) = (fx.pgid(), fx.port());
    let recorded = record(&fx);

    let report = fx.stop().expect("stop");
    assert!(!victim.still_exists(), "stopped worker {victim:?} survived");
    support::assert_nothing_left(pgid, &recorded, port);
    assert!(!report.escalated, "{report:?}");
    assert!(report.processes_signalled >= 2, "{report:?}");
}

#[test]
fn fork_churn_leaves_nothing_across_cycles() {
    // R2.4: three children fork and reap grandchildren back to back while the group is signalled.
    let b = server("fork-churn", &["--workers", "3"]);
    for cycle in 0..20 {
        let fx = b.spawn().unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        wait_for_workers(&fx, 3);
        let (pgid, port) = (fx.pgid(), fx.port());
        let recorded = record(&fx);
        assert!(recorded.len() >= 4, "cycle {cycle}: {recorded:?}");
        let how = if cycle % 2 == 0 {
            let report = fx.stop().unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            assert!(report.processes_signalled >= 3, "cycle {cycle}: {report:?}");
            format!("stop() -> {report:?}")
        } else {
            drop(fx);
            "drop".to_string()
        };
        // R2.2: checked once, right away; a member left here was missed by the confirmation.
        let left = support::group_members(pgid);
        assert!(left.is_empty(), "cycle {cycle}, {how}: left {left:?}");
        // The recorded processes include the churners' grandchildren seen at that moment.
        support::assert_nothing_left(pgid, &recorded, port);
    }
}

#[test]
#[cfg(target_os = "linux")]
fn daemonizing_leader_is_ready_and_its_daemon_is_stopped() {
    // The leader forks and exits 0 at once; the daemon setsid()s, binds and serves. Readiness
    // must not fail on the leader's exit while the daemon lives.
    let fx = server("daemonize", &[]).spawn().expect("spawn");
    let daemon_pid = wait_for_pid_line(&fx, "daemon pid=", true);
    let daemon = wait_for_proc(daemon_pid, "daemon alive", Proc::is_live);
    let body = assert_serves(fx.port());
    assert_eq!(body.trim(), format!("ok pid={daemon_pid}"));
    assert_ne!(daemon.pgrp, fx.pgid());
    let (pgid, port) = (fx.pgid(), fx.port());
    let mut recorded = record(&fx);
    if !recorded.iter().any(|p| p.pid == daemon_pid) {
        recorded.push(daemon);
    }

    let report = fx.stop().expect("stop");
    assert!(!daemon.still_exists(), "the daemon {daemon:?} survived");
    support::assert_nothing_left(pgid, &recorded, port);
    assert!(report.escapees_signalled >= 1, "{report:?}");
    assert!(!report.escalated, "the daemon dies of SIGTERM: {report:?}");
    assert_eq!(exit_code(&report), Some(0), "{report:?}");
}

#[test]
#[cfg(target_os = "linux")]
fn daemon_outliving_its_leader_is_not_taken_for_an_exit() {
    // The leader exits 0 at once while its daemon lives on: that is not "exited before ready".
    // A probe that never matches shows it: the wait runs to its deadline (NotReady), where a
    // fixture taken for gone would fail at once with ExitedBeforeReady.
    let marker = support::marker("stop-daemon");
    let result = server("daemonize", &[])
        .env(support::MARKER_VAR, &marker)
        .ready(Ready::stdout("^this line is never printed$"))
        .ready_timeout(Duration::from_millis(1500))
        .spawn();
    match result {
        Err(process_fixture::Error::NotReady { diagnosis, .. }) => {
            let waited = diagnosis.waited;
            assert!(waited >= Duration::from_millis(1500), "waited {waited:?}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    let left = support::marked_processes(&marker);
    assert!(
        left.is_empty(),
        "the daemon survived the failed spawn: {left:?}"
    );
}

#[test]
fn leader_that_crashed_mid_test_is_reported() {
    let fx = server(
        "exit-after-ready",
        &["--delay-ms", "50", "--exit-code", "7"],
    )
    .ready(Ready::stdout("^listening"))
    .spawn()
    .expect("spawn");
    let leader = fx.pid();
    // The guardian keeps the exited leader unreaped (a zombie) until the stop.
    assert!(
        support::wait_until(SOON, || !Proc::read(leader).is_some_and(|p| p.is_live())),
        "the leader {leader} did not exit: {:?}",
        Proc::read(leader)
    );
    let (pgid, port) = (fx.pgid(), fx.port());
    let report = match fx.stop() {
        Err(process_fixture::Error::ExitedBeforeStop { report, .. }) => report,
        other => panic!("a crash mid-test is an error of stop(): {other:?}"),
    };
    support::assert_nothing_left(pgid, &[], port);
    assert_eq!(exit_code(&report), Some(7), "{report:?}");
    assert!(!report.escalated, "{report:?}");
}

#[test]
#[cfg(target_os = "linux")]
fn leader_is_the_guardians_child_and_both_are_reaped() {
    // R1.3 and the process tree of the crate docs.
    let fx = server("well-behaved", &[]).spawn().expect("spawn");
    let guardian_pid = fx.guardian_pid();
    let leader = Proc::read(fx.pid()).expect("leader");
    let guardian = Proc::read(guardian_pid).expect("guardian");
    assert_eq!(leader.ppid, guardian_pid, "leader {leader:?}");
    assert_eq!(leader.pgrp, leader.pid, "the leader leads its own group");
    // The guardian's parent is the zygote (the test executable exec'd once, named pf-zygote),
    // whose parent is the test process; or, forked from the test process, the test process.
    let me = std::process::id();
    let zygote = Proc::read(guardian.ppid).expect("the guardian's parent");
    match support::comm(guardian.ppid).as_str() {
        "pf-zygote" => assert_eq!(zygote.ppid, me, "zygote {zygote:?}"),
        _ => assert_eq!(guardian.ppid, me, "guardian {guardian:?}"),
    }
    assert_eq!(
        guardian.pgrp, guardian_pid,
        "the guardian has its own group"
    );
    assert_eq!(support::comm(guardian_pid), "pf-guardian");

    let report = fx.stop().expect("stop");
    assert!(report.exit_status.is_some(), "{report:?}");
    assert!(!leader.still_exists(), "leader {leader:?} left behind");
    // Reaped by its parent right after it reported: stop() does not wait for that.
    assert!(
        support::wait_until(SOON, || !guardian.still_exists()),
        "guardian {guardian:?} left behind (a zombie?): {:?}",
        Proc::read(guardian_pid)
    );
}

#[test]
#[cfg(target_os = "linux")]
fn test_process_is_not_a_subreaper() {
    // R3.4: only the guardian becomes a subreaper, never the test process.
    let fx = server("well-behaved", &[]).spawn().expect("spawn");
    let mut flag: libc::c_int = -1;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer.
    let ret = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut flag as *mut libc::c_int) };
    assert_eq!(ret, 0);
    assert_eq!(flag, 0, "the test process became a subreaper");
    drop(fx);
}

/// Set for the re-run of `server_stdin_is_dev_null_and_output_goes_to_pipes` whose stdin is a pipe.
const STDIN_IS_A_PIPE: &str = "PF_TEST_STDIN_IS_A_PIPE";

#[test]
fn server_stdin_is_dev_null_and_output_goes_to_pipes() {
    // R5.4
    if std::env::var_os(STDIN_IS_A_PIPE).is_some() {
        let ours = std::fs::read_link("/proc/self/fd/0").expect("our fd 0");
        assert!(
            ours.to_string_lossy().starts_with("pipe:["),
            "the re-run's stdin is {ours:?}"
        );
    }
    let fx = server("well-behaved", &[]).spawn().expect("spawn");
    let fd = |n: u32| {
        std::fs::read_link(format!("/proc/{}/fd/{n}", fx.pid()))
            .unwrap_or_else(|e| panic!("fd {n} of the server: {e}"))
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(fd(0), "/dev/null");
    let (out, err) = (fd(1), fd(2));
    assert!(out.starts_with("pipe:["), "stdout is {out}");
    assert!(err.starts_with("pipe:["), "stderr is {err}");
    assert_ne!(out, err, "stdout and stderr are separate pipes");
}

#[test]
#[cfg(target_os = "linux")]
fn server_stdin_is_dev_null_even_when_the_tests_stdin_is_a_pipe() {
    // Test runners usually give tests /dev/null as stdin, where the check above cannot tell an
    // inherited stdin from a fresh /dev/null: run it again in a copy of this test binary whose
    // stdin is a pipe.
    let name = "server_stdin_is_dev_null_and_output_goes_to_pipes";
    let out = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args([name, "--exact", "--test-threads", "1"])
        .env(STDIN_IS_A_PIPE, "1")
        .stdin(std::process::Stdio::piped())
        .output()
        .expect("re-running the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} with a pipe as stdin: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `(pid, fd, writable)` in `/proc/*/fd` that points to `target` (e.g. `pipe:[123]`).
fn holders(target: &str) -> Vec<(u32, u32, bool)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Some(n) = fd.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if !std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target) {
                continue;
            }
            // fdinfo "flags:" is octal; the access mode is its low two bits (0 = read only).
            let writable = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}"))
                .ok()
                .and_then(|info| {
                    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
                    u32::from_str_radix(flags.trim(), 8).ok()
                })
                .map_or(true, |flags| flags & 3 != 0);
            out.push((pid, n, writable));
        }
    }
    out
}

#[test]
#[cfg(target_os = "linux")]
fn only_the_server_tree_holds_its_output_pipes() {
    // R6.3. Another test's guardian may hold a copy for an instant between its fork and its
    // close_all_except (fork copies every fd), so the property is polled: a real leak persists.
    let fx = server("forking-master", &["--workers", "2"])
        .spawn()
        .expect("spawn");
    wait_for_workers(&fx, 2);
    let me = std::process::id();
    for n in [1, 2] {
        let pipe = std::fs::read_link(format!("/proc/{}/fd/{n}", fx.pid()))
            .expect("server fd")
            .to_string_lossy()
            .into_owned();
        assert!(pipe.starts_with("pipe:["), "fd {n} is {pipe}");
        let mut last = Vec::new();
        let mut bad = Vec::new();
        let clean = support::wait_until(SOON, || {
            let tree: HashSet<u32> = support::descendants(fx.pid())
                .iter()
                .map(|p| p.pid)
                .chain([fx.pid()])
                .collect();
            last = holders(&pipe);
            // Write ends: only the server tree. Read ends: only the test process (its monitor).
            bad = last
                .iter()
                .filter(|&&(pid, _, w)| if w { !tree.contains(&pid) } else { pid != me })
                .copied()
                .collect();
            bad.is_empty()
        });
        assert!(
            clean,
            "fd {n} ({pipe}) held outside the server tree (pid, fd, writable): {bad:?}; \
             guardian {}, test process {me}; all holders {last:?}",
            fx.guardian_pid()
        );
        assert!(
            last.iter().any(|&(pid, _, w)| pid == fx.pid() && w),
            "the scan must see the leader's own write end: {last:?}"
        );
        assert!(
            last.iter().any(|&(pid, _, w)| pid == me && !w),
            "the scan must see the monitor's read end: {last:?}"
        );
    }
    drop(fx);
}

// -------------------------------------------------------------------------------------------
// Stop as fast as the kernel allows, and never slower than a stuck neighbour.
// -------------------------------------------------------------------------------------------

/// Stops `fx` on another thread and returns the report, failing if that takes longer than
/// `bound` (a bound far below what the defect cost, far above what a healthy stop takes).
fn stop_within(fx: ProcessFixture, bound: Duration) -> StopReport {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(fx.stop());
    });
    match finished.recv_timeout(bound) {
        Ok(result) => result.expect("stop"),
        Err(_) => panic!("stop did not return within {bound:?}"),
    }
}

#[test]
fn a_stopped_leader_is_continued_with_the_first_signal() {
    // It SIGSTOPped itself (here: we stop it). Without a SIGCONT the leader cannot act on
    // SIGTERM, and the stop used to wait the whole grace (here 60 s) for nothing.
    let fx = server("well-behaved", &[])
        .grace_period(Duration::from_secs(60))
        .spawn()
        .expect("spawn");
    let leader = fx.pid();
    // SAFETY: plain syscall on our own fixture's live leader.
    assert_eq!(unsafe { libc::kill(leader as i32, libc::SIGSTOP) }, 0);
    wait_for_proc(leader, "leader stopped", |p| p.state == 'T');
    let (pgid, port) = (fx.pgid(), fx.port());
    let report = stop_within(fx, Duration::from_secs(20));
    support::assert_nothing_left(pgid, &[], port);
    assert!(
        !report.escalated,
        "SIGTERM, once continued, is enough: {report:?}"
    );
    assert_eq!(
        exit_code(&report),
        Some(0),
        "well-behaved exits 0 on SIGTERM: {report:?}"
    );
}

#[test]
fn a_leader_that_ignores_the_stop_signal_gets_no_grace() {
    // SigIgn has SIGTERM: it will never act on it, so waiting the grace (60 s here) is pointless.
    let fx = server("ignore-term", &[])
        .grace_period(Duration::from_secs(60))
        .spawn()
        .expect("spawn");
    let (pgid, port) = (fx.pgid(), fx.port());
    let recorded = record(&fx);
    let report = stop_within(fx, Duration::from_secs(20));
    support::assert_nothing_left(pgid, &recorded, port);
    assert!(report.escalated, "{report:?}");
    let status = report.exit_status.expect("the leader's exit status");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{report:?}");
    assert_eq!(report.processes_signalled, 0, "{report:?}");
}

#[test]
fn workers_that_ignore_term_get_no_group_grace() {
    // The leader exits on SIGTERM; every live worker ignores it: straight to SIGKILL, without
    // the group grace of min(grace, 1 s) = 1 s.
    let fx = server("workers-ignore-term", &["--workers", "3"])
        .grace_period(Duration::from_secs(60))
        .spawn()
        .expect("spawn");
    let pool = wait_for_workers(&fx, 3);
    // A worker exists before it has set SIG_IGN: wait until all three show it.
    assert!(
        support::wait_until(SOON, || pool.iter().all(|w| ignores_term(w.pid))),
        "the workers never ignored SIGTERM"
    );
    let (pgid, port) = (fx.pgid(), fx.port());
    let report = stop_within(fx, Duration::from_secs(20));
    support::assert_nothing_left(pgid, &pool, port);
    assert!(report.escalated, "{report:?}");
    assert!(
        report.elapsed < Duration::from_millis(900),
        "the 1 s group grace was waited: {report:?}"
    );
}

#[test]
fn a_process_in_another_group_gets_term_before_kill() {
    // The leader lives on (it blocks SIGTERM); its worker moved to a process group of its own.
    // The group signal misses it: it must get SIGTERM on its own, not only the final SIGKILL.
    let note = std::env::temp_dir().join(format!("pf-other-group-{}", support::marker("note")));
    let _ = std::fs::remove_file(&note);
    let fx = server(
        "other-group-worker",
        &["--note", note.to_str().expect("utf-8 path")],
    )
    .grace_period(Duration::from_millis(300))
    .spawn()
    .expect("spawn");
    let worker_pid = wait_for_pid_line(&fx, "worker pid=", false);
    let worker = wait_for_proc(worker_pid, "worker in its own group", |p| {
        p.pgrp == worker_pid
    });
    assert_ne!(worker.pgrp, fx.pgid());
    let (pgid, port) = (fx.pgid(), fx.port());
    let report = fx.stop().expect("stop");
    support::assert_nothing_left(pgid, &[worker], port);
    let noted = std::fs::read_to_string(&note).unwrap_or_default();
    let _ = std::fs::remove_file(&note);
    assert!(report.escalated, "the leader needed SIGKILL: {report:?}");
    if std::env::var("PROCESS_FIXTURE_FORCE").is_ok_and(|v| v.contains("no-pidfd")) {
        // Without a pidfd, a process that is not the guardian's own child cannot be signalled
        // safely (its pid may be recycled at any moment): it gets SIGKILL once orphaned to the
        // guardian. README "How stop works" says so.
        return;
    }
    assert_eq!(
        noted, "TERM",
        "the worker got no SIGTERM before SIGKILL ({report:?})"
    );
    assert!(report.escapees_signalled >= 1, "{report:?}");
}

#[test]
fn an_extreme_grace_means_as_long_as_it_takes() {
    // grace_period(Duration::MAX) once overflowed `Instant + Duration` in the guardian, whose
    // panic unwound into a second copy of the test. Saturated, it simply waits for the exit.
    let fx = server("forking-master", &["--workers", "2"])
        .grace_period(Duration::MAX)
        .spawn()
        .expect("spawn");
    let pool = wait_for_workers(&fx, 2);
    let (pgid, port) = (fx.pgid(), fx.port());
    let report = stop_within(fx, Duration::from_secs(20));
    support::assert_nothing_left(pgid, &pool, port);
    assert!(!report.escalated, "{report:?}");
    assert_eq!(exit_code(&report), Some(0), "{report:?}");
}

#[test]
fn a_stuck_guardian_does_not_slow_other_fixtures() {
    // One fixture's guardian is frozen (SIGSTOP): its stop can only time out. Meanwhile other
    // fixtures on other threads must stop as fast as ever (no lock held while anything waits),
    // and the stuck stop must return within its documented bound: grace + 1 s + 5 s + 2 s.
    let stuck = server("well-behaved", &[])
        .grace_period(Duration::from_millis(100))
        .spawn()
        .expect("spawn");
    let (guardian, leader, stuck_port) = (stuck.guardian_pid(), stuck.pid(), stuck.port());
    // SAFETY: plain syscall on our own fixture's guardian.
    assert_eq!(unsafe { libc::kill(guardian as i32, libc::SIGSTOP) }, 0);
    wait_for_proc(guardian, "guardian stopped", |p| p.state == 'T');
    let started = std::time::Instant::now();
    let stuck_stop = std::thread::spawn(move || stuck.stop());
    let healthy = server("well-behaved", &[]);
    let mut slowest = Duration::ZERO;
    while !stuck_stop.is_finished() {
        let fx = healthy.spawn().expect("healthy spawn");
        let t = std::time::Instant::now();
        fx.stop().expect("healthy stop");
        slowest = slowest.max(t.elapsed());
    }
    let outcome = stuck_stop.join().expect("stop panicked");
    let took = started.elapsed();
    // SAFETY: as above. The guardian then finds the STOP it was sent, and stops its server.
    unsafe { libc::kill(guardian as i32, libc::SIGCONT) };
    assert!(
        matches!(outcome, Err(process_fixture::Error::StopIncomplete { .. })),
        "{outcome:?}"
    );
    let bound = Duration::from_millis(100) + Duration::from_secs(8);
    assert!(
        took < bound + Duration::from_secs(1),
        "the stuck stop took {took:?}"
    );
    assert!(
        slowest < Duration::from_millis(300),
        "a healthy stop took {slowest:?} while another guardian was stuck"
    );
    assert!(
        support::wait_until(SOON, || Proc::read(leader).is_none()),
        "the continued guardian did not stop its server"
    );
    assert!(support::port_is_free(stuck_port));
}

#[test]
fn stop_with_sends_the_signal_given_instead_of_the_configured_one() {
    // well-behaved exits 0 on SIGTERM; SIGINT, which it does not handle, kills it.
    let fx = server("well-behaved", &[]).spawn().expect("spawn");
    let (pgid, port) = (fx.pgid(), fx.port());
    let report = fx
        .stop_with(process_fixture::Signal::INT)
        .expect("stop_with");
    assert_eq!(
        report.exit_status.and_then(|s| s.signal()),
        Some(libc::SIGINT),
        "{report:?}"
    );
    assert!(!report.escalated);
    support::assert_nothing_left(pgid, &[], port);
    let fx = server("well-behaved", &[]).spawn().expect("spawn");
    let e = fx
        .stop_with(process_fixture::Signal::from_raw(0))
        .unwrap_err();
    assert!(
        matches!(e, process_fixture::Error::InvalidSignal { signal: 0, .. }),
        "{e}"
    );
}

#[test]
fn the_report_says_what_the_server_used() {
    // 300 ms of CPU burnt by the server before it binds; an idle one next to it.
    let busy = server("well-behaved", &["--burn-ms", "300"])
        .spawn()
        .expect("spawn");
    let idle = server("well-behaved", &[]).spawn().expect("spawn");
    let (busy, idle) = (busy.stop().expect("stop"), idle.stop().expect("stop"));
    use process_fixture::{Containment, UsageSource};
    let source = busy.usage_source.expect("usage_source");
    match busy.containment {
        Containment::Cgroup => assert!(
            matches!(source, UsageSource::Cgroup | UsageSource::CgroupCpu),
            "{busy:?}"
        ),
        _ => assert_eq!(source, UsageSource::Reaped, "{busy:?}"),
    }
    let cpu = busy.cpu_time.expect("cpu_time");
    assert!(cpu >= Duration::from_millis(290), "{busy}");
    assert!(
        idle.cpu_time.expect("cpu_time") < Duration::from_millis(290),
        "{idle}"
    );
    // A cgroup counts what was charged to it (not the program's file pages that another cgroup
    // cached first); a process's RSS counts them all.
    let least = if source == UsageSource::Cgroup {
        64 << 10
    } else {
        1 << 20
    };
    let peak = busy.peak_memory.expect("peak_memory");
    assert!((least..1 << 30).contains(&peak), "{busy}");
    assert!(busy.to_string().contains("of CPU, peak"), "{busy}");
}
