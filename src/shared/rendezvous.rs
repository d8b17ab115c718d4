//! Where a shared server's users find its keeper: a unix socket and a lock file in a directory
//! private to the user, named after the run's scope and the key.
//!
//! The directory is `$TMPDIR/pf-<uid>`: created mode 0700, and refused unless it is a real
//! directory (no symlink followed), owned by us, with no access for group or others. Another
//! user can then neither connect to a socket in it nor plant one; both ends also check the other
//! end's uid. The lock file serialises "connect, or start a keeper": whoever holds it and finds
//! no live socket binds a new one, so N processes asking at once start exactly one server.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::deadline::{Backoff, Deadline};
use crate::sys;
use crate::text::fnv1a;

/// Sets the scope of shared servers explicitly: users with the same scope and key share one.
pub const SCOPE_ENV: &str = "PROCESS_FIXTURE_SHARED_SCOPE";

/// The scope of this process's shared servers: [`SCOPE_ENV`] if set, else nextest's run id,
/// else the parent process (pid and start time: the `cargo test` that runs the test binaries,
/// or the shell).
pub(crate) fn scope() -> String {
    if let Some(explicit) = std::env::var_os(SCOPE_ENV).filter(|v| !v.is_empty()) {
        return format!("explicit:{}", explicit.to_string_lossy());
    }
    if let Some(run) = std::env::var_os("NEXTEST_RUN_ID").filter(|v| !v.is_empty()) {
        return format!("nextest:{}", run.to_string_lossy());
    }
    let parent = sys::getppid();
    let start = sys::proc_stat(parent).map_or(0, |s| s.start);
    format!("parent:{parent}:{start}")
}

/// The rendezvous of one key in one scope.
#[derive(Clone, Debug)]
pub(crate) struct Rendezvous {
    pub(crate) socket: PathBuf,
    pub(crate) lock: PathBuf,
}

impl Rendezvous {
    /// Makes sure the private directory is there and ours, and names the files for `scope` and
    /// `key` (a hash keeps the socket path short: `sun_path` holds about 100 bytes; the keeper
    /// checks the key and scope themselves).
    pub(crate) fn new(scope: &str, key: &str) -> Result<Rendezvous, String> {
        let dir = private_dir(&std::env::temp_dir())?;
        let name = format!("{:016x}", fnv1a(format!("{scope}\0{key}").as_bytes()));
        Ok(Rendezvous {
            socket: dir.join(format!("{name}.sock")),
            lock: dir.join(format!("{name}.lock")),
        })
    }

    /// Takes the lock, polling until `deadline`.
    pub(crate) fn lock(&self, deadline: Deadline) -> Result<Locked, String> {
        lock_file(&self.lock, deadline)
    }

    /// Removes the socket and the lock file, if the socket is still `socket_id` (a keeper
    /// retiring, with the lock held: nobody can be connecting).
    pub(crate) fn remove(&self, socket_id: (u64, u64), _held: &Locked) {
        let ours =
            fs::symlink_metadata(&self.socket).is_ok_and(|m| (m.dev(), m.ino()) == socket_id);
        if ours {
            let _ = fs::remove_file(&self.socket);
        }
        let _ = fs::remove_file(&self.lock);
    }
}

/// Takes the exclusive lock of the lock file at `path` (created if missing), polling until
/// `deadline`.
pub(crate) fn lock_file(path: &Path, deadline: Deadline) -> Result<Locked, String> {
    let mut backoff = Backoff::new(Duration::from_millis(10));
    loop {
        match try_lock(path) {
            Ok(Some(locked)) => return Ok(locked),
            Ok(None) if !deadline.passed() => {
                sys::poll(&mut [], deadline.remaining_capped(Some(backoff.next())));
            }
            Ok(None) => return Err(format!("{} stayed locked", path.display())),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

/// The lock, if nobody holds it. A keeper removes the lock file when it retires, so a lock
/// taken on a file that is no longer at the path is worth nothing: open it again.
fn try_lock(lock: &Path) -> io::Result<Option<Locked>> {
    let path = cpath(lock)?;
    let fd = match sys::open_lock_file(&path, true) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => sys::open_lock_file(&path, false),
        other => other,
    };
    let fd = match fd {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None), // just removed
        other => other?,
    };
    if !sys::is_regular_file(&fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if !sys::try_lock_exclusive(&fd) {
        return Ok(None);
    }
    let same = fs::symlink_metadata(lock)
        .ok()
        .zip(sys::fd_identity(fd.as_raw_fd()))
        .is_some_and(|(m, (dev, ino))| m.dev() == dev && m.ino() == ino);
    Ok(same.then_some(Locked { _fd: fd }))
}

/// The identity (device, inode) of the file at `path`, not following a symlink.
pub(crate) fn file_id(path: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The rendezvous lock, held until dropped.
pub(crate) struct Locked {
    _fd: OwnedFd,
}

/// `base/pf-<uid>`, created 0700 if missing, and checked: a directory (not a symlink to one),
/// ours, closed to group and others.
fn private_dir(base: &Path) -> Result<PathBuf, String> {
    own_dir(&base.join(format!("pf-{}", sys::effective_uid())), 0o700)
}

/// `dir`, created with `mode` if missing, and checked: a directory (not a symlink to one),
/// ours, and open to group and others for no more than `mode` allows (0700: nothing; 0755:
/// no writing). What another user made there is refused, never used.
pub(crate) fn own_dir(dir: &Path, mode: u32) -> Result<PathBuf, String> {
    let uid = sys::effective_uid();
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(format!("cannot create {}: {e}", dir.display()))
        }
        _ => {}
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let why = if !meta.file_type().is_dir() {
        Some("is not a directory (a symlink is not followed)".to_owned())
    } else if meta.uid() != uid {
        Some(format!("belongs to uid {}, not to us ({uid})", meta.uid()))
    } else if meta.mode() & 0o077 & !mode != 0 {
        Some(format!(
            "is open to other users (mode {:o}), not {mode:04o}",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("{} {why}", dir.display())),
        None => Ok(dir.to_owned()),
    }
}

fn cpath(p: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_dir_is_made_0700_and_a_foreign_one_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = private_dir(base.path()).unwrap();
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(private_dir(base.path()).unwrap(), dir, "found again");

        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let e = private_dir(base.path()).unwrap_err();
        assert!(e.contains("open to other users (mode 755)"), "{e}");

        fs::remove_dir(&dir).unwrap();
        std::os::unix::fs::symlink(base.path(), &dir).unwrap();
        let e = private_dir(base.path()).unwrap_err();
        assert!(e.contains("symlink is not followed"), "{e}");
    }

    #[test]
    fn names_depend_on_scope_and_key() {
        let name = |scope, key| Rendezvous::new(scope, key).unwrap().socket;
        assert_ne!(name("a", "bc"), name("ab", "c"));
        assert_eq!(name("a", "bc"), name("a", "bc"));
    }
}
