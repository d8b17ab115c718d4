//! Starting the server leader, in the guardian: fork, set up the child, exec.
//!
//! Exec failure comes back over a close-on-exec pipe, as std does it: EOF means exec succeeded.
//! The guardian is single-threaded, so its child may do anything between fork and exec; it still
//! makes only plain syscalls, with everything prepared in the [`Plan`] beforehand.
//!
//! With a cgroup, the child starts inside it (`clone3` with `CLONE_INTO_CGROUP`) when the
//! guardian was forked by the zygote: a join by `cgroup.procs` would wait out an RCU grace
//! period in the kernel's migration lock after any quiet moment (6–15 ms per spawn, measured).
//! Off x86-64 that child gets a copy of the guardian's memory, which for a small guardian costs
//! little, and for one forked from a large test process would cost a lot: there, and on a kernel
//! or under a seccomp profile without `clone3`, the child's first act is to join it, writing
//! `0`, itself, to its `cgroup.procs`. Nothing of the server has run yet, so nothing can be
//! outside either way. The v1 memory cgroup, where the plan has one, is always joined so.

use std::os::fd::{IntoRawFd, RawFd};

use super::listen::ListenWatch;
use super::main_loop::Ends;
use super::protocol::{ListenEvents, Msg, Plan, STAGE_CHDIR, STAGE_CREDENTIALS, STAGE_EXEC};
use super::protocol::{STAGE_CGROUP, STAGE_FORK, STAGE_SETUP};
use crate::sys::{self, Cgroup, Pid};

/// Starts the leader, in the cgroups given (its own; the v1 memory one); `small`: the guardian
/// was forked by the zygote. Returns its pid and, when asked for and available, the seccomp
/// listener that reports its `listen()` calls; or the `SPAWN_FAILED` report.
pub(super) fn spawn_leader(
    plan: &Plan,
    ends: &Ends,
    cgroups: [Option<&Cgroup>; 2],
    small: bool,
) -> Result<(Pid, Option<ListenWatch>), Msg> {
    let procs = cgroups.map(|cg| cg.map(Cgroup::procs));
    let into = cgroups[0].filter(|_| small).map(Cgroup::dir_fd);
    let started = if procs.iter().flatten().any(|&fd| fd < 0) {
        Err(failed(STAGE_CGROUP, sys::errno()))
    } else {
        spawn_in(plan, ends, procs, (into, small))
    };
    for &fd in procs.iter().flatten().filter(|&&fd| fd >= 0) {
        sys::close(fd);
    }
    started
}

/// `spawn_leader` once the cgroups' `cgroup.procs` files are open; `into`: the server's own
/// cgroup's directory, to start the child in; `small` as there.
fn spawn_in(
    plan: &Plan,
    ends: &Ends,
    procs: [Option<RawFd>; 2],
    (into, small): (Option<RawFd>, bool),
) -> Result<(Pid, Option<ListenWatch>), Msg> {
    let (err_r, err_w) = raw_pair(sys::pipe()).map_err(|e| failed(STAGE_FORK, e))?;
    let notify = match plan.listen {
        ListenEvents::On { .. } if sys::LISTEN_EVENTS => raw_pair(sys::socketpair(true)).ok(),
        _ => None,
    };
    let guardian = sys::getpid();
    let child_notify = notify.map(|(_, child)| child);
    let inside = into.and_then(|dir| {
        let mut child = || {
            exec_server(
                plan,
                ends,
                guardian,
                (err_w, [None, procs[1]]),
                (child_notify, small),
            )
        };
        // SAFETY: the guardian is single-threaded; the child runs on its own copy of our
        // memory and makes plain syscalls until exec.
        unsafe { sys::spawn_in_cgroup(dir, &mut child) }.ok()
    });
    let mut child = || exec_server(plan, ends, guardian, (err_w, procs), (child_notify, small));
    // SAFETY: the guardian is single-threaded with no signal handler; the child makes plain
    // syscalls on its own stack until exec (its failure goes through the pipe, not our memory).
    let spawned = inside.map_or_else(|| unsafe { sys::spawn_shared(&mut child) }, Ok);
    let pid = match spawned {
        Ok(pid) => pid,
        Err(e) => {
            sys::close(err_r);
            sys::close(err_w);
            return Err(failed(STAGE_FORK, e.raw_os_error().unwrap_or(0)));
        }
    };
    sys::close(err_w);
    sys::close(ends.stdout);
    sys::close(ends.stderr);
    let listen = notify.and_then(|(ours, child)| {
        sys::close(child);
        let watch = receive_notify_fd(ours);
        sys::close(ours);
        watch
    });
    let mut buf = [0u8; 8];
    let complete = sys::read_exact(err_r, &mut buf);
    sys::close(err_r);
    if !complete {
        return Ok((pid, listen)); // EOF: exec succeeded
    }
    // The child failed before exec and exits at once: reap it (bounded by its exit).
    while sys::try_reap(pid).is_ok_and(|s| s.is_none()) {
        sys::poll(&mut [], Some(std::time::Duration::from_micros(200)));
    }
    let stage = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Err(failed(stage, errno))
}

