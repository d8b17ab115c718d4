//! Output capture and the guardian's reports, read by one monitor thread per fixture.
//!
//! The monitor owns the read ends of the server's stdout and stderr pipes and of the guardian's
//! report pipe, and reads them from the first byte, so a chatty server never blocks on a full pipe
//! (TEARDOWN.md Q6). Each stream keeps its last [`OUTPUT_CAP`] bytes. A readiness line pattern is
//! matched here, as each line arrives, so no line is missed however fast the server writes.
//!
//! Teardown never waits for EOF: a grandchild may hold a pipe open forever. Shutdown is a pipe of
//! our own whose closing wakes the thread; it then drains what is buffered, for a bounded time, and
//! exits, closing the fds it alone owns (one owner per fd, R7.2).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::guardian::Msg;
use crate::sys;

/// Bytes of each stream kept in memory (the most recent ones): 1 MiB.
pub const OUTPUT_CAP: usize = 1 << 20;
/// A line longer than this is matched on its first `LINE_CAP` bytes.
const LINE_CAP: usize = 64 << 10;
/// How long shutdown keeps draining a pipe that something still writes to.
const DRAIN_LIMIT: Duration = Duration::from_millis(50);

/// Which stream a line pattern watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Stdout,
    Stderr,
    Both,
}

/// A line pattern the monitor checks every complete line against.
pub(crate) struct LineWatch {
    pub regex: Regex,
    pub which: Which,
}

/// One captured stream.
#[derive(Default)]
pub(crate) struct Stream {
    ring: VecDeque<u8>,
    /// The line being assembled, kept only while a pattern is watched.
    partial: Vec<u8>,
    total: u64,
}

impl Stream {
    fn push(&mut self, bytes: &[u8], watch: Option<&Regex>) -> bool {
        self.total += bytes.len() as u64;
        let keep = &bytes[bytes.len().saturating_sub(OUTPUT_CAP)..];
        let overflow = (self.ring.len() + keep.len()).saturating_sub(OUTPUT_CAP);
        self.ring.drain(..overflow);
        self.ring.extend(keep);
        watch.is_some_and(|re| self.match_lines(bytes, re))
    }

    fn match_lines(&mut self, bytes: &[u8], re: &Regex) -> bool {
        let mut matched = false;
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let room = LINE_CAP.saturating_sub(self.partial.len());
            self.partial
                .extend_from_slice(&piece[..piece.len().min(room)]);
            if piece.ends_with(b"\n") {
                let line = String::from_utf8_lossy(&self.partial);
                matched |= re.is_match(line.trim_end_matches(['\n', '\r']));
                self.partial.clear();
            }
        }
        matched
    }

    /// Everything kept, decoded lossily.
    pub fn text(&self) -> String {
        let (a, b) = self.ring.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The last `lines` lines.
    pub fn tail(&self, lines: usize) -> String {
        let text = self.text();
        let trimmed = text.trim_end_matches('\n');
        let start = trimmed
            .rmatch_indices('\n')
            .nth(lines.saturating_sub(1))
            .map_or(0, |(i, _)| i + 1);
        trimmed[start..].to_string()
    }

    /// Bytes written to the stream so far, including those no longer kept.
    #[cfg(test)]
    fn total(&self) -> u64 {
        self.total
    }
}

/// What the monitor has seen.
#[derive(Default)]
pub(crate) struct State {
    pub stdout: Stream,
    pub stderr: Stream,
    /// The guardian's first report: `SPAWNED` or `SPAWN_FAILED`.
    pub spawn: Option<Msg>,
    /// The fixture's processes all exited on their own (leader's wait status).
    pub gone: Option<sys::WaitStatus>,
    pub stopped: Option<Msg>,
    /// The report pipe hit EOF: the guardian has exited.
    pub guardian_closed: bool,
    /// The readiness line pattern matched.
    pub matched: bool,
    watch: Option<LineWatch>,
    /// Bumped on every event a waiter may care about.
    events: u64,
    report_buf: Vec<u8>,
}

impl State {
    fn push(&mut self, stderr: bool, bytes: &[u8]) {
        let watch = self.watch.as_ref().filter(|w| match w.which {
            Which::Stdout => !stderr,
            Which::Stderr => stderr,
            Which::Both => true,
        });
        let stream = if stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        if stream.push(bytes, watch.map(|w| &w.regex)) && !self.matched {
            self.matched = true;
            self.watch = None; // matched once is enough; stop paying for regexes
            self.events += 1;
        }
    }

