//! Readiness: when is a freshly spawned server usable, and what is wrong when it is not?
//!
//! Probes are event-driven where the system gives an event, and polled where it does not:
//! - a line of output: matched by the monitor as it arrives, which wakes the waiter at once;
//! - the port: on Linux the guardian hears of every `listen()` of the server's processes from the
//!   kernel (seccomp), where available; otherwise the kernel is asked every ≤ 2 ms which socket
//!   listens on the fixture's address (sock_diag netlink), and its inode is matched to the
//!   fixture's processes;
//!   only where neither can be read (macOS) does a probe connect. No connection reaches the
//!   server before the test's own, and a listener of another process is never taken for ours:
//!   `spawn` fails with [`Error::PortInUse`] naming it;
//! - sd_notify `READY=1`, on the fixture's private `NOTIFY_SOCKET`;
//! - HTTP, once the port listens; a unix socket, a file, a closure: polled with a growing pause.
//!
//! Every wait also watches the fixture: a server that dies fails `spawn` at once with its exit
//! status, and a leader that fails while a helper it started lives on counts as dead (only a
//! leader that exits 0 has daemonised).

use std::error::Error as StdError;
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::deadline::{Backoff, Deadline};
use crate::output::{LineWatch, Listener, State, Which};
use crate::sys::{self, WaitStatus};
use crate::{Error, PortHolder, ProcessFixture};

/// The longest pause between two looks at the port when it is polled.
pub const PORT_POLL_MAX: Duration = Duration::from_millis(2);
/// The longest pause between two looks when `listen()` events come from the kernel: only a
/// safety net, for a listener made without a `listen()` call we see (and for a stranger's).
const EVENT_SAFETY_POLL_MAX: Duration = Duration::from_millis(100);
/// The longest pause between two HTTP requests, two unix socket or file checks, two calls of a
/// custom probe: a server's log is not flooded by the probe.
const SLOW_POLL_MAX: Duration = Duration::from_millis(100);
/// How long one HTTP probe may wait for the status line, by default.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// A loopback connect either succeeds or is refused at once; this only bounds a full backlog.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A wait longer than this prints a progress line, and again every `PROGRESS_EVERY`.
const PROGRESS_AFTER: Duration = Duration::from_secs(5);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

type Check = dyn Fn(&ProcessFixture) -> Result<bool, Box<dyn StdError + Send + Sync>> + Send + Sync;

/// How to tell that the server is ready.
///
/// ```
/// use process_fixture::Ready;
/// let _ = Ready::tcp();                           // the fixture's port listens (the default)
/// let _ = Ready::stderr(r"listening on \S+:\d+"); // a line of stderr matches
/// let _ = Ready::http("/health");                 // GET answers 2xx, once the port listens
/// let _ = Ready::all([Ready::tcp(), Ready::stdout("migrations done")]);
/// ```
#[derive(Clone)]
pub struct Ready(Probe);

#[derive(Clone)]
enum Probe {
    None,
    /// The fixture's port on 127.0.0.1 (`None`), or an address.
    Tcp(Option<SocketAddr>),
    Http {
        path: String,
        /// Accepted status codes; empty: any 2xx.
        codes: Vec<u16>,
        timeout: Duration,
    },
    Line {
        which: Which,
        pattern: String,
    },
    UnixSocket(PathBuf),
    File(PathBuf),
    SdNotify,
    Custom(Arc<Check>),
    All(Vec<Ready>),
    Any(Vec<Ready>),
}

impl Ready {
    /// Ready as soon as the program has been exec'd: for a program that listens on nothing.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let worker = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn()?;
    /// assert!(worker.is_running());
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn none() -> Ready {
        Ready(Probe::None)
    }

    /// Ready when the fixture's port listens on 127.0.0.1 (or on all addresses): the default.
    /// No connection is made on Linux: the listening socket itself is seen (see the module
    /// docs), and must belong to the fixture's processes.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// # if std::process::Command::new("python3").arg("--version").output().is_err() { return Ok(()); }
    /// let srv = ProcessFixture::builder("python3")
    ///     .args(["-m", "http.server", "--bind", "127.0.0.1", "{port}"])
    ///     .ready(Ready::tcp())
    ///     .spawn()?;
    /// std::net::TcpStream::connect(("127.0.0.1", srv.port()))?; // accepted: it listens
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tcp() -> Ready {
        Ready(Probe::Tcp(None))
    }

