//! Ports shared by processes and users: the cross-process lock is one the kernel releases
//! (`flock`), so two processes never hold the same fixed port, whoever they run as; and a port
//! that cannot be bound for another reason than being taken says what happened.
//!
//! Each test runs `port-race` (fixtures-bin) processes: they spawn fixtures on one fixed port in
//! a loop, and count a server that could not bind its port although the lock was theirs as a
//! `double` hold. Before the lock was an `flock`, a half-written lock file was taken for stale and
//! deleted, and `Drop` deleted whatever lock was at the path: two processes held the same port
//! hundreds of times in a few thousand reservations, and a second user had no lock at all.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};

/// A port outside the picked range (20000..32000) and the ephemeral one, free right now, and
/// different for each call (the tests of this file run at once and must not share one).
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 12_000 + (std::process::id() % 3000) as u16;
    loop {
        let port = start + NEXT.fetch_add(7, Ordering::Relaxed) % 4000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A temporary directory of this test's own, open to every user like /tmp (its racers share it
/// as `TMPDIR`, so the lock directory in it is made afresh by whichever comes first).
struct Tmp(std::path::PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pf-ports-{}", support::marker(tag)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        Tmp(dir)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn race(tmp: &Tmp, port: u16, millis: u64, as_user: Option<u32>) -> std::process::Child {
    let mut cmd = Command::new(support::bin("port-race"));
    cmd.arg("--server")
        .arg(support::server())
        .args(["--port", &port.to_string(), "--millis", &millis.to_string()])
        .env("TMPDIR", &tmp.0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(uid) = as_user {
        cmd.args(["--as-user", &uid.to_string()]);
    }
    cmd.spawn().expect("spawning port-race")
}

/// `(ok, busy, double)` from a finished `port-race`.
fn counts(out: &Output) -> (u32, u32, u32) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "port-race failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stdout.lines().next().unwrap_or("");
    let field = |name: &str| -> u32 {
        first
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {stdout:?}"))
    };
    assert_eq!(field("other"), 0, "unexpected errors: {stdout}");
    (field("ok"), field("busy"), field("double"))
}

fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

/// Two racers on one port: never both at once; and they did meet (each was refused at least
/// once while the other held it), or the test proved nothing.
fn assert_exclusive(a: Output, b: Output) {
    let (a, b) = (counts(&a), counts(&b));
    eprintln!("(ok, busy, double): {a:?} {b:?}");
    assert_eq!((a.2, b.2), (0, 0), "both held the port: {a:?} {b:?}");
    assert!(a.0 + b.0 > 0, "nobody got the port: {a:?} {b:?}");
    assert!(a.1 > 0 && b.1 > 0, "they never met: {a:?} {b:?}");
}

#[test]
fn two_processes_never_hold_the_same_fixed_port() {
    let (tmp, port) = (Tmp::new("two"), free_port());
    let a = race(&tmp, port, 1500, None);
    let b = race(&tmp, port, 1500, None);
    assert_exclusive(
        a.wait_with_output().expect("port-race a"),
        b.wait_with_output().expect("port-race b"),
    );
}

#[test]
fn a_second_user_shares_the_same_locks() {
    if !is_root() {
        eprintln!("skipped: needs root to run a second process as another user");
        return;
    }
    let (tmp, port) = (Tmp::new("users"), free_port());
    let a = race(&tmp, port, 1500, None);
    let b = race(&tmp, port, 1500, Some(65534));
    assert_exclusive(
        a.wait_with_output().expect("port-race as root"),
        b.wait_with_output().expect("port-race as nobody"),
    );
}

/// The shared lock directory is made by whichever process comes first; a process of another user
/// that arrives while it is being made must still find it usable, not fall back to a private one
/// (where its locks would exclude nobody). A private directory left in the temp directory is the
/// trace of such a fallback. Before the directory was made whole and then renamed into place,
/// another user arriving between its `mkdir` (umask applied) and its `chmod 1777` fell back.
#[test]
fn a_lock_directory_being_made_is_shared_with_another_user() {
    if !is_root() {
        eprintln!("skipped: needs root to run a second process as another user");
        return;
    }
    for round in 0..40 {
        let (tmp, port) = (Tmp::new("dir"), free_port());
        let a = race(&tmp, port, 0, None);
        let b = race(&tmp, port, 0, Some(65534));
        let outs = [a.wait_with_output(), b.wait_with_output()].map(|o| o.expect("port-race"));
        let private: Vec<String> = std::fs::read_dir(&tmp.0)
            .expect("temp dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("process-fixture-ports-"))
            .collect();
        assert!(
            private.is_empty(),
            "round {round}: a racer fell back to private port locks {private:?}; outputs: {:?} {:?}",
            String::from_utf8_lossy(&outs[0].stdout),
            String::from_utf8_lossy(&outs[1].stdout),
        );
    }
}

#[test]
fn a_port_that_cannot_be_bound_is_unavailable_not_in_use() {
    // Port 80 without privileges: EACCES, which is not "in use" by anybody.
    let unprivileged_start: u32 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
    let nobody = is_root().then_some(65534);
    if unprivileged_start <= 80 || (nobody.is_none() && is_root()) {
        eprintln!("skipped: port 80 is bindable without privileges here");
        return;
    }
    let out = race(&Tmp::new("eacces"), 80, 0, nobody)
        .wait_with_output()
        .expect("port-race on port 80");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("port 80 cannot be used") && stdout.contains("Permission denied"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("in use"), "{stdout}");
}
