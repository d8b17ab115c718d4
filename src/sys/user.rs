//! Users and groups: looking them up, switching to them.

use std::ffi::CStr;
use std::io;

/// The effective uid of the calling process.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no argument and cannot fail.
    unsafe { libc::geteuid() }
}

/// Switches the calling process to `uid`, `gid` and supplementary `groups`, in the order that
/// works (groups and gid while still privileged). For the server's child, before exec.
pub(crate) fn set_credentials(uid: Option<u32>, gid: Option<u32>, groups: Option<&[u32]>) -> bool {
    // SAFETY: setgroups reads `groups.len()` gids from the borrowed slice (gid_t is u32);
    // setgid and setuid take no pointer. All three are plain syscalls, async-signal-safe in
    // the child they run in.
    unsafe {
        if let Some(groups) = groups {
            if libc::setgroups(groups.len() as _, groups.as_ptr().cast()) != 0 {
                return false;
            }
        }
        if gid.is_some_and(|g| libc::setgid(g as libc::gid_t) != 0) {
            return false;
        }
        if uid.is_some_and(|u| libc::setuid(u as libc::uid_t) != 0) {
            return false;
        }
    }
    true
}

/// The uid, primary gid and home directory of user `name` (`getpwnam_r`). Test side only.
pub(crate) fn lookup_user(name: &str) -> io::Result<Option<(u32, u32, std::path::PathBuf)>> {
    use std::os::unix::ffi::OsStrExt;
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the user name"))?;
    let mut buf = vec![0u8; 16 << 10];
    // SAFETY: passwd is plain old data: all zeros is valid (null pointers, read only if found).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: `c_name` is NUL-terminated; `pwd`, `buf` (of the length given) and `found` are
    // live locals the call writes; the strings in `pwd` then point into `buf`, read before it
    // drops.
    let ret = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    if found.is_null() {
        return Ok(None);
    }
    // SAFETY: the entry was found, so pw_dir is a NUL-terminated string in `buf`, still alive.
    let home = unsafe { CStr::from_ptr(pwd.pw_dir) };
    let home = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(home.to_bytes()));
    Ok(Some((pwd.pw_uid, pwd.pw_gid, home)))
}

/// The groups user `name` belongs to, `gid` among them (`getgrouplist`). Test side only.
pub(crate) fn group_list(name: &str, gid: u32) -> io::Result<Vec<u32>> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the user name"))?;
    let mut count: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; count as usize];
        let before = count;
        // SAFETY: `c_name` is NUL-terminated; `groups` has room for `count` entries, which is
        // what the call is told, and it updates `count` (a live local).
        let ret = unsafe {
            libc::getgrouplist(
                c_name.as_ptr(),
                gid as _,
                groups.as_mut_ptr().cast(),
                &mut count,
            )
        };
        if ret >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        if count <= before {
            count = before * 2; // macOS does not say how many it needs
        }
        if count > 1 << 16 {
            return Err(io::Error::other("too many groups"));
        }
    }
}
