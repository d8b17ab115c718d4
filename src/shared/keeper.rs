//! The keeper: the owner of one shared server, a process that outlives each of its users.
//!
//! It is the test executable exec'd in *keeper mode* (a constructor hook, like the zygote's,
//! runs before `main`; it forks once, so that the keeper is no child of a test process), with
//! the rendezvous socket, already bound and listening, as its stdin,
//! `/dev/null` for everything else (it never holds a test runner's pipes), and a process group
//! of its own. It holds the server as an ordinary [`ProcessFixture`]: that fixture's guardian
//! watches the keeper, so a keeper killed in any way still has its server stopped.
//!
//! Its life, read top to bottom in [`run`]: wait for the user that started it; serve each
//! connection on a thread of its own; the first `HELLO` starts the server, every other one waits
//! for that start and gets its outcome (so a failed start reaches every user); count open
//! connections; once none has been open for the linger (at once for a server that crashed),
//! retire: with the rendezvous lock held, remove the socket, so that whoever comes next starts a
//! new server and never attaches to this dying one; then stop the server and exit.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::encode;
use super::rendezvous::{file_id, Rendezvous};
use super::wire::{self, Attached, Reader, Writer};
use crate::config::{Config, DEFAULT_LINGER};
use crate::deadline::Deadline;
use crate::fixture::ProcessFixture;
use crate::sys;

/// The environment variable that makes a process a keeper: `<wire version>:<parent pid>:<socket>`.
pub(super) const KEEPER_ENV: &CStr = c"PROCESS_FIXTURE_KEEPER";
/// The keeper's `argv[0]`.
pub(super) const KEEPER_ARGV0: &str = "process-fixture-keeper";
/// Exit status of a keeper of another build.
const EXIT_VERSION: i32 = 71;
/// How long the keeper waits for the user that started it to connect.
const FIRST_USER_WAIT: Duration = Duration::from_secs(30);
/// How long a connection may take to send its `HELLO`.
const HELLO_WAIT: Duration = Duration::from_secs(10);
/// How long the keeper waits after a failed `accept` before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// How long retiring waits for the rendezvous lock (held by a user only while it connects).
const RETIRE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Runs before `main` in every process that links this crate; does nothing unless the process
/// was started as a keeper by a test process of ours. Referenced by `spawn_shared`, so that the
/// linker keeps it.
#[used]
#[cfg_attr(target_os = "linux", link_section = ".init_array.00102")]
#[cfg_attr(target_os = "macos", link_section = "__DATA,__mod_init_func")]
pub(super) static HOOK: extern "C" fn() = hook;

extern "C" fn hook() {
    // SAFETY: before main, single-threaded: nothing changes the environment meanwhile.
    let Some(value) = (unsafe { sys::getenv(KEEPER_ENV) }) else {
        return;
    };
    let mut parts = value.to_bytes().splitn(3, |&b| b == b':');
    let version = parts.next().and_then(sys::parse_u64);
    let parent = parts.next().and_then(sys::parse_pid);
    let socket = parts.next().map(|p| PathBuf::from(OsStr::from_bytes(p)));
    let (Some(socket), true) = (socket, parent == Some(sys::getppid())) else {
        return; // not started by a test process of ours: carry on as the program it is
    };
    if version != Some(u64::from(wire::WIRE_VERSION)) {
        sys::exit(EXIT_VERSION);
    }
    // Still single-threaded: the server must not inherit this.
    std::env::remove_var(OsStr::from_bytes(KEEPER_ENV.to_bytes()));
    // Leave the test process, which reaps this first process at once: the keeper is then no
    // child of a test process, which never holds a zombie of ours however long it runs on.
    // SAFETY: before main, single-threaded: the child may do anything.
    match unsafe { sys::fork() } {
        Ok(0) => run(socket),
        Ok(_) => sys::exit(0),
        Err(_) => sys::exit(70),
    }
}

/// The keeper's whole life.
fn run(socket: PathBuf) -> ! {
    let listener = take_listener();
    sys::set_name(c"pf-keeper");
    // Before main, std has not ignored SIGPIPE yet: a user gone mid-answer must not kill us.
    sys::set_ignored(libc::SIGPIPE, true);
    let rendezvous = Rendezvous {
        lock: socket.with_extension("lock"),
        socket,
    };
    let keeper = Arc::new(Keeper {
        socket_id: file_id(&rendezvous.socket),
        rendezvous,
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    });
    let mut first = [sys::pollfd(listener.as_raw_fd())];
    if sys::poll(&mut first, Some(FIRST_USER_WAIT)) > 0 {
        if let Ok((conn, _)) = listener.accept() {
            keeper.admit(conn); // counted before the wait below looks
        }
        let accepting = Arc::clone(&keeper);
        std::thread::spawn(move || accepting.accept(listener));
    }
    let server = keeper.retire(keeper.wait_until_unused());
    if let Server::Up { fixture, .. } = server {
        let _ = fixture.stop(); // a crash is the users' news (is_running), not the keeper's
    }
    std::process::exit(0)
}

