//! Child exits as an fd (signalfd), so that the guardian sleeps until something happens.

use std::os::fd::RawFd;

use crate::sys::fd::read;
use crate::sys::signal::block_signal;

/// SIGCHLD, readable from an fd. The signal is blocked in the calling thread (the guardian and
/// the zygote are single-threaded; a server gets an empty mask before exec).
pub(crate) struct ChildEvents {
    fd: RawFd,
}

impl ChildEvents {
    pub(crate) fn new() -> Option<ChildEvents> {
        block_signal(libc::SIGCHLD);
        // SAFETY: sigset_t is plain old data; it is initialised by sigemptyset before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a live local sigset_t.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
        }
        // SAFETY: `set` is borrowed for the call (the kernel copies it); -1 asks for a new fd,
        // which `ChildEvents` then owns.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        (fd >= 0).then_some(ChildEvents { fd })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Consumes what is pending (SIGCHLDs coalesce: the caller looks at every child after).
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 128 * 4];
        while read(self.fd, &mut buf) > 0 {}
    }
}
