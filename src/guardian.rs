//! The guardian: a process per fixture that owns the server and runs the stop sequence.
//!
//! ```text
//! test process ── lifeline (EOF = stop) ──▶ guardian ── parent of ──▶ server leader (own group)
//!              ◀── reports (fixed-size messages) ──┘   subreaper: escapees re-parent to it
//! ```
//! The guardian is a `fork()` of the test process without `exec`. From the fork on it is
//! single-threaded and makes only async-signal-safe calls through [`crate::sys`]: everything it
//! needs ([`Plan`]) is prepared before the fork, it never allocates, never locks, never logs.
//!
//! Because the guardian is the leader's parent, it can keep the leader unreaped (a zombie) until the
//! whole tree is confirmed gone. An unreaped leader pins its pid and so its process group number:
//! every signal sent by number reaches only our processes (TEARDOWN.md Q1, R1.1–R1.3).
//!
//! A stop is requested by closing the lifeline. The test process closes it in `stop()`/`Drop`; the
//! kernel closes it when the test process dies in any way (R4.1). Either way the same sequence runs.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::sys::{self, Pid, Target, WaitStatus};

/// How long the group gets after its SIGTERM before SIGKILL, at most (it is also ≤ the grace).
pub(crate) const GROUP_GRACE_MAX: Duration = Duration::from_secs(1);
/// How long SIGKILL is re-sent before the guardian gives up confirming (an unkillable process).
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);
/// Idle polling interval cap: how late an orphan is reaped or an early exit is reported at worst.
const IDLE_POLL_MAX: Duration = Duration::from_millis(50);
/// Stop-phase polling interval cap.
const STOP_POLL_MAX: Duration = Duration::from_millis(10);

/// Everything the guardian and the server need, prepared before the fork.
pub(crate) struct Plan {
    pub path: CString,
    pub cwd: Option<CString>,
    pub stop_signal: libc::c_int,
    pub grace: Duration,
    /// Make the guardian a child subreaper (Linux), so that escapees re-parent to it.
    pub subreaper: bool,
    /// Watch the leader's exit through a pidfd (Linux ≥ 5.3) rather than by polling.
    pub pidfd: bool,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// Own the strings the pointer arrays point into.
    _strings: (Vec<CString>, Vec<CString>),
}

impl Plan {
    /// A plan with SIGTERM, the default grace, and every kernel feature that is there.
    pub fn new(
        path: CString,
        argv: Vec<CString>,
        envp: Vec<CString>,
        cwd: Option<CString>,
    ) -> Plan {
        let nul_terminated = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        Plan {
            argv_ptrs: nul_terminated(&argv),
            envp_ptrs: nul_terminated(&envp),
            _strings: (argv, envp),
            path,
            cwd,
            stop_signal: libc::SIGTERM,
            grace: crate::DEFAULT_GRACE,
            subreaper: true,
            pidfd: true,
        }
    }
}

/// The fds the guardian keeps after the fork (the test process closes its copies).
pub(crate) struct Ends {
    pub lifeline: RawFd,
    pub report: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub dev_null: RawFd,
}

/// What went wrong before the server ran, reported by [`Msg::spawn_failed`].
pub(crate) const STAGE_FORK: u32 = 1;
pub(crate) const STAGE_CHDIR: u32 = 2;
pub(crate) const STAGE_EXEC: u32 = 3;

/// One report from the guardian: fixed size, written with one `write` (atomic below `PIPE_BUF`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Msg {
    pub kind: u32,
    /// Leader pid (`SPAWNED`), errno (`SPAWN_FAILED`).
    pub pid_or_errno: i32,
    /// Stage (`SPAWN_FAILED`); flags (`STOPPED`).
    pub detail: u32,
    /// Raw wait status of the leader (`GONE`, `STOPPED` with `F_REAPED`).
    pub status: WaitStatus,
    pub killed: u32,
    pub escapees: u32,
    pub elapsed_ns: u64,
}

impl Msg {
    pub const SIZE: usize = std::mem::size_of::<Msg>();
    pub const SPAWNED: u32 = 1;
    pub const SPAWN_FAILED: u32 = 2;
    /// The leader exited and no other process of the fixture lives (before any stop request).
    pub const GONE: u32 = 3;
    pub const STOPPED: u32 = 4;

