//! A started fixture as the test process holds it: what `spawn` made, what the stop and the
//! public handle read.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::OutputTail;
use crate::guardian::Origin;
use crate::inspect::Tree;
use crate::output::{Monitor, State};
use crate::placeholders::Values;
use crate::port::Reservation;
use crate::report::Containment;
use crate::sys::Pid;

/// Lines of each stream printed when a test panics with the fixture alive, or when a server that
/// had exited on its own is dropped.
const PANIC_TAIL_LINES: usize = 40;

/// Everything a live fixture holds.
pub(crate) struct Running {
    pub(crate) program: String,
    /// The command as the server received it (placeholders filled in, shell-quoted).
    pub(crate) command: String,
    pub(crate) pid: Pid,
    pub(crate) guardian_pid: Pid,
    pub(crate) origin: Origin,
    pub(crate) containment: Containment,
    /// The server's cgroup, when it has one.
    pub(crate) cgroup: Option<crate::cgroup::Named>,
    /// The test side's writing end of the control socket (a copy; the monitor reads the other).
    /// `None` once the stop was requested.
    pub(crate) ctl: Option<OwnedFd>,
    pub(crate) monitor: Monitor,
    pub(crate) grace: Duration,
    pub(crate) reservation: Reservation,
    pub(crate) named: Vec<(String, Reservation)>,
    pub(crate) values: Values,
    /// The server's working directory, for relative probe paths.
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) dir: Option<tempfile::TempDir>,
    /// Socket activation: the listening sockets, kept for the fixture's whole life (restarts
    /// included: a client that connects meanwhile waits in the backlog).
    pub(crate) listeners: Vec<OwnedFd>,
    /// Whether the server may exit on its own before the stop without an error.
    pub(crate) allow_early_exit: bool,
    /// `wait_for_output`: where its search goes on (stdout, stderr offsets).
    pub(crate) cursor: Arc<Mutex<(u64, u64)>>,
    /// Pause and resume, one at a time.
    pub(crate) pause: Mutex<Pause>,
}

/// Where pause and resume stand.
#[derive(Default)]
pub(crate) struct Pause {
    /// The number of the last request sent (its answer carries it back).
    pub(crate) seq: u32,
    pub(crate) paused: bool,
}

impl Running {
    pub(crate) fn tree(&self) -> Tree {
        Tree {
            guardian: self.guardian_pid,
            leader: self.pid,
            containment: self.containment,
        }
    }

    pub(crate) fn tail(&self, lines: usize) -> OutputTail {
        self.monitor.with(|s| tail_of(s, lines))
    }

    /// Shown with a failing test: through the test harness's captured output (so it lands with
    /// the test that owned the fixture), never panicking (a panic inside `Drop` during a panic
    /// would abort).
    pub(crate) fn print_tail(&self, what: &str) {
        let tail = self.tail(PANIC_TAIL_LINES);
        let text = format!(
            "\n--- process-fixture: {} (pid {}) {what} ---\n{tail}",
            self.program, self.pid
        );
        let _ = std::panic::catch_unwind(|| eprint!("{text}"));
    }

    /// Keeps the fixture's directory (for a failed spawn) and returns its path.
    pub(crate) fn keep_dir(&mut self) -> Option<PathBuf> {
        self.dir.take().map(tempfile::TempDir::keep)
    }
}

/// The last `lines` lines of each stream.
pub(crate) fn tail_of(s: &State, lines: usize) -> OutputTail {
    OutputTail {
        stdout: s.stdout.tail(lines),
        stderr: s.stderr.tail(lines),
    }
}
