//! Output capture and the guardian's reports, read by one monitor thread per fixture.
//!
//! The monitor owns the read ends of the server's stdout and stderr pipes, of the guardian's
//! control socket and, for `Ready::sd_notify()`, of the fixture's private `NOTIFY_SOCKET`, and
//! reads them from the first byte, so a chatty server never blocks on a full pipe. Each stream keeps its last [`OUTPUT_CAP`] bytes. Readiness line patterns are matched here,
//! as each line arrives, so no line is missed however fast the server writes; a named group
//! `port` (or `port_NAME`) in one captures the port the server chose.
//!
//! Teardown never waits for EOF: a grandchild may hold a pipe open forever, and a child the test
//! process forks without exec holds copies of every fd. Shutdown is an explicit message (a byte on
//! a pipe of our own, not its closing); the thread then drains what is buffered, for a bounded
//! time, and exits, closing the fds it alone owns (each fd has one owner). Joining it is bounded
//! too.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use regex::Regex;

use crate::deadline::Deadline;
use crate::guardian::{Msg, Report, Stopped};
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

impl Which {
    fn covers(self, stderr: bool) -> bool {
        match self {
            Which::Stdout => !stderr,
            Which::Stderr => stderr,
            Which::Both => true,
        }
    }
}

/// A line pattern the monitor checks every complete line against, until it matches once.
pub(crate) struct LineWatch {
    pub regex: Regex,
    pub which: Which,
}

