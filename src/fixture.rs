//! [`ProcessFixture`]: the handle a test holds on its running server.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::deadline::Deadline;
use crate::error::Error;
use crate::inspect::Process;
use crate::pause;
use crate::report::StopReport;
use crate::running::Running;
use crate::signal::Signal;
use crate::teardown;
use crate::wait_output::OutputSearch;

/// A running server process, torn down when dropped.
///
/// Dropping it (or calling [`stop`](ProcessFixture::stop)) signals the leader, waits up to the
/// grace period, signals the whole group and any escaped descendant, SIGKILLs what is left,
/// confirms that no process remains, and only then reaps the leader. See the crate docs.
#[must_use = "dropping a ProcessFixture stops the server at once; bind it to a named variable, not `_`"]
pub struct ProcessFixture {
    inner: Option<Running>,
    /// Starts the server again from what the stopped one leaves: made by `spawn`, which holds
    /// the configuration.
    restart: Restart,
}

/// How a fixture starts its server again ([`ProcessFixture::restart`]).
pub(crate) type Restart = Arc<dyn Fn(Running) -> Result<ProcessFixture, Error> + Send + Sync>;

/// A server taken out of its fixture to be restarted.
pub(crate) struct Restarting {
    old: Running,
    restart: Restart,
}

impl Restarting {
    /// The full stop, keeping the directory, then a new start on the same ports and directory.
    pub(crate) fn run(mut self) -> Result<(ProcessFixture, StopReport), Error> {
        let report = teardown::stop_for_restart(&mut self.old)?;
        let fresh = (self.restart)(self.old)?;
        Ok((fresh, report))
    }
}

impl ProcessFixture {
    pub(crate) fn new(running: Running, restart: Restart) -> ProcessFixture {
        ProcessFixture {
            inner: Some(running),
            restart,
        }
    }

    /// What the fixture holds, for the spawn that made it.
    pub(crate) fn running(&self) -> &Running {
        self.inner()
    }

    /// What the fixture holds, taken out: its `Drop` then does nothing.
    pub(crate) fn into_running(mut self) -> Running {
        match self.inner.take() {
            Some(running) => running,
            None => unreachable!("inner is present until stop or drop"),
        }
    }

    fn inner(&self) -> &Running {
        // `inner` is only taken by `stop(self)` and `drop`, after which no method can be called.
        self.inner.as_ref().expect("fixture used after stop")
    }

    /// The fixture's port: picked, fixed with [`Builder::port`](crate::Builder::port), or the one the server printed
    /// (a `(?P<port>…)` group in a line probe).
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh").args(["-c", "echo port {port}; exec sleep 60"]).ready(Ready::stdout("port")).spawn()?;
    /// assert_eq!(srv.stdout(), format!("port {}\n", srv.port()));
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn port(&self) -> u16 {
        let inner = self.inner();
        inner
            .monitor
            .with(|s| s.captured.get("").copied())
            .unwrap_or(inner.reservation.port())
    }

    /// A further port, reserved for `{port:NAME}` (or captured with a `(?P<port_NAME>…)` group):
    /// for servers with an admin or metrics port.
    ///
    /// # Panics
    /// If no `{port:NAME}` with this name appears in the builder's arguments, environment or
    /// files: a typo in a test, as an out-of-bounds index is.
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo admin on {port:admin}; exec sleep 60"])
    ///     .ready(Ready::stdout("admin on"))
    ///     .spawn()?;
    /// assert_ne!(srv.named_port("admin"), srv.port());
    /// assert_eq!(srv.stdout(), format!("admin on {}\n", srv.named_port("admin")));
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn named_port(&self, name: &str) -> u16 {
        match self.try_named_port(name) {
            Some(port) => port,
            None => panic!(
                "{}: no port named {name:?}: put {{port:{name}}} in its arguments, environment or files",
                self.inner().program
            ),
        }
    }

