//! One captured stream: the ring of its last [`OUTPUT_CAP`] bytes, the line patterns matched
//! against it, and the echo of its lines. Separate from the monitor because it is plain data,
//! tested without a thread or an fd.

use std::collections::VecDeque;
use std::io::{self, Write};

use regex::Regex;

use super::OUTPUT_CAP;

/// A line longer than this is matched on its first `LINE_CAP` bytes.
const LINE_CAP: usize = 64 << 10;

/// Which stream a line pattern watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Stdout,
    Stderr,
    Both,
}

impl Which {
    pub(super) fn covers(self, stderr: bool) -> bool {
        match self {
            Which::Stdout => !stderr,
            Which::Stderr => stderr,
            Which::Both => true,
        }
    }
}

/// A line pattern the monitor checks every complete line against, until it matches once.
#[derive(Clone)]
pub(crate) struct LineWatch {
    pub regex: Regex,
    pub which: Which,
}

impl LineWatch {
    /// The names of its groups that capture a port: `port` (the fixture's), `port_NAME`.
    pub(super) fn port_groups(&self) -> impl Iterator<Item = &str> {
        self.regex
            .capture_names()
            .flatten()
            .filter(|n| *n == "port" || n.starts_with("port_"))
    }
}

/// One captured stream.
#[derive(Default)]
pub(crate) struct Stream {
    ring: VecDeque<u8>,
    /// The line being assembled, while lines are wanted.
    partial: Vec<u8>,
    total: u64,
}

impl Stream {
    pub(super) fn keep(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let keep = &bytes[bytes.len().saturating_sub(OUTPUT_CAP)..];
        let overflow = (self.ring.len() + keep.len()).saturating_sub(OUTPUT_CAP);
        self.ring.drain(..overflow);
        self.ring.extend(keep);
    }

    /// The lines `bytes` completes (without their end of line).
    pub(super) fn complete_lines(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let room = LINE_CAP.saturating_sub(self.partial.len());
            self.partial
                .extend_from_slice(&piece[..piece.len().min(room)]);
            if piece.ends_with(b"\n") {
                let line = String::from_utf8_lossy(&self.partial);
                lines.push(line.trim_end_matches(['\n', '\r']).to_owned());
                self.partial.clear();
            }
        }
        lines
    }

    /// Everything kept, decoded lossily.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes_from(0)).into_owned()
    }

    /// The kept bytes from absolute offset `from` (bytes written since the start) on.
    fn bytes_from(&self, from: u64) -> Vec<u8> {
        let first_kept = self.total - self.ring.len() as u64;
        let skip = from.saturating_sub(first_kept).min(self.ring.len() as u64) as usize;
        self.ring.range(skip..).copied().collect()
    }

    /// The first complete line at or after absolute offset `from` that `re` matches, and the
    /// offset just past it.
    pub(crate) fn find_line(&self, from: u64, re: &Regex) -> Option<(String, u64)> {
        let first_kept = self.total - self.ring.len() as u64;
        let mut offset = from.max(first_kept);
        let bytes = self.bytes_from(offset);
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            if !piece.ends_with(b"\n") {
                break; // not complete yet
            }
            offset += piece.len() as u64;
            let line = String::from_utf8_lossy(piece);
            let line = line.trim_end_matches(['\n', '\r']);
            if re.is_match(line) {
                return Some((line.to_owned(), offset));
            }
        }
        None
    }

    /// Bytes written to the stream so far, including those no longer kept.
    #[cfg(test)]
    fn total(&self) -> u64 {
        self.total
    }

    /// The last `lines` lines.
    pub(crate) fn tail(&self, lines: usize) -> String {
        let text = self.text();
        let trimmed = text.trim_end_matches('\n');
        let start = trimmed
            .rmatch_indices('\n')
            .nth(lines.saturating_sub(1))
            .map_or(0, |(i, _)| i + 1);
        trimmed[start..].to_string()
    }
}

/// Prints a server's line through the test harness's output capture (`print!` from a thread
/// spawned by the test is captured with that test's output), ignoring a closed stdout.
/// How lines are echoed (`Builder::echo_output`, `echo_prefix`, `echo_to_stderr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Echo {
    pub(crate) prefix: String,
    /// Every line to stderr, stdout's too (a command line tool whose stdout is another's).
    pub(crate) to_stderr: bool,
}

pub(super) fn echo(how: &Echo, stderr: bool, line: &str) {
    let (prefix, stderr) = (&how.prefix, stderr || how.to_stderr);
    let text = format!("[{prefix}] {line}\n");
    // `print!` is what the harness captures; a plain write would bypass it. It panics only
    // when the real stdout is gone, which a monitor thread must survive.
    let _ = std::panic::catch_unwind(|| {
        if stderr {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    });
    let _ = io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_only_the_last_cap_bytes() {
        let mut s = Stream::default();
        let chunk = vec![b'x'; 300 << 10];
        for _ in 0..10 {
            s.keep(&chunk);
        }
        s.keep(b"end\n");
        assert_eq!(s.ring.len(), OUTPUT_CAP);
        assert_eq!(s.total(), 10 * (300 << 10) + 4);
        assert!(s.text().ends_with("xend\n"));
    }

    #[test]
    fn find_line_walks_complete_lines_from_an_offset() {
        let mut s = Stream::default();
        s.keep(b"a reloaded\nb\nc reloaded\npartial reloaded");
        let re = Regex::new("reloaded").unwrap();
        let (line, next) = s.find_line(0, &re).unwrap();
        assert_eq!(line, "a reloaded");
        let (line, next) = s.find_line(next, &re).unwrap();
        assert_eq!(line, "c reloaded");
        assert_eq!(
            s.find_line(next, &re),
            None,
            "an incomplete line is not matched"
        );
    }

    #[test]
    fn tail_gives_last_lines() {
        let mut s = Stream::default();
        s.keep(b"a\nb\nc\nd\n");
        assert_eq!(s.tail(2), "c\nd");
        assert_eq!(s.tail(10), "a\nb\nc\nd");
    }
}
