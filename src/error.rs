//! The crate's error type.
//!
//! `Debug` prints what `Display` prints (several lines, the server's output as lines), because
//! `unwrap()`, `expect()` and `?` in a test show `Debug`: a derived one would be a single line of
//! `\n` escapes, several KiB long for a server that failed.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::report::StopReport;

/// The last lines of a server's stdout and stderr, carried by errors about a server that failed.
///
/// ```
/// use process_fixture::{Error, ProcessFixture, Ready};
/// let e = ProcessFixture::builder("sh").args(["-c", "echo 'config error: no such file' >&2; exit 3"])
///     .ready(Ready::tcp())
///     .spawn()
///     .unwrap_err();
/// let Error::ExitedBeforeReady { status, output, .. } = e else { panic!("{e}") };
/// assert_eq!(status.code(), Some(3));
/// assert!(output.stderr.contains("config error"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutputTail {
    /// The last lines of stdout.
    pub stdout: String,
    /// The last lines of stderr.
    pub stderr: String,
}

impl fmt::Display for OutputTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if text.is_empty() {
                writeln!(f, "--- {name}: (empty)")?;
            } else {
                writeln!(f, "--- {name} (last lines):\n{text}")?;
            }
        }
        Ok(())
    }
}

/// A process that holds a port: its pid and command line.
///
/// ```
/// use process_fixture::{Error, ProcessFixture, Ready};
/// let taken = std::net::TcpListener::bind("127.0.0.1:0")?; // this test process listens
/// let port = taken.local_addr()?.port();
/// let e = ProcessFixture::builder("sleep").arg("60").port(port).ready(Ready::none())
///     .spawn()
///     .unwrap_err();
/// let Error::PortInUse { holder, .. } = e else { panic!("{e}") };
/// if let Some(holder) = holder { // None where the system does not tell (macOS)
///     assert_eq!(holder.pid, std::process::id());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortHolder {
    /// The process id.
    pub pid: u32,
    /// Its command line (shortened), or its name, or why it cannot be read.
    pub command: String,
}

impl fmt::Display for PortHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pid == std::process::id() {
            write!(f, "this test process (pid {})", self.pid)
        } else {
            write!(f, "pid {} ({})", self.pid, self.command)
        }
    }
}

/// What a failed wait for readiness saw: enough to fix the test from the message alone.
///
/// ```
/// use process_fixture::{Error, ProcessFixture, Ready};
/// use std::time::Duration;
/// # if std::process::Command::new("python3").arg("--version").output().is_err() { return; }
/// // The server listens, but not on the fixture's port: `{port}` was forgotten.
/// let e = ProcessFixture::builder("python3")
///     .args(["-c", "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); time.sleep(60)"])
///     .ready(Ready::tcp())
///     .ready_timeout(Duration::from_secs(2))
///     .spawn()
///     .unwrap_err();
/// let Error::NotReady { diagnosis, .. } = e else { panic!("{e}") };
/// println!("{diagnosis}"); // command, what was awaited, where it listened, a hint
/// # let _ = diagnosis.hint;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnosis {
    /// The command that was run (program and arguments, shortened).
    pub command: String,
    /// What was awaited.
    pub awaited: String,
    /// How long it was awaited.
    pub waited: Duration,
    /// The last error of a probe, if any.
    pub last_error: Option<String>,
    /// The fixture's processes still alive when it gave up (before they were stopped): pid and
    /// command line.
    pub alive: Vec<String>,
    /// Where the fixture's processes listened.
    pub listening: Vec<SocketAddr>,
    /// The last `STATUS=` the server sent over sd_notify.
    pub notify_status: Option<String>,
    /// What is probably wrong, when it can be guessed (a missing `{port}`, another address).
    pub hint: Option<String>,
    /// The fixture's directory, kept for a look when `spawn` failed.
    pub dir: Option<PathBuf>,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.command)?;
        writeln!(f, "  waited {:.2?} for {}", self.waited, self.awaited)?;
        if let Some(e) = &self.last_error {
            writeln!(f, "  last probe error: {e}")?;
        }
        if let Some(status) = &self.notify_status {
            writeln!(f, "  sd_notify STATUS: {status}")?;
        }
        if !self.listening.is_empty() {
            let list: Vec<String> = self.listening.iter().map(ToString::to_string).collect();
            writeln!(f, "  its processes listened on: {}", list.join(", "))?;
        }
        if self.alive.is_empty() {
            writeln!(f, "  none of its processes was alive any more")?;
        } else {
            writeln!(f, "  its processes still alive then (since stopped):")?;
            for p in &self.alive {
                writeln!(f, "    {p}")?;
            }
        }
        if let Some(dir) = &self.dir {
            writeln!(f, "  its directory is kept for a look: {}", dir.display())?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Where starting the server failed ([`Error::Exec`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecStage {
    /// Forking the server's process.
    Fork,
    /// Changing to its working directory.
    WorkingDir,
    /// Switching to its user and groups.
    Credentials,
    /// Setting up the guardian process that runs it.
    Setup,
    /// Making the server's cgroup, or moving the server into it ([`Containment::Cgroup`](crate::Containment::Cgroup)).
    Cgroup,
    /// `exec` of the program (for example `EACCES`: not executable).
    Exec,
}

impl fmt::Display for ExecStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecStage::Fork => "fork",
            ExecStage::WorkingDir => "changing to the working directory",
            ExecStage::Credentials => "switching user and groups",
            ExecStage::Setup => "setting up the guardian",
            ExecStage::Cgroup => "making the server's cgroup and moving it in",
            ExecStage::Exec => "exec",
        })
    }
}

