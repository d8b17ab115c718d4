//! The test process dies, and what the crate must not do to the test process. R-numbers are the
//! requirements of docs/design.md.
//!
//! **Part 1: the process holding the fixture dies without (or with) `Drop`.** A helper binary,
//! `fixture-holder`, holds a fixture of `fixture-server` and then dies: SIGKILLed (R4.1 (a)),
//! `abort()` as under `panic = "abort"` (R4.1 (b)), returns from `main` with the fixture in a
//! static that is never dropped (R4.3), or panics (Drop runs while unwinding and shows the server's
//! last output). Each time, the server's process group is empty, every process recorded while it
//! ran is gone and its port binds again within 1 s of the holder's death, because the fixture's
//! guardian saw its lifeline close. One test does this with a forking master whose workers share
//! the socket; two more signal the holder's whole process group, as nextest's timeout (SIGKILL)
//! and a terminal's Ctrl-C (SIGINT) do, which must miss the guardian (R4.1, R5.3). Another spawns
//! the fixture from a thread that exits before the fixture is used: the server must survive that
//! thread (no PDEATHSIG, R4.2) and still be cleaned up when the process dies.
//!
//! **Part 2: the test process is left as it was.** Spawning and stopping fixtures installs no
//! signal handler and changes no signal disposition, signal mask or process group of the test
//! process (R5.1, R5.2; checked in a fresh copy of this binary so that no earlier fixture of a
//! parallel test can hide a change); the test process never becomes a subreaper (R3.4); and an
//! unrelated child of the test process is still waitable, with its own exit status, after
//! fixtures came and went around it: nothing reaps children it does not own (R7.1).
#![cfg(target_os = "linux")] // reads /proc

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use process_fixture::{ProcessFixture, Ready};
use support::Proc;

/// R4.1 (a)/(b), R4.3: "the group is gone and the port free within 1 s" of the holder's death.
const GONE_WITHIN: Duration = Duration::from_secs(1);
/// Generous bound for anything that only has to happen eventually (a loaded 2-core machine).
const EVENTUALLY: Duration = Duration::from_secs(20);

// -------------------------------------------------------------------------------------------
// Part 1: a holder process dies
// -------------------------------------------------------------------------------------------

/// A running `fixture-holder` and what it reported about its fixture.
struct Holder {
    child: Child,
    /// Closing it (or writing a line) lets `abort`, `exit-static` and `panic` go ahead.
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    pid: u32,
    pgid: u32,
    port: u16,
    guardian: u32,
    /// The server's processes (leader, workers), recorded while the holder was alive.
    tree: Vec<Proc>,
}

impl Holder {
    /// Starts `fixture-holder --mode MODE --then THEN`, reads its report line and records the
    /// server's process tree. `workers` is how many processes besides the leader to expect.
    fn start(mode: &str, then: &str, workers: usize) -> Holder {
        Holder::start_with(mode, then, workers, |_| {})
    }

    /// As [`Holder::start`], with a change to the holder's `Command` (e.g. its own group).
    fn start_with(
        mode: &str,
        then: &str,
        workers: usize,
        configure: impl FnOnce(&mut Command),
    ) -> Holder {
        let mut cmd = Command::new(support::bin("fixture-holder"));
        configure(&mut cmd);
        Holder::start_command(cmd, mode, then, workers)
    }

