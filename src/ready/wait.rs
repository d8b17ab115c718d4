//! The wait: every probe of the tree looked at when an event comes or its poll is due, until
//! the tree holds, the server dies, a stranger takes its port, or the time is up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::context::Context;
use super::http::{self, CONNECT_TIMEOUT};
use super::probe::{Probe, Ready};
use crate::deadline::{Backoff, Deadline};
use crate::error::PortHolder;
use crate::output::{Listener, State};
use crate::sys::{self, WaitStatus};

/// The longest pause between two looks at the port when it is polled.
const PORT_POLL_MAX: Duration = Duration::from_millis(2);
/// The longest pause between two looks when `listen()` events come from the kernel: only a
/// safety net, for a listener made without a `listen()` call we see (and for a stranger's).
const EVENT_SAFETY_POLL_MAX: Duration = Duration::from_millis(100);
/// The longest pause between two HTTP requests, two unix socket or file checks, two calls of a
/// custom probe: a server's log is not flooded by the probe.
const SLOW_POLL_MAX: Duration = Duration::from_millis(100);
/// A wait longer than this prints a progress line, and again every `PROGRESS_EVERY`.
const PROGRESS_AFTER: Duration = Duration::from_secs(5);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Why waiting for readiness failed.
pub(crate) enum Failure {
    /// Every process of the fixture exited, or the leader failed (leader's wait status).
    Exited(WaitStatus),
    /// The deadline passed.
    NotReady,
    /// Another process listens on the address the fixture waits for.
    Foreign {
        port: u16,
        holder: Option<PortHolder>,
    },
}

/// What the wait learned, for the error it may become.
#[derive(Clone, Default)]
pub(crate) struct Seen {
    pub awaited: String,
    pub waited: Duration,
    pub last_error: Option<String>,
    /// The last HTTP status a probe got that was not wanted.
    pub http_status: Option<u16>,
}

/// How the port is watched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PortWatch {
    /// The guardian reports the listeners (each `listen()`, or its port watch finding the
    /// fixture's port); sock_diag is read now and then, as a safety net.
    Events,
    /// sock_diag (or /proc/net/tcp) is read every ≤ 2 ms.
    Listeners,
    /// Nothing can be read (macOS): connect, every ≤ 2 ms.
    Connect,
}

/// What the monitor had seen when the probes last looked: a copy, so that no probe runs with the
/// monitor's lock held (a custom probe calls back into the fixture).
#[derive(Default)]
struct Now {
    matched: Vec<bool>,
    notify_ready: bool,
    listeners: Vec<Listener>,
    captured_port: Option<u16>,
}

impl Now {
    fn of(state: &State) -> Now {
        Now {
            matched: state.matched.clone(),
            notify_ready: state.notify_ready,
            listeners: state.listeners.clone(),
            captured_port: state.captured.get("").copied(),
        }
    }
}

/// One readiness wait.
struct Wait<'a> {
    cx: &'a Context<'a>,
    deadline: Deadline,
    /// The last unwanted HTTP status.
    http_status: Option<u16>,
    how: PortWatch,
    last_error: Option<String>,
    /// A stranger's listener on an address the fixture waits for: the wait fails.
    foreign: Option<(u16, Option<PortHolder>)>,
    /// One netlink socket for every look of the wait.
    scan: sys::ListenerScan,
}

/// The state of one probe of the tree during a wait.
struct Node<'a> {
    probe: &'a Probe,
    done: bool,
    /// When to look again (polled probes); `None`: when an event comes.
    next: Option<Deadline>,
    backoff: Backoff,
    /// HTTP: the port listens, so requests may go.
    port_ok: bool,
    /// Index of its line watch (line probes).
    watch: usize,
    children: Vec<Node<'a>>,
}