/// The listening socket is our stdin: move it up, put `/dev/null` in its place, and let no
/// other inherited fd reach the server.
fn take_listener() -> UnixListener {
    let fd = sys::dup_above_stdio(0);
    let (Ok(null), true) = (sys::dev_null(), fd >= 0) else {
        sys::exit(70)
    };
    sys::dup2(null.as_raw_fd(), 0);
    drop(null);
    sys::cloexec_from(3);
    // SAFETY: `fd` was just made by dup and is owned by nobody else.
    UnixListener::from(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the keeper knows.
struct Keeper {
    rendezvous: Rendezvous,
    /// The socket file as it was when we started: only that one is ours to remove.
    socket_id: Option<(u64, u64)>,
    state: Mutex<State>,
    /// Notified when `users` or `server` change.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Open connections: the users.
    users: usize,
    /// When `users` last fell to 0.
    idle_since: Option<Instant>,
    /// The first user's scope and key: a later `HELLO` must name the same (a name collision).
    scope_key: Option<(String, String)>,
    server: Server,
    /// The socket is removed: every new `HELLO` is answered `RETIRED`.
    retired: bool,
}

#[derive(Default)]
enum Server {
    #[default]
    None,
    Starting,
    Up {
        fixture: Box<ProcessFixture>,
        /// The configuration it runs with: as sent (compared with each `HELLO`'s), and decoded.
        config: Vec<u8>,
        cfg: Box<Config>,
    },
    Failed {
        message: String,
        linger: Duration,
    },
}

/// A decoded `HELLO`.
struct Hello {
    version: u32,
    scope: String,
    key: String,
    config: Vec<u8>,
}

impl Hello {
    fn decode(body: &[u8]) -> Option<Hello> {
        let mut r = Reader(body);
        Some(Hello {
            version: r.u32()?,
            scope: r.string()?,
            key: r.string()?,
            config: r.bytes()?.to_vec(),
        })
    }
}

impl Keeper {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts users until the process exits.
    fn accept(self: Arc<Self>, listener: UnixListener) {
        for conn in listener.incoming() {
            match conn {
                Ok(conn) => self.admit(conn),
                // Out of fds, most likely: wait for users to leave rather than spin.
                Err(_) => {
                    sys::poll(&mut [], Some(ACCEPT_RETRY));
                }
            }
        }
    }

    /// Counts a user in and serves it on a thread of its own.
    fn admit(self: &Arc<Self>, conn: UnixStream) {
        self.lock().users += 1;
        let keeper = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("pf-keeper-user".into())
            .spawn(move || {
                keeper.serve(&conn);
                keeper.left();
            });
        if spawned.is_err() {
            self.left();
        }
    }

    fn left(&self) {
        let mut st = self.lock();
        st.users -= 1;
        if st.users == 0 {
            st.idle_since = Some(Instant::now());
        }
        self.changed.notify_all();
    }

    /// One user: its `HELLO`, then its requests until it hangs up.
    fn serve(&self, conn: &UnixStream) {
        if sys::peer_uid(conn.as_raw_fd()).ok() != Some(sys::effective_uid()) {
            return; // not our user (the private directory should have made this impossible)
        }
        let _ = conn.set_read_timeout(Some(HELLO_WAIT));
        let Ok((wire::HELLO, body)) = wire::recv(conn) else {
            return;
        };
        let (tag, reply) = self.hello(&body);
        if wire::send(conn, tag, &reply).is_err() || tag != wire::READY {
            return;
        }
        let _ = conn.set_read_timeout(None);
        while let Ok((tag, _)) = wire::recv(conn) {
            let (tag, reply) = self.answer(tag);
            if wire::send(conn, tag, &reply).is_err() {
                return;
            }
        }
    }

    /// The answer to a `HELLO`: starts the server for the first one.
    fn hello(&self, body: &[u8]) -> (u8, Vec<u8>) {
        let Some(hello) = Hello::decode(body) else {
            return failed("the keeper could not read the request");
        };
        if hello.version != wire::WIRE_VERSION {
            return mismatch(&["version".to_owned()], "another build of process-fixture");
        }
        let mut st = self.lock();
        let ours = st
            .scope_key
            .get_or_insert_with(|| (hello.scope.clone(), hello.key.clone()));
        if *ours != (hello.scope.clone(), hello.key.clone()) {
            return mismatch(
                &["key".to_owned()],
                "another key has the same rendezvous name",
            );
        }
        let mut started_here = false;
        loop {
            if st.retired {
                return (wire::RETIRED, Vec::new());
            }
            match &st.server {
                Server::None => {
                    st.server = Server::Starting;
                    drop(st);
                    let server = start(&hello.config);
                    st = self.lock();
                    st.server = server;
                    started_here = true;
                    self.changed.notify_all();
                }
                Server::Starting => st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Server::Failed { message, .. } => return failed(message),
                Server::Up { fixture, .. } if !fixture.is_running() => {
                    // Crashed: whoever asks next gets a new server.
                    self.remove_rendezvous(&mut st);
                }
                Server::Up {
                    fixture,
                    config,
                    cfg,
                } => return attach(fixture, (config, cfg), &hello.config, started_here),
            }
        }
    }

    /// A request of an attached user.
    fn answer(&self, tag: u8) -> (u8, Vec<u8>) {
        let st = self.lock();
        let Server::Up { fixture, .. } = &st.server else {
            return (wire::RUNNING, vec![0]);
        };
        match tag {
            wire::STATUS => (wire::RUNNING, vec![u8::from(fixture.is_running())]),
            _ => {
                let mut w = Writer::default();
                w.bytes(fixture.stdout().as_bytes())
                    .bytes(fixture.stderr().as_bytes());
                (wire::OUTPUT, w.0)
            }
        }
    }

    /// Returns, with the state locked, once no user has been connected for the linger (no wait
    /// for a server that crashed, nor for a first user that never came), and no start is under
    /// way.
    fn wait_until_unused(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        if st.users == 0 && st.idle_since.is_none() {
            return st; // the user that started us never connected
        }
        loop {
            let linger = match &st.server {
                Server::Starting => None,
                Server::Up { fixture, .. } if !fixture.is_running() => Some(Duration::ZERO),
                Server::Up { cfg, .. } => Some(cfg.linger),
                Server::Failed { linger, .. } => Some(*linger),
                Server::None => Some(DEFAULT_LINGER),
            };
            let idle = st.idle_since.filter(|_| st.users == 0);
            let (Some(linger), Some(idle)) = (linger, idle) else {
                st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            match linger.checked_sub(idle.elapsed()) {
                None | Some(Duration::ZERO) => return st,
                Some(left) => {
                    st = self
                        .changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// Removes the rendezvous, still holding the state that said nobody uses the server (a user
    /// accepted from now on is told `RETIRED`), and hands back the server to stop.
    fn retire(&self, mut st: MutexGuard<'_, State>) -> Server {
        self.remove_rendezvous(&mut st);
        std::mem::take(&mut st.server)
    }

    /// With the rendezvous lock held, so that no user is connecting: removes our socket. From
    /// then on every `HELLO` is told `RETIRED`, and the next user starts a new keeper.
    fn remove_rendezvous(&self, st: &mut State) {
        if st.retired {
            return;
        }
        st.retired = true;
        let locked = self.rendezvous.lock(Deadline::after(RETIRE_LOCK_WAIT));
        if let (Ok(locked), Some(id)) = (locked, self.socket_id) {
            self.rendezvous.remove(id, &locked);
        }
        // Without the lock the socket stays: a dead one, which the next user replaces.
    }
}

/// Starts the server from a user's configuration.
fn start(config: &[u8]) -> Server {
    let Some(cfg) = encode::decode(config) else {
        return Server::Failed {
            message: "the keeper could not read the configuration".to_owned(),
            linger: DEFAULT_LINGER,
        };
    };
    match crate::spawn::spawn(&cfg) {
        Ok(fixture) => Server::Up {
            fixture: Box::new(fixture),
            config: config.to_vec(),
            cfg: Box::new(cfg),
        },
        Err(e) => Server::Failed {
            message: e.to_string(),
            linger: cfg.linger,
        },
    }
}

/// `READY` if `asked` is the configuration the server runs with, else `MISMATCH`.
fn attach(
    fixture: &ProcessFixture,
    (running, cfg): (&[u8], &Config),
    asked: &[u8],
    started_here: bool,
) -> (u8, Vec<u8>) {
    let fields = encode::differences(running, asked);
    if !fields.is_empty() {
        let Some(theirs) = encode::decode(asked) else {
            return mismatch(&fields, "");
        };
        return mismatch(&fields, &detail(&fields, cfg, &theirs));
    }
    let attached = Attached {
        port: fixture.port(),
        named: (cfg.port_names().into_iter())
            .filter_map(|n| Some((n.clone(), fixture.try_named_port(&n)?)))
            .collect(),
        dir: fixture.dir().map(PathBuf::from),
        pid: fixture.pid(),
        keeper_pid: sys::getpid() as u32,
        stdout: fixture.stdout(),
        stderr: fixture.stderr(),
        started_here,
    };
    (wire::READY, attached.encode())
}

fn detail(fields: &[String], running: &Config, asked: &Config) -> String {
    let line = |f: &String| {
        format!(
            "  {f}: running {}, asked {}",
            encode::show(running, f),
            encode::show(asked, f)
        )
    };
    fields.iter().map(line).collect::<Vec<_>>().join("\n")
}

fn failed(message: &str) -> (u8, Vec<u8>) {
    let mut w = Writer::default();
    w.bytes(message.as_bytes());
    (wire::FAILED, w.0)
}

fn mismatch(fields: &[String], detail: &str) -> (u8, Vec<u8>) {
    let mut w = Writer::default();
    w.list(fields.iter(), |w, f| {
        w.bytes(f.as_bytes());
    })
    .bytes(detail.as_bytes());
    (wire::MISMATCH, w.0)
}
