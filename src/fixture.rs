//! The fixture handle: spawning, the test process's side of the stop, and the [`StopReport`].

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::deadline::{self, Deadline};
use crate::guardian::{self, Msg, Origin};
use crate::output::{Monitor, Sources};
use crate::port::{self, Refusal, Reservation};
use crate::ready::{self, Failure};
use crate::sys::{self, Pid};
use crate::{Builder, Error, OutputTail, Ready};

/// Lines of each stream in error messages.
const ERROR_TAIL_LINES: usize = 30;
/// Lines of each stream printed when a test panics with the fixture alive.
const PANIC_TAIL_LINES: usize = 40;
/// How long the guardian may take to report the spawn, beyond the readiness timeout.
const SPAWN_REPORT_SLACK: Duration = Duration::from_secs(5);
/// How long a stop may take beyond its grace periods and SIGKILL wait before the test side
/// gives up on the report (a bound, so that `stop()` and `Drop` can never hang).
const STOP_REPORT_SLACK: Duration = Duration::from_secs(2);
/// How long a guardian forked from the test process may take to exit after its report.
const FORKED_EXIT_WAIT: Duration = Duration::from_millis(100);

/// How far the fixture's processes are contained (reported in [`StopReport::containment`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Containment {
    /// Linux: the guardian is a child subreaper, so descendants that leave the process group
    /// (`setsid`, double fork) re-parent to it and are killed too.
    Subreaper,
    /// The process group only (macOS, or no subreaper): a descendant that calls `setsid` escapes.
    ProcessGroup,
}

/// Where the fixture's guardian came from (reported in [`StopReport::guardian`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardianKind {
    /// Forked by the zygote, the test executable exec'd once per test process: nothing of the
    /// test process is copied. The normal case.
    Zygote,
    /// Forked from the test process itself: the fallback where the executable cannot be re-run
    /// (or `PROCESS_FIXTURE_FORCE=no-zygote`). Costs a copy of the test process's page tables.
    Forked,
}

/// What a stop did. Returned by [`ProcessFixture::stop`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StopReport {
    /// The leader's exit status (`None` if it could not be reaped in time).
    pub exit_status: Option<ExitStatus>,
    /// Whether the leader had already exited on its own before the stop (a crash mid-test, or
    /// a daemonising leader); `exit_status` says how.
    pub exited_before_stop: bool,
    /// Whether SIGKILL was needed.
    pub escalated: bool,
    /// Time from the stop request to the confirmation that no process is left.
    pub elapsed: Duration,
    /// Processes besides the leader that were still alive when they were signalled: members
    /// of the leader's process group plus escapees.
    pub killed: usize,
    /// Of those, descendants outside the process group (caught by the subreaper).
    pub escapees_killed: usize,
    /// How the processes were contained.
    pub containment: Containment,
    /// Where the guardian came from.
    pub guardian: GuardianKind,
}

impl std::fmt::Display for StopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped in {:.2?}: ", self.elapsed)?;
        match self.exit_status {
            Some(status) if self.exited_before_stop => {
                write!(f, "leader had exited on its own ({status})")?
            }
            Some(status) => write!(f, "leader {status}")?,
            None => write!(f, "leader not reaped")?,
        }
        let escalation = if self.escalated {
            "needed SIGKILL"
        } else {
            "no SIGKILL needed"
        };
        write!(
            f,
            ", {escalation}, {} other process(es) signalled ({} escapee(s)), containment: {:?}",
            self.killed, self.escapees_killed, self.containment
        )
    }
}

/// A running server process, torn down when dropped.
///
/// Dropping it (or calling [`stop`](ProcessFixture::stop)) signals the leader, waits up to the
/// grace period, signals the whole group and any escaped descendant, SIGKILLs what is left,
/// confirms that no process remains, and only then reaps the leader. See the crate docs.
#[must_use = "dropping a ProcessFixture stops the server at once; bind it to a named variable, not `_`"]
pub struct ProcessFixture {
    inner: Option<Inner>,
}

struct Inner {
    program: String,
    pid: Pid,
    guardian_pid: Pid,
    origin: Origin,
    /// The test side's writing end of the control socket (a copy; the monitor reads the other).
    /// `None` once the stop was requested.
    ctl: Option<OwnedFd>,
    monitor: Monitor,
    grace: Duration,
    reservation: Reservation,
}

