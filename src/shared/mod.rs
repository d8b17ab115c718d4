//! One server for a whole test run, shared by every test process: [`Builder::spawn_shared`].
//!
//! ```text
//! test process A ──┐ unix socket (the lease)            (own group, stdio /dev/null)
//! test process B ──┼──────────────────────────▶ keeper ── guardian ── server
//! test process C ──┘  $TMPDIR/pf-<uid>/<scope+key>.sock    (a ProcessFixture it holds)
//! ```
//! Files: [`rendezvous`] finds the keeper (private directory, lock, scope); [`wire`] the
//! messages; [`encode`] the configuration as bytes, compared field by field; [`keeper`] the
//! keeper's life. This file is the user's side: attach, or start a keeper and attach.
//!
//! [`Builder::spawn_shared`]: crate::Builder::spawn_shared

mod encode;
mod keeper;
mod rendezvous;
mod wire;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::Config;
use crate::deadline::{add, Backoff, Deadline};
use crate::error::{Error, SharedFailure};
use crate::guardian;
use crate::sys::{self, Pid};
use rendezvous::{Locked, Rendezvous};
use wire::{Attached, Reader, Writer};

pub use rendezvous::SCOPE_ENV;
pub(crate) use rendezvous::{lock_file, own_dir};

/// How much longer than its readiness timeout a user waits for the keeper's answer (the start
/// of the keeper and of the guardian, a stop of a previous server).
const ANSWER_SLACK: Duration = Duration::from_secs(15);
/// How long a request of an attached user (`is_running`, output) may take.
const REQUEST_WAIT: Duration = Duration::from_secs(5);

/// How long the first process of a keeper may take to fork the keeper and exit.
const KEEPER_FORK_WAIT: Duration = Duration::from_secs(5);

/// A handle on a server shared by every test of the run, in this process and in others; made
/// by [`Builder::spawn_shared`](crate::Builder::spawn_shared). Dropping it detaches; the server
/// is stopped, with the full stop sequence, [`Builder::linger`](crate::Builder::linger) after the
/// last handle of every process is gone (dropped, or its process dead in any way).
///
/// ```
/// use process_fixture::{ProcessFixture, Ready};
/// let srv = ProcessFixture::builder("sh")
///     .args(["-c", "echo serving on $PORT; exec sleep 600"])
///     .env("PORT", "{port}")
///     .ready(Ready::stdout("^serving"))
///     .spawn_shared("doc-example-sh")?;
/// let again = ProcessFixture::builder("sh")
///     .args(["-c", "echo serving on $PORT; exec sleep 600"])
///     .env("PORT", "{port}")
///     .ready(Ready::stdout("^serving"))
///     .spawn_shared("doc-example-sh")?;
/// assert_eq!((srv.port(), srv.pid()), (again.port(), again.pid())); // one server
/// assert!(srv.started_here() && !again.started_here());
/// assert!(again.stdout().starts_with("serving on"));
/// # Ok::<(), process_fixture::Error>(())
/// ```
pub struct SharedFixture {
    key: String,
    program: String,
    /// The lease, and the channel for requests (one at a time).
    conn: Mutex<UnixStream>,
    info: Attached,
    socket: PathBuf,
}

impl SharedFixture {
    /// The key it is shared under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The server's port (`{port}`).
    pub fn port(&self) -> u16 {
        self.info.port
    }

    /// The port of `{port:NAME}`.
    ///
    /// # Panics
    /// If the configuration has no `{port:NAME}` of that name; see [`Self::try_named_port`].
    pub fn named_port(&self, name: &str) -> u16 {
        self.try_named_port(name)
            .unwrap_or_else(|| panic!("the shared server has no port named {name:?}"))
    }