    pub const F_ESCALATED: u32 = 1;
    pub const F_CONFIRMED: u32 = 2;
    pub const F_REAPED: u32 = 4;
    pub const F_SUBREAPER: u32 = 8;

    fn new(kind: u32) -> Msg {
        Msg {
            kind,
            ..Msg::default()
        }
    }

    pub fn from_bytes(bytes: &[u8; Msg::SIZE]) -> Msg {
        // SAFETY: Msg is plain old data of exactly SIZE bytes, written by the same binary.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) }
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: as above; repr(C) with no padding-sensitive invariants.
        unsafe { std::slice::from_raw_parts((self as *const Msg).cast(), Msg::SIZE) }
    }
}

/// Forks the guardian. In the test process, returns the guardian's pid.
pub(crate) fn start(plan: &Plan, ends: &Ends) -> std::io::Result<Pid> {
    let test_pid = sys::getpid();
    let test_pgrp = sys::getpgrp();
    let _gate = fork_gate();
    // SAFETY: the child runs only `run`, which makes async-signal-safe calls and never returns.
    match unsafe { sys::fork() }? {
        0 => run(plan, ends, test_pid, test_pgrp),
        pid => Ok(pid),
    }
}

/// Held around every guardian `fork()` and around short-lived sockets the test process closes and
/// expects gone at once (the port check): a guardian forked in between would hold a copy until it
/// closes its inherited fds, and the port would look busy for that instant.
pub(crate) fn fork_gate() -> std::sync::MutexGuard<'static, ()> {
    static GATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The guardian's whole life. Never returns.
fn run(plan: &Plan, ends: &Ends, test_pid: Pid, test_pgrp: Pid) -> ! {
    setup(ends, test_pid, test_pgrp);
    let subreaper = plan.subreaper && sys::become_subreaper();
    let mut leader = match spawn_leader(plan, ends) {
        Ok(leader) => leader,
        Err(failed) => {
            report(ends, &failed);
            exit();
        }
    };
    let mut spawned = Msg::new(Msg::SPAWNED);
    spawned.pid_or_errno = leader.pid;
    report(ends, &spawned);

    let mut tree = Tree::new(leader.pid, subreaper);
    watch(&mut leader, &mut tree, ends);
    let stopped = stop(&mut leader, &mut tree, plan);
    report(ends, &stopped);
    exit();
}

fn exit() -> ! {
    unsafe { libc::_exit(0) }
}

fn report(ends: &Ends, msg: &Msg) {
    // A failed write means the test process is gone; the stop sequence runs regardless.
    sys::write_all(ends.report, msg.as_bytes());
}

/// Own process group (terminal signals and nextest's group kill miss us), stdio on /dev/null (we
/// hold no copy of the test's output), only our own fds, and signal dispositions fit for a reaper.
fn setup(ends: &Ends, test_pid: Pid, test_pgrp: Pid) {
    sys::new_process_group();
    sys::protect(test_pid, test_pgrp);
    sys::set_name(c"pf-guardian");
    for fd in 0..=2 {
        sys::dup2(ends.dev_null, fd);
    }
    let mut keep = [ends.lifeline, ends.report, ends.stdout, ends.stderr];
    keep.sort_unstable();
    sys::close_all_except(&keep);
    // A host that ignores SIGCHLD would have our zombies auto-reaped, freeing the pinned pid (R1.4).
    sys::set_ignored(libc::SIGCHLD, false);
    // Stop requests arrive only through the lifeline: a stray `pkill` or terminal signal must not
    // kill (or job-control stop) the guardian and orphan the server. EPIPE on the report pipe is
    // handled, not fatal. The server gets default dispositions back before exec.
    let ignored = [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ];
    for sig in ignored {
        sys::set_ignored(sig, true);
    }
}

