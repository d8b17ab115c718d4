//! The fixture handle: spawning, the test process's side of the stop, and the [`StopReport`].

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::builder::Values;
use crate::deadline::{self, Deadline};
use crate::error::Diagnosis;
use crate::guardian::{self, Msg, Origin};
use crate::output::{Monitor, Sources, View};
use crate::port::{self, Refusal, Reservation};
use crate::ready::{self, Failure, Seen};
use crate::sys::{self, Pid};
use crate::{Builder, Error, OutputTail, PortHolder, Ready};

/// Lines of each stream in error messages.
const ERROR_TAIL_LINES: usize = 30;
/// Lines of each stream printed when a test panics with the fixture alive, or when a server that
/// had exited on its own is dropped.
const PANIC_TAIL_LINES: usize = 40;
/// How long the guardian may take to report the spawn, beyond the readiness timeout.
const SPAWN_REPORT_SLACK: Duration = Duration::from_secs(5);
/// How long a stop may take beyond its grace periods and SIGKILL wait before the test side
/// gives up on the report (a bound, so that `stop()` and `Drop` can never hang).
const STOP_REPORT_SLACK: Duration = Duration::from_secs(2);
/// How long a guardian forked from the test process may take to exit after its report.
const FORKED_EXIT_WAIT: Duration = Duration::from_millis(100);

/// How far the fixture's processes are contained (reported in [`StopReport::containment`]).
///
/// ```
/// use process_fixture::{Containment, ProcessFixture, Ready};
/// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none())
///     .containment(Containment::ProcessGroup) // as on macOS: a `setsid` child would escape
///     .spawn()?;
/// assert_eq!(srv.stop()?.containment, Containment::ProcessGroup);
/// # Ok::<(), process_fixture::Error>(())
/// ```
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
///
/// ```
/// use process_fixture::{GuardianKind, ProcessFixture, Ready};
/// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn()?;
/// let report = srv.stop()?;
/// // Zygote normally; Forked under PROCESS_FIXTURE_FORCE=no-zygote.
/// assert!(matches!(report.guardian, GuardianKind::Zygote | GuardianKind::Forked));
/// # Ok::<(), process_fixture::Error>(())
/// ```
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
///
/// ```
/// use process_fixture::{ProcessFixture, Ready};
/// let srv = ProcessFixture::builder("sh").args(["-c", "echo up; exec sleep 60"]).ready(Ready::stdout("up")).spawn()?;
/// let report = srv.stop()?;
/// println!("{report}"); // stopped in 0.43ms: leader signal: 15 (SIGTERM), no SIGKILL needed, …
/// assert!(!report.escalated && !report.exited_before_stop);
/// # Ok::<(), process_fixture::Error>(())
/// ```
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
    command: String,
    pid: Pid,
    guardian_pid: Pid,
    origin: Origin,
    containment: crate::Containment,
    /// The test side's writing end of the control socket (a copy; the monitor reads the other).
    /// `None` once the stop was requested.
    ctl: Option<OwnedFd>,
    monitor: Monitor,
    grace: Duration,
    reservation: Reservation,
    named: Vec<(String, Reservation)>,
    values: Values,
    /// The server's working directory, for relative probe paths.
    cwd: Option<PathBuf>,
    dir: Option<tempfile::TempDir>,
    /// `wait_for_output`: where its search goes on (stdout, stderr offsets).
    cursor: Arc<Mutex<(u64, u64)>>,
    /// Set by the stop: the server had died on its own before it (every process gone, or a
    /// leader that failed), which `Drop` must not pass over in silence.
    crashed: bool,
}

