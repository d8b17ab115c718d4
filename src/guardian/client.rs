//! The test side of starting a guardian: through the zygote when it can, forked otherwise.
//!
//! The zygote is started on first use with `std::process::Command` (`posix_spawn` on glibc, so
//! the test process's memory is not copied) from `/proc/self/exe` on Linux (still the running
//! executable when a rebuild replaced the file), and must answer `HELLO` within
//! [`HANDSHAKE_TIMEOUT`]. Where it cannot (the executable is not ours to re-run: a cdylib loaded
//! by another program; a rebuild of another version), the guardian is forked from the test
//! process, and `StopReport::guardian` says so. `PROCESS_FIXTURE_FORCE=no-zygote` forces that
//! fallback, to test it.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::main_loop::{listener_array, Ends, MAX_LISTENERS};
use super::protocol::{Msg, Plan, PROTOCOL_VERSION};
use super::zygote::{HOOK, ZYGOTE_ARGV0, ZYGOTE_ENV};
use crate::deadline::Deadline;
use crate::sys::{self, Pid, Target};

/// How long a freshly started zygote may take to answer (an exec of the test binary: about a
/// millisecond; generous for a loaded machine).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the test process waits for its zygote at exit.
const AT_EXIT_WAIT: Duration = Duration::from_millis(50);
/// The longest the test process waits at exit for the guardians of fixtures never stopped (a
/// `static`), whatever their grace.
const AT_EXIT_STOP_MAX: Duration = Duration::from_secs(60);
/// How long the test side waits, after `STOPPED`, for the zygote to reap the guardian (it exits
/// right after the report: microseconds, but a loaded machine may not schedule the zygote).
pub(crate) const REAP_WAIT: Duration = Duration::from_secs(2);
/// How long a guardian may take to read its plan.
const PLAN_TIMEOUT: Duration = Duration::from_secs(30);

/// How the guardian was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Forked by the zygote (the exec'd test executable).
    Zygote,
    /// Forked from the test process (the fallback); its pid, our child, to reap.
    Forked(Pid),
}

/// A started guardian: the test side's end of its control socket.
pub(crate) struct Launched {
    pub ctl: OwnedFd,
    pub origin: Origin,
}

/// Starts a guardian for `plan`, handing it the write ends of the server's output pipes and,
/// for socket activation, the listening sockets (the test side keeps its own copies).
pub(crate) fn launch(
    plan: &Plan,
    stdout: OwnedFd,
    stderr: OwnedFd,
    listeners: &[RawFd],
) -> io::Result<Launched> {
    let listeners = listener_array(listeners).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket activation passes at most {MAX_LISTENERS} sockets"),
        )
    })?;
    std::hint::black_box(&HOOK); // keeps the zygote's constructor hook in every test binary
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    // A plain function, registered once; see `at_exit`.
    AT_EXIT.call_once(|| {
        sys::at_exit(at_exit);
    });
    reap_pending();
    let mut launched = None;
    if !crate::force::forced("no-zygote") {
        if let Some(ctl) = via_zygote(plan, &stdout, &stderr, &listeners)? {
            launched = Some(Launched {
                ctl,
                origin: Origin::Zygote,
            });
        }
    }
    let launched = match launched {
        Some(launched) => launched,
        None => forked(plan, stdout, stderr, listeners)?,
    };
    register(&launched, super::stop::stop_bound(plan.grace));
    Ok(launched)
}

/// A guardian whose fixture is not stopped yet, for the stop at exit (a fixture in a `static`
/// is never dropped).
struct Live {
    /// A copy of the test side's end of its control socket.
    ctl: OwnedFd,
    /// The socket's identity (device, inode), the same for every copy of that end.
    id: (u64, u64),
    origin: Origin,
    /// Its [`super::stop::stop_bound`].
    bound: Duration,
}

static LIVE: Mutex<Vec<Live>> = Mutex::new(Vec::new());

fn socket_id(fd: RawFd) -> Option<(u64, u64)> {
    sys::fd_identity(fd)
}

fn register(launched: &Launched, bound: Duration) {
    let (Ok(ctl), Some(id)) = (
        launched.ctl.try_clone(),
        socket_id(launched.ctl.as_raw_fd()),
    ) else {
        return; // out of fds: this fixture is only stopped by its guardian's watch at exit
    };
    let live = Live {
        ctl,
        id,
        origin: launched.origin,
        bound,
    };
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(live);
}

