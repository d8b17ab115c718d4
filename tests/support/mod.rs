//! Shared helpers for the integration tests: locating the helper binaries of `fixtures-bin`,
//! building fixtures of them (`fixture_server`, `ready_server`), and looking at real processes
//! through `/proc`. No mocks: everything here reads the live system.
#![allow(dead_code)] // each test crate uses a different subset
#![allow(unreachable_pub)] // a module of each test crate: `pub` is how its tests reach it

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of a `fixtures-bin` binary (`fixture-server`, `fixture-holder`, `alloc-trap`).
/// `cargo test` and `cargo nextest run` build them with the workspace (they are default members
/// with tests of their own). When only one test target was built (`cargo test --test stop`), they
/// may be missing or older than the library they link: then they are built here, once a process.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test binary> -> target/<profile>/
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let path = dir.join(name);
    if is_stale(&path) {
        BUILT.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "fixtures-bin", "--bins"]);
            if dir.ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build -p fixtures-bin");
            assert!(status.success(), "cargo build -p fixtures-bin failed");
        });
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Missing, or older than a source file of the library or of fixtures-bin.
fn is_stale(binary: &Path) -> bool {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return true;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("src"), root.join("fixtures-bin/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
            {
                return true;
            }
        }
    }
    false
}

/// The `fixture-server` helper binary.
pub fn server() -> PathBuf {
    bin("fixture-server")
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
    pub state: char,
    /// Start time in clock ticks since boot: tells a recycled pid from the original.
    pub start: u64,
}

impl Proc {
    pub fn read(pid: u32) -> Option<Proc> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &text[text.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(Proc {
            pid,
            state: f[0].chars().next()?,
            ppid: f[1].parse().ok()?,
            pgrp: f[2].parse().ok()?,
            start: f[19].parse().ok()?,
        })
    }

    pub fn is_live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }

    /// Is this very process (not a recycled pid) still running?
    pub fn still_live(&self) -> bool {
        Proc::read(self.pid).is_some_and(|now| now.start == self.start && now.is_live())
    }

    /// Is it paused: stopped by a signal (state `T`), or in a frozen cgroup (`cgroup.freeze`
    /// leaves it sleeping, so its state does not say)?
    pub fn is_paused(&self) -> bool {
        self.state == 'T' || cgroup_of(self.pid).is_some_and(|dir| cgroup_frozen(&dir))
    }

    /// Does this very process still exist at all (a zombie counts)?
    pub fn still_exists(&self) -> bool {
        Proc::read(self.pid).is_some_and(|now| now.start == self.start)
    }
}

/// The `comm` name of a process (empty if it is gone).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_default()
}

/// Every process on the machine.
pub fn all_processes() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(Proc::read)
        .collect()
}

/// Processes (zombies included) whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<Proc> {
    all_processes()
        .into_iter()
        .filter(|p| p.pgrp == pgid)
        .collect()
}

/// Live (non-zombie) processes whose process group is `pgid`.
pub fn live_members(pgid: u32) -> Vec<Proc> {
    group_members(pgid)
        .into_iter()
        .filter(Proc::is_live)
        .collect()
}

/// Direct children of `pid`.
pub fn children(pid: u32) -> Vec<Proc> {
    all_processes()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .collect()
}

/// All descendants of `pid`, depth first.
pub fn descendants(pid: u32) -> Vec<Proc> {
    let all = all_processes();
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(parent) = stack.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            out.push(*p);
            stack.push(p.pid);
        }
    }
    out
}

/// Polls `f` with a growing interval until it holds or `timeout` passes. Returns whether it held.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(500);
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        #[allow(clippy::disallowed_methods)] // a poll interval, not synchronisation: `f` decides
        std::thread::sleep(pause);
        pause = (pause * 3 / 2).min(Duration::from_millis(20));
    }
}

/// Can we bind `127.0.0.1:port` right now?
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Sends a minimal HTTP GET to `127.0.0.1:port` and returns the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string()))
}

/// Asserts that nothing of a stopped fixture remains: no process (not even a zombie) in its
/// group, none of `extra` (workers, escapees recorded while it ran) still exists, and its port
/// binds again.
pub fn assert_nothing_left(pgid: u32, extra: &[Proc], port: u16) {
    let members = group_members(pgid);
    assert!(
        members.is_empty(),
        "processes left in group {pgid}: {members:?}"
    );
    for p in extra {
        assert!(!p.still_exists(), "process {p:?} survived the stop");
    }
    assert!(
        port_is_free(port),
        "port {port} still in use after the stop"
    );
}

/// Open fds of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The environment variable the tests set on the servers they start, so that a stray one is found.
pub const MARKER_VAR: &str = "PF_TEST_MARKER";

/// A marker value unique to this test process and call.
pub fn marker(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{test}-{}-{n}", std::process::id())
}

/// Pids of running processes whose environment has `MARKER_VAR=marker` (workers inherit it;
/// zombies have an empty environment, so only processes that still run are found).
pub fn marked_processes(marker: &str) -> Vec<u32> {
    let wanted = format!("{MARKER_VAR}={marker}");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == wanted.as_bytes()))
        })
        .collect()
}

/// Deadline for things that must happen soon. Generous: the tests run in parallel on a loaded
/// machine.
pub const SOON: Duration = Duration::from_secs(10);

