//! Output capture and the guardian's reports, read by one monitor thread per fixture.
//!
//! The monitor owns the read ends of the server's stdout and stderr pipes and of the guardian's
//! control socket, and reads them from the first byte, so a chatty server never blocks on a full
//! pipe (TEARDOWN.md Q6). Each stream keeps its last [`OUTPUT_CAP`] bytes. A readiness line
//! pattern is matched here, as each line arrives, so no line is missed however fast the server
//! writes.
//!
//! Teardown never waits for EOF: a grandchild may hold a pipe open forever, and a child the test
//! process forks without exec holds copies of every fd. Shutdown is an explicit message (a byte on
//! a pipe of our own, not its closing); the thread then drains what is buffered, for a bounded
//! time, and exits, closing the fds it alone owns (one owner per fd, R7.2). Joining it is bounded
//! too.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use regex::Regex;

use crate::deadline::Deadline;
use crate::guardian::Msg;
use crate::sys;

/// Bytes of each stream kept in memory (the most recent ones): 1 MiB.
pub const OUTPUT_CAP: usize = 1 << 20;
/// A line longer than this is matched on its first `LINE_CAP` bytes.
const LINE_CAP: usize = 64 << 10;
/// How long shutdown keeps draining a pipe that something still writes to.
const DRAIN_LIMIT: Duration = Duration::from_millis(50);
/// How long shutdown waits for the thread to finish (it needs at most `DRAIN_LIMIT`).
const JOIN_LIMIT: Duration = Duration::from_secs(2);

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

/// A TCP socket a process of the fixture listens on (reported by the guardian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listener {
    pub addr: std::net::SocketAddr,
    pub pid: u32,
}

/// What the monitor has seen.
#[derive(Default)]
pub(crate) struct State {
    pub stdout: Stream,
    pub stderr: Stream,
    /// The guardian's first report: `SPAWNED` or `SPAWN_FAILED`.
    pub spawn: Option<Msg>,
    /// The leader exited (its wait status); other processes may live on.
    pub leader_exit: Option<sys::WaitStatus>,
    /// The fixture's processes all exited on their own (leader's wait status).
    pub gone: Option<sys::WaitStatus>,
    pub listeners: Vec<Listener>,
    pub stopped: Option<Msg>,
    /// The zygote saw the guardian die before it reported `STOPPED`.
    pub guardian_died: Option<Msg>,
    /// The control socket hit EOF or an error, or the guardian's exit was seen.
    pub guardian_closed: bool,
    /// The monitor thread has finished.
    done: bool,
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
                Msg::LEADER_EXITED => self.leader_exit = Some(msg.status),
                Msg::GONE => self.gone = Some(msg.status),
                Msg::LISTENING => self.listeners.extend(listener(&msg)),
                Msg::STOPPED => self.stopped = Some(msg),
                Msg::GUARDIAN_DIED => self.guardian_died = Some(msg),
                _ => {}
            }
            self.events += 1;
        }
    }
}

fn listener(msg: &Msg) -> Option<Listener> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let ip = match msg.detail as i32 {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&msg.addr[..4]).ok()?)),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(msg.addr)),
        _ => return None,
    };
    Some(Listener {
        addr: SocketAddr::new(ip, u16::try_from(msg.port).ok()?),
        pid: msg.pid as u32,
    })
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

/// The fds a monitor reads: the server's output, the guardian's reports, and, for a guardian
/// forked from the test process, its pidfd (readable when it exits).
pub(crate) struct Sources {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub ctl: OwnedFd,
    pub guardian_exit: Option<OwnedFd>,
}