impl<'a> Node<'a> {
    fn new(ready: &'a Ready, watches: &mut usize, how: PortWatch) -> Node<'a> {
        let children = match &ready.0 {
            Probe::All(list) | Probe::Any(list) => {
                list.iter().map(|r| Node::new(r, watches, how)).collect()
            }
            _ => Vec::new(),
        };
        let watch = *watches;
        if let Probe::Line { .. } = ready.0 {
            *watches += 1;
        }
        let mut backoff = match ready.0 {
            Probe::Tcp(_) | Probe::Http { .. } => port_backoff(how),
            _ => Backoff::new(SLOW_POLL_MAX),
        };
        // With `listen()` events the first look is the first safety-net look, not one at once:
        // the server has not listened yet (the guardian would say), and a stranger on the
        // fixture's port was just ruled out by the bind check. A look then could only race the
        // guardian's report and read the fixture's fds from /proc for nothing.
        let port_probe = matches!(ready.0, Probe::Tcp(_) | Probe::Http { .. });
        let next =
            (port_probe && how == PortWatch::Events).then(|| Deadline::after(backoff.next()));
        Node {
            probe: &ready.0,
            done: false,
            next,
            backoff,
            port_ok: false,
            watch,
            children,
        }
    }

    /// Looks again (latching once it holds) and returns whether it holds; `self.next` says when
    /// to look again.
    fn check(&mut self, w: &mut Wait, now: &Now) -> bool {
        if self.done {
            return true;
        }
        // Every child is looked at (no short cut), so that each polled probe keeps its pace.
        self.done = match self.probe {
            Probe::All(_) => {
                let mut all = true;
                for child in &mut self.children {
                    all &= child.check(w, now);
                }
                all
            }
            Probe::Any(_) => {
                let mut any = false;
                for child in &mut self.children {
                    any |= child.check(w, now);
                }
                any
            }
            _ => self.check_leaf(w, now),
        };
        self.done
    }

    fn check_leaf(&mut self, w: &mut Wait, now: &Now) -> bool {
        let event_driven = matches!(
            self.probe,
            Probe::None | Probe::Line { .. } | Probe::SdNotify
        );
        if self.heard_listen(w, now) {
            return true;
        }
        if !event_driven && self.next.is_some_and(|at| !at.passed()) {
            return false; // a polled probe, not due yet
        }
        let outcome = match self.probe {
            Probe::None => Ok(true),
            Probe::Line { .. } => Ok(now.matched.get(self.watch) == Some(&true)),
            Probe::SdNotify => Ok(now.notify_ready),
            Probe::Tcp(addr) => {
                let target = addr.unwrap_or_else(|| w.local_target(now));
                w.listens(target, now)
            }
            Probe::Http { .. } => self.check_http(w, now),
            Probe::UnixSocket(path) => unix_accepts(&w.cx.resolve(path)).map_err(Some),
            Probe::File(path) => Ok(w.cx.fresh_file(path)),
            Probe::Custom(check) => check(w.cx.fixture).map_err(|e| Some(e.to_string())),
            Probe::All(_) | Probe::Any(_) => Ok(false),
        };
        match outcome {
            Ok(true) => return true,
            Ok(false) | Err(None) => {}
            Err(Some(e)) => {
                log::trace!("process-fixture: {}: {e}", w.cx.program);
                w.last_error = Some(e);
            }
        }
        if !event_driven {
            self.next = Some(Deadline::after(self.backoff.next()));
        }
        false
    }

    /// Whether a port probe's port was reported listening (a `listen()` event): that needs no
    /// look of its own, so it is taken at once, whatever the poll schedule says. A TCP probe then
    /// holds; an HTTP probe may send its request now.
    fn heard_listen(&mut self, w: &Wait, now: &Now) -> bool {
        let target = match self.probe {
            Probe::Tcp(addr) => addr.unwrap_or_else(|| w.local_target(now)),
            Probe::Http { .. } if !self.port_ok => w.local_target(now),
            _ => return false,
        };
        if !now.listeners.iter().any(|l| covers(l.addr, target)) {
            return false;
        }
        if let Probe::Http { .. } = self.probe {
            self.port_ok = true;
            self.next = None;
            self.backoff = Backoff::new(SLOW_POLL_MAX);
            return false;
        }
        true
    }

    /// HTTP: first the port (without a request), then requests at a slower pace.
    fn check_http(&mut self, w: &mut Wait, now: &Now) -> Result<bool, Option<String>> {
        let Probe::Http {
            path,
            codes,
            timeout,
        } = self.probe
        else {
            return Ok(false);
        };
        let target = w.local_target(now);
        if !self.port_ok {
            self.port_ok = w.listens(target, now)?;
            if !self.port_ok {
                return Ok(false);
            }
            self.backoff = Backoff::new(SLOW_POLL_MAX);
        }
        // Each request gets what is left of the wait at most: the deadline is never overrun.
        let timeout = match w.deadline.remaining() {
            Some(left) if left.is_zero() => return Ok(false),
            Some(left) => left.min(*timeout),
            None => *timeout,
        };
        http::check(target, path, codes, timeout).map_err(|e| {
            w.http_status = e.status.or(w.http_status);
            Some(e.message)
        })
    }

    /// How soon a polled probe of the tree wants another look (`None`: only an event).
    fn next_look(&self) -> Option<Duration> {
        if self.done {
            return None;
        }
        let own = self.next.and_then(|d| d.remaining());
        self.children
            .iter()
            .filter_map(Node::next_look)
            .chain(own)
            .min()
    }
}

/// How often the port is looked at: every ≤ 2 ms when polled, or now and then when the kernel
/// reports each `listen()` (a safety net, for a listener we had no event for).
fn port_backoff(how: PortWatch) -> Backoff {
    match how {
        PortWatch::Events => Backoff::starting(Duration::from_millis(10), EVENT_SAFETY_POLL_MAX),
        _ => Backoff::starting(Duration::from_micros(250), PORT_POLL_MAX),
    }
}

impl Wait<'_> {
    /// 127.0.0.1 and the fixture's port (a captured one once the server printed it).
    fn local_target(&self, now: &Now) -> SocketAddr {
        let port = now.captured_port.unwrap_or(self.cx.reserved_port);
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
    }

