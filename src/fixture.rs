//! The fixture handle: spawning, the test process's side of the stop, and the [`StopReport`].

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::guardian::{self, Ends, Msg};
use crate::output::Monitor;
use crate::port::{self, Reservation};
use crate::ready::{self, Failure};
use crate::sys::{self, Pid};
use crate::{Builder, Error, OutputTail, Ready};

/// Lines of each stream in error messages.
const ERROR_TAIL_LINES: usize = 30;
/// Lines of each stream printed when a test panics with the fixture alive.
const PANIC_TAIL_LINES: usize = 40;

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

/// What a stop did. Returned by [`ProcessFixture::stop`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StopReport {
    /// The leader's exit status (`None` if it could not be reaped in time).
    pub exit_status: Option<ExitStatus>,
    /// Whether SIGKILL was needed.
    pub escalated: bool,
    /// Time from the stop request to the confirmation that no process is left.
    pub elapsed: Duration,
    /// Processes besides the leader that were still alive when the group was signalled: members
    /// of the leader's process group plus escapees.
    pub killed: usize,
    /// Of those, descendants outside the process group (caught by the subreaper).
    pub escapees_killed: usize,
    /// How the processes were contained.
    pub containment: Containment,
}

impl std::fmt::Display for StopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped in {:.2?}: ", self.elapsed)?;
        match self.exit_status {
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
    guardian: Pid,
    /// Closing it is the stop request; the kernel closes it if the test process dies.
    lifeline: Option<OwnedFd>,
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

    /// The guardian's pid (a fork of the test process that owns the server; see the crate docs).
    pub fn guardian_pid(&self) -> u32 {
        self.inner().guardian as u32
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
            Ok(report) => log::debug!("process-fixture: stopped {}: {report:?}", inner.program),
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
    let reservation = match builder.fixed_port() {
        Some(port) if port != 0 => port::fixed(port)?,
        _ => port::pick()?,
    };
    let (ready, timeout) = builder.readiness();
    let watch = ready.line_watch()?;
    let plan = builder.plan(reservation.port())?;

    let pipe = || sys::pipe().map_err(Error::io("creating a pipe"));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (life_r, life_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let dev_null = sys::dev_null().map_err(Error::io("opening /dev/null"))?;
    let ends = Ends {
        lifeline: life_r.as_raw_fd(),
        report: report_w.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        dev_null: dev_null.as_raw_fd(),
    };
    let guardian = guardian::start(&plan, &ends).map_err(Error::io("forking the guardian"))?;
    // From here only the guardian (and the server) hold these ends (R6.3).
    drop((life_r, report_w, out_w, err_w, dev_null));
    let monitor = match Monitor::start(out_r, err_r, report_r, watch) {
        Ok(m) => m,
        Err(e) => {
            drop(life_w); // the guardian sees EOF and stops what it started
            reap_guardian(guardian);
            return Err(Error::io("starting the output monitor")(e));
        }
    };
    let mut inner = Inner {
        program: builder.program_name(),
        pid: 0,
        guardian,
        lifeline: Some(life_w),
        monitor,
        grace: plan.grace,
        reservation,
    };
    inner.pid = inner.wait_spawned(timeout)?;
    match ready::wait(ready, inner.reservation.port(), &inner.monitor, timeout) {
        Ok(()) => Ok(ProcessFixture { inner: Some(inner) }),
        Err(failure) => Err(inner.fail(failure)),
    }
}

impl Inner {
    /// Waits for the guardian's first report: the leader's pid, or why it could not start.
    fn wait_spawned(&mut self, timeout: Duration) -> Result<Pid, Error> {
        let deadline = Instant::now() + timeout + Duration::from_secs(5);
        let first = self.monitor.wait_for(deadline, |s| {
            s.spawn
                .map(Some)
                .or_else(|| s.guardian_closed.then_some(None))
        });
        match first.flatten() {
            Some(msg) if msg.kind == Msg::SPAWNED => Ok(msg.pid_or_errno),
            Some(msg) => {
                let _ = self.finish();
                Err(Error::Exec {
                    program: self.program.clone(),
                    stage: guardian::stage_name(msg.detail),
                    source: io::Error::from_raw_os_error(msg.pid_or_errno),
                })
            }
            None => {
                let _ = self.finish();
                Err(Error::StopIncomplete {
                    program: self.program.clone(),
                    detail: "the guardian process did not report the spawn".into(),
                })
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

    /// The test process's side of the stop: close the lifeline, wait (bounded) for the guardian's
    /// report, reap the guardian, stop the monitor. Idempotent.
    fn finish(&mut self) -> Result<StopReport, Error> {
        let started = Instant::now();
        if self.lifeline.take().is_none() {
            return Err(self.incomplete("already stopped".into()));
        }
        let bound =
            self.grace + guardian::GROUP_GRACE_MAX + guardian::KILL_WAIT + Duration::from_secs(2);
        // The report, then EOF: the guardian has exited, so reaping it is immediate.
        let stopped = self
            .monitor
            .wait_for(started + bound, |s| s.guardian_closed.then_some(s.stopped));
        let elapsed = started.elapsed();
        reap_guardian(self.guardian);
        self.monitor.shutdown();
        match stopped {
            Some(Some(msg)) if msg.detail & Msg::F_CONFIRMED != 0 => Ok(report(&msg, elapsed)),
            Some(Some(msg)) => Err(self.incomplete(format!(
                "processes were still alive {:?} after SIGKILL ({:?})",
                guardian::KILL_WAIT,
                report(&msg, elapsed)
            ))),
            Some(None) => Err(self.incomplete("the guardian exited without a report".into())),
            None => Err(self.incomplete(format!("no report from the guardian within {bound:?}"))),
        }
    }

    fn incomplete(&self, detail: String) -> Error {
        Error::StopIncomplete {
            program: self.program.clone(),
            detail,
        }
    }
}

fn report(msg: &Msg, elapsed: Duration) -> StopReport {
    StopReport {
        exit_status: (msg.detail & Msg::F_REAPED != 0).then(|| ExitStatus::from_raw(msg.status)),
        escalated: msg.detail & Msg::F_ESCALATED != 0,
        elapsed,
        killed: msg.killed as usize,
        escapees_killed: msg.escapees as usize,
        containment: if msg.detail & Msg::F_SUBREAPER != 0 {
            Containment::Subreaper
        } else {
            Containment::ProcessGroup
        },
    }
}

/// Guardians that had not exited when their fixture was done; retried at every later stop.
static UNREAPED: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// Reaps the guardian (our direct child, by its own pid: never `waitpid(-1)`, R7.1). It exits
/// right after its report, so this is quick; bounded all the same.
fn reap_guardian(pid: Pid) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut pending = UNREAPED.lock().unwrap_or_else(|e| e.into_inner());
    pending.push(pid);
    let mut backoff = guardian::Backoff::new(Duration::from_millis(10));
    loop {
        // Ok(Some): reaped. Err: not our child any more (auto-reaped under SIGCHLD=SIG_IGN).
        pending.retain(|&p| matches!(sys::try_reap(p), Ok(None)));
        if !pending.contains(&pid) || Instant::now() >= deadline {
            return;
        }
        sys::poll_readable(&mut [], backoff.next());
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