impl Monitor {
    pub fn start(sources: Sources, watch: Option<LineWatch>) -> io::Result<Monitor> {
        let Sources {
            stdout,
            stderr,
            ctl: report,
            guardian_exit,
        } = sources;
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
            guardian_exit,
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

    /// Waits until `f` gives `Some`, or `deadline` passes (then `None`).
    pub fn wait_for<T>(
        &self,
        deadline: Deadline,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        wait_on(&self.shared, deadline, |s| f(s))
    }

    /// Waits for the next event (a matched line, a report) or `timeout`, whichever comes first.
    pub fn wait_event(&self, since: u64, timeout: Option<Duration>) -> u64 {
        let deadline = timeout.map_or(Deadline::never(), Deadline::after);
        self.wait_for(deadline, |s| (s.events != since).then_some(s.events))
            .unwrap_or(since)
    }

    pub fn events(&self) -> u64 {
        self.shared.lock().events
    }

    /// Stops the thread: it drains what is buffered (bounded) and exits. Never waits for EOF,
    /// and the wait for the thread is bounded too.
    pub fn shutdown(&mut self) {
        if let Some(fd) = self.shutdown.take() {
            // A message, not the closing: a forked child may hold a copy of this end.
            sys::write_all(fd.as_raw_fd(), b"x");
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        let finished = wait_on(&self.shared, Deadline::after(JOIN_LIMIT), |s| {
            s.done.then_some(())
        });
        if finished.is_none() {
            log::warn!("process-fixture: the output monitor did not finish in {JOIN_LIMIT:?}; left to finish alone");
            return;
        }
        if thread.join().is_err() {
            log::warn!("process-fixture: the output monitor thread panicked");
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Waits on the monitor's condition variable until `f` gives `Some` or `deadline` passes.
fn wait_on<T>(
    shared: &Shared,
    deadline: Deadline,
    mut f: impl FnMut(&State) -> Option<T>,
) -> Option<T> {
    let mut state = shared.lock();
    loop {
        if let Some(v) = f(&state) {
            return Some(v);
        }
        let timeout = match deadline.remaining() {
            Some(Duration::ZERO) => return None,
            Some(left) => left,
            None => Duration::from_secs(3600),
        };
        state = match shared.changed.wait_timeout(state, timeout) {
            Ok((s, _)) => s,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}

/// The monitor thread's side: it alone owns and closes these fds.
struct Reader {
    shared: Arc<Shared>,
    /// stdout, stderr, control socket; `None` once at EOF.
    fds: [Option<OwnedFd>; 3],
    guardian_exit: Option<OwnedFd>,
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
                sys::pollfd(raw(&self.guardian_exit)),
            ];
            sys::poll(&mut polls, None);
            if polls[3].revents != 0 {
                self.drain_all(&mut buf, Deadline::after(DRAIN_LIMIT));
                break;
            }
            for (i, poll) in polls[..3].iter().enumerate() {
                if poll.revents != 0 {
                    self.drain(i, &mut buf, None);
                }
            }
            if polls[4].revents != 0 {
                // The guardian (our child) exited: read what it wrote, then it is closed.
                self.guardian_exit = None;
                self.drain(2, &mut buf, None);
                self.mark_closed();
            }
        }
        let mut state = self.shared.lock();
        state.done = true;
        self.shared.changed.notify_all();
    }

    fn mark_closed(&self) {
        let mut state = self.shared.lock();
        state.guardian_closed = true;
        state.events += 1;
        self.shared.changed.notify_all();
    }

    fn drain_all(&mut self, buf: &mut [u8], deadline: Deadline) {
        for i in 0..3 {
            self.drain(i, buf, Some(deadline));
        }
    }

    /// Reads fd `i` until it would block (or EOF, or the deadline).
    fn drain(&mut self, i: usize, buf: &mut [u8], deadline: Option<Deadline>) {
        while let Some(fd) = &self.fds[i] {
            let n = sys::read(fd.as_raw_fd(), buf);
            if n > 0 {
                self.deliver(i, &buf[..n as usize]);
                if deadline.is_some_and(|d| d.passed()) {
                    return;
                }
            } else if n == -1 && sys::errno() == libc::EAGAIN {
                return;
            } else {
                self.fds[i] = None; // EOF or error: close our end
                if i == 2 {
                    self.mark_closed();
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
