//! Ports: every fixture has one (and one per `{port:NAME}`), reserved while the fixture lives.
//!
//! A picked port is chosen at random below the kernel's ephemeral range (Linux: 32768 and up), so
//! it cannot collide with the source port of some outgoing connection. Two guards keep fixtures
//! from picking the same port while their servers are still starting:
//! - in this process, a set of reserved ports (`cargo test` runs tests on threads);
//! - across processes (`cargo nextest` runs one process per test, and users share machines), an
//!   `flock` on a lock file per port. The kernel releases it when the holder's fd closes, however
//!   the holder ends, so there is no stale lock to guess about; lock files are never deleted (one
//!   deleted while another process has it open but not yet locked would let two processes hold
//!   the same port). The directory, `$TMPDIR/process-fixture-ports`, is world-writable and
//!   sticky like `/tmp`, so every user of the machine shares one lock space as they share one
//!   port space; where it is not safe to use, a private one per user is used instead.
//!
//! A port is also checked by binding it: something already listening there (a leftover server
//! would answer the readiness probe in our server's place) is refused, naming the holder.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::PortHolder;

/// Picked ports come from this range (below Linux's default ephemeral range 32768–60999, and
/// macOS's 49152–65535).
const PICK_RANGE: std::ops::Range<u16> = 20_000..32_000;
const PICK_ATTEMPTS: usize = 200;

/// A port held for one fixture. Dropping it releases the port (and its lock).
#[derive(Debug)]
pub(crate) struct Reservation {
    port: u16,
    /// The locked lock file; closing it releases the lock.
    _lock: Option<OwnedFd>,
}

impl Reservation {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        reserved()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.port);
    }
}

/// Why a port could not be reserved.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// In use: reserved here, locked by another process, or bound. The holder when known.
    InUse(Option<PortHolder>),
    /// Binding it failed for another reason (EACCES for a privileged port, EMFILE, …).
    Unavailable(io::Error),
}

fn reserved() -> &'static Mutex<HashSet<u16>> {
    static RESERVED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    RESERVED.get_or_init(Default::default)
}

/// Picks a free port and reserves it.
pub(crate) fn pick() -> Result<Reservation, Refusal> {
    let random = RandomState::new();
    let span = (PICK_RANGE.end - PICK_RANGE.start) as u64;
    for attempt in 0..PICK_ATTEMPTS {
        let mut h = random.build_hasher();
        h.write_usize(attempt);
        let port = PICK_RANGE.start + (h.finish() % span) as u16;
        match reserve(port) {
            Ok(reservation) => return Ok(reservation),
            Err(Refusal::InUse(_)) => continue,
            Err(unavailable) => return Err(unavailable),
        }
    }
    Err(Refusal::Unavailable(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free port found in {PICK_RANGE:?} after {PICK_ATTEMPTS} attempts"),
    )))
}

/// Reserves `port` if it is free: not ours already, not locked by another process, bindable.
pub(crate) fn reserve(port: u16) -> Result<Reservation, Refusal> {
    if !reserved()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(port)
    {
        return Err(Refusal::InUse(Some(holder(std::process::id()))));
    }
    // From here, dropping `reservation` on an error path gives the port back.
    let mut reservation = Reservation { port, _lock: None };
    reservation._lock = lock(port)?;
    bind_check(port)?;
    Ok(reservation)
}

/// Binds the port for an instant: is anything else there?
fn bind_check(port: u16) -> Result<(), Refusal> {
    let _gate = crate::guardian::fork_gate(); // no forked guardian may inherit the probe socket
    match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(Refusal::InUse(listener_of(port))),
        Err(e) => Err(Refusal::Unavailable(e)),
    }
}

/// The process listening on TCP `port` (any address), when the system tells.
pub(crate) fn listener_of(port: u16) -> Option<PortHolder> {
    crate::sys::tcp_listener_pid(port).map(|pid| holder(pid as u32))
}

/// A process holding a port, named by pid even when its command line cannot be read (another
/// user's process under `hidepid`, one that exited meanwhile).
pub(crate) fn holder(pid: u32) -> PortHolder {
    let command = crate::sys::command_line(pid as crate::sys::Pid)
        .unwrap_or_else(|| "its command line cannot be read".to_owned());
    PortHolder { pid, command }
}

/// Takes the cross-process lock of `port`. `Ok(None)` when no lock directory can be used (the
/// in-process set and the bind check still apply).
fn lock(port: u16) -> Result<Option<OwnedFd>, Refusal> {
    let Some(dir) = lock_dir() else {
        return Ok(None);
    };
    let path = dir.join(port.to_string());
    let Some(fd) = open_lock_file(&path) else {
        return Ok(None);
    };
    if !crate::sys::try_lock_exclusive(&fd) {
        let holder = crate::sys::flock_holder(&fd).map(holder);
        return Err(Refusal::InUse(holder));
    }
    Ok(Some(fd))
}