/// The not-ready error of a spawn that must time out: its diagnosis and its `Display` text.
pub fn not_ready(b: &process_fixture::Builder) -> (Box<process_fixture::Diagnosis>, String) {
    use process_fixture::Error;
    match b.spawn() {
        Err(e @ Error::NotReady { .. }) => {
            let text = e.to_string();
            let Error::NotReady { diagnosis, .. } = e else {
                unreachable!()
            };
            (diagnosis, text)
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
}

/// Fixtures of `fixture-server`, the server with a `--mode` for each way of behaving.
pub mod fixture_server {
    use std::time::Duration;

    use process_fixture::{Builder, ProcessFixture, Ready};

    /// A builder for `fixture-server --mode <mode> --port {port} <extra>` with `ready`.
    pub fn server(mode: &str, extra: &[&str], ready: Ready) -> Builder {
        let mut b = ProcessFixture::builder(super::server());
        b.args(["--mode", mode, "--port", "{port}"])
            .args(extra)
            .ready(ready)
            .ready_timeout(Duration::from_secs(30));
        b
    }

    /// The line `fixture-server` prints once it listens on `port`.
    pub fn listening_line(port: u16) -> String {
        format!("listening on 127.0.0.1:{port}")
    }
}

/// Fixtures of `ready-server`, a server that becomes ready late in the way it is told and counts
/// the connections it accepted (its `GET /` answers `conn=<n>`).
pub mod ready_server {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use process_fixture::{Builder, ProcessFixture, Ready};

    use super::SOON;

    /// How late the server gets ready: long enough that a probe that did not wait is caught.
    pub const LATE: Duration = Duration::from_millis(150);
    pub const LATE_MS: &str = "150";

    /// The `ready-server` helper binary.
    pub fn ready_server() -> std::path::PathBuf {
        super::bin("ready-server")
    }

    /// `ready-server --delay-ms 150 <extra>` with `ready`.
    pub fn late(extra: &[&str], ready: Ready) -> Builder {
        let mut b = ProcessFixture::builder(ready_server());
        b.args(["--delay-ms", LATE_MS])
            .args(extra)
            .ready(ready)
            .ready_timeout(Duration::from_secs(30));
        b
    }

    /// Spawns and checks that it took at least the server's delay: the probe waited.
    pub fn spawn_late(b: &Builder) -> ProcessFixture {
        let t = Instant::now();
        let fx = b.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
        assert!(
            t.elapsed() >= LATE,
            "ready after {:?}: the probe did not wait",
            t.elapsed()
        );
        fx
    }

    /// `ready-server <args>` waiting for `ready`, with a short readiness timeout.
    pub fn server(args: &[&str], ready: Ready, timeout_ms: u64) -> Builder {
        let mut b = ProcessFixture::builder(ready_server());
        b.args(args)
            .ready(ready)
            .ready_timeout(Duration::from_millis(timeout_ms));
        b
    }

    /// The body of `GET /` on `addr`: `conn=<n>`.
    pub fn get(addr: SocketAddr) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(SOON)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.trim().to_owned())
    }

    pub fn local(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// `fixture-holder`, a process that holds a fixture and then ends in a chosen way.
pub mod holder {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    /// Starts `fixture-holder` holding a fixture of `fixture-server --mode <mode>` (with a
    /// temporary directory), then `--then <then>`; returns it and the line it printed once its
    /// fixture was ready (`pid= pgid= port= guardian= dir=`).
    pub fn start(mode: &str, then: &str) -> (Child, String) {
        let mut child = Command::new(super::bin("fixture-holder"))
            .arg("--server")
            .arg(super::server())
            .args(["--mode", mode, "--then", then])
            .env("PF_HOLDER_TEMP_DIR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting fixture-holder");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the holder's report");
        (child, line)
    }

    /// The value of `name=` in the holder's line.
    pub fn field<'a>(line: &'a str, name: &str) -> &'a str {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
    }

    /// A number of the holder's line (`pid`, `pgid`, `port`, `guardian`).
    pub fn number(line: &str, name: &str) -> u32 {
        field(line, name).parse().expect("a number")
    }
}

/// The cgroup v2 directory of process `pid` (`None`: gone, or cgroup v1 only).
pub fn cgroup_of(pid: u32) -> Option<std::path::PathBuf> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let point = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4))?
    })?;
    Some(std::path::PathBuf::from(format!("{point}{rel}")))
}

/// Whether the cgroup at `dir` is frozen (`frozen 1` in its `cgroup.events`).
pub fn cgroup_frozen(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l == "frozen 1"))
}

/// Set on a copy of a test binary started by [`run_fresh`]: the name of the test it runs.
pub const FRESH_VAR: &str = "PF_FRESH_TEST";

/// Whether this process is the fresh copy [`run_fresh`] started for test `name`.
pub fn is_fresh(name: &str) -> bool {
    std::env::var(FRESH_VAR).as_deref() == Ok(name)
}

/// Runs test `name` of this test binary again, alone, in a process of its own (under
/// `wrapper`, a command that execs the rest, such as `unshare …`), with `env` added; the test
/// sees [`is_fresh`] and runs its body there. Asserts that it passed; returns its output.
pub fn run_fresh(name: &str, env: &[(&str, &str)], wrapper: &[&str]) -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = std::process::Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    };
    cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(FRESH_VAR, name)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null());
    let out = cmd.output().expect("running this test binary again");
    let text = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{name} failed in a fresh process ({:?}):\n{text}",
        out.status
    );
    text
}
