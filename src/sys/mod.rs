//! Raw platform calls, and the only place that sends signals.
//!
//! One file per mechanism: those every Unix has here (`fd`, `fd_passing`, `signal`, `wait`,
//! `process`, `spawn`, `user`, `locks`, `peer`,
//! `statvfs`), the rest in `linux/` and `macos/` (subreaper, pidfd or
//! kqueue, `/proc` or libproc, seccomp, sock_diag), which give the same names. This file is the
//! facade: the list below is everything the rest of the crate may use.
//!
//! Everything the guardian calls is a plain syscall wrapper: no allocation, no locks, no `log`, no
//! `std::env`. The guardian may be a fork of the multithreaded test process without exec (the
//! fallback when the test executable cannot be re-run), and then only async-signal-safe calls
//! are allowed: another thread may have held the allocator's lock at the fork. Paths are
//! formatted into stack buffers (`StackPath`). Functions the test side alone uses say so.

use std::io;

mod fd;
mod fd_passing;
mod locks;
mod net;
mod no_alloc;
mod peer;
mod process;
mod signal;
mod spawn;
mod statvfs;
mod user;
mod wait;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "linux")]
mod rmtree;
#[cfg(target_os = "linux")]
pub(crate) use rmtree::remove_tree;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("process-fixture supports Linux and macOS");

pub(crate) use fd::{
    cloexec_from, close, close_all_except, dev_null, dup2, dup_above, dup_above_stdio, fd_identity,
    hung_up, pipe, poll, poll_writable, pollfd, read, read_exact, set_nonblocking, socketpair,
    write_all, write_once,
};
pub(crate) use fd_passing::{recv_with_fds, send_with_fds, MAX_FDS};
pub(crate) use locks::{
    can_create_in, flock_holder, is_regular_file, open_lock_file, try_lock_exclusive,
};
pub(crate) use net::{ListenCall, TcpListener};
pub(crate) use no_alloc::{parse_pid, parse_u64, StackPath};
pub(crate) use peer::peer_uid;
pub(crate) use process::{
    at_exit, chdir, children_usage, descendants, exit, getenv, getpgid, getpgrp, getpid, getppid,
    new_process_group, raise_fd_limit, yield_now, ProcStat,
};
pub(crate) use signal::{
    group_probe, protect, reset_signals, set_ignored, signal, Target, MAX_SIGNAL,
};
pub(crate) use spawn::{execve, fork, spawn_in_cgroup, spawn_shared};
pub(crate) use statvfs::free_bytes;
pub(crate) use user::{effective_uid, group_list, lookup_user, set_credentials};
pub(crate) use wait::{peek_exit, reap_any, try_reap, WaitStatus};

// The platform's mechanisms, the same names on both.
pub(crate) use os::{
    become_subreaper, command_line, continue_listen_call, enable_controller, exit_watch,
    for_each_child, for_each_own_child, for_each_process, holds_socket, ignores_signal,
    install_listen_filter, is_listening, join_cgroup, listen_call_valid, pidfd_getfd, pidfd_open,
    pollfd_changed, privileged, proc_stat, receive_listen_call, set_name, set_parent_death_signal,
    socket_inodes, socket_owner, tcp_listener_pid, tcp_listeners, tcp_local_address, thread_group,
    Cgroup, ChildEvents, ListenerScan, LISTEN_EVENTS,
};

/// A process id.
pub(crate) type Pid = libc::pid_t;

/// The calling thread's `errno`.
pub(crate) fn errno() -> i32 {
    // `last_os_error` only reads errno; it does not allocate.
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `-1` as the error it reports (errno), anything else as success.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries a call that failed with `EINTR`.
fn retry(mut f: impl FnMut() -> libc::c_int) -> libc::c_int {
    loop {
        let ret = f();
        if ret != -1 || errno() != libc::EINTR {
            return ret;
        }
    }
}