/// Why a pause or a resume failed ([`Error::PauseFailed`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum PauseFailure {
    /// Some processes were still not stopped when the pause's wait ended (they are continued
    /// again: a failed pause leaves the server running).
    NotAllStopped {
        /// How many.
        running: u32,
    },
    /// The guardian did not answer in time, or is gone.
    NoAnswer {
        /// How long the answer was waited for.
        waited: Duration,
    },
    /// The fixture is being stopped.
    Stopping,
}

impl fmt::Display for PauseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseFailure::NotAllStopped { running } => write!(
                f,
                "{running} of its processes did not stop (they were continued again)"
            ),
            PauseFailure::NoAnswer { waited } => {
                write!(f, "the guardian did not answer within {waited:?}")
            }
            PauseFailure::Stopping => f.write_str("it is being stopped"),
        }
    }
}

/// Why [`Builder::spawn_shared`](crate::Builder::spawn_shared) failed ([`Error::Shared`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum SharedFailure {
    /// The configuration cannot be sent to another process (a `Ready::custom` check).
    NotShareable {
        /// Why.
        reason: String,
    },
    /// The private rendezvous directory or its files cannot be used (created by someone else,
    /// open to other users, a symlink, no space).
    Rendezvous {
        /// What is wrong.
        reason: String,
    },
    /// The server under this key failed to start; every user waiting for it gets this.
    StartFailed {
        /// The error of the start, as the process that ran it wrote it (with the server's
        /// output tail).
        message: String,
    },
    /// The server under this key runs with another configuration.
    Mismatch {
        /// The fields that differ (`args`, `env`, `ready`, …).
        fields: Vec<String>,
        /// Each field, running and asked.
        detail: String,
    },
    /// The server's keeper did not answer in time, or went away.
    NoAnswer {
        /// How long the answer was waited for.
        waited: Duration,
    },
}

impl fmt::Display for SharedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedFailure::NotShareable { reason } => write!(f, "it cannot be shared: {reason}"),
            SharedFailure::Rendezvous { reason } => {
                write!(f, "its rendezvous cannot be used: {reason}")
            }
            SharedFailure::StartFailed { message } => write!(f, "its start failed: {message}"),
            SharedFailure::Mismatch { fields, detail } => write!(
                f,
                "it runs with another configuration ({} differ):\n{detail}",
                fields.join(", ")
            ),
            SharedFailure::NoAnswer { waited } => {
                write!(f, "its keeper did not answer within {waited:?}")
            }
        }
    }
}

/// Why a stop could not confirm that every process is gone ([`Error::StopIncomplete`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum StopFailure {
    /// Processes were still alive after SIGKILL and the wait that follows it.
    StillAlive {
        /// How long they were waited for after SIGKILL.
        waited: Duration,
    },
    /// The fixture's processes could not be listed, so none could be confirmed gone; SIGKILL
    /// was sent to the group and to every process still visible.
    CannotList {
        /// Why they could not be listed.
        reason: io::Error,
    },
    /// The guardian died before it finished the stop (the OOM killer, a stray `kill -9`).
    GuardianDied {
        /// Its exit status, when known.
        status: Option<ExitStatus>,
        /// What became of the server (its parent-death signal, the zygote's clean-up).
        fate: &'static str,
    },
    /// No report came from the guardian in time.
    NoReport {
        /// How long it was waited for.
        waited: Duration,
    },
}