    /// As [`Holder::start`], with `cmd` running the holder (a wrapper around it, say).
    fn start_command(mut cmd: Command, mode: &str, then: &str, workers: usize) -> Holder {
        let mut child = cmd
            .arg("--server")
            .arg(support::server())
            .args(["--mode", mode, "--then", then])
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning fixture-holder");
        let stdin = child.stdin.take();
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let field = |name: &str| -> Option<u32> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        };
        let (Some(pid), Some(pgid), Some(port), Some(guardian)) = (
            field("pid"),
            field("pgid"),
            field("port"),
            field("guardian"),
        ) else {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!("fixture-holder did not report its fixture: stdout {line:?}, stderr:\n{err}");
        };
        let mut holder = Holder {
            child,
            stdin,
            stdout,
            stderr: Some(stderr),
            pid,
            pgid,
            port: u16::try_from(port).expect("port fits in u16"),
            guardian,
            tree: Vec::new(),
        };
        holder.record_tree(workers);
        holder
    }

    /// Records the leader and its workers (waiting for the workers to be forked: readiness is a
    /// TCP connect, which can succeed before a forking master has forked them).
    fn record_tree(&mut self, workers: usize) {
        let complete = support::wait_until(EVENTUALLY, || {
            support::live_members(self.pgid).len() > workers
        });
        let members = support::live_members(self.pgid);
        assert!(
            complete,
            "expected the leader and {workers} workers in group {}, found {members:?}",
            self.pgid
        );
        let mut tree = support::descendants(self.guardian);
        for p in members {
            if !tree.iter().any(|t| t.pid == p.pid) {
                tree.push(p);
            }
        }
        let leader = tree.iter().find(|p| p.pid == self.pid);
        assert!(
            leader.is_some_and(|l| l.ppid == self.guardian && l.pgrp == self.pgid),
            "the server leader {} should be the guardian {}'s child and lead group {}: {tree:?}",
            self.pid,
            self.guardian,
            self.pgid
        );
        assert_eq!(self.pid, self.pgid, "the leader leads its own group");
        assert!(
            tree.iter().all(Proc::still_live),
            "recorded a dead process: {tree:?}"
        );
        self.tree = tree;
    }

    /// Lets the holder go ahead with its `--then` action (abort, exit, panic).
    fn go(&mut self) {
        let mut stdin = self.stdin.take().expect("go() once");
        stdin
            .write_all(b"go\n")
            .expect("writing to the holder's stdin");
    }

    /// Reads one more line of the holder's stdout (empty at EOF).
    fn next_line(&mut self) -> String {
        let mut line = String::new();
        let _ = self.stdout.read_line(&mut line);
        line.trim_end().to_string()
    }

    /// Waits for the holder to exit and reaps it; returns its status and stderr.
    fn reap(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("waiting for fixture-holder");
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, stderr)
    }

    /// SIGKILLs the holder and reaps it.
    fn kill(&mut self) -> (std::process::ExitStatus, String) {
        self.child.kill().expect("SIGKILL to fixture-holder");
        self.reap()
    }

    /// Called right after the holder was reaped: within 1 s, its server's group is empty (not
    /// even a zombie), every recorded process is gone and the port binds again.
    fn assert_cleaned_up(&self, what: &str, holder_stderr: &str) {
        let started = Instant::now();
        let clean = support::wait_until(GONE_WITHIN, || {
            support::group_members(self.pgid).is_empty()
                && self.tree.iter().all(|p| !p.still_live())
                && support::port_is_free(self.port)
        });
        let took = started.elapsed();
        assert!(
            clean,
            "{what}: {took:?} after the holder died, the server is not cleaned up: group {} \
             members {:?}, surviving recorded processes {:?}, port {} free: {}\n\
             holder stderr:\n{holder_stderr}",
            self.pgid,
            support::group_members(self.pgid),
            self.tree
                .iter()
                .filter(|p| p.still_live())
                .collect::<Vec<_>>(),
            self.port,
            support::port_is_free(self.port),
        );
        eprintln!("{what}: cleaned up {took:?} after the holder was reaped");
    }
}

impl Drop for Holder {
    /// A failed assertion must not leave the holder running (its guardian then cleans up).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn holder_sigkilled_leaves_nothing_behind() {
    let mut h = Holder::start("well-behaved", "wait", 0);
    let (status, stderr) = h.kill();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "holder status {status:?}"
    );
    h.assert_cleaned_up("R4.1 (a) SIGKILL", &stderr);
}