/// Opens the lock file read-only (`flock` needs no more), creating it if missing, never
/// following a symlink and never blocking on a FIFO planted there; without O_CREAT on an
/// existing file (Linux's protected_regular refuses that for another user's file in a sticky
/// directory).
fn open_lock_file(path: &Path) -> Option<OwnedFd> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    for _ in 0..3 {
        match crate::sys::open_lock_file(&c_path, false) {
            Ok(fd) => return crate::sys::is_regular_file(&fd).then_some(fd),
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return None,
            Err(_) => {}
        }
        // Missing: create it, readable by other users so that they can lock it too.
        match crate::sys::open_lock_file(&c_path, true) {
            Ok(fd) => return Some(fd),
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return None,
            Err(_) => {}
        }
        // Someone created it between our two opens: open theirs.
    }
    None
}

/// The lock directory, decided once per process.
fn lock_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::temp_dir();
        let shared = base.join("process-fixture-ports");
        if prepare_shared(&shared) {
            return Some(shared);
        }
        let uid = crate::sys::effective_uid();
        let private = base.join(format!("process-fixture-ports-{uid}"));
        log::warn!(
            "process-fixture: {} cannot be used safely; port locks are private to this user in {}",
            shared.display(),
            private.display()
        );
        prepare_private(&private, uid).then_some(private)
    })
    .as_deref()
}

/// Creates the shared directory (mode 1777, like /tmp) if missing; then accepts it only if it is
/// a real directory that we can write to and in which nobody can replace our files: not
/// writable by others, or sticky.
fn prepare_shared(dir: &Path) -> bool {
    if fs::symlink_metadata(dir).is_err() {
        create_whole(dir);
    }
    let Ok(mut meta) = fs::symlink_metadata(dir) else {
        return false;
    };
    let ours = meta.uid() == crate::sys::effective_uid();
    if ours && meta.is_dir() && meta.mode() & 0o7777 != 0o1777 {
        // The umask took bits away, or an older version made it 0755 (then other users silently
        // had no lock at all): open it to every user, as /tmp is. Only its owner can.
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o1777));
        meta = match fs::symlink_metadata(dir) {
            Ok(m) => m,
            Err(_) => return false,
        };
    }
    let mode = meta.mode();
    let sticky_or_closed = mode & 0o1000 != 0 || mode & 0o022 == 0;
    meta.is_dir() && sticky_or_closed && writable(dir)
}

/// Makes `dir` with mode 1777 in one step as others see it: made and opened up under a name of
/// its own, then renamed into place. `mkdir` applies the umask, so a directory made in place is
/// 1755 until its `chmod`, and another user arriving in between would find it closed and fall
/// back to private locks (measured: in 1 of 4–11 rounds of a root and a `nobody` process
/// starting together). Losing the race to another process is fine: its directory is used. (A
/// rename may replace a directory another process has just made, but only while it is empty:
/// no lock file in it can be lost.)
fn create_whole(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut staging_name = std::ffi::OsString::from(".");
    staging_name.push(name);
    staging_name.push(format!(".{}.{nanos}", std::process::id()));
    let staging = parent.join(staging_name);
    if fs::DirBuilder::new().mode(0o700).create(&staging).is_err() {
        return;
    }
    let made = fs::set_permissions(&staging, fs::Permissions::from_mode(0o1777))
        .and_then(|()| fs::rename(&staging, dir));
    if made.is_err() {
        let _ = fs::remove_dir(&staging);
    }
}

/// A directory of our own, mode 0700.
fn prepare_private(dir: &Path, uid: u32) -> bool {
    let _ = fs::DirBuilder::new().mode(0o700).create(dir);
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
}

fn writable(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    crate::sys::can_create_in(&c)
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
        let again = reserve(port).unwrap();
        assert_eq!(again.port(), port);
    }

    #[test]
    fn a_listened_port_is_refused_and_its_holder_named() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        match reserve(port) {
            Err(Refusal::InUse(holder)) => {
                if cfg!(target_os = "linux") {
                    assert_eq!(holder.map(|h| h.pid), Some(std::process::id()));
                }
            }
            other => panic!("expected InUse, got {other:?}"),
        }
    }

    /// A holder whose command line cannot be read (here: one that is gone, as one that exited
    /// between the lookup and the read) is still named by its pid.
    #[test]
    fn a_holder_whose_command_line_cannot_be_read_is_named_by_pid() {
        for _ in 0..10 {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue; // reused already: try another
            }
            let h = holder(pid);
            assert_eq!(h.pid, pid);
            assert!(h.command.contains("cannot be read"), "{h:?}");
            return;
        }
        panic!("every pid was reused at once");
    }

    #[test]
    fn the_lock_directory_is_shared_and_sticky() {
        let dir = lock_dir().expect("a lock directory");
        let meta = fs::symlink_metadata(dir).unwrap();
        assert!(meta.is_dir());
        if dir.ends_with("process-fixture-ports") {
            assert!(meta.mode() & 0o1000 != 0 || meta.mode() & 0o022 == 0);
        }
    }
}