/// The test side is done with a guardian it sent STOP (`ctl`: any copy of its end of the control
/// socket): forgets it for the stop at exit and, for a guardian from the zygote, waits until
/// `deadline` at most for the zygote to have reaped it (the zygote closes its copy of the
/// guardian's end only then, so the hang-up on ours says so). A forked guardian is the caller's
/// to reap ([`reap_forked`]). Returns whether the guardian is known gone.
pub(crate) fn stopped(ctl: &OwnedFd, origin: Origin, deadline: Deadline) -> bool {
    if let Some(id) = socket_id(ctl.as_raw_fd()) {
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|l| l.id != id);
    }
    match origin {
        Origin::Zygote => wait_hung_up(&[ctl.as_raw_fd()], deadline),
        Origin::Forked(_) => false,
    }
}

/// Waits until the peer of every socket in `fds` has closed, or `deadline` passes. Asks for no
/// event, so unread reports do not wake it: a hang-up is always reported.
fn wait_hung_up(fds: &[RawFd], deadline: Deadline) -> bool {
    let mut open = fds.to_vec();
    let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(20));
    let mut wait = Duration::ZERO;
    loop {
        // A hang-up wakes the poll at once; the cap only bounds a wait a signal cut short.
        let closed = sys::hung_up(&open, wait);
        open.retain(|fd| !closed.contains(fd));
        if open.is_empty() {
            return true;
        }
        if deadline.passed() {
            return false;
        }
        wait = deadline
            .remaining_capped(Some(backoff.next()))
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_millis(1));
    }
}

/// At a normal exit of the test process: stop every fixture that was never stopped (a `static`),
/// wait (bounded by their worst stop time) until their guardians are gone, then let the zygote go.
extern "C" fn at_exit() {
    stop_live();
    close_zygote_at_exit();
}

