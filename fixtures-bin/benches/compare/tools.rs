//! The tools compared, each used as its users use it: start a server, wait until it accepts on
//! its port, stop it.
//!
//! - `process-fixture` with `listen()` events (root's default) and with polling
//!   (`listen_events(false)`, an unprivileged user's default).
//! - naive: `Command::spawn`, a connect loop sleeping 10 ms between tries, `kill()` (SIGKILL to
//!   the leader) and `wait()`. It leaks what the leader started.
//! - process-wrap (9.x): the same connect loop, the child in a process group of its own
//!   (`ProcessGroup::leader()`), whose `kill()` is SIGKILL to the group.
//! - mirakuru (Python): `TCPExecutor`, which polls the port, and `stop()` (SIGTERM to the
//!   leader, then SIGKILL after its timeout), driven by `mirakuru_driver.py` from a venv.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use process_fixture::{ProcessFixture, Ready};
use process_wrap::std::{ChildWrapper, CommandWrap, ProcessGroup};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tool {
    Events,
    Poll,
    Naive,
    ProcessWrap,
    Mirakuru,
}

impl Tool {
    pub const RUST: [Tool; 4] = [Tool::Events, Tool::Poll, Tool::Naive, Tool::ProcessWrap];
    pub const ALL: [Tool; 5] = [
        Tool::Events,
        Tool::Poll,
        Tool::Naive,
        Tool::ProcessWrap,
        Tool::Mirakuru,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Events => "process-fixture (events)",
            Tool::Poll => "process-fixture (poll)",
            Tool::Naive => "naive Command + kill",
            Tool::ProcessWrap => "process-wrap",
            Tool::Mirakuru => "mirakuru",
        }
    }
}

/// A started server, as each tool holds it.
pub enum Started {
    Fixture(Box<ProcessFixture>),
    Plain {
        child: Held,
        stamps: Stamps,
        /// Removed after the child is stopped (fields drop in order).
        _dir: Scratch,
    },
}

/// The `listen_ns=` stamps a naive tool's server printed on stderr, as they arrive.
pub type Stamps = mpsc::Receiver<u64>;