    /// Does `target` listen, on a socket of the fixture? A stranger's listener is recorded as
    /// foreign (the wait then fails). `Err(None)`: not yet.
    fn listens(&mut self, target: SocketAddr, now: &Now) -> Result<bool, Option<String>> {
        if now.listeners.iter().any(|l| covers(l.addr, target)) {
            return Ok(true);
        }
        match self.how {
            PortWatch::Connect => TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)
                .map(|_| true)
                .map_err(|e| Some(format!("connecting to {target}: {e}"))),
            _ => self.listens_by_socket(target),
        }
    }

    /// Asks the kernel which socket listens for `target` and whether it is the fixture's: by
    /// address first (a lookup, cheap enough to repeat every poll), and through every listening
    /// socket when that cannot say (no sock_diag) or names another process's socket (a
    /// stranger, or one socket of a `SO_REUSEPORT` group that holds ours too).
    fn listens_by_socket(&mut self, target: SocketAddr) -> Result<bool, Option<String>> {
        if !target.ip().is_unspecified() {
            match self.scan.listener_on(target) {
                Some(None) => return Err(Some(format!("nothing listens on {target} yet"))),
                Some(Some(l))
                    if self.cx.tree.can_inspect()
                        && self.cx.tree.socket_inodes().contains(&l.inode) =>
                {
                    return Ok(true)
                }
                _ => {}
            }
        }
        self.listens_among_all(target)
    }

    /// Reads the system's listening sockets and matches them to the fixture's processes.
    fn listens_among_all(&mut self, target: SocketAddr) -> Result<bool, Option<String>> {
        let Some(all) = self.scan.listeners() else {
            self.how = PortWatch::Connect; // cannot be read here (a sandbox): connect instead
            return Err(None);
        };
        let candidates: Vec<u64> = all
            .iter()
            .filter(|l| covers(l.addr, target))
            .map(|l| l.inode)
            .collect();
        if candidates.is_empty() {
            return Err(Some(format!("nothing listens on {target} yet")));
        }
        if !self.cx.tree.can_inspect() {
            // A listener, but no /proc to tell whose (a sandbox): connect instead.
            self.how = PortWatch::Connect;
            return self.listens(target, &Now::default());
        }
        let ours = self.cx.tree.socket_inodes();
        if candidates.iter().any(|i| ours.contains(i)) {
            return Ok(true);
        }
        if let Some(holder) = self.cx.tree.stranger_holding(&candidates) {
            self.foreign = Some((target.port(), Some(holder)));
        }
        Err(None) // a stranger's (the wait fails), or ours but closed meanwhile: look again
    }
}

/// Whether a socket listening on `listener` accepts connections to `target`.
pub(crate) fn covers(listener: SocketAddr, target: SocketAddr) -> bool {
    if listener.port() != target.port() {
        return false;
    }
    let (l, t) = (listener.ip(), target.ip());
    l == t
        || l.is_unspecified() && (l.is_ipv6() || t.is_ipv4())
        || matches!((l, t), (IpAddr::V6(v6), IpAddr::V4(v4)) if v6.to_ipv4_mapped() == Some(v4))
}