    /// Ready when `addr` listens: another address than the fixture's port on 127.0.0.1, e.g.
    /// `[::1]:8080` for a server that listens on IPv6 loopback only.
    ///
    /// ```no_run
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("my-server")
    ///     .args(["--listen", "[::1]:8443"])
    ///     .ready(Ready::tcp_addr("[::1]:8443".parse()?))
    ///     .spawn()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tcp_addr(addr: SocketAddr) -> Ready {
        Ready(Probe::Tcp(Some(addr)))
    }

    /// Ready when `GET http://127.0.0.1:{port}{path}` answers with a 2xx status, asked only once
    /// the port listens: a port that accepts connections is not always a service that works (a
    /// server still loading answers 503). HTTP/1.1 over a plain connection, no TLS; each request
    /// may take 2 s ([`Ready::request_timeout`]). A path that does not start with `/` or contains
    /// whitespace is reported by `spawn` as [`Error::InvalidProbe`].
    ///
    /// ```no_run
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("my-server")
    ///     .args(["--port", "{port}"])
    ///     .ready(Ready::http("/health"))
    ///     .spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn http(path: &str) -> Ready {
        Ready::http_status(path, [])
    }

    /// As [`Ready::http`], ready when the status is one of `codes` (e.g. 401: the health page
    /// wants a login, but the server is up). No codes: any 2xx.
    ///
    /// ```no_run
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("my-server")
    ///     .args(["--port", "{port}"])
    ///     .ready(Ready::http_status("/admin", [200, 401]))
    ///     .spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn http_status(path: &str, codes: impl IntoIterator<Item = u16>) -> Ready {
        Ready(Probe::Http {
            path: path.to_owned(),
            codes: codes.into_iter().collect(),
            timeout: HTTP_TIMEOUT,
        })
    }

    /// Sets how long each HTTP request of this probe (and of the probes inside it) may take.
    ///
    /// ```
    /// use process_fixture::Ready;
    /// use std::time::Duration;
    /// let _ = Ready::http("/health").request_timeout(Duration::from_millis(300));
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Ready {
        match &mut self.0 {
            Probe::Http { timeout: t, .. } => *t = timeout,
            Probe::All(list) | Probe::Any(list) => {
                *list = list.drain(..).map(|r| r.request_timeout(timeout)).collect();
            }
            _ => {}
        }
        self
    }

    /// Ready when a line of stdout matches the regular expression `pattern`. An invalid pattern
    /// is reported by `spawn` as [`Error::InvalidRegex`]. A named group `port` captures the port
    /// the server chose (a server that binds port 0 and prints it): [`ProcessFixture::port`] and
    /// [`ProcessFixture::url`] then give it, and no port is picked in advance at all; `port_NAME`
    /// sets [`ProcessFixture::named_port`]`("NAME")` the same way.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// # if std::process::Command::new("python3").arg("--version").output().is_err() { return Ok(()); }
    /// let srv = ProcessFixture::builder("python3")
    ///     .args(["-u", "-c", "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); \
    ///             s.listen(); print('listening on', s.getsockname()[1]); time.sleep(60)"])
    ///     .ready(Ready::stdout(r"^listening on (?P<port>\d+)$"))
    ///     .spawn()?;
    /// std::net::TcpStream::connect(("127.0.0.1", srv.port()))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stdout(pattern: &str) -> Ready {
        Ready::line(Which::Stdout, pattern)
    }

    /// Ready when a line of stderr matches `pattern` (see [`Ready::stdout`]).
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo starting >&2; echo 'ready to accept connections' >&2; exec sleep 60"])
    ///     .ready(Ready::stderr("ready to accept"))
    ///     .spawn()?;
    /// assert!(srv.stderr().contains("starting"));
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn stderr(pattern: &str) -> Ready {
        Ready::line(Which::Stderr, pattern)
    }

    /// Ready when a line of stdout or stderr matches `pattern` (see [`Ready::stdout`]).
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo up; exec sleep 60"])
    ///     .ready(Ready::output("^up$"))
    ///     .spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn output(pattern: &str) -> Ready {
        Ready::line(Which::Both, pattern)
    }

    fn line(which: Which, pattern: &str) -> Ready {
        Ready(Probe::Line {
            which,
            pattern: pattern.to_owned(),
        })
    }

    /// Ready when the unix socket at `path` accepts a connection (PostgreSQL, Redis, Docker-like
    /// daemons). `{dir}` and `{port}` in the path are replaced as in arguments; a relative path is
    /// taken from the server's working directory.
    ///
    /// ```no_run
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("redis-server")
    ///     .args(["--port", "0", "--unixsocket", "{dir}/redis.sock"])
    ///     .ready(Ready::unix_socket("{dir}/redis.sock"))
    ///     .spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn unix_socket(path: impl AsRef<Path>) -> Ready {
        Ready(Probe::UnixSocket(path.as_ref().to_owned()))
    }

    /// Ready when `path` exists (a pid file, a "ready" marker). Placeholders and relative paths
    /// as for [`Ready::unix_socket`].
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "sleep 0.05; echo $$ > {dir}/server.pid; exec sleep 60"])
    ///     .ready(Ready::file("{dir}/server.pid"))
    ///     .spawn()?;
    /// let pid = std::fs::read_to_string(srv.dir().unwrap().join("server.pid"))?;
    /// assert_eq!(pid.trim(), srv.pid().to_string());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file(path: impl AsRef<Path>) -> Ready {
        Ready(Probe::File(path.as_ref().to_owned()))
    }

    /// Ready when the server sends `READY=1` over sd_notify: the fixture gives it a private
    /// `NOTIFY_SOCKET` (gunicorn, and systemd-aware servers, send it). `STATUS=` lines it sends
    /// appear in errors.
    ///
    /// ```no_run
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("gunicorn")
    ///     .args(["--bind", "127.0.0.1:{port}", "app:app"])
    ///     .ready(Ready::sd_notify())
    ///     .spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn sd_notify() -> Ready {
        Ready(Probe::SdNotify)
    }

    /// Ready when `check` returns `Ok(true)`: anything else (a SQL `SELECT 1`, a gRPC health
    /// check). It is called with the fixture, polled with a growing pause (up to 100 ms); its last
    /// error goes into [`Error::NotReady`].
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "sleep 0.1; touch {dir}/warm; exec sleep 60"])
    ///     .ready(Ready::custom(|fx: &ProcessFixture| -> Result<bool, std::io::Error> {
    ///         Ok(fx.dir().unwrap().join("warm").exists())
    ///     }))
    ///     .spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn custom<F, E>(check: F) -> Ready
    where
        F: Fn(&ProcessFixture) -> Result<bool, E> + Send + Sync + 'static,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        Ready(Probe::Custom(Arc::new(move |fx: &ProcessFixture| {
            check(fx).map_err(Into::into)
        })))
    }

    /// Ready when every one of `probes` is (each is checked until it holds once).
    ///
    /// ```
    /// use process_fixture::Ready;
    /// let _ = Ready::all([Ready::tcp(), Ready::stdout("cache warmed")]);
    /// ```
    pub fn all(probes: impl IntoIterator<Item = Ready>) -> Ready {
        Ready(Probe::All(probes.into_iter().collect()))
    }

    /// Ready when any one of `probes` is.
    ///
    /// ```
    /// use process_fixture::Ready;
    /// let _ = Ready::any([Ready::stdout("ready"), Ready::file("{dir}/ready")]);
    /// ```
    pub fn any(probes: impl IntoIterator<Item = Ready>) -> Ready {
        Ready(Probe::Any(probes.into_iter().collect()))
    }

    /// Every probe of the tree, depth first.
    fn leaves<'a>(&'a self, out: &mut Vec<&'a Probe>) {
        match &self.0 {
            Probe::All(list) | Probe::Any(list) => list.iter().for_each(|r| r.leaves(out)),
            probe => out.push(probe),
        }
    }

    fn any_leaf(&self, f: impl Fn(&Probe) -> bool) -> bool {
        let mut leaves = Vec::new();
        self.leaves(&mut leaves);
        leaves.into_iter().any(f)
    }

    /// The paths of unix socket and file probes (placeholders may appear in them).
    pub(crate) fn paths(&self) -> impl Iterator<Item = &Path> {
        let mut leaves = Vec::new();
        self.leaves(&mut leaves);
        leaves.into_iter().filter_map(|p| match p {
            Probe::UnixSocket(path) | Probe::File(path) => Some(path.as_path()),
            _ => None,
        })
    }

    /// Whether the fixture needs a private `NOTIFY_SOCKET`.
    pub(crate) fn wants_notify(&self) -> bool {
        self.any_leaf(|p| matches!(p, Probe::SdNotify))
    }

    /// Whether it waits for the fixture's own port (so a missing `{port}` is a likely cause).
    pub(crate) fn waits_for_port(&self) -> bool {
        self.any_leaf(|p| matches!(p, Probe::Tcp(None) | Probe::Http { .. }))
    }

    /// Checks the probes and compiles the line patterns, in the order the monitor numbers them.
    pub(crate) fn line_watches(&self, program: &str) -> Result<Vec<LineWatch>, Error> {
        let mut leaves = Vec::new();
        self.leaves(&mut leaves);
        let mut watches = Vec::new();
        for probe in leaves {
            match probe {
                Probe::Http { path, .. } if !valid_http_path(path) => {
                    return Err(Error::InvalidProbe {
                        program: program.to_owned(),
                        probe: format!("Ready::http({path:?})"),
                        reason: "the path must start with '/' and contain no whitespace".into(),
                    })
                }
                Probe::Line { which, pattern } => watches.push(LineWatch {
                    regex: Regex::new(pattern).map_err(|e| Error::InvalidRegex {
                        program: program.to_owned(),
                        pattern: pattern.clone(),
                        message: e.to_string(),
                    })?,
                    which: *which,
                }),
                _ => {}
            }
        }
        Ok(watches)
    }

    /// What is awaited, in words, for errors and progress lines.
    fn describe(&self, fx: &ProcessFixture) -> String {
        match &self.0 {
            Probe::None => "nothing".into(),
            Probe::Tcp(None) => format!("127.0.0.1:{} to listen", fx.port()),
            Probe::Tcp(Some(addr)) => format!("{addr} to listen"),
            Probe::Http { path, codes, .. } => {
                let want = if codes.is_empty() {
                    "a 2xx answer".to_owned()
                } else {
                    format!("a status in {codes:?}")
                };
                format!("{want} to GET http://127.0.0.1:{}{path}", fx.port())
            }
            Probe::Line { which, pattern } => {
                let stream = match which {
                    Which::Stdout => "stdout",
                    Which::Stderr => "stderr",
                    Which::Both => "stdout or stderr",
                };
                format!("a line of {stream} matching {pattern:?}")
            }
            Probe::UnixSocket(p) => {
                format!("the unix socket {} to accept", fx.resolve_path(p).display())
            }
            Probe::File(p) => format!("the file {} to exist", fx.resolve_path(p).display()),
            Probe::SdNotify => "READY=1 on NOTIFY_SOCKET (sd_notify)".into(),
            Probe::Custom(_) => "the custom probe to return Ok(true)".into(),
            Probe::All(list) => join(list, " and ", fx),
            Probe::Any(list) => join(list, " or ", fx),
        }
    }
}