impl fmt::Display for StopFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopFailure::StillAlive { waited } => {
                write!(f, "processes were still alive {waited:?} after SIGKILL")
            }
            StopFailure::CannotList { reason } => write!(
                f,
                "the fixture's processes could not be listed ({reason}), so none could be \
                 confirmed gone; SIGKILL was sent to the group and every process still visible"
            ),
            StopFailure::GuardianDied { status, fate } => {
                write!(f, "the guardian died before finishing the stop")?;
                if let Some(status) = status {
                    write!(f, " ({status})")?;
                }
                write!(f, ": {fate}")
            }
            StopFailure::NoReport { waited } => {
                write!(f, "no report from the guardian within {waited:?}")
            }
        }
    }
}

/// Everything that can go wrong. Each variant names the fixture's program and says what was
/// wrong; those about a server that failed carry the tail of its output.
///
/// `Debug` prints the same lines as `Display`, so `unwrap()` in a test shows a readable report:
///
/// ```
/// use process_fixture::{Error, ProcessFixture};
/// let e = ProcessFixture::builder("no-such-server").spawn().unwrap_err();
/// assert!(matches!(e, Error::ProgramNotFound { .. }));
/// assert_eq!(format!("{e:?}"), format!("{e}"));
/// ```
#[non_exhaustive]
pub enum Error {
    /// The program was not found: not a file, or not on `PATH`.
    ProgramNotFound {
        /// The program as given.
        program: String,
    },
    /// Starting the program failed in the child (for example, not executable: `EACCES`).
    Exec {
        /// The program as given.
        program: String,
        /// What failed.
        stage: ExecStage,
        /// The OS error.
        source: io::Error,
    },
    /// The working directory given to `current_dir` does not exist or is not a directory.
    CurrentDir {
        /// The program.
        program: String,
        /// The directory.
        path: PathBuf,
        /// Why it cannot be used.
        source: io::Error,
    },
    /// A readiness pattern is not a valid regular expression.
    InvalidRegex {
        /// The program.
        program: String,
        /// The pattern.
        pattern: String,
        /// The regex crate's explanation.
        message: String,
    },
    /// A readiness probe is malformed (for example an HTTP path without a leading `/`).
    InvalidProbe {
        /// The program.
        program: String,
        /// The probe, as written.
        probe: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument, environment variable or path contains a NUL byte.
    NulByte {
        /// The program.
        program: String,
        /// Which one, for example `argument 2` or `environment variable FOO`.
        what: String,
    },
    /// The signal number given to `stop_signal` is not a valid signal.
    InvalidSignal {
        /// The program.
        program: String,
        /// The number given.
        signal: i32,
    },
    /// A port of the fixture is already in use (refused before spawning: an earlier run's
    /// leftover would answer the readiness probe in our server's place), or another process
    /// listens on it while the server starts.
    PortInUse {
        /// The program.
        program: String,
        /// The port.
        port: u16,
        /// The process holding it, when the system tells.
        holder: Option<PortHolder>,
    },
    /// A port of the fixture cannot be used for another reason than being taken (for example
    /// a port below 1024 without privileges: `EACCES`).
    PortUnavailable {
        /// The program.
        program: String,
        /// The port.
        port: u16,
        /// The OS error from binding it.
        source: io::Error,
    },
    /// The server's processes all exited before it was ready, or its leader failed (a non-zero
    /// exit or a signal) while a helper it started lived on.
    ExitedBeforeReady {
        /// The program.
        program: String,
        /// The leader's exit status.
        status: ExitStatus,
        /// The last lines of its output.
        output: Box<OutputTail>,
        /// What the wait saw.
        diagnosis: Box<Diagnosis>,
    },
    /// The server was not ready by the deadline (it has been stopped).
    NotReady {
        /// The program.
        program: String,
        /// The last lines of its output.
        output: Box<OutputTail>,
        /// What the wait saw: what was awaited and for how long, the last probe error, the
        /// processes alive, where they listened, a hint.
        diagnosis: Box<Diagnosis>,
    },
    /// [`ProcessFixture::wait_for_output`](crate::ProcessFixture::wait_for_output): no line
    /// matched in time.
    OutputTimeout {
        /// The program.
        program: String,
        /// The pattern.
        pattern: String,
        /// How long we waited.
        waited: Duration,
        /// The last lines of its output.
        output: Box<OutputTail>,
    },
    /// The server exited (on its own) while the test waited for it.
    Exited {
        /// The program.
        program: String,
        /// The leader's exit status.
        status: ExitStatus,
        /// The last lines of its output.
        output: Box<OutputTail>,
    },
    /// The user given to `Builder::user` cannot be used.
    User {
        /// The program.
        program: String,
        /// The user name.
        user: String,
        /// Why (no such user, the lookup failed).
        reason: String,
    },
    /// A file of the fixture (`Builder::file`, its directory) could not be written.
    File {
        /// The program.
        program: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The stop sequence could not confirm that every process of the fixture is gone.
    StopIncomplete {
        /// The program.
        program: String,
        /// What went wrong.
        failure: StopFailure,
        /// What the stop did, when the guardian reported it.
        report: Option<Box<StopReport>>,
    },
    /// The server had exited on its own before the stop, killed by a signal or with a
    /// non-zero status: it crashed mid-test. Returned by
    /// [`ProcessFixture::stop`](crate::ProcessFixture::stop) (and the reason `Drop` panics)
    /// unless [`Builder::allow_early_exit`](crate::Builder::allow_early_exit) was set.
    ExitedBeforeStop {
        /// The program.
        program: String,
        /// The leader's exit status.
        status: ExitStatus,
        /// What the stop did (it still made sure nothing is left).
        report: Box<StopReport>,
        /// The last lines of its output.
        output: Box<OutputTail>,
    },
    /// [`ProcessFixture::pause`](crate::ProcessFixture::pause) or
    /// [`resume`](crate::ProcessFixture::resume) failed.
    PauseFailed {
        /// The program.
        program: String,
        /// `true` for `resume`, `false` for `pause`.
        resuming: bool,
        /// What went wrong.
        failure: PauseFailure,
    },
    /// [`Builder::spawn_shared`](crate::Builder::spawn_shared) could not attach to, or start,
    /// the server shared under `key`.
    Shared {
        /// The program.
        program: String,
        /// The key.
        key: String,
        /// What went wrong.
        failure: SharedFailure,
    },
    /// A ready-made server ([`servers`](crate::servers)) is not installed.
    NotInstalled {
        /// The server.
        program: String,
        /// Where it was looked for, and what to install.
        hint: String,
    },
    /// A ready-made server's own setup failed (`initdb`, a template, a database).
    ServerSetup {
        /// The server.
        program: String,
        /// What was being done.
        what: String,
        /// What went wrong (with the output of the step that failed).
        reason: String,
    },
    /// A feature that this platform does not have was required.
    Unsupported {
        /// The program.
        program: String,
        /// What was required.
        what: &'static str,
    },
    /// The containment required with [`Builder::containment`](crate::Builder::containment) is
    /// not available here ([`Containment::Cgroup`](crate::Containment::Cgroup) without a
    /// writable cgroup v2 hierarchy); nothing was started.
    ContainmentUnavailable {
        /// The program.
        program: String,
        /// What was required.
        containment: crate::Containment,
        /// Why it is unavailable.
        reason: String,
    },
    /// An OS call in the test process failed.
    Io {
        /// The program.
        program: String,
        /// What we were doing.
        context: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(program: &str, context: &'static str) -> impl FnOnce(io::Error) -> Error {
        let program = program.to_owned();
        move |source| Error::Io {
            program,
            context,
            source,
        }
    }

    /// The fixture's program, as given to the builder.
    ///
    /// ```
    /// let e = process_fixture::ProcessFixture::builder("no-such-server").spawn().unwrap_err();
    /// assert_eq!(e.program(), "no-such-server");
    /// ```
    pub fn program(&self) -> &str {
        match self {
            Error::ProgramNotFound { program }
            | Error::Exec { program, .. }
            | Error::CurrentDir { program, .. }
            | Error::InvalidRegex { program, .. }
            | Error::InvalidProbe { program, .. }
            | Error::NulByte { program, .. }
            | Error::InvalidSignal { program, .. }
            | Error::PortInUse { program, .. }
            | Error::PortUnavailable { program, .. }
            | Error::ExitedBeforeReady { program, .. }
            | Error::NotReady { program, .. }
            | Error::OutputTimeout { program, .. }
            | Error::Exited { program, .. }
            | Error::User { program, .. }
            | Error::File { program, .. }
            | Error::StopIncomplete { program, .. }
            | Error::ExitedBeforeStop { program, .. }
            | Error::PauseFailed { program, .. }
            | Error::Shared { program, .. }
            | Error::NotInstalled { program, .. }
            | Error::ServerSetup { program, .. }
            | Error::Unsupported { program, .. }
            | Error::ContainmentUnavailable { program, .. }
            | Error::Io { program, .. } => program,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_setup(f)
    }
}

impl Error {
    /// What was wrong with what the fixture was told, or with the system it ran on.
    fn fmt_setup(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ProgramNotFound { program } => {
                write!(
                    f,
                    "program not found: {program:?} (not a file, and not on PATH)"
                )
            }
            Error::Exec { program, stage, .. } => {
                write!(f, "could not start {program:?}: {stage} failed")
            }
            Error::CurrentDir { program, path, .. } => {
                write!(f, "{program:?}: bad working directory {}", path.display())
            }
            Error::InvalidRegex {
                program,
                pattern,
                message,
            } => write!(
                f,
                "{program:?}: invalid readiness pattern {pattern:?}: {message}"
            ),
            Error::InvalidProbe {
                program,
                probe,
                reason,
            } => write!(f, "{program:?}: invalid readiness probe {probe}: {reason}"),
            Error::NulByte { program, what } => {
                write!(f, "{program:?}: {what} contains a NUL byte")
            }
            Error::InvalidSignal { program, signal } => {
                write!(f, "{program:?}: invalid stop signal number {signal}")
            }
            Error::User {
                program,
                user,
                reason,
            } => write!(f, "{program:?}: cannot run as user {user:?}: {reason}"),
            Error::File { program, path, .. } => {
                write!(f, "{program:?}: cannot write {}", path.display())
            }
            Error::NotInstalled { program, hint } => {
                write!(f, "{program} is not installed: {hint}")
            }
            Error::ServerSetup {
                program,
                what,
                reason,
            } => write!(f, "{program}: {what} failed: {reason}"),
            Error::Unsupported { program, what } => {
                write!(f, "{program:?}: not supported on this platform: {what}")
            }
            Error::ContainmentUnavailable {
                program,
                containment,
                reason,
            } => write!(
                f,
                "{program:?}: Containment::{containment:?} was required but is unavailable: {reason}"
            ),
            Error::Io {
                program, context, ..
            } => write!(f, "{program:?}: {context}"),
            _ => self.fmt_server(f),
        }
    }

    /// What the server, its port or its stop did.
    fn fmt_server(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PortInUse {
                program,
                port,
                holder,
            } => {
                write!(f, "{program:?}: port {port} is already in use")?;
                match holder {
                    Some(h) => write!(f, " by {h}"),
                    None => Ok(()),
                }
            }
            Error::PortUnavailable { program, port, .. } => {
                write!(f, "{program:?}: port {port} cannot be used")
            }
            Error::ExitedBeforeReady {
                program,
                status,
                output,
                diagnosis,
            } => write!(
                f,
                "{program:?} exited before it was ready ({status})\n{diagnosis}{output}"
            ),
            Error::NotReady {
                program,
                output,
                diagnosis,
            } => write!(
                f,
                "{program:?} was not ready after {:.2?}\n{diagnosis}{output}",
                diagnosis.waited
            ),
            Error::OutputTimeout {
                program,
                pattern,
                waited,
                output,
            } => write!(
                f,
                "{program:?} printed no line matching {pattern:?} in {waited:.2?}\n{output}"
            ),
            Error::Exited {
                program,
                status,
                output,
            } => write!(f, "{program:?} exited on its own ({status})\n{output}"),
            _ => self.fmt_stop(f),
        }
    }

    /// What went wrong with a running server: a pause, a stop, or a crash before the stop.
    fn fmt_stop(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PauseFailed {
                program,
                resuming,
                failure,
            } => {
                let what = if *resuming { "resuming" } else { "pausing" };
                write!(f, "{what} {program:?} failed: {failure}")
            }
            Error::Shared {
                program,
                key,
                failure,
            } => write!(f, "{program:?} shared under key {key:?}: {failure}"),
            Error::StopIncomplete {
                program,
                failure,
                report,
            } => {
                write!(f, "stopping {program:?} did not complete: {failure}")?;
                match report {
                    Some(report) => write!(f, " ({report})"),
                    None => Ok(()),
                }
            }
            Error::ExitedBeforeStop {
                program,
                status,
                output,
                ..
            } => write!(
                f,
                "{program:?} had exited on its own before the stop ({status})\n{output}"
            ),
            _ => unreachable!("every variant is written by fmt_setup, fmt_server or fmt_stop"),
        }
    }
}

/// The same text as `Display`: what `unwrap()` and `expect()` show is readable.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Exec { source, .. }
            | Error::CurrentDir { source, .. }
            | Error::PortUnavailable { source, .. }
            | Error::File { source, .. }
            | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