/// Forks and execs the server in a new process group. Exec failure comes back over a close-on-exec
/// pipe, as std does it: EOF means exec succeeded.
fn spawn_leader(plan: &Plan, ends: &Ends) -> Result<Leader, Msg> {
    let fail = |stage: u32, errno: i32| {
        let mut m = Msg::new(Msg::SPAWN_FAILED);
        m.detail = stage;
        m.pid_or_errno = errno;
        m
    };
    let (err_r, err_w) = match sys::pipe() {
        Ok((r, w)) => (
            std::os::fd::IntoRawFd::into_raw_fd(r),
            std::os::fd::IntoRawFd::into_raw_fd(w),
        ),
        Err(e) => return Err(fail(STAGE_FORK, e.raw_os_error().unwrap_or(0))),
    };
    // SAFETY: the guardian is single-threaded; the child only makes async-signal-safe calls.
    let pid = match unsafe { sys::fork() } {
        Ok(0) => exec_server(plan, ends, err_r, err_w),
        Ok(pid) => pid,
        Err(e) => return Err(fail(STAGE_FORK, e.raw_os_error().unwrap_or(0))),
    };
    sys::close(err_w);
    sys::close(ends.stdout);
    sys::close(ends.stderr);
    let mut buf = [0u8; 8];
    let n = sys::read(err_r, &mut buf);
    sys::close(err_r);
    if n == 8 {
        let stage = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        while sys::try_reap(pid).is_ok_and(|s| s.is_none()) {
            sys::poll_readable(&mut [], Duration::from_millis(1));
        }
        return Err(fail(stage, errno));
    }
    Ok(Leader {
        pid,
        pidfd: if plan.pidfd {
            sys::pidfd_open(pid)
        } else {
            None
        },
        exit: None,
        reaped: false,
    })
}

/// The server child: new group, stdio, only what it should hold, clean signals, then exec.
fn exec_server(plan: &Plan, ends: &Ends, err_r: RawFd, err_w: RawFd) -> ! {
    let die = |stage: u32| -> ! {
        let errno = sys::errno();
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&stage.to_ne_bytes());
        buf[4..].copy_from_slice(&errno.to_ne_bytes());
        sys::write_all(err_w, &buf);
        unsafe { libc::_exit(127) }
    };
    sys::new_process_group();
    // fd 0 is already /dev/null (guardian setup): a background-group reader of the tty would be
    // stopped by SIGTTIN (R5.4).
    if !sys::dup2(ends.stdout, 1) || !sys::dup2(ends.stderr, 2) {
        die(STAGE_FORK);
    }
    for fd in [ends.lifeline, ends.report, ends.stdout, ends.stderr, err_r] {
        sys::close(fd);
    }
    sys::reset_signals();
    if let Some(cwd) = &plan.cwd {
        if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
            die(STAGE_CHDIR);
        }
    }
    unsafe {
        libc::execve(
            plan.path.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        )
    };
    die(STAGE_EXEC)
}

/// The server's first process. Its pid is its process group id.
struct Leader {
    pid: Pid,
    pidfd: Option<RawFd>,
    /// Wait status once observed (without reaping).
    exit: Option<WaitStatus>,
    reaped: bool,
}

impl Leader {
    /// Observes the exit without reaping: the zombie keeps pid and pgid pinned.
    fn exited(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = sys::peek_exit(self.pid);
        }
        self.exit.is_some()
    }

    /// Signals the leader. Only while unreaped: then its pid is still ours.
    fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            let _ = sys::signal(Target::Process(self.pid), sig);
        }
    }

    /// Signals the leader's process group, whose id is the leader's pid: pinned while unreaped.
    fn signal_group(&self, sig: libc::c_int) {
        if !self.reaped {
            let _ = sys::signal(Target::Group(self.pid), sig);
        }
    }

    /// Reaps the leader, the very last step. Returns its wait status.
    fn reap(&mut self) -> Option<WaitStatus> {
        match sys::try_reap(self.pid) {
            Ok(Some(status)) => {
                self.reaped = true;
                if let Some(fd) = self.pidfd.take() {
                    sys::close(fd);
                }
                Some(status)
            }
            _ => None,
        }
    }

    /// Waits until the leader has exited or `timeout` passes, watching the pidfd when there is one.
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::new(STOP_POLL_MAX);
        while !self.exited() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // A pidfd wakes us at the exit itself; without one, poll with backoff.
            match self.pidfd {
                Some(fd) => sys::poll_readable(&mut [sys::pollfd(fd)], deadline - now),
                None => sys::poll_readable(&mut [], backoff.next().min(deadline - now)),
            };
        }
        true
    }
}