impl ProcessFixture {
    /// Starts configuring a fixture for `program` (a path, or a name looked up on `PATH`).
    ///
    /// ```no_run
    /// let srv = process_fixture::ProcessFixture::builder("my-server").args(["--port", "{port}"]).spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn builder(program: impl AsRef<OsStr>) -> Builder {
        Builder::new(program.as_ref())
    }

    /// The one-liner: spawns what a [`Command`] describes and waits for `ready`.
    /// Placeholders (`{port}`, …) in its arguments and environment values are filled in.
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

    /// The fixture's port: picked, fixed with [`Builder::port`], or the one the server printed
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
        let inner = self.inner();
        if let Some(port) = inner.monitor.with(|s| s.captured.get(name).copied()) {
            return port;
        }
        match inner.named.iter().find(|(n, _)| n == name) {
            Some((_, r)) => r.port(),
            None => panic!(
                "{}: no port named {name:?}: put {{port:{name}}} in its arguments, environment or files",
                inner.program
            ),
        }
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
    /// written, or [`Builder::temp_dir`]). Removed after the stop.
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
            .with(|s| ready::dead(s).is_none() && !s.guardian_closed && s.guardian_died.is_none())
    }

    /// Waits until a line of stdout or stderr matches `pattern` (a regular expression) and
    /// returns it: a later log line ("reloaded", "migration done"). Each call goes on from the
    /// line the previous one returned, so a line printed before the call is found too, and the
    /// same message printed twice is found twice. Fails with [`Error::OutputTimeout`] after
    /// `timeout`, and at once with [`Error::Exited`] if the server exits meanwhile.
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

    /// The search of [`ProcessFixture::wait_for_output`], ready to run on any thread.
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

    /// Stops the server and reports how. `Drop` does the same and logs problems instead.
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
            Some(mut inner) => inner.finish(),
            None => unreachable!("inner is present until stop or drop"),
        }
    }

    pub(crate) fn monitor(&self) -> &Monitor {
        &self.inner().monitor
    }

    pub(crate) fn program(&self) -> &str {
        &self.inner().program
    }

    /// The port reserved before the spawn (not a captured one).
    pub(crate) fn reserved_port(&self) -> u16 {
        self.inner().reservation.port()
    }

    /// A probe's path: placeholders filled in, relative to the server's working directory.
    pub(crate) fn resolve_path(&self, path: &Path) -> PathBuf {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let inner = self.inner();
        let filled = inner.values.substitute(path.as_os_str().as_bytes());
        let path = PathBuf::from(std::ffi::OsString::from_vec(filled));
        match &inner.cwd {
            Some(cwd) if path.is_relative() => cwd.join(path),
            _ => path,
        }
    }

    /// Whether the fixture's processes can be looked at (no /proc in a sandbox: not).
    pub(crate) fn can_inspect(&self) -> bool {
        sys::proc_stat(self.inner().guardian_pid).is_some()
    }

    /// The pids of the fixture's processes now: the guardian's descendants.
    fn processes(&self) -> Vec<Pid> {
        sys::descendants(self.inner().guardian_pid)
    }

    /// The socket inodes the fixture's processes hold.
    pub(crate) fn socket_inodes(&self) -> Vec<u64> {
        self.processes()
            .into_iter()
            .flat_map(sys::socket_inodes)
            .collect()
    }

    /// The process holding one of these sockets, if it is a stranger. With the process group
    /// only, an escapee of ours is not our descendant: a holder that started after our leader is
    /// taken for one of ours (it cannot be told apart), one older than it for a stranger.
    pub(crate) fn stranger_holding(&self, inodes: &[u64]) -> Option<PortHolder> {
        let owner = sys::socket_owner(inodes)?;
        if self.processes().contains(&owner) {
            return None;
        }
        if self.inner().containment == crate::Containment::ProcessGroup {
            let started = |pid| sys::proc_stat(pid).map(|s| s.start);
            if started(owner) >= started(self.inner().pid) {
                return None;
            }
        }
        port::holder(owner as u32)
    }

    /// What a failed readiness wait saw, looked at before the processes are stopped.
    fn diagnose(&self, seen: Seen, builder: &Builder, ready: &Ready) -> Diagnosis {
        let inner = self.inner();
        let unknown = || vec!["(they cannot be listed here: /proc is not readable)".to_owned()];
        let alive: Vec<String> = if !self.can_inspect() {
            unknown()
        } else {
            self.processes()
                .into_iter()
                .filter(|&p| sys::proc_stat(p).is_some_and(|s| s.is_live()))
                .map(|p| {
                    let cmd = sys::command_line(p).unwrap_or_default();
                    format!("pid {p}: {cmd}")
                })
                .collect()
        };
        let listening = self.listening();
        let hint = self.hint(builder, ready, &listening);
        Diagnosis {
            command: inner.command.clone(),
            awaited: seen.awaited,
            waited: seen.waited,
            last_error: seen.last_error,
            alive,
            listening,
            notify_status: inner.monitor.with(|s| s.notify_status.clone()),
            hint,
            dir: None,
        }
    }

    /// Where the fixture's processes listen: reported by the guardian, or found by inode.
    fn listening(&self) -> Vec<std::net::SocketAddr> {
        let mut addrs: Vec<_> = self
            .monitor()
            .with(|s| s.listeners.iter().map(|l| l.addr).collect());
        let ours = self.socket_inodes();
        for l in sys::tcp_listeners().unwrap_or_default() {
            if ours.contains(&l.inode) && !addrs.contains(&l.addr) {
                addrs.push(l.addr);
            }
        }
        addrs
    }

    /// A guess at the cause, for a wait on the fixture's port that timed out.
    fn hint(
        &self,
        builder: &Builder,
        ready: &Ready,
        listening: &[std::net::SocketAddr],
    ) -> Option<String> {
        if !ready.waits_for_port() {
            return None;
        }
        let port = self.port();
        let target = std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port);
        if let Some(elsewhere) = listening.iter().find(|a| !ready::covers(**a, target)) {
            return Some(format!(
                "it listens on {elsewhere}, not on 127.0.0.1:{port}: is `{{port}}` missing from \
                 its arguments or config? (For another address: Ready::tcp_addr.)"
            ));
        }
        let captured = self.monitor().with(|s| s.captured.contains_key(""));
        (!builder.mentions_port() && builder.fixed_port().is_none() && !captured).then(|| {
            format!(
                "`{{port}}` appears nowhere in its arguments, environment or files, so it cannot \
                 know it should listen on {port}; give it `{{port}}`, fix the port with \
                 Builder::port, capture the port it prints with a `(?P<port>…)` group, or wait \
                 for something else (Ready::none() for a program that does not listen)"
            )
        })
    }
}

