//! File descriptors: pipes, socket pairs, reads and writes, closing, `poll`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{cvt, errno, retry};

/// Takes ownership of a freshly created fd, moved above the stdio numbers.
fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller has just created `fd` and hands it over; nobody else owns it.
    above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A close-on-exec pipe `(read, write)`, both ends above the stdio numbers.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a live array of two ints, which is what pipe2 writes.
    #[cfg(target_os = "linux")]
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    #[cfg(not(target_os = "linux"))]
    {
        // macOS has no pipe2: a concurrent fork may inherit these ends before FD_CLOEXEC is set.
        // Our own forks close every fd they did not ask for, so only foreign forks are exposed.
        // SAFETY: `fds` is a live array of two ints, which is what pipe writes.
        cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        for fd in fds {
            // SAFETY: fcntl on an fd we just created; no pointer is passed.
            cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
        }
    }
    Ok((owned(fds[0])?, owned(fds[1])?))
}

/// A close-on-exec pair of connected Unix sockets: `SOCK_STREAM`, or `SOCK_SEQPACKET` (message
/// boundaries kept, each `sendmsg` atomic).
pub(crate) fn socketpair(seqpacket: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let kind = if seqpacket {
        libc::SOCK_SEQPACKET
    } else {
        libc::SOCK_STREAM
    };
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a live array of two ints, which is what socketpair writes.
    #[cfg(target_os = "linux")]
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: `fds` is a live array of two ints, which is what socketpair writes.
        cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
        for fd in fds {
            // SAFETY: fcntl on an fd we just created; no pointer is passed.
            cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
            // A peer that is gone must give EPIPE, not kill the test process with SIGPIPE.
            let one: libc::c_int = 1;
            // SAFETY: the option value points to `one`, a live int, and the length says so.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_NOSIGPIPE,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }
    Ok((owned(fds[0])?, owned(fds[1])?))
}

/// `/dev/null` opened read-write, close-on-exec.
pub(crate) fn dev_null() -> io::Result<OwnedFd> {
    // SAFETY: the path is a NUL-terminated literal with static lifetime.
    owned(cvt(unsafe {
        libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC)
    })?)
}

/// Moves an fd to a number ≥ 3, so that a `dup2` onto 0, 1 and 2 cannot clobber it (a test
/// process started with a closed stdin hands out fd 0 to its first pipe).
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl on an fd `fd` owns and keeps open for the call; no pointer is passed.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` was just made by the dup and is owned by nobody else; the old number is
    // closed when `fd` drops.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `fcntl(F_DUPFD_CLOEXEC, 3)`: a new number ≥ 3 for the same file, or -1.
pub(crate) fn dup_above_stdio(fd: RawFd) -> RawFd {
    dup_above(fd, 3)
}

/// `fcntl(F_DUPFD_CLOEXEC, min)`: a new, close-on-exec number ≥ `min` for the same file, or -1.
pub(crate) fn dup_above(fd: RawFd, min: RawFd) -> RawFd {
    // SAFETY: fcntl takes no pointer here; a bad fd is an EBADF, not undefined behaviour.
    unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) }
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl takes no pointer here; a bad fd is an EBADF.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// `read(2)`, retried on `EINTR`. Returns the byte count or `-1` with errno set.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> isize {
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, borrowed mutably for
        // the call.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n != -1 || errno() != libc::EINTR {
            return n;
        }
    }
}

/// Reads exactly `buf.len()` bytes (blocking fd). False on EOF or error.
pub(crate) fn read_exact(fd: RawFd, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let n = read(fd, &mut buf[done..]);
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}

/// Writes all of `buf` to a blocking fd (small messages: one `write` below `PIPE_BUF` is
/// atomic). On a socket, a gone peer gives `false` (EPIPE), never SIGPIPE.
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        let n = write_once(fd, buf);
        if n > 0 {
            buf = &buf[n as usize..];
        } else if n == -1 && errno() == libc::EINTR {
            continue;
        } else {
            return false;
        }
    }
    true
}

/// One `write`; on a socket `send(MSG_NOSIGNAL)`, so a closed peer is an error, not a signal.
pub(crate) fn write_once(fd: RawFd, buf: &[u8]) -> isize {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`, borrowed for the call.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), NOSIGNAL) };
    if n == -1 && errno() == libc::ENOTSOCK {
        // SAFETY: as above.
        return unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    }
    n
}

#[cfg(target_os = "linux")]
pub(super) const NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
/// macOS has no MSG_NOSIGNAL; our sockets carry SO_NOSIGPIPE instead (see `socketpair`).
#[cfg(not(target_os = "linux"))]
pub(super) const NOSIGNAL: libc::c_int = 0;