impl ProcessFixture {
    /// Starts configuring a fixture for `program` (a path, or a name looked up on `PATH`).
    pub fn builder(program: impl AsRef<OsStr>) -> Builder {
        Builder::new(program.as_ref())
    }

    /// The one-liner: spawns what a [`Command`] describes and waits for `ready`.
    /// `{port}` in its arguments and environment values is replaced by the fixture's port.
    ///
    /// ```no_run
    /// use process_fixture::{ProcessFixture, Ready};
    /// use std::process::Command;
    ///
    /// let srv = ProcessFixture::spawn(Command::new("my-server").args(["--port", "{port}"]), Ready::tcp())?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn spawn(command: &Command, ready: Ready) -> Result<ProcessFixture, Error> {
        Builder::from_command(command).ready(ready).spawn()
    }

    fn inner(&self) -> &Inner {
        // `inner` is only taken by `stop(self)` and `drop`, after which no method can be called.
        self.inner.as_ref().expect("fixture used after stop")
    }

    /// The fixture's port (picked, or fixed with [`Builder::port`]).
    pub fn port(&self) -> u16 {
        self.inner().reservation.port()
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The leader's pid.
    pub fn pid(&self) -> u32 {
        self.inner().pid as u32
    }

    /// The server's process group id (the leader's pid: it leads a group of its own).
    pub fn pgid(&self) -> u32 {
        self.pid()
    }

    /// The guardian's pid: the process that owns the server (see the crate docs).
    pub fn guardian_pid(&self) -> u32 {
        self.inner().guardian_pid as u32
    }

    /// Everything kept of the server's stdout (the last 1 MiB), decoded lossily.
    pub fn stdout(&self) -> String {
        self.inner().monitor.with(|s| s.stdout.text())
    }

    /// Everything kept of the server's stderr (the last 1 MiB), decoded lossily.
    pub fn stderr(&self) -> String {
        self.inner().monitor.with(|s| s.stderr.text())
    }

    /// Stops the server and reports how. `Drop` does the same and logs problems instead.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// use std::time::Duration;
    ///
    /// // A server that ignores SIGTERM: after the grace period it is killed.
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "trap '' TERM; echo up; while :; do sleep 1; done"])
    ///     .ready(Ready::stdout("^up$"))
    ///     .grace_period(Duration::from_millis(100))
    ///     .spawn()?;
    /// let report = srv.stop()?;
    /// assert!(report.escalated);
    /// let signal = report.exit_status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
    /// assert_eq!(signal, Some(9)); // SIGKILL
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn stop(mut self) -> Result<StopReport, Error> {
        match self.inner.take() {
            Some(mut inner) => inner.finish(),
            None => unreachable!("inner is present until stop or drop"),
        }
    }
}

impl Drop for ProcessFixture {
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        if std::thread::panicking() {
            inner.print_tail();
        }
        match inner.finish() {
            Ok(report) => log::debug!("process-fixture: stopped {}: {report}", inner.program),
            Err(e) => log::warn!("process-fixture: {e}"),
        }
    }
}

impl std::fmt::Debug for ProcessFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(i) => f
                .debug_struct("ProcessFixture")
                .field("program", &i.program)
                .field("pid", &i.pid)
                .field("port", &i.reservation.port())
                .finish(),
            None => f.write_str("ProcessFixture(stopped)"),
        }
    }
}

/// Spawns and waits for readiness; on failure, tears everything down before returning.
pub(crate) fn spawn(builder: &Builder) -> Result<ProcessFixture, Error> {
    let program = builder.program_name();
    let reservation = reserve_port(builder.fixed_port(), &program)?;
    let (ready, timeout) = builder.readiness();
    let watch = ready.line_watch(&program)?;
    let plan = builder.plan(reservation.port())?;

    let io = |context| Error::io(&program, context);
    let (out_r, out_w) = sys::pipe().map_err(io("creating a pipe"))?;
    let (err_r, err_w) = sys::pipe().map_err(io("creating a pipe"))?;
    let launched = guardian::launch(&plan, out_w, err_w).map_err(io("starting the guardian"))?;
    let writer = launched
        .ctl
        .try_clone()
        .map_err(io("duplicating a socket"))?;
    let guardian_exit = match launched.origin {
        // Our child, unreaped: a pidfd opened now names it for sure.
        Origin::Forked(pid) => sys::pidfd_open(pid).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
        Origin::Zygote => None,
    };
    let sources = Sources {
        stdout: out_r,
        stderr: err_r,
        ctl: launched.ctl,
        guardian_exit,
    };
    let monitor = match Monitor::start(sources, watch) {
        Ok(m) => m,
        Err(e) => {
            send_stop(&writer); // the guardian stops what it started
            return Err(io("starting the output monitor")(e));
        }
    };
    let mut inner = Inner {
        program,
        pid: 0,
        guardian_pid: 0,
        origin: launched.origin,
        ctl: Some(writer),
        monitor,
        grace: plan.grace,
        reservation,
    };
    inner.wait_spawned(timeout)?;
    match ready::wait(ready, inner.reservation.port(), &inner.monitor, timeout) {
        Ok(()) => Ok(ProcessFixture { inner: Some(inner) }),
        Err(failure) => Err(inner.fail(failure)),
    }
}

