//! The probes: what [`Ready`] can wait for, checked before the spawn, described in words.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::context::Context;
use crate::error::Error;
use crate::fixture::ProcessFixture;
use crate::output::{LineWatch, Which};

/// How long one HTTP probe may wait for the status line, by default.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

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
pub struct Ready(pub(crate) Probe);

#[derive(Clone)]
pub(crate) enum Probe {
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

    /// Ready when the server has written `path` (a pid file, a "ready" marker): it exists, and
    /// it is not the file that was there before the spawn (a stale pid file of an earlier run
    /// is not taken for readiness; rewriting or replacing it is). Placeholders and relative
    /// paths as for [`Ready::unix_socket`]; an empty path is [`Error::InvalidProbe`].
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
    pub(crate) fn leaves<'a>(&'a self, out: &mut Vec<&'a Probe>) {
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

    /// The line probes: which stream and what pattern.
    pub(crate) fn line_patterns(&self) -> Vec<(Which, &str)> {
        let mut leaves = Vec::new();
        self.leaves(&mut leaves);
        leaves
            .into_iter()
            .filter_map(|p| match p {
                Probe::Line { which, pattern } => Some((*which, pattern.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The addresses the port probes wait on, the fixture's `port` on 127.0.0.1 for those
    /// without one of their own.
    pub(crate) fn port_targets(&self, port: u16) -> Vec<SocketAddr> {
        let local = SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port);
        let mut leaves = Vec::new();
        self.leaves(&mut leaves);
        leaves
            .into_iter()
            .filter_map(|p| match p {
                Probe::Tcp(None) | Probe::Http { .. } => Some(local),
                Probe::Tcp(Some(addr)) => Some(*addr),
                _ => None,
            })
            .collect()
    }

    /// The path of the first HTTP probe.
    pub(crate) fn http_path(&self) -> Option<&str> {
        let mut leaves = Vec::new();
        self.leaves(&mut leaves);
        leaves.into_iter().find_map(|p| match p {
            Probe::Http { path, .. } => Some(path.as_str()),
            _ => None,
        })
    }

    /// The paths of file probes (placeholders may appear in them).
    pub(crate) fn file_paths(&self) -> impl Iterator<Item = &Path> {
        let mut leaves = Vec::new();
        self.leaves(&mut leaves);
        leaves.into_iter().filter_map(|p| match p {
            Probe::File(path) => Some(path.as_path()),
            _ => None,
        })
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

    /// Whether it waits for a port, and only for the fixture's `port` on 127.0.0.1 (so that a
    /// watch of that one address serves every probe), with no line probe that could capture
    /// another port for it.
    pub(crate) fn waits_only_for_local(&self, port: u16) -> bool {
        let local = SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port);
        let targets = self.port_targets(port);
        let captures = self
            .line_patterns()
            .iter()
            .any(|(_, p)| p.contains("?P<port>") || p.contains("?<port>"));
        !targets.is_empty() && targets.iter().all(|&t| t == local) && !captures
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
                Probe::File(path) | Probe::UnixSocket(path) if path.as_os_str().is_empty() => {
                    return Err(Error::InvalidProbe {
                        program: program.to_owned(),
                        probe: format!("{:?}", Ready(probe.clone())),
                        reason: "the path is empty".into(),
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
    pub(crate) fn describe(&self, cx: &Context) -> String {
        match &self.0 {
            Probe::None => "nothing".into(),
            Probe::Tcp(None) => format!("127.0.0.1:{} to listen", cx.port()),
            Probe::Tcp(Some(addr)) => format!("{addr} to listen"),
            Probe::Http { path, codes, .. } => {
                let want = if codes.is_empty() {
                    "a 2xx answer".to_owned()
                } else {
                    format!("a status in {codes:?}")
                };
                format!("{want} to GET http://127.0.0.1:{}{path}", cx.port())
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
                format!("the unix socket {} to accept", cx.resolve(p).display())
            }
            Probe::File(p) => format!("the file {} to exist", cx.resolve(p).display()),
            Probe::SdNotify => "READY=1 on NOTIFY_SOCKET (sd_notify)".into(),
            Probe::Custom(_) => "the custom probe to return Ok(true)".into(),
            Probe::All(list) => join(list, " and ", cx),
            Probe::Any(list) => join(list, " or ", cx),
        }
    }
}

fn join(list: &[Ready], sep: &str, cx: &Context) -> String {
    let parts: Vec<String> = list.iter().map(|r| r.describe(cx)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
