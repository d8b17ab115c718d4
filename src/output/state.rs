//! What the monitor has learned: the captured streams, the lines matched, and the guardian's
//! reports and sd_notify datagrams it decoded. Separate from the monitor thread, which only
//! delivers bytes to it, so the decoding is tested without a thread or an fd.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::guardian::{Frozen, Msg, Report, Stopped};
use crate::sys;

use super::stream::{echo, Echo, LineWatch, Stream};

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
    /// The guardian's last answer to a pause or a resume.
    pub frozen: Option<Frozen>,
    /// The zygote saw the guardian die before it reported `Stopped` (its wait status).
    pub guardian_died: Option<sys::WaitStatus>,
    /// The control socket hit EOF or an error, or the guardian's exit was seen.
    pub guardian_closed: bool,
    /// The monitor thread has finished.
    pub(super) done: bool,
    pub(super) watches: Vec<LineWatch>,
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
    pub(super) echo: Option<Echo>,
    /// Threads waiting for new output (`wait_for_output`): each chunk is then an event.
    pub output_waiters: usize,
    /// Bumped on every event a waiter may care about.
    pub(super) events: u64,
    pub(super) report_buf: Vec<u8>,
}

impl State {
    /// The server is dead: every process exited, or the leader failed (a non-zero exit or a
    /// signal) even if a helper it started lives on. Only a leader that exits 0 while its
    /// descendants live has daemonised.
    pub(crate) fn dead(&self) -> Option<sys::WaitStatus> {
        self.gone.or(self.leader_exit.filter(|&status| status != 0))
    }

    pub(super) fn push(&mut self, stderr: bool, bytes: &[u8]) {
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
        if let Some(how) = &self.echo {
            echo(how, stderr, line);
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

    pub(super) fn push_report(&mut self, bytes: &[u8]) {
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
                Some(Report::Frozen(frozen)) => self.frozen = Some(frozen),
                None => {}
            }
            self.events += 1;
        }
    }

    /// One sd_notify datagram: `KEY=VALUE` lines (sd_notify(3)).
    pub(super) fn push_notify(&mut self, datagram: &[u8]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Which;
    use regex::Regex;

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
}