#[test]
fn holder_sigkilled_with_forking_master_leaves_no_worker_behind() {
    let mut h = Holder::start("forking-master", "wait", 2);
    assert!(h.tree.len() >= 3, "leader and 2 workers: {:?}", h.tree);
    let (_, stderr) = h.kill();
    h.assert_cleaned_up("R4.1 (a) SIGKILL, forking master with 2 workers", &stderr);
}

/// The holder in a process group of its own, as nextest runs each test: a signal to that whole
/// group (nextest's timeout SIGKILL, or Ctrl-C's SIGINT from the terminal) kills the holder but
/// must miss the guardian, which is in a group of its own (R4.1, R5.3).
fn holder_group_signalled(signal: i32, what: &str) {
    let mut h = Holder::start_with("forking-master", "wait", 2, |cmd| {
        std::os::unix::process::CommandExt::process_group(cmd, 0);
    });
    let holder_pgid = h.child.id();
    let guardian = Proc::read(h.guardian).expect("guardian in /proc");
    assert_eq!(
        Proc::read(holder_pgid).map(|p| p.pgrp),
        Some(holder_pgid),
        "the holder leads its own group"
    );
    assert_ne!(
        guardian.pgrp, holder_pgid,
        "R4.1: the guardian has a group of its own"
    );
    assert!(
        h.tree.iter().all(|p| p.pgrp != holder_pgid),
        "the server is outside the holder's group: {:?}",
        h.tree
    );
    // Safe by number: the holder is our unreaped child, so its pid (= its pgid) is pinned.
    // SAFETY: plain syscall.
    let rc = unsafe { libc::kill(-(holder_pgid as i32), signal) };
    assert_eq!(rc, 0, "signalling the holder's group");
    let (status, stderr) = h.reap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(signal),
        "holder status {status:?}"
    );
    h.assert_cleaned_up(what, &stderr);
}

#[test]
fn holder_group_sigkilled_like_a_nextest_timeout_leaves_nothing_behind() {
    holder_group_signalled(libc::SIGKILL, "R4.1 SIGKILL to the holder's process group");
}

#[test]
fn holder_group_sigint_like_ctrl_c_leaves_nothing_behind() {
    holder_group_signalled(libc::SIGINT, "R5.3 SIGINT to the holder's process group");
}

#[test]
fn holder_aborting_leaves_nothing_behind() {
    let mut h = Holder::start("well-behaved", "abort", 0);
    h.go();
    let (status, stderr) = h.reap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGABRT),
        "holder status {status:?}, stderr:\n{stderr}"
    );
    h.assert_cleaned_up("R4.1 (b) abort", &stderr);
}

#[test]
fn holder_exiting_with_a_static_fixture_leaves_nothing_behind() {
    let mut h = Holder::start("well-behaved", "exit-static", 0);
    h.go();
    let (status, stderr) = h.reap();
    assert!(
        status.success(),
        "holder status {status:?}, stderr:\n{stderr}"
    );
    h.assert_cleaned_up("R4.3 static fixture, normal exit", &stderr);
}

#[test]
fn holder_panicking_prints_the_server_output_and_leaves_nothing_behind() {
    let mut h = Holder::start("well-behaved", "panic", 0);
    h.go();
    let (status, stderr) = h.reap();
    assert_eq!(
        status.code(),
        Some(101),
        "holder status {status:?}, stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("holder panicked on purpose"),
        "stderr:\n{stderr}"
    );
    // Drop, running while the panic unwinds, dumps the tail of the server's stdout and stderr.
    let listening = format!("listening on 127.0.0.1:{}", h.port);
    assert!(
        stderr.contains(&listening),
        "the server's stdout line {listening:?} was not printed by Drop; holder stderr:\n{stderr}"
    );
    let banner = format!("fixture-server mode=well-behaved pid={}", h.pid);
    assert!(
        stderr.contains(&banner),
        "the server's stderr line {banner:?} was not printed by Drop; holder stderr:\n{stderr}"
    );
    h.assert_cleaned_up("panic (Drop while unwinding)", &stderr);
}