fn raw_pair(
    pair: std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
) -> Result<(RawFd, RawFd), i32> {
    pair.map(|(a, b)| (a.into_raw_fd(), b.into_raw_fd()))
        .map_err(|e| e.raw_os_error().unwrap_or(0))
}

pub(super) fn failed(stage: u32, errno: i32) -> Msg {
    let mut m = Msg::new(Msg::SPAWN_FAILED);
    m.detail = stage;
    m.errno = errno;
    m.guardian = sys::getpid();
    m
}

/// The seccomp listener fd the child sends before exec, if it could install the filter.
fn receive_notify_fd(sock: RawFd) -> Option<ListenWatch> {
    let mut byte = [0u8; 1];
    let mut fds = [-1; 4];
    let n = sys::recv_with_fds(sock, &mut byte, &mut fds);
    for &extra in &fds[1..] {
        if extra >= 0 {
            sys::close(extra);
        }
    }
    (n > 0 && fds[0] >= 0).then(|| ListenWatch::new(fds[0]))
}

/// The server child: its cgroup, new group, stdio, clean signals, the listen filter, user,
/// directory, death with the guardian, the listening sockets of socket activation, exec.
/// Returns only on failure, with the exit code.
fn exec_server(
    plan: &Plan,
    ends: &Ends,
    guardian: Pid,
    (err_w, procs): (RawFd, [Option<RawFd>; 2]),
    (notify, small): (Option<RawFd>, bool),
) -> i32 {
    // First, before anything can fork: every process the server ever makes starts inside.
    if procs.iter().flatten().any(|&fd| !sys::join_cgroup(fd)) {
        return die(err_w, STAGE_CGROUP, sys::errno());
    }
    sys::new_process_group();
    // fd 0 is /dev/null already (guardian setup): a background-group reader of the tty would be
    // stopped by SIGTTIN.
    if !sys::dup2(ends.stdout, 1) || !sys::dup2(ends.stderr, 2) {
        return die(err_w, STAGE_SETUP, sys::errno());
    }
    // A zygote guardian ignores exactly STRAY_SIGNALS; a forked one whatever the test process did.
    sys::reset_signals(small.then_some(&super::main_loop::STRAY_SIGNALS[..]));
    if let (Some(sock), ListenEvents::On { no_new_privs }) = (notify, plan.listen) {
        // Before dropping privileges: as root no no_new_privs is needed.
        if let Some(fd) = sys::install_listen_filter(no_new_privs) {
            let _ = sys::send_with_fds(sock, b"n", &[fd]);
            sys::close(fd);
        }
        sys::close(sock);
    }
    if !sys::set_credentials(plan.uid, plan.gid, plan.groups.as_deref()) {
        return die(err_w, STAGE_CREDENTIALS, sys::errno());
    }
    if let Some(cwd) = &plan.cwd {
        if !sys::chdir(cwd) {
            return die(err_w, STAGE_CHDIR, sys::errno());
        }
    }
    // After the credentials change, which clears it: if the guardian is SIGKILLed, the leader
    // dies with it (Linux). The guardian may already be gone: then do not start at all.
    sys::set_parent_death_signal(libc::SIGKILL);
    if sys::getppid() != guardian {
        return 127;
    }
    let listeners = ends.listeners();
    let err_w = match place_listeners(listeners, err_w) {
        Ok(moved) => moved,
        Err(errno) => return die(err_w, STAGE_SETUP, errno),
    };
    // Anything inherited by mistake goes at exec (the error pipe stays open until then).
    sys::cloexec_from(3 + listeners.len() as RawFd);
    let mut env = [std::ptr::null::<libc::c_char>(); ENV_MAX];
    let mut listen_pid = sys::StackPath::new();
    let Some(envp) = exec_env(plan, &mut env, &mut listen_pid) else {
        return die(err_w, STAGE_SETUP, libc::E2BIG);
    };
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to C strings, alive until
    // exec: the plan's (the guardian that holds it is suspended until then), or a copy of its
    // environment on this stack with one entry pointing to `listen_pid`, also on this stack.
    unsafe { sys::execve(&plan.path, plan.argv_ptrs(), envp) };
    die(err_w, STAGE_EXEC, sys::errno())
}

