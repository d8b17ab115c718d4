//! Who is at the other end of a unix socket: the shared server's rendezvous checks it both
//! ways, so that a socket planted by another user is never trusted. Test side only.

use std::io;
use std::os::fd::RawFd;

/// The effective uid of the process that connected (or bound) the peer of `fd`.
#[cfg(target_os = "linux")]
pub(crate) fn peer_uid(fd: RawFd) -> io::Result<u32> {
    // SAFETY: ucred is plain old data: all zeros is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a live local of that size.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    super::cvt(ret)?;
    Ok(cred.uid)
}

/// The effective uid of the process that connected (or bound) the peer of `fd`.
#[cfg(target_os = "macos")]
pub(crate) fn peer_uid(fd: RawFd) -> io::Result<u32> {
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: getpeereid writes into two live locals.
    super::cvt(unsafe { libc::getpeereid(fd, &mut uid, &mut gid) })?;
    Ok(uid)
}