impl LineWatch {
    /// The names of its groups that capture a port: `port` (the fixture's), `port_NAME`.
    fn port_groups(&self) -> impl Iterator<Item = &str> {
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
    fn keep(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let keep = &bytes[bytes.len().saturating_sub(OUTPUT_CAP)..];
        let overflow = (self.ring.len() + keep.len()).saturating_sub(OUTPUT_CAP);
        self.ring.drain(..overflow);
        self.ring.extend(keep);
    }

    /// The lines `bytes` completes (without their end of line).
    fn complete_lines(&mut self, bytes: &[u8]) -> Vec<String> {
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

/// A TCP socket a process of the fixture listens on (reported by the guardian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listener {
    pub addr: SocketAddr,
    pub pid: u32,
}

/// What the monitor has seen.
#[derive(Default)]
pub(crate) struct State {
    pub stdout: Stream,
    pub stderr: Stream,
    /// The guardian's first report: `Spawned` or `SpawnFailed`.
    pub spawn: Option<Report>,
    /// The leader exited (its wait status); other processes may live on.
    pub leader_exit: Option<sys::WaitStatus>,
    /// The fixture's processes all exited on their own (leader's wait status).
    pub gone: Option<sys::WaitStatus>,
    pub listeners: Vec<Listener>,
    pub stopped: Option<Stopped>,
    /// The zygote saw the guardian die before it reported `Stopped` (its wait status).
    pub guardian_died: Option<sys::WaitStatus>,
    /// The control socket hit EOF or an error, or the guardian's exit was seen.
    pub guardian_closed: bool,
    /// The monitor thread has finished.
    done: bool,
    watches: Vec<LineWatch>,
    /// Which of `watches` matched a line.
    pub matched: Vec<bool>,
    /// Ports captured by readiness patterns: `""` for the fixture's port, else the NAME of
    /// `port_NAME`.
    pub captured: BTreeMap<String, u16>,
    /// sd_notify: `READY=1` arrived.
    pub notify_ready: bool,
    /// sd_notify: the last `STATUS=` line.
    pub notify_status: Option<String>,
    /// Prefix for echoing each line to the test's output (`Builder::echo_output`).
    echo: Option<String>,
    /// Threads waiting for new output (`wait_for_output`): each chunk is then an event.
    pub output_waiters: usize,
    /// Bumped on every event a waiter may care about.
    events: u64,
    report_buf: Vec<u8>,
}

impl State {
    /// The server is dead: every process exited, or the leader failed (a non-zero exit or a
    /// signal) even if a helper it started lives on. Only a leader that exits 0 while its
    /// descendants live has daemonised.
    pub(crate) fn dead(&self) -> Option<sys::WaitStatus> {
        self.gone.or(self.leader_exit.filter(|&status| status != 0))
    }

    fn push(&mut self, stderr: bool, bytes: &[u8]) {
        let stream = if stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        stream.keep(bytes);
        if self.output_waiters > 0 {
            self.events += 1;
        }
        let pending = |(w, m): (&LineWatch, &bool)| !m && w.which.covers(stderr);
        let wants_lines =
            self.echo.is_some() || self.watches.iter().zip(&self.matched).any(pending);
        if !wants_lines {
            return;
        }
        for line in stream.complete_lines(bytes) {
            self.on_line(stderr, &line);
        }
    }

    fn on_line(&mut self, stderr: bool, line: &str) {
        if let Some(prefix) = &self.echo {
            echo(prefix, stderr, line);
        }
        for (i, watch) in self.watches.iter().enumerate() {
            if self.matched[i] || !watch.which.covers(stderr) {
                continue;
            }
            let Some(caps) = watch.regex.captures(line) else {
                continue;
            };
            for name in watch.port_groups() {
                let port = caps.name(name).and_then(|m| m.as_str().parse().ok());
                if let Some(port) = port {
                    let key = name.strip_prefix("port_").unwrap_or("");
                    self.captured.insert(key.to_owned(), port);
                }
            }
            self.matched[i] = true;
            self.events += 1;
        }
    }

    fn push_report(&mut self, bytes: &[u8]) {
        self.report_buf.extend_from_slice(bytes);
        while self.report_buf.len() >= Msg::SIZE {
            let mut raw = [0u8; Msg::SIZE];
            raw.copy_from_slice(&self.report_buf[..Msg::SIZE]);
            self.report_buf.drain(..Msg::SIZE);
            match Msg::from_bytes(&raw).decode() {
                Some(r @ (Report::Spawned { .. } | Report::SpawnFailed { .. })) => {
                    self.spawn = Some(r)
                }
                Some(Report::LeaderExited { status }) => self.leader_exit = Some(status),
                Some(Report::Gone { status }) => self.gone = Some(status),
                Some(Report::Listening { pid, addr }) => self.listeners.push(Listener {
                    addr,
                    pid: pid as u32,
                }),
                Some(Report::Stopped(stopped)) => self.stopped = Some(stopped),
                Some(Report::GuardianDied { status }) => self.guardian_died = Some(status),
                None => {}
            }
            self.events += 1;
        }
    }

    /// One sd_notify datagram: `KEY=VALUE` lines (sd_notify(3)).
    fn push_notify(&mut self, datagram: &[u8]) {
        for line in String::from_utf8_lossy(datagram).lines() {
            match line.split_once('=') {
                Some(("READY", "1")) => self.notify_ready = true,
                Some(("STATUS", status)) => self.notify_status = Some(status.to_owned()),
                _ => continue,
            }
            self.events += 1;
        }
    }
}

/// Prints a server's line through the test harness's output capture (`print!` from a thread
/// spawned by the test is captured with that test's output), ignoring a closed stdout.
fn echo(prefix: &str, stderr: bool, line: &str) {
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

/// The fds a monitor reads: the server's output, the guardian's reports, the fixture's
/// sd_notify socket, and, for a guardian forked from the test process, its pidfd (readable when
/// it exits).
pub(crate) struct Sources {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub ctl: OwnedFd,
    pub notify: Option<OwnedFd>,
    pub guardian_exit: Option<OwnedFd>,
}

impl Monitor {
    /// Starts the thread. `echo`: a prefix to print each line of output with.
    pub(crate) fn start(
        sources: Sources,
        watches: Vec<LineWatch>,
        echo: Option<String>,
    ) -> io::Result<Monitor> {
        let Sources {
            stdout,
            stderr,
            ctl,
            notify,
            guardian_exit,
        } = sources;
        let state = State {
            matched: vec![false; watches.len()],
            watches,
            echo,
            ..State::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
        });
        let (shutdown_r, shutdown_w) = sys::pipe()?;
        for fd in [&stdout, &stderr, &ctl].into_iter().chain(notify.as_ref()) {
            sys::set_nonblocking(fd.as_raw_fd())?;
        }
        let reader = Reader {
            shared: shared.clone(),
            fds: [Some(stdout), Some(stderr), Some(ctl), notify],
            guardian_exit,
        };
        // Spawned from the test's thread: it inherits the harness's output capture (echo).
        let thread = std::thread::Builder::new()
            .name("process-fixture-monitor".into())
            .spawn(move || reader.run(shutdown_r))?;
        Ok(Monitor {
            shared,
            shutdown: Some(shutdown_w),
            thread: Some(thread),
        })
    }

    /// A handle on the state that outlives a borrow of the monitor (a blocking task of the
    /// async API waits on it).
    pub(crate) fn view(&self) -> View {
        View(self.shared.clone())
    }

    /// Runs `f` on the current state.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.lock())
    }

    /// Waits until `f` gives `Some`, or `deadline` passes (then `None`).
    pub(crate) fn wait_for<T>(
        &self,
        deadline: Deadline,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        wait_on(&self.shared, deadline, |s| f(s))
    }

    /// Waits for the next event (a matched line, a report, output for a waiter) or `timeout`.
    pub(crate) fn wait_event(&self, since: u64, timeout: Option<Duration>) -> u64 {
        self.view().wait_event(since, timeout)
    }

    pub(crate) fn events(&self) -> u64 {
        self.shared.lock().events
    }

    /// Stops the thread: it drains what is buffered (bounded) and exits. Never waits for EOF,
    /// and the wait for the thread is bounded too.
    pub(crate) fn shutdown(&mut self) {
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

/// A shared handle on a monitor's state.
#[derive(Clone)]
pub(crate) struct View(Arc<Shared>);

impl View {
    /// Runs `f` on the current state, mutably.
    pub(crate) fn with_mut<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock())
    }

    pub(crate) fn events(&self) -> u64 {
        self.0.lock().events
    }

    /// Waits for the next event or `timeout` (`None`: no limit).
    pub(crate) fn wait_event(&self, since: u64, timeout: Option<Duration>) -> u64 {
        let deadline = timeout.map_or(Deadline::never(), Deadline::after);
        wait_on(&self.0, deadline, |s| {
            (s.events != since).then_some(s.events)
        })
        .unwrap_or(since)
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

/// Indexes of the monitor's sources.
const STDOUT: usize = 0;
const STDERR: usize = 1;
const CTL: usize = 2;
const NOTIFY: usize = 3;

/// The monitor thread's side: it alone owns and closes these fds.
struct Reader {
    shared: Arc<Shared>,
    /// stdout, stderr, control socket, notify socket; `None` once at EOF (or absent).
    fds: [Option<OwnedFd>; 4],
    guardian_exit: Option<OwnedFd>,
}

impl Reader {
    fn run(mut self, shutdown: OwnedFd) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, |f| f.as_raw_fd());
            let mut polls = [
                sys::pollfd(raw(&self.fds[STDOUT])),
                sys::pollfd(raw(&self.fds[STDERR])),
                sys::pollfd(raw(&self.fds[CTL])),
                sys::pollfd(raw(&self.fds[NOTIFY])),
                sys::pollfd(shutdown.as_raw_fd()),
                sys::pollfd(raw(&self.guardian_exit)),
            ];
            sys::poll(&mut polls, None);
            if polls[4].revents != 0 {
                self.drain_all(&mut buf, Deadline::after(DRAIN_LIMIT));
                break;
            }
            for (i, poll) in polls[..4].iter().enumerate() {
                if poll.revents != 0 {
                    self.drain(i, &mut buf, None);
                }
            }
            if polls[5].revents != 0 {
                // The guardian (our child) exited: read what it wrote, then it is closed.
                self.guardian_exit = None;
                self.drain(CTL, &mut buf, None);
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
        for i in 0..self.fds.len() {
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
            } else if i == NOTIFY && n == 0 {
                continue; // an empty datagram, not EOF
            } else {
                self.fds[i] = None; // EOF or error: close our end
                if i == CTL {
                    self.mark_closed();
                }
            }
        }
    }

    fn deliver(&self, i: usize, bytes: &[u8]) {
        let mut state = self.shared.lock();
        let before = state.events;
        match i {
            STDOUT => state.push(false, bytes),
            STDERR => state.push(true, bytes),
            CTL => state.push_report(bytes),
            _ => state.push_notify(bytes),
        }
        if state.events != before {
            self.shared.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(patterns: &[(&str, Which)]) -> State {
        let watches: Vec<LineWatch> = patterns
            .iter()
            .map(|(p, which)| LineWatch {
                regex: Regex::new(p).unwrap(),
                which: *which,
            })
            .collect();
        State {
            matched: vec![false; watches.len()],
            watches,
            ..State::default()
        }
    }

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
    fn lines_split_across_chunks_are_matched_on_their_stream() {
        let mut state = state_with(&[("^READY port=\\d+$", Which::Stdout)]);
        state.push(false, b"noise\nREA");
        state.push(true, b"READY port=1\n");
        state.push(false, b"DY port=");
        assert_eq!(state.matched, [false]);
        state.push(false, b"80\r\nmore");
        assert_eq!(state.matched, [true]);
    }

    #[test]
    fn named_groups_capture_ports() {
        let mut state = state_with(&[
            (r"listening on .*:(?P<port>\d+)$", Which::Both),
            (r"admin on (?P<port_admin>\d+)", Which::Stderr),
        ]);
        state.push(true, b"admin on 9001\n");
        state.push(false, b"listening on 127.0.0.1:38123\n");
        assert_eq!(state.matched, [true, true]);
        assert_eq!(state.captured[""], 38123);
        assert_eq!(state.captured["admin"], 9001);
    }

    #[test]
    fn notify_datagrams() {
        let mut state = State::default();
        state.push_notify(b"STATUS=loading data\nMAINPID=12");
        assert!(!state.notify_ready);
        state.push_notify(b"READY=1\nSTATUS=serving");
        assert!(state.notify_ready);
        assert_eq!(state.notify_status.as_deref(), Some("serving"));
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