/// The environment to exec with: the plan's, or with socket activation a copy of it in `env`
/// whose `LISTEN_PID=` entry points to `listen_pid`, filled in with this process's pid. `None`:
/// more entries than `env` holds.
fn exec_env(
    plan: &Plan,
    env: &mut [*const libc::c_char; ENV_MAX],
    listen_pid: &mut sys::StackPath,
) -> Option<*const *const libc::c_char> {
    let Some(slot) = plan.listen_pid_slot else {
        return Some(plan.envp_ptrs());
    };
    let given = plan.envp_slice();
    if given.len() > env.len() {
        return None;
    }
    env[..given.len()].copy_from_slice(given);
    listen_pid.push(b"LISTEN_PID=").push_pid(sys::getpid());
    env[slot] = listen_pid.as_cstr().as_ptr();
    Some(env.as_ptr())
}

/// The most environment entries a socket-activated server's child can copy to fill in
/// `LISTEN_PID` (its stack holds the copy).
const ENV_MAX: usize = 1024;

/// Reports the failed `stage` and `errno` through the exec-status pipe; the child's exit code.
fn die(err_w: RawFd, stage: u32, errno: i32) -> i32 {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&stage.to_ne_bytes());
    buf[4..].copy_from_slice(&errno.to_ne_bytes());
    sys::write_all(err_w, &buf);
    127
}

/// Socket activation: puts `listeners` at fds 3, 4, … (without close-on-exec), first moving
/// them and the exec-status pipe `err_w` above that range, so that no `dup2` overwrites one
/// still needed. Returns where `err_w` is now, or the errno.
fn place_listeners(listeners: &[RawFd], err_w: RawFd) -> Result<RawFd, i32> {
    if listeners.is_empty() {
        return Ok(err_w);
    }
    let above = 3 + listeners.len() as RawFd;
    let moved_err = sys::dup_above(err_w, above);
    let mut moved = [-1; super::main_loop::MAX_LISTENERS];
    for (slot, &fd) in moved.iter_mut().zip(listeners) {
        *slot = sys::dup_above(fd, above);
    }
    if moved_err < 0 || moved[..listeners.len()].iter().any(|&fd| fd < 0) {
        return Err(sys::errno());
    }
    for (i, &fd) in moved[..listeners.len()].iter().enumerate() {
        if !sys::dup2(fd, 3 + i as RawFd) {
            return Err(sys::errno());
        }
    }
    Ok(moved_err)
}