/// Waits until `ready` holds, the fixture dies, a stranger takes its port, or the timeout
/// passes.
pub(crate) fn wait(cx: &Context, ready: &Ready, events: bool) -> Result<Seen, (Failure, Seen)> {
    let start = Instant::now();
    let mut w = Wait {
        cx,
        deadline: Deadline::from(start, cx.timeout),
        how: if events {
            PortWatch::Events
        } else if cfg!(target_os = "linux") {
            PortWatch::Listeners
        } else {
            PortWatch::Connect
        },
        last_error: None,
        http_status: None,
        foreign: None,
        scan: sys::ListenerScan::new(),
    };
    let mut watches = 0;
    let mut root = Node::new(ready, &mut watches, w.how);
    let mut progress_at = Deadline::from(start, PROGRESS_AFTER);
    loop {
        let since = cx.monitor.events();
        let now = cx.monitor.with(Now::of);
        let held = root.check(&mut w, &now);
        let seen = |w: &Wait| Seen {
            awaited: ready.describe(cx),
            waited: start.elapsed(),
            last_error: w.last_error.clone(),
            http_status: w.http_status,
        };
        if held {
            log::debug!(
                "process-fixture: {} ready after {:?}",
                cx.program,
                start.elapsed()
            );
            return Ok(seen(&w));
        }
        if let Some(failure) = w.failure() {
            return Err((failure, seen(&w)));
        }
        if w.deadline.passed() {
            return Err((Failure::NotReady, seen(&w)));
        }
        if progress_at.passed() {
            progress(cx, &seen(&w));
            progress_at = Deadline::after(PROGRESS_EVERY);
        }
        let pause = root
            .next_look()
            .into_iter()
            .chain(progress_at.remaining())
            .min();
        cx.monitor
            .wait_event(since, w.deadline.remaining_capped(pause));
    }
}

impl Wait<'_> {
    /// Why the wait cannot succeed any more: a stranger on the port, a dead server, a dead
    /// guardian.
    fn failure(&mut self) -> Option<Failure> {
        if let Some((port, holder)) = self.foreign.take() {
            return Some(Failure::Foreign { port, holder });
        }
        if let Some(status) = self.cx.monitor.with(State::dead) {
            return Some(Failure::Exited(status));
        }
        if self
            .cx
            .monitor
            .with(|s| s.guardian_closed || s.guardian_died.is_some())
        {
            self.last_error = Some("the guardian process exited unexpectedly".into());
            return Some(Failure::NotReady);
        }
        None
    }
}

/// A line through the test harness's captured output: `--nocapture` shows it live, a failing
/// test shows it with its own output.
fn progress(cx: &Context, seen: &Seen) {
    let last_line = cx.monitor.with(|s| {
        let out = s.stdout.tail(1);
        if out.is_empty() {
            s.stderr.tail(1)
        } else {
            out
        }
    });
    let mut line = format!(
        "process-fixture: still waiting for {} after {:.1?}: {}",
        cx.program, seen.waited, seen.awaited
    );
    if let Some(e) = &seen.last_error {
        line.push_str(&format!(" (last probe error: {e})"));
    }
    if !last_line.is_empty() {
        line.push_str(&format!("; last output line: {last_line:?}"));
    }
    log::info!("{line}");
    eprintln!("{line}");
}

fn unix_accepts(path: &Path) -> Result<bool, String> {
    std::os::unix::net::UnixStream::connect(path)
        .map(|_| true)
        .map_err(|e| format!("connecting to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_listeners_cover_which_targets() {
        let t: SocketAddr = "127.0.0.1:80".parse().unwrap();
        for (listener, yes) in [
            ("127.0.0.1:80", true),
            ("0.0.0.0:80", true),
            ("[::]:80", true),
            ("[::ffff:127.0.0.1]:80", true),
            ("[::1]:80", false),
            ("127.0.0.1:81", false),
            ("10.0.0.1:80", false),
        ] {
            assert_eq!(covers(listener.parse().unwrap(), t), yes, "{listener}");
        }
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert!(covers("[::]:80".parse().unwrap(), v6));
        assert!(!covers("0.0.0.0:80".parse().unwrap(), v6));
    }

    #[test]
    fn line_watches_are_numbered_depth_first() {
        let r = Ready::all([
            Ready::stdout("a"),
            Ready::any([Ready::tcp(), Ready::stderr("b")]),
            Ready::output("c"),
        ]);
        let w = r.line_watches("p").unwrap();
        assert_eq!(
            w.iter().map(|w| w.regex.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let mut n = 0;
        let root = Node::new(&r, &mut n, PortWatch::Connect);
        assert_eq!(n, 3);
        assert_eq!(root.children[1].children[1].watch, 1);
        assert_eq!(root.children[2].watch, 2);
    }
}