/// The fixture's port: fixed (refused if in use) or picked.
fn reserve_port(fixed: Option<u16>, program: &str) -> Result<Reservation, Error> {
    let result = match fixed {
        Some(port) if port != 0 => port::reserve(port).map_err(|r| (port, r)),
        _ => port::pick().map_err(|r| (0, r)),
    };
    result.map_err(|(port, refusal)| match refusal {
        Refusal::InUse(holder) => Error::PortInUse {
            program: program.to_owned(),
            port,
            holder,
        },
        Refusal::Unavailable(source) => Error::PortUnavailable {
            program: program.to_owned(),
            port,
            source,
        },
    })
}

/// Asks the guardian to stop: one message, retried briefly if the socket is full.
fn send_stop(ctl: &OwnedFd) {
    let msg = Msg::new(Msg::STOP);
    let deadline = Deadline::after(Duration::from_secs(1));
    while sys::write_once(ctl.as_raw_fd(), msg.as_bytes()) != Msg::SIZE as isize {
        if sys::errno() != libc::EAGAIN || deadline.passed() {
            return; // the guardian is gone (or stuck): the bounded wait that follows tells
        }
        sys::poll(&mut [], Some(Duration::from_millis(1)));
    }
}

impl Inner {
    /// Waits for the guardian's first report: the leader's pid, or why it could not start.
    fn wait_spawned(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Deadline::after(deadline::add(timeout, SPAWN_REPORT_SLACK));
        let first = self.monitor.wait_for(deadline, |s| {
            s.spawn
                .map(Some)
                .or_else(|| (s.guardian_closed || s.guardian_died.is_some()).then_some(None))
        });
        match first.flatten() {
            Some(msg) if msg.kind == Msg::SPAWNED => {
                self.pid = msg.pid;
                self.guardian_pid = msg.guardian;
                Ok(())
            }
            Some(msg) => {
                let _ = self.finish();
                Err(Error::Exec {
                    program: self.program.clone(),
                    stage: guardian::stage_name(msg.detail),
                    source: io::Error::from_raw_os_error(msg.errno),
                })
            }
            None => {
                let _ = self.finish();
                Err(self.incomplete("the guardian process did not report the spawn".into()))
            }
        }
    }

    /// Turns a readiness failure into an error, after tearing the tree down.
    fn fail(mut self, failure: Failure) -> Error {
        let _ = self.finish();
        let output = Box::new(self.tail(ERROR_TAIL_LINES));
        let program = self.program.clone();
        match failure {
            Failure::Exited(status) => Error::ExitedBeforeReady {
                program,
                status: ExitStatus::from_raw(status),
                output,
            },
            Failure::NotReady {
                awaited,
                waited,
                last_error,
            } => Error::NotReady {
                program,
                awaited,
                waited,
                last_error,
                output,
            },
        }
    }

    fn tail(&self, lines: usize) -> OutputTail {
        self.monitor.with(|s| OutputTail {
            stdout: s.stdout.tail(lines),
            stderr: s.stderr.tail(lines),
        })
    }

    /// Shown with a failing test: written straight to stderr, ignoring errors, because a panic
    /// inside `Drop` during a panic would abort.
    fn print_tail(&self) {
        let tail = self.tail(PANIC_TAIL_LINES);
        let text = format!(
            "\n--- process-fixture: {} (pid {}) was running when the test panicked ---\n{tail}",
            self.program, self.pid
        );
        let _ = io::stderr().write_all(text.as_bytes());
    }