    /// The port of `{port:NAME}`, if there is one of that name.
    pub fn try_named_port(&self, name: &str) -> Option<u16> {
        self.info
            .named
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.info.port)
    }

    /// The server's own directory (`{dir}`), removed after its stop.
    pub fn dir(&self) -> Option<&Path> {
        self.info.dir.as_deref()
    }

    /// The pid of the server's leader.
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    /// The pid of the keeper: the process that holds the server for all its users.
    pub fn keeper_pid(&self) -> u32 {
        self.info.keeper_pid
    }

    /// Where the keeper listens: a unix socket in a directory only this user can enter.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Whether this handle's request started the server (exactly one handle per server says so).
    pub fn started_here(&self) -> bool {
        self.info.started_here
    }

    /// Whether the server still runs: false once it crashed (then the next `spawn_shared` of
    /// the key starts a new one) or its keeper is gone.
    pub fn is_running(&self) -> bool {
        self.ask(wire::STATUS)
            .is_some_and(|(tag, body)| tag == wire::RUNNING && body == [1])
    }

    /// Everything the server wrote to stdout so far (the last 1 MiB), as the keeper captured it;
    /// what it had written when this handle attached, if the keeper is gone.
    pub fn stdout(&self) -> String {
        self.output()
            .map_or_else(|| self.info.stdout.clone(), |o| o.0)
    }

    /// Everything the server wrote to stderr so far; see [`Self::stdout`].
    pub fn stderr(&self) -> String {
        self.output()
            .map_or_else(|| self.info.stderr.clone(), |o| o.1)
    }

    fn output(&self) -> Option<(String, String)> {
        let (tag, body) = self.ask(wire::OUTPUT)?;
        let mut r = Reader(&body);
        (tag == wire::OUTPUT).then_some(())?;
        Some((r.string()?, r.string()?))
    }

    fn ask(&self, tag: u8) -> Option<(u8, Vec<u8>)> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.set_read_timeout(Some(REQUEST_WAIT)).ok()?;
        wire::send(&conn, tag, &[]).ok()?;
        wire::recv(&conn).ok()
    }
}

impl fmt::Debug for SharedFixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedFixture")
            .field("key", &self.key)
            .field("program", &self.program)
            .field("port", &self.info.port)
            .field("pid", &self.info.pid)
            .field("keeper_pid", &self.info.keeper_pid)
            .finish()
    }
}

impl Drop for SharedFixture {
    fn drop(&mut self) {
        guardian::reap_pending(); // our connection closes right after: that is the detach
    }
}

/// `Builder::spawn_shared`: attach to the key's server, starting it (and its keeper) if there
/// is none.
pub(crate) fn spawn_shared(cfg: &Config, key: &str) -> Result<SharedFixture, Error> {
    std::hint::black_box(&keeper::HOOK); // keeps the keeper's constructor hook in the binary
    guardian::reap_pending();
    let fail = |failure| Error::Shared {
        program: cfg.program_name(),
        key: key.to_owned(),
        failure,
    };
    let config =
        encode::encode(cfg).map_err(|reason| fail(SharedFailure::NotShareable { reason }))?;
    let scope = rendezvous::scope();
    let rendezvous = Rendezvous::new(&scope, key)
        .map_err(|reason| fail(SharedFailure::Rendezvous { reason }))?;
    let waited = add(cfg.ready_timeout, ANSWER_SLACK);
    let deadline = Deadline::after(waited);
    let mut backoff = Backoff::new(Duration::from_millis(20));
    let hello = hello(&scope, key, &config);
    loop {
        let conn = connect_or_start(&rendezvous, deadline)
            .map_err(|reason| fail(SharedFailure::Rendezvous { reason }))?;
        match exchange(&conn, &hello, deadline) {
            Some(Reply::Ready(info)) => {
                return Ok(SharedFixture {
                    key: key.to_owned(),
                    program: cfg.program_name(),
                    conn: Mutex::new(conn),
                    info,
                    socket: rendezvous.socket.clone(),
                })
            }
            Some(Reply::Failed(failure)) => return Err(fail(failure)),
            // Retired, or gone before answering: the next keeper is being made. Ask again.
            Some(Reply::Retired) | None if !deadline.passed() => {
                sys::poll(&mut [], deadline.remaining_capped(Some(backoff.next())));
            }
            _ => return Err(fail(SharedFailure::NoAnswer { waited })),
        }
    }
}