#[test]
fn fixture_survives_the_exit_of_the_thread_that_spawned_it() {
    let mut h = Holder::start("well-behaved", "thread-exit", 0);
    let verdict = h.next_line();
    assert_eq!(
        verdict, "still-alive",
        "R4.2: after its spawning thread exited, the server no longer answered"
    );
    // And from here, outside the holder: the same leader answers, and it and its guardian live.
    let body = support::http_get(h.port, "/").expect("the server answers after the thread exit");
    assert_eq!(body.trim(), format!("ok pid={}", h.pid), "same leader pid");
    let leader = Proc::read(h.pid).expect("leader in /proc");
    let guardian = Proc::read(h.guardian).expect("guardian in /proc");
    assert!(
        leader.is_live() && guardian.is_live(),
        "leader {leader:?}, guardian {guardian:?}"
    );
    assert!(
        h.tree.iter().all(Proc::still_live),
        "a recorded process died: {:?}",
        h.tree
    );
    let (_, stderr) = h.kill();
    h.assert_cleaned_up("R4.2 thread exit, then SIGKILL", &stderr);
}

/// Kills a process the library leaves alone on purpose (a child forked by a holder, orphaned),
/// also when the test fails. Only this very process (start time).
struct KillOnDrop(Proc);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.still_live() {
            // SAFETY: plain syscall; the start-time check just made pins the pid to this process.
            unsafe { libc::kill(self.0.pid as i32, libc::SIGKILL) };
            support::wait_until(EVENTUALLY, || !self.0.still_live());
        }
    }
}

fn pidfd_forced_off() -> bool {
    std::env::var("PROCESS_FIXTURE_FORCE").is_ok_and(|v| v.contains("no-pidfd"))
}

#[test]
fn holder_sigkilled_while_a_child_it_forked_holds_every_fd_leaves_nothing_behind() {
    // The holder forked a child without exec: it holds copies of the fixture's control socket
    // and pipes, so no EOF ever comes. The guardian watches the holder itself (a pidfd).
    let mut h = Holder::start("forking-master", "fork-and-wait", 2);
    let line = h.next_line();
    let forked: u32 = line
        .strip_prefix("forked pid=")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected holder line {line:?}"));
    let forked = KillOnDrop(Proc::read(forked).expect("the forked child"));
    let (_, stderr) = h.kill();
    if pidfd_forced_off() {
        eprintln!("skipped the check: without pidfds only the socket's EOF tells of the death");
        return;
    }
    h.assert_cleaned_up("SIGKILL while a forked child holds the fds", &stderr);
    assert!(
        forked.0.still_live(),
        "the forked child is not the fixture's to kill"
    );
}

#[test]
fn without_proc_the_stop_still_kills_and_says_it_could_not_confirm() {
    // A sandbox without /proc (here: a mount namespace where /proc is an empty tmpfs). The
    // guardian cannot list the fixture's processes: that is never "all gone". It escalates to
    // SIGKILL all the same and the stop reports that nothing could be confirmed.
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for a mount namespace");
        return;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs none /proc && exec \"$0\" \"$@\"")
        .arg(support::bin("fixture-holder"));
    let mut h = Holder::start_command(cmd, "forking-master", "drop-on-go", 2);
    h.go();
    let stopped = h.next_line();
    assert_eq!(h.next_line(), "dropped");
    let (status, stderr) = h.reap();
    assert!(status.success(), "holder: {status:?}\n{stderr}");
    assert!(
        stopped.starts_with("stop failed:") && stopped.contains("could not be listed"),
        "the stop claimed success without being able to look: {stopped}"
    );
    h.assert_cleaned_up("a stop without /proc", &stderr);
}

// -------------------------------------------------------------------------------------------
// Part 1b: the test process forks, and the guardian dies
// -------------------------------------------------------------------------------------------

