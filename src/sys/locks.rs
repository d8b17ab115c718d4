//! Lock files: opening them safely, `flock`, and who holds a lock.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Opens a lock file read-only (`flock` needs no more), close-on-exec, never following a
/// symlink and never blocking on a FIFO planted there. With `create`, creates it (`O_EXCL`,
/// mode 0644 so that other users can open it to lock it) and fails with `EEXIST` if it is
/// there. Test side only.
pub(crate) fn open_lock_file(path: &CStr, create: bool) -> io::Result<OwnedFd> {
    let base = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let fd = if create {
        // SAFETY: `path` is NUL-terminated and borrowed for the call; O_CREAT takes the mode
        // as its third argument.
        unsafe {
            libc::open(
                path.as_ptr(),
                base | libc::O_CREAT | libc::O_EXCL,
                0o644 as libc::c_uint,
            )
        }
    } else {
        // SAFETY: `path` is NUL-terminated and borrowed for the call.
        unsafe { libc::open(path.as_ptr(), base) }
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened here and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `fd` is a regular file (`fstat`).
pub(crate) fn is_regular_file(fd: &OwnedFd) -> bool {
    // SAFETY: stat is plain old data: all zeros is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the call (borrowed); `st` is a live local for fstat to fill.
    unsafe {
        libc::fstat(fd.as_raw_fd(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// Takes the exclusive `flock` of `fd` without waiting. False when another open file holds it
/// (or on error).
pub(crate) fn try_lock_exclusive(fd: &OwnedFd) -> bool {
    // SAFETY: flock takes no pointer; `fd` is open for the call (borrowed).
    unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Who holds the `flock` on the file `fd` is open on: `/proc/locks` names the process (Linux),
/// so nothing has to be written into the file. The holder may have gone since. `None` where
/// there is no `/proc/locks` (macOS). Test side only.
pub(crate) fn flock_holder(fd: &OwnedFd) -> Option<u32> {
    let inode = std::fs::File::from(fd.try_clone().ok()?)
        .metadata()
        .ok()?
        .ino();
    let suffix = format!(":{inode} ");
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`
        let fields: Vec<&str> = line.split_whitespace().collect();
        let file = format!("{} ", fields.get(5)?);
        (fields.get(1) == Some(&"FLOCK") && file.ends_with(&suffix))
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

/// Whether the calling process may create files in directory `dir` (`access(W_OK | X_OK)`).
pub(crate) fn can_create_in(dir: &CStr) -> bool {
    // SAFETY: `dir` is NUL-terminated and borrowed for the call.
    unsafe { libc::access(dir.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}