    fn push_report(&mut self, bytes: &[u8]) {
        self.report_buf.extend_from_slice(bytes);
        while self.report_buf.len() >= Msg::SIZE {
            let mut raw = [0u8; Msg::SIZE];
            raw.copy_from_slice(&self.report_buf[..Msg::SIZE]);
            self.report_buf.drain(..Msg::SIZE);
            let msg = Msg::from_bytes(&raw);
            match msg.kind {
                Msg::SPAWNED | Msg::SPAWN_FAILED => self.spawn = Some(msg),
                Msg::GONE => self.gone = Some(msg.status),
                Msg::STOPPED => self.stopped = Some(msg),
                _ => {}
            }
            self.events += 1;
        }
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not make Drop panic: take the data as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The handle to a fixture's monitor thread.
pub(crate) struct Monitor {
    shared: Arc<Shared>,
    shutdown: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    pub fn start(
        stdout: OwnedFd,
        stderr: OwnedFd,
        report: OwnedFd,
        watch: Option<LineWatch>,
    ) -> io::Result<Monitor> {
        let state = State {
            watch,
            ..State::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
        });
        let (shutdown_r, shutdown_w) = sys::pipe()?;
        for fd in [&stdout, &stderr, &report] {
            sys::set_nonblocking(fd.as_raw_fd())?;
        }
        let reader = Reader {
            shared: shared.clone(),
            fds: [Some(stdout), Some(stderr), Some(report)],
        };
        let thread = std::thread::Builder::new()
            .name("process-fixture-monitor".into())
            .spawn(move || reader.run(shutdown_r))?;
        Ok(Monitor {
            shared,
            shutdown: Some(shutdown_w),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the current state.
    pub fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.lock())
    }

    /// Waits until `f` gives `Some`, or `deadline` passes (then `f`'s last answer, `None`).
    pub fn wait_for<T>(
        &self,
        deadline: Instant,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let mut state = self.shared.lock();
        loop {
            if let Some(v) = f(&state) {
                return Some(v);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Waits for the next event (a matched line, a report) or `timeout`, whichever comes first.
    pub fn wait_event(&self, since: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        self.wait_for(deadline, |s| (s.events != since).then_some(s.events))
            .unwrap_or(since)
    }

    pub fn events(&self) -> u64 {
        self.shared.lock().events
    }

    /// Stops the thread: it drains what is buffered (bounded) and exits. Never waits for EOF.
    pub fn shutdown(&mut self) {
        drop(self.shutdown.take()); // POLLHUP on the thread's end
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::warn!("process-fixture: the output monitor thread panicked");
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The monitor thread's side: it alone owns and closes these fds.
struct Reader {
    shared: Arc<Shared>,
    /// stdout, stderr, report; `None` once at EOF.
    fds: [Option<OwnedFd>; 3],
}

impl Reader {
    fn run(mut self, shutdown: OwnedFd) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, |f| f.as_raw_fd());
            let mut polls = [
                sys::pollfd(raw(&self.fds[0])),
                sys::pollfd(raw(&self.fds[1])),
                sys::pollfd(raw(&self.fds[2])),
                sys::pollfd(shutdown.as_raw_fd()),
            ];
            sys::poll_readable(&mut polls, Duration::from_secs(3600));
            if polls[3].revents != 0 {
                self.drain_all(&mut buf, Instant::now() + DRAIN_LIMIT);
                return;
            }
            for (i, poll) in polls[..3].iter().enumerate() {
                if poll.revents != 0 {
                    self.drain(i, &mut buf, None);
                }
            }
        }
    }

    fn drain_all(&mut self, buf: &mut [u8], deadline: Instant) {
        for i in 0..3 {
            self.drain(i, buf, Some(deadline));
        }
    }

    /// Reads fd `i` until it would block (or EOF, or the deadline).
    fn drain(&mut self, i: usize, buf: &mut [u8], deadline: Option<Instant>) {
        while let Some(fd) = &self.fds[i] {
            let n = sys::read(fd.as_raw_fd(), buf);
            if n > 0 {
                self.deliver(i, &buf[..n as usize]);
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
            } else if n == -1 && sys::errno() == libc::EAGAIN {
                return;
            } else {
                self.fds[i] = None; // EOF or error: close our end
                if i == 2 {
                    let mut state = self.shared.lock();
                    state.guardian_closed = true;
                    state.events += 1;
                    self.shared.changed.notify_all();
                }
            }
        }
    }

    fn deliver(&self, i: usize, bytes: &[u8]) {
        let mut state = self.shared.lock();
        let before = state.events;
        match i {
            0 => state.push(false, bytes),
            1 => state.push(true, bytes),
            _ => state.push_report(bytes),
        }
        if state.events != before {
            self.shared.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_only_the_last_cap_bytes() {
        let mut s = Stream::default();
        let chunk = vec![b'x'; 300 << 10];
        for _ in 0..10 {
            s.push(&chunk, None);
        }
        s.push(b"end\n", None);
        assert_eq!(s.ring.len(), OUTPUT_CAP);
        assert_eq!(s.total(), 10 * (300 << 10) + 4);
        assert!(s.text().ends_with("xend\n"));
    }

    #[test]
    fn lines_split_across_chunks_are_matched() {
        let re = Regex::new("^READY port=\\d+$").unwrap();
        let mut s = Stream::default();
        assert!(!s.push(b"noise\nREA", Some(&re)));
        assert!(!s.push(b"DY port=", Some(&re)));
        assert!(s.push(b"80\r\nmore", Some(&re)));
    }

    #[test]
    fn tail_gives_last_lines() {
        let mut s = Stream::default();
        s.push(b"a\nb\nc\nd\n", None);
        assert_eq!(s.tail(2), "c\nd");
        assert_eq!(s.tail(10), "a\nb\nc\nd");
    }
}