/// The guardian's view of the fixture's processes besides the leader: direct children (orphaned
/// workers and escapees, re-parented to us as subreaper) and the leader's group.
struct Tree {
    pgid: Pid,
    subreaper: bool,
    /// Escapees already signalled and counted (distinct pids; bounded, never allocated).
    seen: [Pid; 256],
    seen_len: usize,
    escapees: u32,
}

/// One look at the tree: how many live processes, besides the leader, we could find.
#[derive(Default)]
struct Census {
    live_children: u32,
    /// Dead children found (and reaped). Their own children were re-parented to us, maybe after
    /// the list was read, so a sweep that found any proves nothing about emptiness.
    dead_children: u32,
}

impl Tree {
    fn new(pgid: Pid, subreaper: bool) -> Tree {
        Tree {
            pgid,
            subreaper,
            seen: [0; 256],
            seen_len: 0,
            escapees: 0,
        }
    }

    /// Reaps dead direct children (never the leader), and sends `sig` to the live ones, and to the
    /// groups they lead. Safe by number: each is our unreaped child, so its pid is pinned.
    fn sweep(&mut self, sig: Option<libc::c_int>) -> Census {
        let mut census = Census::default();
        let me = sys::getpid();
        let pgid = self.pgid;
        let mut visit = |child: Pid| {
            if child == pgid {
                return; // the leader: observed and reaped only by `Leader`
            }
            match sys::proc_stat(child) {
                Some(stat) if stat.is_live() => {
                    census.live_children += 1;
                    if let Some(sig) = sig {
                        if stat.pgrp != pgid {
                            self.note_escapee(child);
                        }
                        let _ = sys::signal(Target::Process(child), sig);
                        if stat.pgrp == child {
                            let _ = sys::signal(Target::Group(child), sig);
                        }
                    }
                }
                _ => {
                    census.dead_children += 1;
                    let _ = sys::try_reap(child);
                }
            }
        };
        if !sys::for_each_child(me, &mut visit) {
            sys::for_each_process(|pid, stat| {
                if stat.ppid == me {
                    visit(pid);
                }
            });
        }
        census
    }

    /// Has every process of the fixture exited? The leader's exit is observed *before* the list of
    /// children is read: the kernel re-parents a process's children before it becomes a zombie,
    /// so an exited leader's children are all in that list. A sweep that met a dead child is not
    /// conclusive (its children may have come to us after the list was read): the caller polls
    /// again. With `sig`, the sweep also signals every live child.
    fn settled(&mut self, leader: &mut Leader, sig: Option<libc::c_int>) -> bool {
        let exited = leader.exited();
        let census = self.sweep(sig);
        exited && census.dead_children == 0 && self.is_empty(&census)
    }

    fn note_escapee(&mut self, pid: Pid) {
        if !self.seen[..self.seen_len].contains(&pid) && self.seen_len < self.seen.len() {
            self.seen[self.seen_len] = pid;
            self.seen_len += 1;
            self.escapees += 1;
        }
    }

    /// No live process of the fixture remains, the leader having exited (R2.1). On Linux the
    /// subreaper sees everything: a live descendant always has a live direct child of ours above
    /// it. Without a subreaper only the group can be checked: on Linux, no live process in /proc
    /// with its pgrp; on macOS `kill(-pgid, 0)` gives EPERM for an all-zombie group, ESRCH for a
    /// gone one (TEARDOWN.md Q2).
    fn is_empty(&self, census: &Census) -> bool {
        if census.live_children > 0 {
            return false;
        }
        if self.subreaper {
            return true;
        }
        let mut live = 0;
        if sys::for_each_process(|_, stat| {
            live += u32::from(stat.pgrp == self.pgid && stat.is_live())
        }) {
            return live == 0;
        }
        let probe = sys::group_probe(self.pgid);
        probe == libc::EPERM || probe == libc::ESRCH
    }

    /// Live members of the leader's group other than the leader (Linux: one /proc scan).
    fn count_group(&self) -> u32 {
        let mut n = 0;
        sys::for_each_process(|pid, stat| {
            if stat.pgrp == self.pgid && pid != self.pgid && stat.is_live() {
                n += 1;
            }
        });
        n
    }
}