/// `close(2)`, once.
pub(crate) fn close(fd: RawFd) {
    // Never retry close: on Linux the fd is gone even when EINTR is reported.
    // SAFETY: the caller gives up `fd`, which it owns; no pointer is passed.
    unsafe { libc::close(fd) };
}

/// `dup2(2)`, retried on `EINTR`.
pub(crate) fn dup2(from: RawFd, to: RawFd) -> bool {
    // SAFETY: no pointer is passed; the caller owns `to` (it is replaced on purpose).
    retry(|| unsafe { libc::dup2(from, to) }) != -1
}

/// Closes every fd from 3 up, except those in `keep` (any order, at most 16; -1 is none).
/// Called right after fork: a guardian must hold only its own fixture's fds, so that no other
/// fixture's server or guardian is kept alive (or its pipe kept open) by it.
pub(crate) fn close_all_except(keep: &[RawFd]) {
    let mut sorted = [RawFd::MAX; 16];
    for (slot, &fd) in sorted.iter_mut().zip(keep) {
        *slot = fd;
    }
    sorted.sort_unstable();
    let mut first: RawFd = 3;
    for &k in sorted.iter().take_while(|&&k| k != RawFd::MAX) {
        if k >= first {
            close_range(first, k - 1);
            first = k + 1;
        }
    }
    close_range(first, RawFd::MAX);
}

/// Closes the fds `first..=last` (`close_range(2)`, or one by one up to the fd limit).
fn close_range(first: RawFd, last: RawFd) {
    if first > last {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: no pointer is passed; the caller owns every fd in the range (right after fork).
        let ret =
            unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as libc::c_uint, 0) };
        if ret == 0 {
            return;
        }
    }
    // Kernels before 5.9, and macOS: one by one, up to the fd limit.
    // SAFETY: sysconf takes no pointer.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = if max <= 0 { 65_536 } else { max.min(1 << 20) } as RawFd;
    for fd in first..=last.min(max) {
        close(fd);
    }
}

/// Marks every fd from `first` up close-on-exec (the server's child, just before exec: whatever
/// it inherited by mistake goes away at exec, while the exec-status pipe stays open until then;
/// `first` is 3, or past the sockets of socket activation). On macOS our fds are all
/// close-on-exec already: nothing to do.
pub(crate) fn cloexec_from(first: RawFd) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: no pointer is passed; the flag changes the fds, it closes none.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        let _ = ret; // kernels before 5.11: the fds we hold are CLOEXEC already
    }
    #[cfg(not(target_os = "linux"))]
    let _ = first;
}

/// Waits until one of `fds` has an event it asks for ([`pollfd`]: readable) or hangs up, or
/// `timeout` passes (`None`: no limit). Returns how many fds have events; with no fds it is a
/// plain bounded wait.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> i32 {
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    #[cfg(target_os = "linux")]
    {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        // SAFETY: `fds` is a live, mutably borrowed slice of `fds.len()` pollfds; `ts_ptr` is
        // null or points to `ts`, alive until the call returns; a null sigmask leaves it alone.
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as _, ts_ptr, std::ptr::null()) }.max(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let ms = timeout.map_or(-1, |t| {
            t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
        });
        // SAFETY: `fds` is a live, mutably borrowed slice of `fds.len()` pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, ms) }.max(0)
    }
}

/// Waits until `fd` is writable, or `timeout_ms` milliseconds pass. Test side only.
pub(crate) fn poll_writable(fd: RawFd, timeout_ms: libc::c_int) {
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    }];
    // SAFETY: one valid pollfd in a live local array; bounded wait.
    unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout_ms) };
}

/// A pollfd for `fd` (a negative fd is ignored by `poll`).
pub(crate) fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// The identity of what `fd` refers to (device, inode): the same for every copy of one socket
/// end. `None` if `fd` is not open.
pub(crate) fn fd_identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: stat is plain old data: all zeros is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into `st`, a live local; a closed `fd` is an error, not UB.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // the types differ between Linux and macOS
    Some((st.st_dev as u64, st.st_ino as u64))
}

/// Polls `fds` for a hang-up only (no event asked for, so unread data does not wake it), for up
/// to `timeout`; returns the fds whose peer has closed (or that are invalid).
pub(crate) fn hung_up(fds: &[RawFd], timeout: Duration) -> Vec<RawFd> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `polled` is a live array of `polled.len()` pollfds for the call.
    unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms) };
    polled
        .iter()
        .filter(|p| p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0)
        .map(|p| p.fd)
        .collect()
}
