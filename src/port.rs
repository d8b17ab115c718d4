//! Ports: every fixture has one, reserved for as long as the fixture lives.
//!
//! A picked port is chosen at random below the kernel's ephemeral range (Linux: 32768 and up), so
//! it cannot collide with the source port of some outgoing connection. Two guards keep fixtures
//! from picking the same port while their servers are still starting:
//! - in this process, a set of reserved ports (`cargo test` runs tests on threads);
//! - across processes (`cargo nextest` runs one process per test), a lock file per port in a
//!   shared temporary directory, holding the owner's pid; a lock whose owner is dead is stale.
//!
//! A fixed port (`Builder::port`) is refused when something listens on it or holds its lock, and
//! the holder's pid is named when `/proc` tells.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::{sys, Error};

/// Picked ports come from this range (below Linux's default ephemeral range 32768–60999, and
/// macOS's 49152–65535).
const PICK_RANGE: std::ops::Range<u16> = 20_000..32_000;
const PICK_ATTEMPTS: usize = 200;

/// A port held for one fixture. Dropping it releases the port.
#[derive(Debug)]
pub(crate) struct Reservation {
    port: u16,
    lock: Option<PathBuf>,
}

impl Reservation {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(lock) = &self.lock {
            let _ = fs::remove_file(lock);
        }
        reserved()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.port);
    }
}

fn reserved() -> &'static Mutex<HashSet<u16>> {
    static RESERVED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    RESERVED.get_or_init(Default::default)
}

/// Picks a free port and reserves it.
pub(crate) fn pick() -> Result<Reservation, Error> {
    let random = RandomState::new();
    for attempt in 0..PICK_ATTEMPTS {
        let mut h = random.build_hasher();
        h.write_usize(attempt);
        let span = (PICK_RANGE.end - PICK_RANGE.start) as u64;
        let port = PICK_RANGE.start + (h.finish() % span) as u16;
        if let Ok(reservation) = reserve(port) {
            return Ok(reservation);
        }
    }
    Err(Error::Io {
        context: "picking a free port",
        source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free port found"),
    })
}

/// Reserves a port the user fixed, refusing one that is in use.
pub(crate) fn fixed(port: u16) -> Result<Reservation, Error> {
    reserve(port).map_err(|holder| Error::PortInUse { port, holder })
}

/// Reserves `port` if it is free: not ours already, not locked by a live process, bindable.
/// On failure, returns the holder's pid when known.
fn reserve(port: u16) -> Result<Reservation, Option<u32>> {
    if !reserved()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(port)
    {
        return Err(Some(std::process::id()));
    }
    let mut reservation = Reservation { port, lock: None };
    reservation.lock = lock_file(port).map_err(Some)?;
    let bindable = {
        let _gate = crate::guardian::fork_gate(); // no guardian may inherit the probe socket
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
    };
    if !bindable {
        return Err(listener_pid(port));
    }
    Ok(reservation)
}

/// Creates the cross-process lock for `port`. `Ok(None)` when no lock directory can be used (the
/// in-process set and the bind check still apply). `Err(pid)` when a live process holds it.
fn lock_file(port: u16) -> Result<Option<PathBuf>, u32> {
    let dir = std::env::temp_dir().join("process-fixture-ports");
    if fs::create_dir_all(&dir).is_err() {
        return Ok(None);
    }
    let path = dir.join(port.to_string());
    for _ in 0..2 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                let me = std::process::id();
                let _ = write!(file, "{me} {}", start_time(me).unwrap_or(0));
                return Ok(Some(path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(&path).unwrap_or_default();
                match live_owner(&owner) {
                    Some(pid) if pid != std::process::id() => return Err(pid),
                    // Stale (dead owner, recycled pid, or half-written): take it over.
                    _ => {
                        let _ = fs::remove_file(&path);
                    }
                }
            }
            Err(_) => return Ok(None),
        }
    }
    Ok(None)
}

/// The owner named in a lock file (`"<pid> <start time>"`), if that very process still runs: a
/// recycled pid has another start time. Where the start time is unknown (no /proc), the pid alone.
fn live_owner(lock: &str) -> Option<u32> {
    let mut fields = lock.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let recorded: u64 = fields.next()?.parse().ok()?;
    let alive = match start_time(pid) {
        Some(now) => recorded == 0 || now == recorded,
        None => recorded == 0 && sys::pid_exists(pid as sys::Pid),
    };
    alive.then_some(pid)
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<u64> {
    sys::proc_stat(pid as sys::Pid).map(|stat| stat.start)
}

/// The pid of a process listening on `port`, found through `/proc/net/tcp{,6}` and `/proc/*/fd`.
fn listener_pid(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = fs::read_to_string(table).ok()?;
            text.lines()
                .skip(1)
                .find_map(|line| listening_inode(line, port))
        })?;
    let target = format!("socket:[{inode}]");
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let fds = fs::read_dir(entry.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
            .then_some(pid)
    })
}

/// The socket inode of a `/proc/net/tcp` line that listens (state 0A) on `port`.
fn listening_inode(line: &str, port: u16) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local_port = fields.get(1)?.rsplit(':').next()?;
    let listening = *fields.get(3)? == "0A";
    (listening && u16::from_str_radix(local_port, 16).ok()? == port)
        .then(|| fields.get(9)?.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_while_held_and_bindable_after() {
        let a = pick().unwrap();
        let b = pick().unwrap();
        assert_ne!(a.port(), b.port());
        assert!(
            reserve(a.port()).is_err(),
            "a held port must not be handed out twice"
        );
        let port = a.port();
        drop(a);
        let again = fixed(port).unwrap();
        assert_eq!(again.port(), port);
    }

    #[test]
    fn a_listened_port_is_refused_and_its_holder_named() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        match fixed(port) {
            Err(Error::PortInUse { port: p, holder }) => {
                assert_eq!(p, port);
                if cfg!(target_os = "linux") {
                    assert_eq!(holder, Some(std::process::id()));
                }
            }
            other => panic!("expected PortInUse, got {other:?}"),
        }
    }

    #[test]
    fn a_lock_of_a_recycled_or_dead_pid_is_stale() {
        let me = std::process::id();
        if let Some(start) = start_time(me) {
            assert_eq!(live_owner(&format!("{me} {start}")), Some(me));
            assert_eq!(
                live_owner(&format!("{me} {}", start + 1)),
                None,
                "recycled pid"
            );
        }
        assert_eq!(live_owner("999999999 5"), None, "dead pid");
        assert_eq!(live_owner("garbage"), None);
    }

    #[test]
    fn parses_a_proc_net_tcp_line() {
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000";
        assert_eq!(listening_inode(line, 8080), Some(123456));
        assert_eq!(listening_inode(line, 8081), None);
    }
}
