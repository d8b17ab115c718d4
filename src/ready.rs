//! Readiness probes: when is a freshly spawned server usable?
//!
//! Probes poll with a growing interval (0.5 ms at first, ×1.5, capped at [`POLL_MAX`]); a line
//! pattern is matched by the output monitor as each line arrives and wakes the waiter at once.
//! Every wait also watches the guardian's reports, so a server that dies fails `spawn` at once
//! instead of after the timeout.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::guardian::Backoff;
use crate::output::{LineWatch, Monitor, Which};
use crate::sys::WaitStatus;
use crate::Error;

/// The longest pause between two probes.
pub const POLL_MAX: Duration = Duration::from_millis(20);
/// A loopback connect either succeeds or is refused at once; this only bounds a full backlog.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How to tell that the server is ready.
///
/// ```
/// use process_fixture::Ready;
/// let _ = Ready::tcp();                           // the fixture's port accepts a connection
/// let _ = Ready::stderr(r"listening on \S+:\d+"); // a line of stderr matches
/// ```
#[derive(Clone, Debug)]
pub struct Ready(Probe);

#[derive(Clone, Debug)]
enum Probe {
    None,
    Tcp,
    Line { which: Which, pattern: String },
}

impl Ready {
    /// Ready as soon as the program has been exec'd.
    pub fn none() -> Ready {
        Ready(Probe::None)
    }

    /// Ready when a TCP connection to `127.0.0.1:{port}` succeeds (never `localhost`, which may
    /// resolve to `::1`).
    pub fn tcp() -> Ready {
        Ready(Probe::Tcp)
    }

    /// Ready when a line of stdout matches the regular expression `pattern`. An invalid pattern
    /// is reported by `spawn` as [`Error::InvalidRegex`].
    pub fn stdout(pattern: &str) -> Ready {
        Ready::line(Which::Stdout, pattern)
    }

    /// Ready when a line of stderr matches `pattern`.
    pub fn stderr(pattern: &str) -> Ready {
        Ready::line(Which::Stderr, pattern)
    }

    /// Ready when a line of stdout or stderr matches `pattern`.
    pub fn output(pattern: &str) -> Ready {
        Ready::line(Which::Both, pattern)
    }

    fn line(which: Which, pattern: &str) -> Ready {
        Ready(Probe::Line {
            which,
            pattern: pattern.to_owned(),
        })
    }

    /// The line watch to install in the monitor before the first byte is read.
    pub(crate) fn line_watch(&self) -> Result<Option<LineWatch>, Error> {
        match &self.0 {
            Probe::Line { which, pattern } => {
                let regex = Regex::new(pattern).map_err(|e| Error::InvalidRegex {
                    pattern: pattern.clone(),
                    message: e.to_string(),
                })?;
                Ok(Some(LineWatch {
                    regex,
                    which: *which,
                }))
            }
            _ => Ok(None),
        }
    }

    fn describe(&self, port: u16) -> String {
        match &self.0 {
            Probe::None => "nothing".into(),
            Probe::Tcp => format!("a TCP connection to 127.0.0.1:{port}"),
            Probe::Line { which, pattern } => {
                let stream = match which {
                    Which::Stdout => "stdout",
                    Which::Stderr => "stderr",
                    Which::Both => "stdout or stderr",
                };
                format!("a line of {stream} matching {pattern:?}")
            }
        }
    }

    /// One probe: `Ok(true)` when ready, `Err` with the reason it is not (for the error message).
    fn probe(&self, port: u16, monitor: &Monitor) -> Result<bool, String> {
        match &self.0 {
            Probe::None => Ok(true),
            Probe::Tcp => {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                    .map(|_| true)
                    .map_err(|e| e.to_string())
            }
            Probe::Line { .. } => Ok(monitor.with(|s| s.matched)),
        }
    }
}

/// Why waiting for readiness failed.
pub(crate) enum Failure {
    /// Every process of the fixture exited (leader's wait status).
    Exited(WaitStatus),
    /// The deadline passed.
    NotReady {
        awaited: String,
        waited: Duration,
        last_error: Option<String>,
    },
}

/// Waits until `ready` holds, the fixture dies, or `timeout` passes.
pub(crate) fn wait(
    ready: &Ready,
    port: u16,
    monitor: &Monitor,
    timeout: Duration,
) -> Result<(), Failure> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut backoff = Backoff::new(POLL_MAX);
    let mut last_error = None;
    loop {
        let events = monitor.events();
        match ready.probe(port, monitor) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        let (gone, guardian_closed) = monitor.with(|s| (s.gone, s.guardian_closed));
        if let Some(status) = gone {
            return Err(Failure::Exited(status));
        }
        let now = Instant::now();
        if now >= deadline || guardian_closed {
            if guardian_closed {
                last_error = Some("the guardian process exited unexpectedly".into());
            }
            let awaited = ready.describe(port);
            return Err(Failure::NotReady {
                awaited,
                waited: now - start,
                last_error,
            });
        }
        monitor.wait_event(events, backoff.next().min(deadline - now));
    }
}
