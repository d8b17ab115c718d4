//! kqueue: process exits and SIGCHLD as readable fds.

use std::os::fd::RawFd;

use crate::sys::fd::close;
use crate::sys::Pid;

/// A kqueue fd with one filter registered; readable once the filter has fired.
fn kqueue_with(ident: usize, filter: i16, fflags: u32) -> Option<RawFd> {
    // SAFETY: kqueue takes no argument; the new fd is closed below or handed to the caller.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return None;
    }
    // SAFETY: fcntl on the fd just created; no pointer is passed.
    unsafe { libc::fcntl(kq, libc::F_SETFD, libc::FD_CLOEXEC) };
    let change = libc::kevent {
        ident,
        filter,
        flags: libc::EV_ADD | libc::EV_CLEAR,
        fflags,
        data: 0,
        udata: std::ptr::null_mut(),
    };
    // SAFETY: one change read from `change`, a live local; no event list (null, 0), no timeout.
    let ret = unsafe { libc::kevent(kq, &change, 1, std::ptr::null_mut(), 0, std::ptr::null()) };
    if ret < 0 {
        close(kq);
        return None;
    }
    Some(kq)
}

/// An fd that becomes readable when `pid` exits (kqueue `EVFILT_PROC` / `NOTE_EXIT`). A process
/// that has already exited cannot be registered: then an fd that is readable at once (the read
/// end of a pipe whose write end is closed), so the caller sees the exit either way.
pub(crate) fn exit_watch(pid: Pid) -> Option<RawFd> {
    if let Some(kq) = kqueue_with(pid as usize, libc::EVFILT_PROC, libc::NOTE_EXIT) {
        return Some(kq);
    }
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a live array of two ints, which is what pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fcntl on the fd just created; no pointer is passed.
    unsafe { libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC) };
    close(fds[1]);
    Some(fds[0])
}

/// SIGCHLD as a readable fd: a kqueue with `EVFILT_SIGNAL`.
pub(crate) struct ChildEvents {
    fd: RawFd,
}

impl ChildEvents {
    pub(crate) fn new() -> Option<ChildEvents> {
        kqueue_with(libc::SIGCHLD as usize, libc::EVFILT_SIGNAL, 0).map(|fd| ChildEvents { fd })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    pub(crate) fn drain(&self) {
        // SAFETY: kevent is plain old data: all zeros is valid.
        let mut events: [libc::kevent; 4] = unsafe { std::mem::zeroed() };
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: no changes (null, 0); up to `events.len()` events written into `events`, a
        // live local array; `zero` is a live local timeout (do not wait).
        unsafe {
            libc::kevent(
                self.fd,
                std::ptr::null(),
                0,
                events.as_mut_ptr(),
                events.len() as i32,
                &zero,
            )
        };
    }
}