fn stop_live() {
    let live = match LIVE.try_lock() {
        Ok(mut live) => std::mem::take(&mut *live),
        Err(std::sync::TryLockError::Poisoned(p)) => std::mem::take(&mut *p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    if live.is_empty() {
        return;
    }
    let stop = Msg::new(Msg::STOP);
    for l in &live {
        let _ = sys::set_nonblocking(l.ctl.as_raw_fd());
        let _ = sys::write_once(l.ctl.as_raw_fd(), stop.as_bytes());
    }
    let bound = live
        .iter()
        .map(|l| l.bound)
        .max()
        .unwrap_or_default()
        .min(AT_EXIT_STOP_MAX);
    let deadline = Deadline::after(bound);
    let fds: Vec<RawFd> = live.iter().map(|l| l.ctl.as_raw_fd()).collect();
    wait_hung_up(&fds, deadline);
    for l in &live {
        if let Origin::Forked(pid) = l.origin {
            reap_forked(pid, deadline);
        }
    }
}

/// The zygote of this process, started on first use; `Unavailable` once it failed to start.
enum State {
    NotStarted,
    Running { pid: Pid, sock: OwnedFd },
    Unavailable,
}

static ZYGOTE: Mutex<State> = Mutex::new(State::NotStarted);

fn zygote_state() -> MutexGuard<'static, State> {
    ZYGOTE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `Ok(None)`: no zygote can be had, fork instead.
fn via_zygote(
    plan: &Plan,
    stdout: &OwnedFd,
    stderr: &OwnedFd,
    listeners: &[RawFd; MAX_LISTENERS],
) -> io::Result<Option<OwnedFd>> {
    let (ours, theirs) = sys::socketpair(false)?;
    let mut fds = vec![theirs.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
    fds.extend(listeners.iter().filter(|&&fd| fd >= 0));
    if !send_fork(&fds, plan.dir.as_ref().map_or(&[], |d| d.as_bytes())) {
        return Ok(None);
    }
    drop(theirs);
    write_plan(&ours, &plan.encode())?;
    Ok(Some(ours))
}

/// Sends `FORK` with the guardian's fds to the zygote, then the fixture's directory (the zygote
/// removes it if the guardian is killed), starting (or restarting, once, if it died) the zygote
/// as needed. `false`: no zygote.
fn send_fork(fds: &[RawFd], dir: &[u8]) -> bool {
    let mut msg = Msg::new(Msg::FORK).as_bytes().to_vec();
    msg.extend_from_slice(dir);
    let mut state = zygote_state();
    for _ in 0..2 {
        if matches!(*state, State::NotStarted) {
            *state = start_zygote();
        }
        let State::Running { pid, sock } = &*state else {
            return false;
        };
        if sys::send_with_fds(sock.as_raw_fd(), &msg, fds).is_ok() {
            return true;
        }
        // The zygote is gone (killed): reap it if it is, and start another.
        let _ = sys::try_reap(*pid);
        *state = State::NotStarted;
    }
    false
}

fn start_zygote() -> State {
    match spawn_zygote() {
        Ok(state) => state,
        Err(e) => {
            log::info!(
                "process-fixture: no zygote ({e}); guardians are forked from the test process"
            );
            State::Unavailable
        }
    }
}

fn spawn_zygote() -> io::Result<State> {
    let (ours, theirs) = sys::socketpair(true)?;
    let token = format!("{PROTOCOL_VERSION}:{}", sys::getpid());
    let child = Command::new(current_exe()?)
        .arg0(ZYGOTE_ARGV0)
        .env(OsStr::from_bytes(ZYGOTE_ENV.to_bytes()), token)
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let pid = child.id() as Pid;
    drop(child); // not waited by std: reaped by pid, below or when it dies
    match handshake(&ours) {
        Ok(()) => Ok(State::Running { pid, sock: ours }),
        Err(e) => {
            // Our unreaped child: its pid is pinned, signalling it by number is safe.
            let _ = sys::signal(Target::Process(pid), libc::SIGKILL);
            reap_forked(pid, Deadline::after(Duration::from_secs(5)));
            Err(e)
        }
    }
}

/// At a normal exit of the test process, after [`stop_live`]: close our end of the zygote's
/// socket (the zygote exits once no guardian is left) and reap it, for a moment only, so that no
/// zombie is left to an init that does not reap. A zygote still serving a guardian that did not
/// finish in time is left to exit on its own once that guardian has stopped its server.
fn close_zygote_at_exit() {
    let mut state = match ZYGOTE.try_lock() {
        Ok(state) => state,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    if let State::Running { pid, sock } = std::mem::replace(&mut *state, State::Unavailable) {
        drop(sock);
        poll_reap(pid, Deadline::after(AT_EXIT_WAIT));
    }
}

/// The running test executable, to exec again (as the zygote, or as a shared server's keeper).
pub(crate) fn current_exe() -> io::Result<std::path::PathBuf> {
    if cfg!(target_os = "linux") {
        Ok("/proc/self/exe".into())
    } else {
        std::env::current_exe()
    }
}

/// Waits for the zygote's `HELLO`, with a deadline.
fn handshake(sock: &OwnedFd) -> io::Result<()> {
    let mut fds = [sys::pollfd(sock.as_raw_fd())];
    if sys::poll(&mut fds, Some(HANDSHAKE_TIMEOUT)) == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the zygote did not answer",
        ));
    }
    let mut buf = [0u8; Msg::SIZE];
    let mut unexpected = [-1; 4];
    let n = sys::recv_with_fds(sock.as_raw_fd(), &mut buf, &mut unexpected);
    unexpected
        .iter()
        .filter(|&&fd| fd >= 0)
        .for_each(|&fd| sys::close(fd));
    let hello = Msg::from_bytes(&buf);
    if n == Msg::SIZE as isize && hello.kind == Msg::HELLO && hello.detail == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the executable did not start as a zygote (not re-runnable, or another build)",
        ))
    }
}

/// Writes the plan to the guardian, bounded: a guardian that never reads must not hang spawn.
fn write_plan(ctl: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    sys::set_nonblocking(ctl.as_raw_fd())?;
    let deadline = Deadline::after(PLAN_TIMEOUT);
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = sys::write_once(ctl.as_raw_fd(), rest);
        if n > 0 {
            rest = &rest[n as usize..];
            continue;
        }
        let err = io::Error::last_os_error();
        if n == 0 || err.kind() != io::ErrorKind::WouldBlock {
            return Err(err);
        }
        if deadline.passed() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the guardian did not read its plan",
            ));
        }
        sys::poll_writable(ctl.as_raw_fd(), 100);
    }
    Ok(())
}