    /// The test side of the stop: send STOP, wait (bounded) for the guardian's report, stop the
    /// monitor. Returns once the report is in: the guardian is reaped by the zygote, or (forked
    /// guardian) without waiting. Idempotent.
    fn finish(&mut self) -> Result<StopReport, Error> {
        let started = Instant::now();
        let Some(ctl) = self.ctl.take() else {
            return Err(self.incomplete("already stopped".into()));
        };
        send_stop(&ctl);
        let bound = [
            guardian::GROUP_GRACE_MAX,
            guardian::KILL_WAIT,
            STOP_REPORT_SLACK,
        ]
        .into_iter()
        .fold(self.grace, deadline::add);
        let outcome = self.monitor.wait_for(Deadline::from(started, bound), |s| {
            s.stopped
                .or(s.guardian_died)
                .map(Some)
                .or_else(|| s.guardian_closed.then_some(None))
        });
        let elapsed = started.elapsed();
        drop(ctl);
        let forked_status = match self.origin {
            Origin::Forked(pid) => guardian::reap_forked(pid, Deadline::after(FORKED_EXIT_WAIT)),
            Origin::Zygote => None,
        };
        self.monitor.shutdown();
        match outcome {
            Some(Some(msg)) if msg.kind == Msg::GUARDIAN_DIED => {
                Err(self.guardian_died(Some(msg.status)))
            }
            Some(Some(msg)) if msg.flags & Msg::F_CONFIRMED != 0 => Ok(self.report(&msg, elapsed)),
            Some(Some(msg)) => Err(self.unconfirmed(&msg, elapsed)),
            Some(None) => Err(self.guardian_died(forked_status)),
            None => Err(self.incomplete(format!("no report from the guardian within {bound:?}"))),
        }
    }

    fn report(&self, msg: &Msg, elapsed: Duration) -> StopReport {
        StopReport {
            exit_status: (msg.flags & Msg::F_REAPED != 0).then(|| ExitStatus::from_raw(msg.status)),
            exited_before_stop: msg.flags & Msg::F_LEADER_EXITED_BEFORE != 0,
            escalated: msg.flags & Msg::F_ESCALATED != 0,
            elapsed,
            killed: msg.killed as usize,
            escapees_killed: msg.escapees as usize,
            containment: if msg.flags & Msg::F_SUBREAPER != 0 {
                Containment::Subreaper
            } else {
                Containment::ProcessGroup
            },
            guardian: match self.origin {
                Origin::Zygote => GuardianKind::Zygote,
                Origin::Forked(_) => GuardianKind::Forked,
            },
        }
    }

    fn unconfirmed(&self, msg: &Msg, elapsed: Duration) -> Error {
        let report = self.report(msg, elapsed);
        let detail = if msg.detail == Msg::CANNOT_LIST {
            format!(
                "the fixture's processes could not be listed ({}), so none could be confirmed \
                 gone; SIGKILL was sent to the group and every process still visible ({report})",
                io::Error::from_raw_os_error(msg.errno)
            )
        } else {
            format!(
                "processes were still alive {:?} after SIGKILL ({report})",
                guardian::KILL_WAIT
            )
        };
        self.incomplete(detail)
    }

    /// The guardian is gone without a report (killed: the OOM killer, a stray `kill -9`).
    fn guardian_died(&self, status: Option<sys::WaitStatus>) -> Error {
        let how = status.map_or_else(String::new, |s| format!(" ({})", ExitStatus::from_raw(s)));
        let rest = match self.origin {
            Origin::Zygote => {
                "on Linux the leader was killed with it (its parent-death signal) and the zygote \
                 SIGKILLed the processes it left behind; on macOS they may still run"
            }
            Origin::Forked(_) => {
                "on Linux the leader was killed with it (its parent-death signal); processes it \
                 had started may still run (a guardian forked from the test process has no \
                 zygote above it to catch them)"
            }
        };
        self.incomplete(format!(
            "the guardian (pid {}) died before finishing the stop{how}: {rest}",
            self.guardian_pid
        ))
    }

    fn incomplete(&self, detail: String) -> Error {
        Error::StopIncomplete {
            program: self.program.clone(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared server lives in a `static OnceLock<ProcessFixture>`, used from every test thread.
    #[test]
    fn a_fixture_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<ProcessFixture>();
        shareable::<StopReport>();
        shareable::<Error>();
    }
}
