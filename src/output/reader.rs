//! The monitor thread: it alone owns the fds it reads, polls them, and delivers what it reads to
//! the shared state. Separate from the facade because it is the only code that runs on that
//! thread.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::guardian::Report;
use crate::sys;

use super::Shared;

/// How long shutdown keeps draining a pipe that something still writes to.
const DRAIN_LIMIT: Duration = Duration::from_millis(50);

/// Indexes of the monitor's sources.
const STDOUT: usize = 0;
const STDERR: usize = 1;
const CTL: usize = 2;
const NOTIFY: usize = 3;

/// The monitor thread's side: it alone owns and closes these fds.
pub(super) struct Reader {
    pub(super) shared: Arc<Shared>,
    /// stdout, stderr, control socket, notify socket; `None` once at EOF (or absent).
    pub(super) fds: [Option<OwnedFd>; 4],
    pub(super) guardian_exit: Option<OwnedFd>,
}

impl Reader {
    pub(super) fn run(mut self, shutdown: OwnedFd) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, |f| f.as_raw_fd());
            let mut polls = [
                sys::pollfd(raw(&self.fds[STDOUT])),
                sys::pollfd(raw(&self.fds[STDERR])),
                sys::pollfd(raw(&self.fds[CTL])),
                sys::pollfd(raw(&self.fds[NOTIFY])),
                sys::pollfd(shutdown.as_raw_fd()),
                sys::pollfd(raw(&self.guardian_exit)),
            ];
            sys::poll(&mut polls, None);
            if polls[4].revents != 0 {
                self.drain_all(&mut buf, Deadline::after(DRAIN_LIMIT));
                break;
            }
            for (i, poll) in polls[..4].iter().enumerate() {
                if poll.revents != 0 {
                    self.drain(i, &mut buf, None);
                }
            }
            if polls[5].revents != 0 {
                // The guardian (our child) exited: read what it wrote, then it is closed.
                self.guardian_exit = None;
                self.drain(CTL, &mut buf, None);
                self.mark_closed();
                self.kill_orphaned_cgroup();
            }
        }
        let mut state = self.shared.lock();
        state.done = true;
        self.shared.changed.notify_all();
    }

    /// A guardian we forked died before its stop finished: nobody else is left to kill its
    /// server's cgroup (with the zygote, the zygote does).
    fn kill_orphaned_cgroup(&self) {
        let orphaned = {
            let state = self.shared.lock();
            match state.spawn {
                Some(Report::Spawned {
                    guardian,
                    cgroup: Some(start),
                    ..
                }) if state.stopped.is_none() => Some(crate::cgroup::Named { guardian, start }),
                _ => None,
            }
        };
        if let Some(named) = orphaned {
            named.kill_orphaned();
        }
    }

    fn mark_closed(&self) {
        let mut state = self.shared.lock();
        state.guardian_closed = true;
        state.events += 1;
        self.shared.changed.notify_all();
    }

    fn drain_all(&mut self, buf: &mut [u8], deadline: Deadline) {
        for i in 0..self.fds.len() {
            self.drain(i, buf, Some(deadline));
        }
    }

    /// Reads fd `i` until it would block (or EOF, or the deadline).
    fn drain(&mut self, i: usize, buf: &mut [u8], deadline: Option<Deadline>) {
        while let Some(fd) = &self.fds[i] {
            let n = sys::read(fd.as_raw_fd(), buf);
            if n > 0 {
                self.deliver(i, &buf[..n as usize]);
                if deadline.is_some_and(|d| d.passed()) {
                    return;
                }
            } else if n == -1 && sys::errno() == libc::EAGAIN {
                return;
            } else if i == NOTIFY && n == 0 {
                continue; // an empty datagram, not EOF
            } else {
                self.fds[i] = None; // EOF or error: close our end
                if i == CTL {
                    self.mark_closed();
                }
            }
        }
    }

    fn deliver(&self, i: usize, bytes: &[u8]) {
        let mut state = self.shared.lock();
        let before = state.events;
        match i {
            STDOUT => state.push(false, bytes),
            STDERR => state.push(true, bytes),
            CTL => state.push_report(bytes),
            _ => state.push_notify(bytes),
        }
        if state.events != before {
            self.shared.changed.notify_all();
        }
    }
}
