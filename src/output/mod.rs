//! Output capture and the guardian's reports, read by one monitor thread per fixture.
//!
//! The monitor owns the read ends of the server's stdout and stderr pipes, of the guardian's
//! control socket and, for `Ready::sd_notify()`, of the fixture's private `NOTIFY_SOCKET`, and
//! reads them from the first byte, so a chatty server never blocks on a full pipe. Each stream keeps its last [`OUTPUT_CAP`] bytes. Readiness line patterns are matched here,
//! as each line arrives, so no line is missed however fast the server writes; a named group
//! `port` (or `port_NAME`) in one captures the port the server chose.
//!
//! Teardown never waits for EOF: a grandchild may hold a pipe open forever, and a child the test
//! process forks without exec holds copies of every fd. Shutdown is an explicit message (a byte on
//! a pipe of our own, not its closing); the thread then drains what is buffered, for a bounded
//! time, and exits, closing the fds it alone owns (each fd has one owner). Joining it is bounded
//! too.

mod reader;
mod state;
mod stream;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::sys;

use reader::Reader;
pub(crate) use state::{Listener, State};
pub(crate) use stream::{Echo, LineWatch, Which};

/// Bytes of each stream kept in memory (the most recent ones): 1 MiB.
pub const OUTPUT_CAP: usize = 1 << 20;
/// How long shutdown waits for the thread to finish (it needs at most `DRAIN_LIMIT`).
const JOIN_LIMIT: Duration = Duration::from_secs(2);

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not make Drop panic: take the data as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The handle to a fixture's monitor thread.
pub(crate) struct Monitor {
    shared: Arc<Shared>,
    shutdown: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

/// The fds a monitor reads: the server's output, the guardian's reports, the fixture's
/// sd_notify socket, and, for a guardian forked from the test process, its pidfd (readable when
/// it exits).
pub(crate) struct Sources {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub ctl: OwnedFd,
    pub notify: Option<OwnedFd>,
    pub guardian_exit: Option<OwnedFd>,
}

impl Monitor {
    /// Starts the thread. `echo`: a prefix to print each line of output with.
    pub(crate) fn start(
        sources: Sources,
        watches: Vec<LineWatch>,
        echo: Option<Echo>,
    ) -> io::Result<Monitor> {
        let Sources {
            stdout,
            stderr,
            ctl,
            notify,
            guardian_exit,
        } = sources;
        let state = State {
            matched: vec![false; watches.len()],
            watches,
            echo,
            ..State::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
        });
        let (shutdown_r, shutdown_w) = sys::pipe()?;
        for fd in [&stdout, &stderr, &ctl].into_iter().chain(notify.as_ref()) {
            sys::set_nonblocking(fd.as_raw_fd())?;
        }
        let reader = Reader {
            shared: shared.clone(),
            fds: [Some(stdout), Some(stderr), Some(ctl), notify],
            guardian_exit,
        };
        // Spawned from the test's thread: it inherits the harness's output capture (echo).
        let thread = std::thread::Builder::new()
            .name("process-fixture-monitor".into())
            .spawn(move || reader.run(shutdown_r))?;
        Ok(Monitor {
            shared,
            shutdown: Some(shutdown_w),
            thread: Some(thread),
        })
    }

    /// A handle on the state that outlives a borrow of the monitor (a blocking task of the
    /// async API waits on it).
    pub(crate) fn view(&self) -> View {
        View(self.shared.clone())
    }

    /// Runs `f` on the current state.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.lock())
    }

    /// Waits until `f` gives `Some`, or `deadline` passes (then `None`).
    pub(crate) fn wait_for<T>(
        &self,
        deadline: Deadline,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        wait_on(&self.shared, deadline, |s| f(s))
    }

    /// Waits for the next event (a matched line, a report, output for a waiter) or `timeout`.
    pub(crate) fn wait_event(&self, since: u64, timeout: Option<Duration>) -> u64 {
        self.view().wait_event(since, timeout)
    }

    pub(crate) fn events(&self) -> u64 {
        self.shared.lock().events
    }

    /// Stops the thread: it drains what is buffered (bounded) and exits. Never waits for EOF,
    /// and the wait for the thread is bounded too.
    pub(crate) fn shutdown(&mut self) {
        if let Some(fd) = self.shutdown.take() {
            // A message, not the closing: a forked child may hold a copy of this end.
            sys::write_all(fd.as_raw_fd(), b"x");
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        let finished = wait_on(&self.shared, Deadline::after(JOIN_LIMIT), |s| {
            s.done.then_some(())
        });
        if finished.is_none() {
            log::warn!("process-fixture: the output monitor did not finish in {JOIN_LIMIT:?}; left to finish alone");
            return;
        }
        if thread.join().is_err() {
            log::warn!("process-fixture: the output monitor thread panicked");
        }
    }
}

/// A shared handle on a monitor's state.
#[derive(Clone)]
pub(crate) struct View(Arc<Shared>);

impl View {
    /// Runs `f` on the current state, mutably.
    pub(crate) fn with_mut<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock())
    }

    pub(crate) fn events(&self) -> u64 {
        self.0.lock().events
    }

    /// Waits for the next event or `timeout` (`None`: no limit).
    pub(crate) fn wait_event(&self, since: u64, timeout: Option<Duration>) -> u64 {
        let deadline = timeout.map_or(Deadline::never(), Deadline::after);
        wait_on(&self.0, deadline, |s| {
            (s.events != since).then_some(s.events)
        })
        .unwrap_or(since)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Waits on the monitor's condition variable until `f` gives `Some` or `deadline` passes.
fn wait_on<T>(
    shared: &Shared,
    deadline: Deadline,
    mut f: impl FnMut(&State) -> Option<T>,
) -> Option<T> {
    let mut state = shared.lock();
    loop {
        if let Some(v) = f(&state) {
            return Some(v);
        }
        let timeout = match deadline.remaining() {
            Some(Duration::ZERO) => return None,
            Some(left) => left,
            None => Duration::from_secs(3600),
        };
        state = match shared.changed.wait_timeout(state, timeout) {
            Ok((s, _)) => s,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}