/// Growing poll interval: 0.5 ms at first, ×1.5, capped.
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Backoff {
        Backoff {
            next: Duration::from_micros(500),
            cap,
        }
    }

    pub fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (now * 3 / 2).min(self.cap);
        now
    }
}

/// Idle until the lifeline closes: reap orphans as they die, and report once if the whole fixture
/// is gone on its own (so readiness can fail fast; a daemonising leader that exits 0 while its
/// daemon lives is not gone).
fn watch(leader: &mut Leader, tree: &mut Tree, ends: &Ends) {
    let mut backoff = Backoff::new(IDLE_POLL_MAX);
    let mut gone_reported = false;
    loop {
        if !gone_reported && tree.settled(leader, None) {
            let mut gone = Msg::new(Msg::GONE);
            gone.status = leader.exit.unwrap_or_default();
            report(ends, &gone);
            gone_reported = true;
        }
        let mut fds = [
            sys::pollfd(ends.lifeline),
            sys::pollfd(leader.pidfd.unwrap_or(-1)),
        ];
        if leader.exit.is_some() {
            fds[1].fd = -1; // an exited leader's pidfd stays readable
        }
        // The test process never writes to the lifeline: readable means EOF, the stop request.
        if sys::poll_readable(&mut fds, backoff.next()) > 0 && fds[0].revents != 0 {
            return;
        }
    }
}

/// The stop sequence (DESIGN.md): leader first; grace; group TERM + CONT; SIGKILL re-sent until no
/// live process remains; then, and only then, reap the leader.
fn stop(leader: &mut Leader, tree: &mut Tree, plan: &Plan) -> Msg {
    let started = Instant::now();
    let mut msg = Msg::new(Msg::STOPPED);
    if tree.subreaper {
        msg.detail |= Msg::F_SUBREAPER;
    }

    // 1. Leader first: nginx, gunicorn and PostgreSQL stop their workers when the master is asked.
    if !leader.exited() {
        leader.signal(plan.stop_signal);
        leader.wait_exit(plan.grace);
    }

    // 2. The rest of the group and the escapees, unless nothing else lives (then the /proc scan
    //    that counts the group is skipped too: a live descendant has a live child of ours above
    //    it). TERM, then CONT (a stopped member keeps TERM pending until continued, R2.3), and a
    //    short grace.
    let mut confirmed = tree.settled(leader, None);
    let members = if confirmed { 0 } else { tree.count_group() };
    if !confirmed {
        for sig in [libc::SIGTERM, libc::SIGCONT] {
            leader.signal_group(sig);
            tree.sweep(Some(sig));
        }
        confirmed = wait_empty(leader, tree, plan.grace.min(GROUP_GRACE_MAX), None);
    }

    // 3. Escalate: SIGKILL re-sent on every poll until confirmed or the deadline (R2.4).
    if !confirmed {
        msg.detail |= Msg::F_ESCALATED;
        confirmed = wait_empty(leader, tree, KILL_WAIT, Some(libc::SIGKILL));
    }
    if confirmed {
        msg.detail |= Msg::F_CONFIRMED;
    }

    // 4. Reap the leader last. Never signal by number after this.
    if let Some(status) = leader.reap() {
        msg.detail |= Msg::F_REAPED;
        msg.status = status;
    }
    tree.sweep(None); // reap whatever died since the last look
    msg.killed = members + tree.escapees;
    msg.escapees = tree.escapees;
    msg.elapsed_ns = started.elapsed().as_nanos() as u64;
    msg
}

/// Polls with backoff until the leader has exited and no other live process remains, or `timeout`
/// passes. With `kill`, sends it to the leader, its group and every live child on each poll.
fn wait_empty(
    leader: &mut Leader,
    tree: &mut Tree,
    timeout: Duration,
    kill: Option<libc::c_int>,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut backoff = Backoff::new(STOP_POLL_MAX);
    loop {
        if let Some(sig) = kill {
            leader.signal_group(sig);
            leader.signal(sig);
        }
        if tree.settled(leader, kill) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        sys::poll_readable(&mut [], backoff.next().min(deadline - now));
    }
}

/// The name of a failed stage, for error messages.
pub(crate) fn stage_name(stage: u32) -> &'static str {
    match stage {
        STAGE_CHDIR => "changing to the working directory",
        STAGE_EXEC => "exec",
        _ => "fork",
    }
}
