//! The port watch, where `listen()` events are off (an unprivileged guardian's default): the
//! guardian looks for the fixture's port itself and reports its listener as a `LISTENING`
//! event would. The test process then sleeps through the wait, woken by the report, instead of
//! waking every millisecond or two to look: the looks cost what they cost anywhere (a sock_diag
//! lookup by address and a timed wake-up, ≈ 25 µs), here, in a process that is waiting anyway.
//!
//! A listener is reported only once a process of the fixture is seen holding it (its fds in
//! `/proc`): a stranger's is never reported; the test side's own looks, now and then, are
//! what finds a stranger. Plain syscalls on the stack only (a forked guardian may not
//! allocate).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::protocol::Msg;
use crate::deadline::{Backoff, Deadline};
use crate::sys::{self, Pid};

/// The first look, and the longest time between two: the notice latency is spread over it.
const FIRST_LOOK: Duration = Duration::from_micros(250);
const LOOK_MAX: Duration = Duration::from_millis(1);
/// Processes of the tree whose fds are read for the listener, at most (a fork storm must not
/// make one look take long).
const MAX_HOLDERS: usize = 64;

pub(super) struct PortWatch {
    scan: sys::ListenerScan,
    target: SocketAddr,
    backoff: Backoff,
    next: Deadline,
}

impl PortWatch {
    /// A watch of 127.0.0.1:`port`, or `None` when sock_diag cannot be asked here.
    pub(super) fn new(port: u16) -> Option<PortWatch> {
        let scan = sys::ListenerScan::new();
        scan.is_open().then(|| PortWatch {
            scan,
            target: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            backoff: Backoff::starting(FIRST_LOOK, LOOK_MAX),
            next: Deadline::after(FIRST_LOOK),
        })
    }

    /// How long until the next look is due.
    pub(super) fn due_in(&self) -> Duration {
        self.next.remaining().unwrap_or(Duration::ZERO)
    }

    /// Looks, when a look is due: the `LISTENING` report once a process of the tree under
    /// `guardian` holds the listener. `Err(())`: sock_diag stopped answering; stop watching.
    pub(super) fn look(&mut self, guardian: Pid) -> Result<Option<Msg>, ()> {
        if !self.next.passed() {
            return Ok(None);
        }
        self.next = Deadline::after(self.backoff.next());
        let Some(found) = self.scan.listener_on(self.target) else {
            return Err(());
        };
        let Some(listener) = found else {
            return Ok(None);
        };
        Ok(holder(guardian, listener.inode).map(|pid| report(pid, listener.addr)))
    }
}

/// The process of the tree under `guardian` that holds socket `inode`: its descendants, depth
/// first, at most [`MAX_HOLDERS`] of them.
fn holder(guardian: Pid, inode: u64) -> Option<Pid> {
    let mut stack = [0 as Pid; MAX_HOLDERS];
    let mut len = 0;
    let mut visited = 0;
    let push = |stack: &mut [Pid; MAX_HOLDERS], len: &mut usize, pid: Pid| {
        if *len < MAX_HOLDERS {
            stack[*len] = pid;
            *len += 1;
        }
    };
    sys::for_each_child(guardian, |child| push(&mut stack, &mut len, child));
    while len > 0 && visited < MAX_HOLDERS {
        len -= 1;
        let pid = stack[len];
        visited += 1;
        if sys::holds_socket(pid, inode) {
            return Some(pid);
        }
        sys::for_each_child(pid, |child| push(&mut stack, &mut len, child));
    }
    None
}

/// `LISTENING`, as the `listen()` events send it.
fn report(pid: Pid, addr: SocketAddr) -> Msg {
    let mut msg = Msg::new(Msg::LISTENING);
    msg.pid = pid;
    match addr {
        SocketAddr::V4(a) => {
            msg.detail = libc::AF_INET as u32;
            msg.addr[..4].copy_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            msg.detail = libc::AF_INET6 as u32;
            msg.addr = a.ip().octets();
        }
    }
    msg.port = u32::from(addr.port());
    msg
}
