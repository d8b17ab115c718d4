//! `listen()` as an event (Linux): the server's child installs a seccomp filter before exec that
//! turns each `listen()` of the server's processes into a user notification for the guardian.
//! The guardian copies the socket (`pidfd_getfd`), lets the call go on
//! unchanged (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`), waits for the socket to be listening, and
//! reports its address: readiness of a port is known the moment it exists, with no polling and
//! no connection to the server, and a listener of another process is never taken for ours.
//!
//! Costs and limits: every syscall of the server runs a 7-instruction BPF filter; a `listen()`
//! waits a few microseconds for the guardian; if the guardian dies, later `listen()` calls fail
//! with ENOSYS (the server then dies with it anyway). Without CAP_SYS_ADMIN the filter needs
//! no_new_privs, which stops setuid programs the server runs from gaining privileges: that is why
//! it is only on by default for a privileged guardian (see `Builder::listen_events`).

use std::os::fd::RawFd;
use std::time::Duration;

use crate::deadline::Deadline;

use super::protocol::Msg;
use crate::sys::{self, Pid};

/// How long a `listen()` that was let through may take to show as listening.
const SETTLE: Duration = Duration::from_millis(20);
/// Reports sent at most (a server opening thousands of listeners must not flood the socket).
const MAX_REPORTS: u32 = 256;

pub(super) struct ListenWatch {
    fd: RawFd,
    reported: u32,
}

impl ListenWatch {
    pub(super) fn new(fd: RawFd) -> ListenWatch {
        ListenWatch { fd, reported: 0 }
    }

    pub(super) fn fd(&self) -> RawFd {
        self.fd
    }

    pub(super) fn close(self) {
        sys::close(self.fd);
    }

    /// Takes one pending `listen()`, lets it proceed, and returns the `LISTENING` report for a
    /// TCP socket that is then listening.
    pub(super) fn handle(&mut self) -> Option<Msg> {
        let call = sys::receive_listen_call(self.fd)?;
        let (process, copy) = copy_socket(call.tid, call.fd);
        // The copy names the socket the caller passed only if the call is still pending.
        let valid = sys::listen_call_valid(self.fd, call.id);
        sys::continue_listen_call(self.fd, call.id);
        let sock = copy?;
        let msg = valid.then(|| listening_report(sock, process)).flatten();
        sys::close(sock);
        if msg.is_some() {
            self.reported += 1;
        }
        msg.filter(|_| self.reported <= MAX_REPORTS)
    }
}

/// The process of thread `tid` and a copy of its fd `fd`. A pidfd names a process, so for a
/// thread that does not lead its process (`pidfd_open` refuses it) look up the process first.
fn copy_socket(tid: Pid, fd: RawFd) -> (Pid, Option<RawFd>) {
    let (process, pidfd) = match sys::pidfd_open(tid) {
        Some(pidfd) => (tid, Some(pidfd)),
        None => {
            let process = sys::thread_group(tid).unwrap_or(tid);
            (process, sys::pidfd_open(process))
        }
    };
    let copy = pidfd.and_then(|p| {
        let copy = sys::pidfd_getfd(p, fd);
        sys::close(p);
        copy
    });
    (process, copy)
}

/// Waits (bounded) until the let-through `listen()` has taken effect, then describes the socket.
/// The caller has to be scheduled to finish its call: yield first, then sleep a growing while (a
/// busy machine must not turn this into a spin that keeps the caller from running).
fn listening_report(sock: RawFd, pid: Pid) -> Option<Msg> {
    let deadline = Deadline::after(SETTLE);
    let mut pause = Duration::from_micros(10);
    let mut tries = 0;
    while !sys::is_listening(sock) {
        if deadline.passed() {
            return None; // the call failed (or is still blocked): nothing listens
        }
        if tries < 3 {
            sys::yield_now();
        } else {
            sys::poll(&mut [], deadline.remaining_capped(Some(pause)));
            pause = (pause * 2).min(Duration::from_millis(1));
        }
        tries += 1;
    }
    let (family, addr, port) = sys::tcp_local_address(sock)?;
    let mut msg = Msg::new(Msg::LISTENING);
    msg.pid = pid;
    msg.detail = u32::from(family);
    msg.addr = addr;
    msg.port = u32::from(port);
    Some(msg)
}