/// How long the connect loops of the naive tools sleep between tries.
const NAIVE_RETRY: Duration = Duration::from_millis(10);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What to start: a program, its arguments and files (where `{port}` stands for the port and
/// `{dir}` for a directory of its own), the environment, and the user to run as. Each tool
/// gets the same.
#[derive(Clone, Copy, Default)]
pub struct Spec<'a> {
    pub program: &'a str,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    pub files: &'a [(&'a str, &'a str)],
    /// `(name, uid, gid)`: the server runs as this user, and owns its directory.
    pub user: Option<(&'a str, u32, u32)>,
}

impl<'a> Spec<'a> {
    pub fn new(program: &'a str, args: &'a [&'a str]) -> Spec<'a> {
        Spec {
            program,
            args,
            ..Spec::default()
        }
    }
}

/// Starts `spec` with `tool` and waits until it accepts on its port.
pub fn start(tool: Tool, spec: &Spec) -> Started {
    match tool {
        Tool::Events | Tool::Poll => {
            let mut b = ProcessFixture::builder(spec.program);
            b.args(spec.args)
                .envs(spec.env.iter().copied())
                .ready(Ready::tcp())
                .listen_events(tool == Tool::Events)
                .ready_timeout(READY_TIMEOUT);
            for (name, contents) in spec.files {
                b.file(name, contents);
            }
            if let Some((name, ..)) = spec.user {
                b.user(name);
            }
            Started::Fixture(Box::new(b.spawn().unwrap_or_else(|e| panic!("{e}"))))
        }
        Tool::Naive | Tool::ProcessWrap => {
            let port = free_port();
            let dir = Scratch::new(spec, port);
            let args = dir.expand(spec.args);
            let configure = |c: &mut Command| {
                c.args(&args)
                    .envs(spec.env.iter().copied())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                if let Some((_, uid, gid)) = spec.user {
                    c.uid(uid).gid(gid);
                }
            };
            let (child, stamps) = if tool == Tool::Naive {
                let mut c = Command::new(spec.program);
                configure(&mut c);
                let mut child = c.spawn().expect("spawn");
                let stamps = read_stamps(child.stderr.take().expect("stderr"));
                (Held::Child(child), stamps)
            } else {
                let mut child = CommandWrap::with_new(spec.program, |c| configure(c))
                    .wrap(ProcessGroup::leader())
                    .spawn()
                    .expect("spawn");
                let stamps = read_stamps(child.stderr().take().expect("stderr"));
                (Held::Wrapped(child), stamps)
            };
            connect_loop(port);
            Started::Plain {
                child,
                stamps,
                _dir: dir,
            }
        }
        Tool::Mirakuru => unreachable!("mirakuru runs in its own driver (mirakuru.rs)"),
    }
}

/// A start made ready for a tool that runs in another process (mirakuru): a free port, the
/// server's directory with its files, and its command line with `{port}` and `{dir}` expanded,
/// behind `setpriv` when the spec names a user (it execs the server: the pid stays the same).
pub struct Prepared {
    pub port: u16,
    pub argv: Vec<String>,
    /// Removed when dropped, after the stop.
    _dir: Scratch,
}

pub fn prepare(spec: &Spec) -> Prepared {
    let port = free_port();
    let dir = Scratch::new(spec, port);
    let mut argv = Vec::new();
    if let Some((_, uid, gid)) = spec.user {
        argv.push("setpriv".to_owned());
        argv.push(format!("--reuid={uid}"));
        argv.push(format!("--regid={gid}"));
        argv.push("--clear-groups".to_owned());
    }
    argv.push(spec.program.to_owned());
    argv.extend(dir.expand(spec.args));
    Prepared {
        port,
        argv,
        _dir: dir,
    }
}

/// The naive tools' `{dir}`: made before the start, removed after the stop (which is what a
/// careful user of those tools writes by hand).
pub struct Scratch {
    path: Option<PathBuf>,
    port: u16,
}

impl Scratch {
    fn new(spec: &Spec, port: u16) -> Scratch {
        let mut dir = Scratch { path: None, port };
        if spec.files.is_empty() && !spec.args.iter().any(|a| a.contains("{dir}")) {
            return dir;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("pf-compare-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).expect("scratch dir");
        dir.path = Some(path.clone());
        for (name, contents) in spec.files {
            std::fs::write(path.join(name), dir.expand_one(contents)).expect("write a file");
        }
        if let Some((_, uid, gid)) = spec.user {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(&path)
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown {}",
                path.display()
            );
        }
        dir
    }

    fn expand_one(&self, text: &str) -> String {
        let dir = self
            .path
            .as_deref()
            .map(|p| p.to_string_lossy())
            .unwrap_or_default();
        text.replace("{port}", &self.port.to_string())
            .replace("{dir}", &dir)
    }

    fn expand(&self, args: &[&str]) -> Vec<String> {
        args.iter().map(|a| self.expand_one(a)).collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// How a naive tool holds its child.
pub enum Held {
    Child(Child),
    Wrapped(Box<dyn ChildWrapper>),
}

impl Started {
    /// Stops it as the tool does.
    pub fn stop(self) {
        match self {
            Started::Fixture(fx) => {
                let _ = fx.stop();
            }
            Started::Plain {
                child: Held::Child(mut child),
                ..
            } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Started::Plain {
                child: Held::Wrapped(mut child),
                ..
            } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Tries to connect every 10 ms until the port accepts.
fn connect_loop(port: u16) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "port {port} never accepted");
        std::thread::sleep(NAIVE_RETRY);
    }
}

/// A port nobody listens on now (bound and released: how naive code picks one).
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

/// The `listen_ns=` stamps of a server's stderr, as they arrive (the pipe is drained to its end
/// by a thread, so the server never blocks on it).
fn read_stamps(stderr: impl std::io::Read + Send + 'static) -> mpsc::Receiver<u64> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(ns) = line.strip_prefix("listen_ns=").and_then(|v| v.parse().ok()) {
                let _ = tx.send(ns);
            }
        }
    });
    rx
}

/// The `listen_ns=` stamp in a fixture's stderr.
fn stamp_of(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("listen_ns=")?.parse().ok())
}

impl Started {
    /// The leader's pid.
    pub fn pid(&self) -> u32 {
        match self {
            Started::Fixture(fx) => fx.pid(),
            Started::Plain {
                child: Held::Child(c),
                ..
            } => c.id(),
            Started::Plain {
                child: Held::Wrapped(c),
                ..
            } => c.id(),
        }
    }

    /// The server's last `listen_ns=` stamp, waited for (bounded): the port can accept before
    /// the server has written the line.
    pub fn listen_stamp(&self) -> Option<u64> {
        let wait = Duration::from_secs(1);
        match self {
            Started::Plain { stamps, .. } => stamps
                .try_iter()
                .last()
                .or_else(|| stamps.recv_timeout(wait).ok()),
            Started::Fixture(fx) => {
                let deadline = Instant::now() + wait;
                loop {
                    if let Some(ns) = stamp_of(&fx.stderr()) {
                        return Some(ns);
                    }
                    if Instant::now() > deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }
}