#[test]
fn a_child_the_test_forks_does_not_hang_stop() {
    // A forking test helper, a daemonising library, a fork-based isolator: the child inherits
    // every fd of the test process and lives on. Stop requests and shutdown are messages, so
    // neither the stop nor the output monitor waits for that child's end.
    let fx = forking_master();
    let (pgid, port) = (fx.pgid(), fx.port());
    // SAFETY: the child only pauses (async-signal-safe) until we kill it below.
    let child = unsafe { libc::fork() };
    if child == 0 {
        loop {
            // SAFETY: plain syscall.
            unsafe { libc::pause() };
        }
    }
    assert!(child > 0, "fork failed");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(fx.stop());
    });
    let outcome = finished.recv_timeout(Duration::from_secs(10));
    // SAFETY: our own unreaped child: its pid is pinned.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    let report = outcome
        .expect("stop() waited for a child forked by the test")
        .expect("stop");
    assert!(!report.escalated, "{report:?}");
    support::assert_nothing_left(pgid, &[], port);
}

#[test]
fn a_sigkilled_guardian_takes_its_server_with_it() {
    // The OOM killer or a stray `kill -9` hits the guardian: the leader dies with it (its
    // parent-death signal); with the zygote, a subreaper, the workers it orphans are killed too.
    // stop() then says what happened.
    let fx = forking_master();
    let pgid = fx.pgid();
    let guardian = Proc::read(fx.guardian_pid()).expect("guardian");
    let zygote = support::comm(guardian.ppid) == "pf-zygote";
    // Readiness is the port: the master may not have forked both workers yet.
    support::wait_until(EVENTUALLY, || support::live_members(pgid).len() >= 3);
    let workers: Vec<Proc> = support::live_members(pgid);
    assert!(workers.len() >= 3, "leader and 2 workers: {workers:?}");
    let _cleanup: Vec<KillOnDrop> = workers.iter().copied().map(KillOnDrop).collect();
    // SAFETY: plain syscall on our own fixture's guardian.
    assert_eq!(unsafe { libc::kill(guardian.pid as i32, libc::SIGKILL) }, 0);
    let leader = workers
        .iter()
        .find(|p| p.pid == pgid)
        .copied()
        .expect("leader");
    assert!(
        support::wait_until(GONE_WITHIN, || !leader.still_live()),
        "the leader outlived its guardian by {GONE_WITHIN:?}"
    );
    if zygote {
        assert!(
            support::wait_until(GONE_WITHIN, || workers.iter().all(|p| !p.still_live())),
            "workers outlived the guardian: {:?}",
            workers
                .iter()
                .filter(|p| p.still_live())
                .collect::<Vec<_>>()
        );
    }
    let err = fx
        .stop()
        .expect_err("a stop without a guardian cannot be confirmed");
    let text = err.to_string();
    assert!(text.contains("guardian") && text.contains("died"), "{text}");
}

// -------------------------------------------------------------------------------------------
// Part 2: the test process is left as it was
// -------------------------------------------------------------------------------------------

/// Runs `body` in a fresh copy of this test binary that runs only the test `name`, so that what
/// `body` measures first is the state of a process in which no fixture was ever spawned (with
/// `cargo test`, other tests of this binary spawn fixtures on parallel threads).
fn in_fresh_process(name: &str, body: impl FnOnce()) {
    const VAR: &str = "PF_PROCESS_DEATH_FRESH";
    if std::env::var(VAR).as_deref() == Ok(name) {
        body();
        return;
    }
    let out = Command::new(std::env::current_exe().expect("current_exe"))
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(VAR, name)
        .stdin(Stdio::null())
        .output()
        .expect("running this test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed in a fresh process ({:?}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

fn well_behaved() -> ProcessFixture {
    ProcessFixture::builder(support::server())
        .args(["--mode", "well-behaved", "--port", "{port}"])
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY)
        .spawn()
        .expect("spawning well-behaved")
}

fn forking_master() -> ProcessFixture {
    ProcessFixture::builder(support::server())
        .args([
            "--mode",
            "forking-master",
            "--workers",
            "2",
            "--port",
            "{port}",
        ])
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY)
        .spawn()
        .expect("spawning forking-master")
}

