//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// The last lines of a server's stdout and stderr, carried by errors about a server that failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// Everything that can go wrong. Each variant says what was wrong; those about a server that
/// failed carry the tail of its output.
#[derive(Debug)]
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
        /// What failed: `"exec"`, `"changing to the working directory"` or `"fork"`.
        stage: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The working directory given to `current_dir` does not exist or is not a directory.
    CurrentDir {
        /// The directory.
        path: PathBuf,
        /// Why it cannot be used.
        source: io::Error,
    },
    /// A readiness pattern is not a valid regular expression.
    InvalidRegex {
        /// The pattern.
        pattern: String,
        /// The regex crate's explanation.
        message: String,
    },
    /// A readiness probe is malformed (for example an HTTP path without a leading `/`).
    InvalidProbe {
        /// The probe, as written.
        probe: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument, environment variable or path contains a NUL byte.
    NulByte {
        /// Which one, for example `argument 2` or `environment variable FOO`.
        what: String,
    },
    /// The signal number given to `stop_signal` is not a valid signal.
    InvalidSignal(i32),
    /// The port fixed with `Builder::port` is already in use (refused before spawning: an
    /// earlier run's leftover would answer the readiness probe in our server's place).
    PortInUse {
        /// The port.
        port: u16,
        /// The pid holding it, when `/proc` tells.
        holder: Option<u32>,
    },
    /// The server's processes all exited before it was ready.
    ExitedBeforeReady {
        /// The program.
        program: String,
        /// The leader's exit status.
        status: ExitStatus,
        /// The last lines of its output.
        output: Box<OutputTail>,
    },
    /// The server was not ready by the deadline (it has been stopped).
    NotReady {
        /// The program.
        program: String,
        /// What was awaited, for example `a TCP connection to 127.0.0.1:40123`.
        awaited: String,
        /// How long we waited.
        waited: Duration,
        /// The last probe error, if any.
        last_error: Option<String>,
        /// The last lines of its output.
        output: Box<OutputTail>,
    },
    /// The stop sequence could not confirm that every process of the fixture is gone.
    StopIncomplete {
        /// The program.
        program: String,
        /// What was seen.
        detail: String,
    },
    /// A feature that this platform does not have was required.
    Unsupported {
        /// What was required.
        what: &'static str,
    },
    /// An OS call in the test process failed.
    Io {
        /// What we were doing.
        context: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { context, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ProgramNotFound { program } => {
                write!(
                    f,
                    "program not found: {program:?} (not a file, and not on PATH)"
                )
            }
            Error::Exec {
                program,
                stage,
                source,
            } => {
                write!(f, "could not start {program:?}: {stage} failed: {source}")
            }
            Error::CurrentDir { path, source } => {
                write!(f, "bad working directory {}: {source}", path.display())
            }
            Error::InvalidRegex { pattern, message } => {
                write!(f, "invalid readiness pattern {pattern:?}: {message}")
            }
            Error::InvalidProbe { probe, reason } => {
                write!(f, "invalid readiness probe {probe}: {reason}")
            }
            Error::NulByte { what } => write!(f, "{what} contains a NUL byte"),
            Error::InvalidSignal(sig) => write!(f, "invalid stop signal number {sig}"),
            Error::PortInUse { port, holder } => {
                write!(f, "port {port} is already in use")?;
                match holder {
                    Some(pid) => write!(f, " by pid {pid}"),
                    None => Ok(()),
                }
            }
            Error::ExitedBeforeReady {
                program,
                status,
                output,
            } => {
                write!(
                    f,
                    "{program:?} exited before it was ready ({status})\n{output}"
                )
            }
            Error::NotReady {
                program,
                awaited,
                waited,
                last_error,
                output,
            } => {
                write!(
                    f,
                    "{program:?} was not ready after {waited:?}: waited for {awaited}"
                )?;
                if let Some(e) = last_error {
                    write!(f, " (last probe error: {e})")?;
                }
                write!(f, "\n{output}")
            }
            Error::StopIncomplete { program, detail } => {
                write!(f, "stopping {program:?} did not complete: {detail}")
            }
            Error::Unsupported { what } => write!(f, "not supported on this platform: {what}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Exec { source, .. }
            | Error::CurrentDir { source, .. }
            | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