fn join(list: &[Ready], sep: &str, fx: &ProcessFixture) -> String {
    let parts: Vec<String> = list.iter().map(|r| r.describe(fx)).collect();
    format!("({})", parts.join(sep))
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Probe::None => write!(f, "Ready::none()"),
            Probe::Tcp(None) => write!(f, "Ready::tcp()"),
            Probe::Tcp(Some(a)) => write!(f, "Ready::tcp_addr({a})"),
            Probe::Http { path, codes, .. } => write!(f, "Ready::http_status({path:?}, {codes:?})"),
            Probe::Line { which, pattern } => write!(f, "Ready::line({which:?}, {pattern:?})"),
            Probe::UnixSocket(p) => write!(f, "Ready::unix_socket({p:?})"),
            Probe::File(p) => write!(f, "Ready::file({p:?})"),
            Probe::SdNotify => write!(f, "Ready::sd_notify()"),
            Probe::Custom(_) => write!(f, "Ready::custom(..)"),
            Probe::All(list) => f.debug_tuple("Ready::all").field(list).finish(),
            Probe::Any(list) => f.debug_tuple("Ready::any").field(list).finish(),
        }
    }
}

impl Default for Ready {
    /// [`Ready::tcp`]: every fixture has a port.
    fn default() -> Ready {
        Ready::tcp()
    }
}