impl Drop for ProcessFixture {
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        if std::thread::panicking() {
            inner.print_tail("was running when the test panicked");
        }
        match inner.finish() {
            Ok(report) => {
                log::debug!("process-fixture: stopped {}: {report}", inner.program);
                if inner.crashed && !std::thread::panicking() {
                    inner.print_tail(&format!(
                        "had exited on its own before it was dropped ({})",
                        report
                            .exit_status
                            .map_or_else(String::new, |s| s.to_string())
                    ));
                }
            }
            Err(e) => log::warn!("process-fixture: {e}"),
        }
    }
}

/// A server that died mid-test must not look like a clean stop: every process gone before the
/// stop, or a leader that failed. (A leader that exited 0 while its daemon ran on did not.)
fn crashed_before_stop(msg: &Msg) -> bool {
    let leader_failed =
        msg.flags & Msg::F_LEADER_EXITED_BEFORE != 0 && !ExitStatus::from_raw(msg.status).success();
    msg.flags & Msg::F_GONE_BEFORE != 0 || leader_failed
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
    let (ready, timeout) = builder.readiness();
    let watches = ready.line_watches(&program)?;
    let user = builder.lookup_user()?;
    let reservation = reserve_port(builder.fixed_port(), &program)?;
    let named = builder
        .port_names()
        .into_iter()
        .map(|name| Ok((name, reserve_port(None, &program)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let dir = match builder.wants_dir(ready) {
        true => Some(make_dir(builder)?),
        false => None,
    };
    let notify = match ready.wants_notify() {
        true => Some(notify_socket().map_err(Error::io(&program, "creating NOTIFY_SOCKET"))?),
        false => None,
    };
    let values = Values {
        port: reservation.port(),
        named: named.iter().map(|(n, r)| (n.clone(), r.port())).collect(),
        dir: dir.as_ref().map(|d| d.path().to_owned()),
        notify: notify.as_ref().map(|(_, name)| name.clone()),
    };
    if let Some(dir) = &dir {
        builder.write_files(dir.path(), &values)?;
        chown_dir(dir.path(), builder.owner(user.as_ref()), &program)?;
    }
    let mut plan = builder.plan(&values, user.as_ref())?;
    plan.dir = dir
        .as_ref()
        .and_then(|d| std::ffi::CString::new(d.path().as_os_str().as_encoded_bytes()).ok());

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
        notify: notify.map(|(fd, _)| fd),
        guardian_exit,
    };
    let monitor = match Monitor::start(sources, watches, builder.echo()) {
        Ok(m) => m,
        Err(e) => {
            send_stop(&writer, false); // the guardian stops what it started
            return Err(io("starting the output monitor")(e));
        }
    };
    let mut inner = Inner {
        program,
        command: builder.command_line(),
        pid: 0,
        guardian_pid: 0,
        origin: launched.origin,
        containment: builder.requested_containment(),
        ctl: Some(writer),
        monitor,
        grace: builder.grace(),
        reservation,
        named,
        cwd: builder
            .working_dir(&values)
            .or_else(|| std::env::current_dir().ok()),
        values,
        dir,
        cursor: Arc::new(Mutex::new((0, 0))),
        crashed: false,
    };
    let events = inner.wait_spawned(timeout)?;
    log::debug!(
        "process-fixture: {} started: leader pid {}, guardian pid {} ({:?}), listen() events: {events}",
        inner.program,
        inner.pid,
        inner.guardian_pid,
        inner.origin
    );
    let fixture = ProcessFixture { inner: Some(inner) };
    match ready::wait(&fixture, ready, timeout, events) {
        Ok(_) => Ok(fixture),
        Err((failure, seen)) => Err(fixture.fail(failure, seen, builder, ready)),
    }
}

impl ProcessFixture {
    /// Turns a readiness failure into an error, after tearing the tree down (what was alive is
    /// looked at first). The fixture's directory is kept for a look.
    fn fail(mut self, failure: Failure, seen: Seen, builder: &Builder, ready: &Ready) -> Error {
        let mut diagnosis = self.diagnose(seen, builder, ready);
        let Some(mut inner) = self.inner.take() else {
            unreachable!("a fixture being spawned has its inner")
        };
        diagnosis.dir = inner.keep_dir();
        let _ = inner.finish();
        let output = Box::new(inner.tail(ERROR_TAIL_LINES));
        let diagnosis = Box::new(diagnosis);
        let program = inner.program.clone();
        match failure {
            Failure::Exited(status) => Error::ExitedBeforeReady {
                program,
                status: ExitStatus::from_raw(status),
                output,
                diagnosis,
            },
            Failure::NotReady => Error::NotReady {
                program,
                awaited: diagnosis.awaited.clone(),
                waited: diagnosis.waited,
                last_error: diagnosis.last_error.clone(),
                output,
                diagnosis,
            },
            Failure::Foreign { port, holder } => Error::PortInUse {
                program,
                port,
                holder,
            },
        }
    }
}

/// One `wait_for_output`: the first matching line after the cursor, on either stream.
pub(crate) struct OutputSearch {
    view: View,
    cursor: Arc<Mutex<(u64, u64)>>,
    regex: Regex,
    program: String,
    started: Instant,
    deadline: Deadline,
}

impl OutputSearch {
    pub fn run(self) -> Result<String, Error> {
        self.view.with_mut(|s| s.output_waiters += 1);
        let outcome = self.find();
        self.view.with_mut(|s| s.output_waiters -= 1);
        let output = Box::new(self.view.with_mut(|s| tail_of(s, ERROR_TAIL_LINES)));
        let program = self.program.clone();
        outcome.map_err(|status| match status {
            Some(status) => Error::Exited {
                program,
                status: ExitStatus::from_raw(status),
                output,
            },
            None => Error::OutputTimeout {
                program,
                pattern: self.regex.as_str().to_owned(),
                waited: self.started.elapsed(),
                output,
            },
        })
    }

    /// `Err(Some(status))`: the server died; `Err(None)`: the deadline passed.
    fn find(&self) -> Result<String, Option<sys::WaitStatus>> {
        loop {
            let since = self.view.events();
            let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
            let (found, dead) = self.view.with_mut(|s| {
                let out = s
                    .stdout
                    .find_line(cursor.0, &self.regex)
                    .map(|(l, at)| (l, at, 0));
                let err = || {
                    s.stderr
                        .find_line(cursor.1, &self.regex)
                        .map(|(l, at)| (l, at, 1))
                };
                (out.or_else(err), ready::dead(s))
            });
            if let Some((line, at, stream)) = found {
                if stream == 0 {
                    cursor.0 = at;
                } else {
                    cursor.1 = at;
                }
                return Ok(line);
            }
            drop(cursor);
            if let Some(status) = dead {
                return Err(Some(status));
            }
            if self.deadline.passed() {
                return Err(None);
            }
            self.view.wait_event(since, self.deadline.remaining());
        }
    }
}

fn tail_of(s: &crate::output::State, lines: usize) -> OutputTail {
    OutputTail {
        stdout: s.stdout.tail(lines),
        stderr: s.stderr.tail(lines),
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

/// The fixture's temporary directory.
fn make_dir(builder: &Builder) -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix("process-fixture-")
        .tempdir()
        .map_err(|source| Error::File {
            program: builder.program_name(),
            path: std::env::temp_dir(),
            source,
        })
}

/// Gives the directory (and what was written into it) to the server's user.
fn chown_dir(dir: &Path, owner: Option<(u32, u32)>, program: &str) -> Result<(), Error> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    let mut paths = vec![dir.to_owned()];
    while let Some(path) = paths.pop() {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|source| Error::File {
            program: program.to_owned(),
            path: path.clone(),
            source,
        })?;
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                paths.push(entry.path());
            }
        }
    }
    Ok(())
}