/// Every way a fixture comes and goes: dropped, stopped, a server with workers, a failed spawn.
fn exercise_fixtures() {
    let a = well_behaved();
    assert_ne!(
        a.pgid(),
        // SAFETY: getpgrp takes no argument and cannot fail.
        unsafe { libc::getpgrp() } as u32,
        "the server has its own group"
    );
    let b = forking_master();
    drop(a);
    b.stop().expect("stopping forking-master");
    let failed = ProcessFixture::builder(support::server())
        .args(["--mode", "crash-before-bind"])
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY)
        .spawn();
    assert!(failed.is_err(), "crash-before-bind must fail to spawn");
}

/// What `sigaction` says about one signal: handler, flags and mask.
#[derive(Debug, PartialEq, Eq)]
struct Disposition {
    signal: i32,
    handler: usize,
    flags: i32,
    mask: Vec<i32>,
}

fn disposition(signal: i32) -> Disposition {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action only reads.
    let old = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut old), 0);
        old
    };
    Disposition {
        signal,
        handler: old.sa_sigaction,
        flags: old.sa_flags,
        mask: (1..=64)
            // SAFETY: `old.sa_mask` is the sigset sigaction filled in; only read.
            .filter(|&s| unsafe { libc::sigismember(&old.sa_mask, s) } == 1)
            .collect(),
    }
}

/// Signals blocked in the calling thread.
fn blocked_signals() -> Vec<i32> {
    // SAFETY: a null new set only reads the mask into `old`.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old),
            0
        );
        (1..=64)
            .filter(|&s| libc::sigismember(&old, s) == 1)
            .collect()
    }
}

const WATCHED: [i32; 9] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGCHLD,
    libc::SIGPIPE,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

#[test]
fn signal_dispositions_mask_and_process_group_are_untouched() {
    in_fresh_process(
        "signal_dispositions_mask_and_process_group_are_untouched",
        || {
            let before: Vec<Disposition> = WATCHED.iter().map(|&s| disposition(s)).collect();
            let mask_before = blocked_signals();
            // SAFETY: getpgrp takes no argument and cannot fail.
            let pgrp_before = unsafe { libc::getpgrp() };
            // SAFETY: getsid takes no pointer.
            let sid_before = unsafe { libc::getsid(0) };

            exercise_fixtures();
            // And while one is alive.
            let live = well_behaved();
            let during: Vec<Disposition> = WATCHED.iter().map(|&s| disposition(s)).collect();
            drop(live);

            let after: Vec<Disposition> = WATCHED.iter().map(|&s| disposition(s)).collect();
            assert_eq!(
                before, during,
                "R5.2: dispositions changed while a fixture ran"
            );
            assert_eq!(before, after, "R5.2: dispositions changed by fixtures");
            for d in &after {
                assert!(
                    d.handler == libc::SIG_DFL || d.handler == libc::SIG_IGN,
                    "R5.2: a handler is installed for signal {}: {d:?}",
                    d.signal
                );
            }
            assert_eq!(mask_before, blocked_signals(), "the signal mask changed");
            assert_eq!(
                pgrp_before,
                // SAFETY: getpgrp takes no argument and cannot fail.
                unsafe { libc::getpgrp() },
                "R5.1: the test process's group changed"
            );
            assert_eq!(
                sid_before,
                // SAFETY: getsid takes no pointer.
                unsafe { libc::getsid(0) },
                "the session changed"
            );
        },
    );
}

fn is_subreaper() -> libc::c_int {
    let mut flag: libc::c_int = -1;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes an int through the pointer.
    let rc = unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut flag as *mut libc::c_int as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    assert_eq!(rc, 0, "prctl(PR_GET_CHILD_SUBREAPER)");
    flag
}

#[test]
fn test_process_never_becomes_a_subreaper() {
    in_fresh_process("test_process_never_becomes_a_subreaper", || {
        assert_eq!(is_subreaper(), 0, "not a subreaper before any fixture");
        let live = forking_master();
        assert_eq!(is_subreaper(), 0, "R3.4: subreaper while a fixture runs");
        exercise_fixtures();
        drop(live);
        assert_eq!(
            is_subreaper(),
            0,
            "R3.4: subreaper after fixtures came and went"
        );
    });
}