enum Reply {
    Ready(Attached),
    Failed(SharedFailure),
    Retired,
}

fn hello(scope: &str, key: &str, config: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(wire::WIRE_VERSION)
        .bytes(scope.as_bytes())
        .bytes(key.as_bytes())
        .bytes(config);
    w.0
}

/// Sends the `HELLO` and reads the answer; `None` if the keeper hung up or did not answer.
fn exchange(conn: &UnixStream, hello: &[u8], deadline: Deadline) -> Option<Reply> {
    wire::send(conn, wire::HELLO, hello).ok()?;
    let wait = deadline
        .remaining()
        .unwrap_or(Duration::MAX)
        .max(Duration::from_millis(1));
    conn.set_read_timeout((wait < Duration::MAX).then_some(wait))
        .ok()?;
    let (tag, body) = wire::recv(conn).ok()?;
    let mut r = Reader(&body);
    Some(match tag {
        wire::READY => Reply::Ready(Attached::decode(&body)?),
        wire::FAILED => Reply::Failed(SharedFailure::StartFailed {
            message: r.string()?,
        }),
        wire::MISMATCH => Reply::Failed(SharedFailure::Mismatch {
            fields: r.list(|r| r.string())?,
            detail: r.string()?,
        }),
        wire::RETIRED => Reply::Retired,
        _ => return None,
    })
}

/// Connects to the keeper, or, if there is none (no socket, or a dead one's), binds a new
/// socket and starts a keeper on it; both with the rendezvous lock held.
fn connect_or_start(rendezvous: &Rendezvous, deadline: Deadline) -> Result<UnixStream, String> {
    let locked = rendezvous.lock(deadline)?;
    let socket = &rendezvous.socket;
    let conn = match UnixStream::connect(socket) {
        Ok(conn) => conn,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ECONNREFUSED)) => {
            start_keeper(socket, &locked).map_err(|e| format!("starting a keeper: {e}"))?;
            UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?
        }
        Err(e) => return Err(format!("{}: {e}", socket.display())),
    };
    match sys::peer_uid(conn.as_raw_fd()) {
        Ok(uid) if uid == sys::effective_uid() => Ok(conn),
        Ok(uid) => Err(format!("{} is served by uid {uid}", socket.display())),
        Err(e) => Err(format!("{}: {e}", socket.display())),
    }
}

/// Binds `socket` (replacing a dead keeper's) and starts a keeper on it: this executable again,
/// with the listening socket as its stdin.
fn start_keeper(socket: &Path, _locked: &Locked) -> io::Result<()> {
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    let mut token = format!("{}:{}:", wire::WIRE_VERSION, sys::getpid()).into_bytes();
    token.extend_from_slice(socket.as_os_str().as_bytes());
    let child = Command::new(guardian::current_exe()?)
        .arg0(keeper::KEEPER_ARGV0)
        .env(
            std::ffi::OsStr::from_bytes(keeper::KEEPER_ENV.to_bytes()),
            OsString::from_vec(token),
        )
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    // Not waited by std: it forks the keeper and exits 0 at once; reaped here, by pid.
    let pid = child.id() as Pid;
    drop(child);
    match guardian::reap_or_kill(pid, Deadline::after(KEEPER_FORK_WAIT)) {
        Some(0) => Ok(()),
        status => Err(io::Error::other(format!(
            "{} did not start a keeper ({}): is it a program that links process-fixture?",
            guardian::current_exe()?.display(),
            status.map_or("no exit".to_owned(), |s| format!("wait status {s:#x}"))
        ))),
    }
}