fn valid_http_path(path: &str) -> bool {
    path.starts_with('/') && !path.chars().any(char::is_whitespace)
}

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
}

/// How the port is watched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PortWatch {
    /// The guardian reports each `listen()`; sock_diag is read now and then, as a safety net.
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
    fx: &'a ProcessFixture,
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
            Probe::UnixSocket(path) => unix_accepts(&w.fx.resolve_path(path)).map_err(Some),
            Probe::File(path) => Ok(w.fx.resolve_path(path).exists()),
            Probe::Custom(check) => check(w.fx).map_err(|e| Some(e.to_string())),
            Probe::All(_) | Probe::Any(_) => Ok(false),
        };
        match outcome {
            Ok(true) => return true,
            Ok(false) | Err(None) => {}
            Err(Some(e)) => {
                log::trace!("process-fixture: {}: {e}", w.fx.program());
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
        http_ok(target, path, codes, *timeout).map_err(Some)
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
        let port = now.captured_port.unwrap_or_else(|| self.fx.reserved_port());
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
                    if self.fx.can_inspect() && self.fx.socket_inodes().contains(&l.inode) =>
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
        if !self.fx.can_inspect() {
            // A listener, but no /proc to tell whose (a sandbox): connect instead.
            self.how = PortWatch::Connect;
            return self.listens(target, &Now::default());
        }
        let ours = self.fx.socket_inodes();
        if candidates.iter().any(|i| ours.contains(i)) {
            return Ok(true);
        }
        if let Some(holder) = self.fx.stranger_holding(&candidates) {
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

/// Waits until `ready` holds, the fixture dies, a stranger takes its port, or `timeout` passes.
pub(crate) fn wait(
    fx: &ProcessFixture,
    ready: &Ready,
    timeout: Duration,
    events: bool,
) -> Result<Seen, (Failure, Seen)> {
    let start = Instant::now();
    let deadline = Deadline::from(start, timeout);
    let mut w = Wait {
        fx,
        how: if events {
            PortWatch::Events
        } else if cfg!(target_os = "linux") {
            PortWatch::Listeners
        } else {
            PortWatch::Connect
        },
        last_error: None,
        foreign: None,
        scan: sys::ListenerScan::new(),
    };
    let mut watches = 0;
    let mut root = Node::new(ready, &mut watches, w.how);
    let mut progress_at = Deadline::from(start, PROGRESS_AFTER);
    loop {
        let since = fx.monitor().events();
        let now = fx.monitor().with(Now::of);
        let held = root.check(&mut w, &now);
        let seen = |w: &Wait| Seen {
            awaited: ready.describe(fx),
            waited: start.elapsed(),
            last_error: w.last_error.clone(),
        };
        if held {
            log::debug!(
                "process-fixture: {} ready after {:?}",
                fx.program(),
                start.elapsed()
            );
            return Ok(seen(&w));
        }
        if let Some((port, holder)) = w.foreign.take() {
            return Err((Failure::Foreign { port, holder }, seen(&w)));
        }
        if let Some(status) = fx.monitor().with(dead) {
            return Err((Failure::Exited(status), seen(&w)));
        }
        if fx
            .monitor()
            .with(|s| s.guardian_closed || s.guardian_died.is_some())
        {
            w.last_error = Some("the guardian process exited unexpectedly".into());
            return Err((Failure::NotReady, seen(&w)));
        }
        if deadline.passed() {
            return Err((Failure::NotReady, seen(&w)));
        }
        if progress_at.passed() {
            progress(fx, &seen(&w));
            progress_at = Deadline::after(PROGRESS_EVERY);
        }
        let pause = root
            .next_look()
            .into_iter()
            .chain(progress_at.remaining())
            .min();
        fx.monitor()
            .wait_event(since, deadline.remaining_capped(pause));
    }
}

/// The server is dead for readiness: every process exited, or the leader failed (a non-zero
/// exit or a signal) even if a helper it started lives on. Only a leader that exits 0 while its
/// descendants live has daemonised (issue "guardian, second generation", defect 6).
pub(crate) fn dead(s: &State) -> Option<WaitStatus> {
    s.gone.or(s.leader_exit.filter(|&status| status != 0))
}

/// A line through the test harness's captured output: `--nocapture` shows it live, a failing
/// test shows it with its own output.
fn progress(fx: &ProcessFixture, seen: &Seen) {
    let last_line = fx.monitor().with(|s| {
        let out = s.stdout.tail(1);
        if out.is_empty() {
            s.stderr.tail(1)
        } else {
            out
        }
    });
    let mut line = format!(
        "process-fixture: still waiting for {} after {:.1?}: {}",
        fx.program(),
        seen.waited,
        seen.awaited
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

/// `GET {path}` on `target`: `Ok(true)` for a wanted status, `Err` saying why not.
fn http_ok(
    target: SocketAddr,
    path: &str,
    codes: &[u16],
    timeout: Duration,
) -> Result<bool, String> {
    let status = http_status(target, path, timeout)?;
    let wanted = if codes.is_empty() {
        (200..300).contains(&status)
    } else {
        codes.contains(&status)
    };
    if wanted {
        Ok(true)
    } else {
        Err(format!("GET {path}: HTTP status {status}"))
    }
}

/// The status code of `GET {path}` on `target`.
fn http_status(target: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
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

fn unix_accepts(path: &Path) -> Result<bool, String> {
    std::os::unix::net::UnixStream::connect(path)
        .map(|_| true)
        .map_err(|e| format!("connecting to {}: {e}", path.display()))
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
                    Ready::http(path).line_watches("p"),
                    Err(Error::InvalidProbe { .. })
                ),
                "{path:?}"
            );
        }
        assert!(Ready::http("/health?full=1")
            .line_watches("p")
            .unwrap()
            .is_empty());
    }

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
