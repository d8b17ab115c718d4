//! pidfds (Linux ≥ 5.3): an fd that names one process, whatever happens to its number.

use std::os::fd::RawFd;

use crate::sys::{errno, Pid};

/// A pidfd for `pid` (Linux ≥ 5.3): names that very process, whatever happens to its number.
pub(crate) fn pidfd_open(pid: Pid) -> Option<RawFd> {
    // SAFETY: pidfd_open takes integers only.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then_some(fd as RawFd)
}

/// Signals the process a pidfd names (never a recycled pid).
pub(crate) fn pidfd_signal(fd: RawFd, sig: libc::c_int) -> Result<(), i32> {
    // SAFETY: a null siginfo is allowed (the kernel fills in one as for kill); the rest are
    // integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// A copy of fd `target_fd` of the process `pidfd` names (Linux ≥ 5.6), close-on-exec.
pub(crate) fn pidfd_getfd(pidfd: RawFd, target_fd: RawFd) -> Option<RawFd> {
    // SAFETY: pidfd_getfd takes integers only; the new fd is returned to the caller to own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, target_fd, 0) };
    (fd >= 0).then_some(fd as RawFd)
}

/// An fd that becomes readable when `pid` exits: its pidfd.
pub(crate) fn exit_watch(pid: Pid) -> Option<RawFd> {
    pidfd_open(pid)
}