/// A private datagram socket for sd_notify, and the `NOTIFY_SOCKET` value naming it: an abstract
/// address on Linux (no file, no permissions: a server running as another user can send), a
/// path in the temporary directory elsewhere.
fn notify_socket() -> io::Result<(OwnedFd, std::ffi::OsString)> {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "process-fixture/{}/{}/{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::collections::hash_map::RandomState::new().hash_one(Instant::now())
    );
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
        Ok((sock.into(), format!("@{name}").into()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let path = std::env::temp_dir().join(name.replace('/', "-"));
        let sock = std::os::unix::net::UnixDatagram::bind(&path)?;
        Ok((sock.into(), path.into_os_string()))
    }
}

/// Asks the guardian to stop: one message, retried briefly if the socket is full.
fn send_stop(ctl: &OwnedFd, keep_dir: bool) {
    let mut msg = Msg::new(Msg::STOP);
    msg.flags = if keep_dir { Msg::F_KEEP_DIR } else { 0 };
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
    /// Returns whether the guardian reports `listen()` calls.
    fn wait_spawned(&mut self, timeout: Duration) -> Result<bool, Error> {
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
                Ok(msg.flags & Msg::F_LISTEN_EVENTS != 0)
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

    fn tail(&self, lines: usize) -> OutputTail {
        self.monitor.with(|s| tail_of(s, lines))
    }

    /// Shown with a failing test, or for a server that died mid-test: through the test harness's
    /// captured output (so it lands with the test that owned the fixture), never panicking (a
    /// panic inside `Drop` during a panic would abort).
    fn print_tail(&self, what: &str) {
        let tail = self.tail(PANIC_TAIL_LINES);
        let text = format!(
            "\n--- process-fixture: {} (pid {}) {what} ---\n{tail}",
            self.program, self.pid
        );
        let _ = std::panic::catch_unwind(|| eprint!("{text}"));
    }

    /// Keeps the fixture's directory (for a failed spawn) and returns its path.
    fn keep_dir(&mut self) -> Option<PathBuf> {
        self.dir.take().map(tempfile::TempDir::keep)
    }

    /// The test side of the stop: send STOP, wait (bounded) for the guardian's report, stop the
    /// monitor. Returns once the report is in: the guardian is reaped by the zygote, or (forked
    /// guardian) without waiting. Idempotent.
    fn finish(&mut self) -> Result<StopReport, Error> {
        let started = Instant::now();
        let Some(ctl) = self.ctl.take() else {
            return Err(self.incomplete("already stopped".into()));
        };
        send_stop(&ctl, self.dir.is_none()); // none: kept for a look (or never made)
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
        // Reported: the guardian exits at once; wait (briefly) until it is reaped, too.
        let reap_wait = outcome.map_or(Duration::ZERO, |_| guardian::REAP_WAIT);
        guardian::stopped(&ctl, self.origin, Deadline::after(reap_wait));
        drop(ctl);
        let forked_status = match self.origin {
            Origin::Forked(pid) => guardian::reap_forked(pid, Deadline::after(FORKED_EXIT_WAIT)),
            Origin::Zygote => None,
        };
        self.monitor.shutdown();
        drop(self.dir.take()); // removed once nothing of the server can write to it
        match outcome {
            Some(Some(msg)) if msg.kind == Msg::GUARDIAN_DIED => {
                Err(self.guardian_died(Some(msg.status)))
            }
            Some(Some(msg)) if msg.flags & Msg::F_CONFIRMED != 0 => {
                self.crashed = crashed_before_stop(&msg);
                Ok(self.report(&msg, elapsed))
            }
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
