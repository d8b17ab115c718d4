//! How much room a filesystem has. Test side only.

use std::ffi::CStr;

/// Bytes an unprivileged user may still write on the filesystem of `path` (`statvfs`).
pub(crate) fn free_bytes(path: &CStr) -> Option<u64> {
    // SAFETY: statvfs is plain old data: all zeros is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and borrowed for the call; `st` is a live local.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between Linux and macOS
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}
