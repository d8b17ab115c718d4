//! Readiness probes: when is a freshly spawned server usable?
//!
//! Probes poll with a growing interval (0.5 ms at first, ×1.5, capped at [`POLL_MAX`]); a line
//! pattern is matched by the output monitor as each line arrives and wakes the waiter at once.
//! Every wait also watches the guardian's reports, so a server that dies fails `spawn` at once
//! instead of after the timeout.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::deadline::Deadline;
use crate::guardian::Backoff;
use crate::output::{LineWatch, Monitor, Which};
use crate::sys::WaitStatus;
use crate::Error;

/// The longest pause between two probes.
pub const POLL_MAX: Duration = Duration::from_millis(20);
/// A loopback connect either succeeds or is refused at once; this only bounds a full backlog.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one HTTP probe may wait for the status line.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// How to tell that the server is ready.
///
/// ```
/// use process_fixture::Ready;
/// let _ = Ready::tcp();                           // the fixture's port accepts a connection
/// let _ = Ready::stderr(r"listening on \S+:\d+"); // a line of stderr matches
/// let _ = Ready::http("/health");                 // GET answers 2xx
/// ```
#[derive(Clone, Debug)]
pub struct Ready(Probe);

#[derive(Clone, Debug)]
enum Probe {
    None,
    Tcp,
    Http { path: String },
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

    /// Ready when `GET http://127.0.0.1:{port}{path}` answers with a 2xx status: a port that
    /// accepts connections is not always a service that works (a server still loading answers
    /// 503). HTTP/1.1 over a plain connection, no TLS. A path that does not start with `/` or
    /// contains whitespace is reported by `spawn` as [`Error::InvalidProbe`].
    pub fn http(path: &str) -> Ready {
        Ready(Probe::Http {
            path: path.to_owned(),
        })
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

    /// The line watch to install in the monitor before the first byte is read; checks the probe.
    pub(crate) fn line_watch(&self, program: &str) -> Result<Option<LineWatch>, Error> {
        match &self.0 {
            Probe::Http { path }
                if !path.starts_with('/') || path.contains(char::is_whitespace) =>
            {
                Err(Error::InvalidProbe {
                    program: program.to_owned(),
                    probe: format!("Ready::http({path:?})"),
                    reason: "the path must start with '/' and contain no whitespace".into(),
                })
            }
            Probe::Line { which, pattern } => {
                let regex = Regex::new(pattern).map_err(|e| Error::InvalidRegex {
                    program: program.to_owned(),
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
            Probe::Http { path } => format!("a 2xx answer to GET http://127.0.0.1:{port}{path}"),
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
            Probe::Http { path } => http_status(port, path).and_then(|status| {
                if (200..300).contains(&status) {
                    Ok(true)
                } else {
                    Err(format!("HTTP status {status}"))
                }
            }),
            Probe::Line { .. } => Ok(monitor.with(|s| s.matched)),
        }
    }
}

/// The status code of `GET {path}` on 127.0.0.1:`port`.
fn http_status(port: u16, path: &str) -> Result<u16, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut conn = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: process-fixture\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // Only the status line matters: read until its end (bounded).
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    parse_status_line(&head).ok_or_else(|| {
        let line = String::from_utf8_lossy(&head);
        format!(
            "not an HTTP response: {:?}",
            line.lines().next().unwrap_or("")
        )
    })
}

/// `HTTP/1.x NNN reason` → NNN.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts
        .next()?
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))
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
    let deadline = Deadline::from(start, timeout);
    let mut backoff = Backoff::new(POLL_MAX);
    let mut last_error = None;
    loop {
        let events = monitor.events();
        match ready.probe(port, monitor) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if let Some(status) = monitor.with(dead) {
            return Err(Failure::Exited(status));
        }
        let guardian_lost = monitor.with(|s| s.guardian_closed || s.guardian_died.is_some());
        if deadline.passed() || guardian_lost {
            if guardian_lost {
                last_error = Some("the guardian process exited unexpectedly".into());
            }
            let awaited = ready.describe(port);
            return Err(Failure::NotReady {
                awaited,
                waited: start.elapsed(),
                last_error,
            });
        }
        monitor.wait_event(events, deadline.remaining_capped(Some(backoff.next())));
    }
}

/// The server is dead for readiness: every process exited, or the leader failed (a non-zero
/// exit or a signal) even if a helper it started lives on. Only a leader that exits 0 while its
/// descendants live has daemonised (issue "guardian, second generation", defect 6).
fn dead(s: &crate::output::State) -> Option<WaitStatus> {
    s.gone.or(s.leader_exit.filter(|&status| status != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\nX: y"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 abc\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn bad_http_paths_are_refused() {
        for path in ["health", "/a b", "/x\r\nHost: evil"] {
            assert!(
                matches!(
                    Ready::http(path).line_watch("p"),
                    Err(Error::InvalidProbe { .. })
                ),
                "{path:?}"
            );
        }
        assert!(Ready::http("/health?full=1")
            .line_watch("p")
            .unwrap()
            .is_none());
    }
}