    /// The port `{port:NAME}` stands for, or `None` if no `{port:NAME}` of that name appears in
    /// its configuration (and no line probe captured one).
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo admin on {port:admin}; exec sleep 60"])
    ///     .ready(Ready::stdout("admin on"))
    ///     .spawn()?;
    /// assert!(srv.try_named_port("admin").is_some());
    /// assert_eq!(srv.try_named_port("metrics"), None);
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn try_named_port(&self, name: &str) -> Option<u16> {
        let inner = self.inner();
        if let Some(port) = inner.monitor.with(|s| s.captured.get(name).copied()) {
            return Some(port);
        }
        inner
            .named
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.port())
    }

    /// `http://127.0.0.1:{port}`.
    ///
    /// ```no_run
    /// let srv = process_fixture::ProcessFixture::builder("my-server").args(["--port", "{port}"]).spawn()?;
    /// assert!(srv.url().starts_with("http://127.0.0.1:"));
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The leader's pid.
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn()?;
    /// assert!(srv.pid() > 1);
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.inner().pid as u32
    }

    /// The server's process group id (the leader's pid: it leads a group of its own).
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn()?;
    /// assert_eq!(srv.pgid(), srv.pid());
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn pgid(&self) -> u32 {
        self.pid()
    }

    /// The guardian's pid: the process that owns the server (see the crate docs).
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn()?;
    /// assert_ne!(srv.guardian_pid(), srv.pid());
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn guardian_pid(&self) -> u32 {
        self.inner().guardian_pid as u32
    }

    /// Everything kept of the server's stdout (the last 1 MiB), decoded lossily.
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh").args(["-c", "echo hi; exec sleep 60"]).ready(Ready::stdout("hi")).spawn()?;
    /// assert_eq!(srv.stdout(), "hi\n");
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn stdout(&self) -> String {
        self.inner().monitor.with(|s| s.stdout.text())
    }

    /// Everything kept of the server's stderr (the last 1 MiB), decoded lossily.
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh").args(["-c", "echo oops >&2; exec sleep 60"]).ready(Ready::stderr("oops")).spawn()?;
    /// assert_eq!(srv.stderr(), "oops\n");
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn stderr(&self) -> String {
        self.inner().monitor.with(|s| s.stderr.text())
    }

    /// The fixture's own temporary directory, if it has one (`{dir}` was used, a file was
    /// written, or [`Builder::temp_dir`](crate::Builder::temp_dir)). Removed after the stop.
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo data > {dir}/out.txt; echo done; exec sleep 60"])
    ///     .ready(Ready::stdout("done"))
    ///     .spawn()?;
    /// let out = std::fs::read_to_string(srv.dir().unwrap().join("out.txt"))?;
    /// assert_eq!(out, "data\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir(&self) -> Option<&Path> {
        self.inner().dir.as_ref().map(tempfile::TempDir::path)
    }

    /// Whether the server still runs: false once every process of it has exited, or its
    /// leader has failed (a non-zero exit or a signal; a leader that exits 0 while its
    /// descendants live has daemonised, and the server runs on).
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// use std::time::Duration;
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo up; sleep 0.1; exit 3"])
    ///     .ready(Ready::stdout("up"))
    ///     .allow_early_exit() // it exits with 3 on purpose
    ///     .spawn()?;
    /// assert!(srv.is_running());
    /// let e = srv.wait_for_output("never printed", Duration::from_secs(10)).unwrap_err();
    /// assert!(matches!(e, process_fixture::Error::Exited { .. }));
    /// assert!(!srv.is_running());
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn is_running(&self) -> bool {
        self.inner()
            .monitor
            .with(|s| s.dead().is_none() && !s.guardian_closed && s.guardian_died.is_none())
    }

    /// Waits until a line of stdout or stderr matches `pattern` (a regular expression) and
    /// returns it: a later log line ("reloaded", "migration done"). Each call goes on from the
    /// line the previous one returned, so a line printed before the call is found too, and the
    /// same message printed twice is found twice. Fails with [`Error::OutputTimeout`](crate::Error::OutputTimeout) after
    /// `timeout`, and at once with [`Error::Exited`](crate::Error::Exited) if the server exits meanwhile.
    ///
    /// ```
    /// # use process_fixture::{ProcessFixture, Ready};
    /// use std::time::Duration;
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo up; sleep 0.05; echo 'config reloaded (3 rules)'; exec sleep 60"])
    ///     .ready(Ready::stdout("^up$"))
    ///     .spawn()?;
    /// let line = srv.wait_for_output(r"reloaded \(\d+ rules\)", Duration::from_secs(10))?;
    /// assert_eq!(line, "config reloaded (3 rules)");
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn wait_for_output(&self, pattern: &str, timeout: Duration) -> Result<String, Error> {
        self.output_search(pattern, timeout)?.run()
    }

    /// The search of [`ProcessFixture::wait_for_output`](crate::ProcessFixture::wait_for_output), ready to run on any thread.
    pub(crate) fn output_search(
        &self,
        pattern: &str,
        timeout: Duration,
    ) -> Result<OutputSearch, Error> {
        let inner = self.inner();
        let regex = Regex::new(pattern).map_err(|e| Error::InvalidRegex {
            program: inner.program.clone(),
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })?;
        let started = Instant::now();
        Ok(OutputSearch {
            view: inner.monitor.view(),
            cursor: inner.cursor.clone(),
            regex,
            program: inner.program.clone(),
            started,
            deadline: Deadline::from(started, timeout),
        })
    }

    /// The live processes of the server's tree now: the leader first, then its workers and any
    /// escapee the subreaper caught, each with its parent and command line. Empty where the
    /// processes cannot be listed (no `/proc`).
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "sleep 60 & sleep 60 & echo up; wait"])
    ///     .ready(Ready::stdout("up"))
    ///     .spawn()?;
    /// let workers = srv.processes().into_iter().filter(|p| p.parent == srv.pid()).count();
    /// # if cfg!(target_os = "linux") {
    /// assert_eq!(workers, 2);
    /// # }
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn processes(&self) -> Vec<Process> {
        self.inner().tree().processes()
    }

    /// Freezes the whole server: SIGSTOP to the leader, its process group and every escaped
    /// descendant the guardian knows, repeated until every one of them is seen stopped (a
    /// process forking meanwhile makes a child the first pass missed; a stopped one cannot
    /// fork). Returns once they all are. A paused server accepts nothing: connections wait in
    /// the listen backlog, or time out, until [`resume`](ProcessFixture::resume).
    ///
    /// `stop`, `Drop`, and the clean-up after the test process dies all continue a paused
    /// server first, so they take no longer than for a running one. A pause that cannot stop
    /// every process within 1 s continues them all again and fails with
    /// [`Error::PauseFailed`]. Pausing twice is harmless.
    ///
    /// What it cannot stop: a process outside the fixture's tree (one that escaped with the
    /// process-group containment only, see [`Containment`](crate::Containment)); and, without
    /// pidfds (Linux before 5.3), an escapee in a group of its own that is not the guardian's
    /// own child: its pid could be a stranger's by the time a signal went out, so it gets none,
    /// and the pause fails.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// use std::io::{Read, Write};
    /// use std::time::Duration;
    /// # if std::process::Command::new("python3").arg("--version").output().is_err() { return Ok(()); }
    ///
    /// let srv = ProcessFixture::builder("python3")
    ///     .args(["-m", "http.server", "--bind", "127.0.0.1", "{port}"])
    ///     .ready(Ready::http("/"))
    ///     .spawn()?;
    /// srv.pause()?;
    /// assert!(srv.is_paused());
    /// let mut conn = std::net::TcpStream::connect(("127.0.0.1", srv.port()))?; // queued
    /// conn.set_read_timeout(Some(Duration::from_millis(200)))?;
    /// conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    /// assert!(conn.read(&mut [0; 1]).is_err(), "no answer while paused");
    /// srv.resume()?;
    /// conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    /// assert_eq!(conn.read(&mut [0; 1])?, 1, "answered once resumed");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pause(&self) -> Result<(), Error> {
        pause::set_paused(self.inner(), true)
    }

    /// Continues a server frozen by [`pause`](ProcessFixture::pause): SIGCONT to every process
    /// of it. Resuming a running server is harmless.
    pub fn resume(&self) -> Result<(), Error> {
        pause::set_paused(self.inner(), false)
    }

    /// Whether the server is paused: the last successful `pause` or `resume` was a pause.
    pub fn is_paused(&self) -> bool {
        pause::is_paused(self.inner())
    }

    /// Stops the server and starts it again with the same configuration: the same ports (still
    /// reserved by this fixture in between, so no other fixture of any process can take them),
    /// the same [`dir`](ProcessFixture::dir) with the files the old server left (a database
    /// keeps its data), and a readiness wait as `spawn` has. Returns the old server's
    /// [`StopReport`]; the stop is the full sequence, with the same guarantees as
    /// [`stop`](ProcessFixture::stop).
    ///
    /// A client may see refused connections while the server is down. The output of the new
    /// server starts afresh ([`stdout`](ProcessFixture::stdout) shows only its own), as does
    /// [`wait_for_output`](ProcessFixture::wait_for_output). A server that had exited on its own
    /// is started again too: the report says so (`exited_before_stop`, `exit_status`).
    ///
    /// If the server does not come back, the error is that of a failed spawn (with its
    /// diagnosis and output), nothing of it is left running, and the fixture is spent: dropping
    /// it does nothing more, and any other method panics. The error of a stop that could not
    /// complete is returned the same way, before any new start.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let mut srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo run >> {dir}/runs; echo up; exec sleep 60"])
    ///     .ready(Ready::stdout("^up$"))
    ///     .spawn()?;
    /// let (port, first) = (srv.port(), srv.pid());
    /// srv.restart()?;
    /// assert_eq!(srv.port(), port);
    /// assert_ne!(srv.pid(), first);
    /// let runs = std::fs::read_to_string(srv.dir().unwrap().join("runs"))?;
    /// assert_eq!(runs, "run\nrun\n"); // the directory and its files were kept
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restart(&mut self) -> Result<StopReport, Error> {
        let (fresh, report) = self.begin_restart().run()?;
        *self = fresh;
        Ok(report)
    }

    /// Takes the running server out for a restart (on this thread, or on a blocking pool's):
    /// the fixture is spent until the restarted one replaces it.
    pub(crate) fn begin_restart(&mut self) -> Restarting {
        match self.inner.take() {
            Some(old) => Restarting {
                old,
                restart: Arc::clone(&self.restart),
            },
            None => unreachable!("inner is present until stop or drop"),
        }
    }

    /// Stops the server and reports how. `Drop` does the same; see [`ProcessFixture`] for what
    /// it does with problems.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// use std::time::Duration;
    ///
    /// // A server that catches SIGTERM and ignores it: after the grace period it is killed.
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "trap 'echo no' TERM; echo up; while :; do sleep 1; done"])
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
            Some(mut inner) => teardown::stop(&mut inner),
            None => unreachable!("inner is present until stop or drop"),
        }
    }

    /// [`ProcessFixture::stop`], with `signal` for the leader instead of the configured stop
    /// signal (the rest of the sequence is the same): to pass on a signal the test process got,
    /// as the `process-fixture` CLI does with Ctrl-C. An invalid signal number is
    /// [`Error::InvalidSignal`](crate::Error::InvalidSignal), and the fixture is then stopped
    /// with its own signal.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready, Signal};
    /// use std::os::unix::process::ExitStatusExt;
    /// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn()?;
    /// let report = srv.stop_with(Signal::INT)?;
    /// assert_eq!(report.exit_status.and_then(|s| s.signal()), Some(2)); // SIGINT ended it
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn stop_with(mut self, signal: Signal) -> Result<StopReport, Error> {
        let Some(mut inner) = self.inner.take() else {
            unreachable!("inner is present until stop or drop")
        };
        let raw = signal.as_raw();
        if !(1..=crate::sys::MAX_SIGNAL).contains(&raw) {
            let _ = teardown::stop(&mut inner);
            return Err(Error::InvalidSignal {
                program: inner.program.clone(),
                signal: raw,
            });
        }
        teardown::stop_with(&mut inner, Some(raw))
    }
}

impl Drop for ProcessFixture {
    /// Stops the server. A server that had crashed before (killed by a signal, or a non-zero
    /// exit) fails the test: `Drop` panics with its output, unless the thread is already
    /// panicking (then the output is printed) or `Builder::allow_early_exit` was set. Any other
    /// problem of the stop is logged.
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        let panicking = std::thread::panicking();
        if panicking {
            inner.print_tail("was running when the test panicked");
        }
        match teardown::stop(&mut inner) {
            Ok(report) => log::debug!("process-fixture: stopped {}: {report}", inner.program),
            Err(e @ Error::ExitedBeforeStop { .. }) if !panicking => {
                panic!("process-fixture: {e}")
            }
            // A second panic would abort the test binary: the crash goes with the test's output.
            Err(e @ Error::ExitedBeforeStop { .. }) => {
                let text = format!("process-fixture: {e}");
                let _ = std::panic::catch_unwind(|| eprintln!("{text}"));
            }
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