/// The fallback: fork the guardian from the test process, as the first generation did. The
/// child makes only async-signal-safe calls : the plan is already in its memory.
fn forked(
    plan: &Plan,
    stdout: OwnedFd,
    stderr: OwnedFd,
    listeners: [RawFd; MAX_LISTENERS],
) -> io::Result<Launched> {
    let (ours, theirs) = sys::socketpair(false)?;
    let dev_null = sys::dev_null()?;
    let test_pid = sys::getpid();
    let test_pgrp = sys::getpgrp();
    let ends = Ends {
        ctl: theirs.as_raw_fd(),
        stdout: stdout.as_raw_fd(),
        stderr: stderr.as_raw_fd(),
        test_watch: -1,
        listeners,
    };
    let gate = fork_gate();
    // SAFETY: the child runs only `forked_child`, which never returns and allocates nothing.
    let pid = unsafe { sys::fork() }?;
    if pid == 0 {
        forked_child(plan, ends, dev_null.as_raw_fd(), test_pid, test_pgrp);
    }
    drop(gate);
    Ok(Launched {
        ctl: ours,
        origin: Origin::Forked(pid),
    })
}

fn forked_child(plan: &Plan, mut ends: Ends, dev_null: i32, test_pid: Pid, test_pgrp: Pid) -> ! {
    if plan.pidfd {
        ends.test_watch = sys::exit_watch(test_pid).unwrap_or(-1);
    }
    super::main_loop::setup(&ends, Some(dev_null), test_pid, test_pgrp);
    if sys::getppid() != test_pid {
        sys::exit(0); // the test process is already gone
    }
    super::main_loop::run(plan, ends, 0)
}

/// Held around every fork of the test process and around short-lived sockets the test process
/// closes and expects gone at once (the port check): a guardian forked in between would hold a
/// copy until it closes its inherited fds, and the port would look busy for that instant.
pub(crate) fn fork_gate() -> MutexGuard<'static, ()> {
    static GATE: Mutex<()> = Mutex::new(());
    GATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Children of ours (forked guardians, the first process of a shared server's keeper) whose
/// exit was not yet seen when we were done with them.
static UNREAPED: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// Reaps a guardian forked from the test process once it has reported: it exits within
/// microseconds, so this polls until `deadline` at most, and one still running then is retried
/// at the next spawn or stop. Never holds a lock while it waits (one stuck guardian must not slow
/// the others). A guardian from the zygote is the zygote's to reap.
/// Returns its wait status when it was reaped here.
pub(crate) fn reap_forked(pid: Pid, deadline: Deadline) -> Option<sys::WaitStatus> {
    match poll_reap(pid, deadline) {
        Reaped::Exited(status) => Some(status),
        Reaped::NotOurs => None,
        Reaped::Running => {
            UNREAPED.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
            None
        }
    }
}

/// [`reap_forked`] for a child that must exit by itself by `deadline` (the first process of a
/// keeper): one still running then is killed (unreaped, its pid is still ours) and reaped later.
/// Its wait status if it exited in time.
pub(crate) fn reap_or_kill(pid: Pid, deadline: Deadline) -> Option<sys::WaitStatus> {
    match poll_reap(pid, deadline) {
        Reaped::Exited(status) => Some(status),
        Reaped::NotOurs => None,
        Reaped::Running => {
            let _ = sys::signal(Target::Process(pid), libc::SIGKILL);
            reap_forked(pid, Deadline::after(REAP_WAIT));
            None
        }
    }
}

enum Reaped {
    Exited(sys::WaitStatus),
    /// Not our child any more (auto-reaped under SIGCHLD=SIG_IGN).
    NotOurs,
    /// Still running at the deadline.
    Running,
}

/// `try_reap` of our child `pid`, polling until `deadline`.
fn poll_reap(pid: Pid, deadline: Deadline) -> Reaped {
    let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(5));
    loop {
        match sys::try_reap(pid) {
            Ok(Some(status)) => return Reaped::Exited(status),
            Err(_) => return Reaped::NotOurs,
            Ok(None) if deadline.passed() => return Reaped::Running,
            Ok(None) => {
                sys::poll(&mut [], deadline.remaining_capped(Some(backoff.next())));
            }
        }
    }
}

/// Retries the children of ours that had not exited when we were done with them.
pub(crate) fn reap_pending() {
    let mut pending = UNREAPED.lock().unwrap_or_else(|e| e.into_inner());
    pending.retain(|&p| matches!(sys::try_reap(p), Ok(None)));
}