/// Waits until our child `pid` has exited but is not reaped (a zombie), so that anything that
/// reaps children it does not own would take it from here on.
fn wait_zombie(pid: u32) {
    let zombie = support::wait_until(EVENTUALLY, || {
        Proc::read(pid).is_some_and(|p| p.state == 'Z')
    });
    assert!(
        zombie,
        "child {pid} did not become a zombie (still running, or reaped by someone else): {:?}",
        Proc::read(pid)
    );
}

#[test]
fn unrelated_children_of_the_test_process_are_not_reaped() {
    let mut sleeper = Command::new("sleep")
        .arg("0.2")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning sleep");
    let mut failing = Command::new("sh")
        .args(["-c", "exit 7"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning sh");
    let a = forking_master();
    // Both user children have exited (zombies, ours to reap) while fixtures come and go.
    wait_zombie(sleeper.id());
    wait_zombie(failing.id());
    exercise_fixtures();
    a.stop().expect("stopping forking-master");
    let b = well_behaved();
    drop(b);
    // Still ours: waitable, with their own statuses (ECHILD here would mean someone stole them).
    let s = sleeper
        .wait()
        .expect("R7.1: the user's child was reaped by someone else");
    assert!(s.success(), "sleep 0.2 status {s:?}");
    let f = failing
        .wait()
        .expect("R7.1: the user's child was reaped by someone else");
    assert_eq!(f.code(), Some(7), "sh -c 'exit 7' status {f:?}");
}

/// R1.4: a test process that ignores SIGCHLD has its children reaped by the kernel at once. The
/// guardian restores the default for itself, so it can still hold the leader as a zombie, and the
/// test process's side copes with its guardian being auto-reaped: a normal drop stops the server
/// completely (here `forking-master`, whose workers must be stopped as a group).
#[test]
fn a_test_process_that_ignores_sigchld_still_gets_a_complete_stop() {
    let out = std::process::Command::new(support::bin("fixture-holder"))
        .args(["--mode", "forking-master", "--then", "drop", "--server"])
        .arg(support::server())
        .env("PF_HOLDER_IGNORE_SIGCHLD", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running fixture-holder");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("dropped"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("stopped: ") && stdout.contains("no SIGKILL needed"),
        "the stop was not clean: {stdout}\n{stderr}"
    );
    let field = |key: &str| -> u32 {
        let rest = &stdout[stdout.find(key).expect(key) + key.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (pgid, port) = (field("pgid="), field("port=") as u16);
    support::assert_nothing_left(pgid, &[], port);
}

/// The server starts with every signal at its default, whatever the test process ignores when
/// its first fixture starts the zygote (`posix_spawn` passes ignored dispositions on; the zygote
/// resets them, so that its guardians' servers need reset only what a guardian ignores).
#[test]
fn the_server_ignores_nothing_the_test_process_ignored() {
    in_fresh_process(
        "the_server_ignores_nothing_the_test_process_ignored",
        || {
            let ignored = [libc::SIGUSR1, libc::SIGHUP, libc::SIGALRM, libc::SIGTERM];
            for sig in ignored {
                // SAFETY: SIG_IGN is not a handler.
                unsafe { libc::signal(sig, libc::SIG_IGN) };
            }
            let fx = ProcessFixture::builder("sleep")
                .arg("60")
                .ready(Ready::none())
                .spawn()
                .expect("spawn");
            let status = std::fs::read_to_string(format!("/proc/{}/status", fx.pid()))
                .expect("the server's status");
            let sig_ign = status
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .expect("SigIgn");
            assert_eq!(
                u64::from_str_radix(sig_ign.trim(), 16),
                Ok(0),
                "the server ignores signals (mask {sig_ign}); the test process ignored {ignored:?}"
            );
            fx.stop().expect("stop");
        },
    );
}
