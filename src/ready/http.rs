//! The HTTP probe's client: one `GET`, the status line read, nothing more.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A loopback connect either succeeds or is refused at once; this only bounds a full backlog.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a `GET` did not make the server ready.
pub(crate) struct NotYet {
    /// The status it answered, when it answered one.
    pub(crate) status: Option<u16>,
    pub(crate) message: String,
}

/// `GET {path}` on `target`, within `timeout`: `Ok(true)` for a wanted status (any 2xx when
/// `codes` is empty).
pub(crate) fn check(
    target: SocketAddr,
    path: &str,
    codes: &[u16],
    timeout: Duration,
) -> Result<bool, NotYet> {
    let status = status(target, path, timeout).map_err(|message| NotYet {
        status: None,
        message,
    })?;
    let wanted = if codes.is_empty() {
        (200..300).contains(&status)
    } else {
        codes.contains(&status)
    };
    if wanted {
        return Ok(true);
    }
    let mut message = format!("GET {path} answered {status}");
    if (400..500).contains(&status) && codes.is_empty() {
        message.push_str(&format!(
            ": is the path right? (to accept it: Ready::http_status({path:?}, [{status}]))"
        ));
    }
    Err(NotYet {
        status: Some(status),
        message,
    })
}

/// The status code of `GET {path}` on `target`.
fn status(target: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    // A fragment is the client's own: never sent.
    let path = path.split('#').next().unwrap_or(path);
    let fail = |e: std::io::Error| format!("GET {path}: {e}");
    let mut conn =
        TcpStream::connect_timeout(&target, timeout.min(CONNECT_TIMEOUT)).map_err(fail)?;
    conn.set_read_timeout(Some(timeout)).map_err(fail)?;
    conn.set_write_timeout(Some(timeout)).map_err(fail)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: process-fixture\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).map_err(fail)?;
    // Only the status line matters: read until its end (bounded).
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(fail(e)),
        }
    }
    parse_status_line(&head).ok_or_else(|| {
        let line = String::from_utf8_lossy(&head);
        format!(
            "GET {path}: not an HTTP response: {:?}",
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
}
