//! Raw platform calls, and the only place that sends signals.
//!
//! `mod.rs` holds what every Unix has; `linux.rs` and `macos.rs` one file per OS for the rest
//! (subreaper, pidfd or kqueue, `/proc` or libproc, seccomp, sock_diag), with the same names.
//!
//! Everything the guardian calls is a plain syscall wrapper: no allocation, no locks, no `log`, no
//! `std::env`. The guardian may be a fork of the multithreaded test process without exec (the
//! fallback when the test executable cannot be re-run), and then only async-signal-safe calls
//! are allowed (R8.2). Paths are formatted into stack buffers ([`StackPath`]). Functions the test
//! side alone uses say so.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(target_os = "linux")]
mod rmtree;
#[cfg(target_os = "linux")]
pub use rmtree::remove_tree;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::*;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("process-fixture supports Linux and macOS");

pub type Pid = libc::pid_t;

/// Every descendant of `pid` (children of all its threads, depth first). Test side only.
pub fn descendants(pid: Pid) -> Vec<Pid> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for_each_child(p, |c| {
            out.push(c);
            stack.push(c);
        });
    }
    out
}

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    // `last_os_error` only reads errno; it does not allocate.
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries a call that failed with `EINTR`.
fn retry(mut f: impl FnMut() -> libc::c_int) -> libc::c_int {
    loop {
        let ret = f();
        if ret != -1 || errno() != libc::EINTR {
            return ret;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// File descriptors

/// Takes ownership of a freshly created fd, moved above the stdio numbers.
fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller has just created `fd`; nobody else owns it.
    above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A close-on-exec pipe `(read, write)`, both ends above the stdio numbers.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    #[cfg(target_os = "linux")]
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    #[cfg(not(target_os = "linux"))]
    {
        // macOS has no pipe2: a concurrent fork may inherit these ends before FD_CLOEXEC is set.
        // Our own forks close every fd they did not ask for, so only foreign forks are exposed.
        cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        for fd in fds {
            cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
        }
    }
    Ok((owned(fds[0])?, owned(fds[1])?))
}

/// A close-on-exec pair of connected Unix sockets: `SOCK_STREAM`, or `SOCK_SEQPACKET` (message
/// boundaries kept, each `sendmsg` atomic).
pub fn socketpair(seqpacket: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let kind = if seqpacket {
        libc::SOCK_SEQPACKET
    } else {
        libc::SOCK_STREAM
    };
    let mut fds = [0 as RawFd; 2];
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
        cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
        for fd in fds {
            cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
            // A peer that is gone must give EPIPE, not kill the test process with SIGPIPE.
            let one: libc::c_int = 1;
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
pub fn dev_null() -> io::Result<OwnedFd> {
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
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: freshly duplicated; the old one is closed when `fd` drops.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `fcntl(F_DUPFD_CLOEXEC, 3)`: a new number ≥ 3 for the same file, or -1.
pub fn dup_above_stdio(fd: RawFd) -> RawFd {
    unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) }
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// `read(2)`, retried on `EINTR`. Returns the byte count or `-1` with errno set.
pub fn read(fd: RawFd, buf: &mut [u8]) -> isize {
    loop {
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n != -1 || errno() != libc::EINTR {
            return n;
        }
    }
}

/// Reads exactly `buf.len()` bytes (blocking fd). False on EOF or error.
pub fn read_exact(fd: RawFd, buf: &mut [u8]) -> bool {
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
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> bool {
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
pub fn write_once(fd: RawFd, buf: &[u8]) -> isize {
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), NOSIGNAL) };
    if n == -1 && errno() == libc::ENOTSOCK {
        return unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    }
    n
}

#[cfg(target_os = "linux")]
const NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
/// macOS has no MSG_NOSIGNAL; our sockets carry SO_NOSIGPIPE instead (see `socketpair`).
#[cfg(not(target_os = "linux"))]
const NOSIGNAL: libc::c_int = 0;

pub fn close(fd: RawFd) {
    // Never retry close: on Linux the fd is gone even when EINTR is reported.
    unsafe { libc::close(fd) };
}

pub fn dup2(from: RawFd, to: RawFd) -> bool {
    retry(|| unsafe { libc::dup2(from, to) }) != -1
}

/// Closes every fd from 3 up, except those in `keep` (any order, at most 8).
/// Called right after fork: a guardian must hold only its own fixture's fds (DESIGN.md).
pub fn close_all_except(keep: &[RawFd]) {
    let mut sorted = [RawFd::MAX; 8];
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

/// Waits until one of `fds` is readable (or hung up) or `timeout` passes (`None`: no limit).
/// Returns how many fds have events; with no fds it is a plain bounded wait.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> i32 {
    for p in fds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    #[cfg(target_os = "linux")]
    {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as _, ts_ptr, std::ptr::null()) }.max(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let ms = timeout.map_or(-1, |t| {
            t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
        });
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, ms) }.max(0)
    }
}

/// A pollfd for `fd` (a negative fd is ignored by `poll`).
pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Sends `bytes` and the fds `fds` (SCM_RIGHTS, at most 4) over a Unix socket.
pub fn send_with_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut control = CmsgBuf::new();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let len = std::mem::size_of_val(fds);
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(len as u32) } as _;
        // SAFETY: the buffer is large enough for 4 fds and suitably aligned (u64 array).
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(len as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        }
    }
    let n = loop {
        let n = unsafe { libc::sendmsg(sock, &msg, NOSIGNAL) };
        if n != -1 || errno() != libc::EINTR {
            break n;
        }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message and up to 4 fds (close-on-exec). Returns `(bytes, fds received)`;
/// `bytes == 0` is EOF. Unused slots of `fds` are -1.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut [RawFd; 4]) -> isize {
    *fds = [-1; 4];
    let mut control = CmsgBuf::new();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control.0) as _;
    let n = loop {
        let n = unsafe { libc::recvmsg(sock, &mut msg, RECV_CLOEXEC) };
        if n != -1 || errno() != libc::EINTR {
            break n;
        }
    };
    if n < 0 {
        return n;
    }
    // SAFETY: walking the control messages the kernel wrote into our buffer.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        let mut got = 0;
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    if got < fds.len() {
                        fds[got] = fd;
                        got += 1;
                    } else {
                        close(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        #[cfg(not(target_os = "linux"))]
        for &fd in fds.iter().filter(|&&fd| fd >= 0) {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    n
}

#[cfg(target_os = "linux")]
const RECV_CLOEXEC: libc::c_int = libc::MSG_CMSG_CLOEXEC;
#[cfg(not(target_os = "linux"))]
const RECV_CLOEXEC: libc::c_int = 0;

/// Room for one SCM_RIGHTS message of up to 4 fds, aligned for `cmsghdr`.
struct CmsgBuf([u64; 8]);

impl CmsgBuf {
    fn new() -> CmsgBuf {
        CmsgBuf([0; 8])
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// `fork()`.
///
/// # Safety
/// The child of a multithreaded process may only make async-signal-safe calls until it execs
/// or exits.
pub unsafe fn fork() -> io::Result<Pid> {
    cvt(libc::fork())
}

/// Lets another runnable task have the CPU.
pub fn yield_now() {
    unsafe { libc::sched_yield() };
}

pub fn getpid() -> Pid {
    unsafe { libc::getpid() }
}

pub fn getppid() -> Pid {
    unsafe { libc::getppid() }
}

pub fn getpgrp() -> Pid {
    unsafe { libc::getpgrp() }
}

pub fn getpgid(pid: Pid) -> Pid {
    unsafe { libc::getpgid(pid) }
}

pub fn new_process_group() -> bool {
    unsafe { libc::setpgid(0, 0) == 0 }
}

pub fn exit(code: i32) -> ! {
    unsafe { libc::_exit(code) }
}

/// What the guardian reads of a process (`/proc/<pid>/stat` on Linux, libproc on macOS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub state: u8,
    pub ppid: Pid,
    pub pgrp: Pid,
    /// Start time (clock ticks since boot on Linux, µs since the epoch on macOS): tells a
    /// recycled pid from the process that had it.
    pub start: u64,
}

impl ProcStat {
    /// Zombies (`Z`) and dead tasks (`X`) hold a pid but run no code.
    pub fn is_live(&self) -> bool {
        self.state != b'Z' && self.state != b'X'
    }
}

/// A raw wait status (the `int` of `waitpid`), so `ExitStatus::from_raw` can read it.
pub type WaitStatus = i32;

/// Has child `pid` exited? Observes without reaping (`WNOWAIT`): the zombie keeps its pid, and so
/// its process group number, out of reuse (TEARDOWN.md Q1).
pub fn peek_exit(pid: Pid) -> Option<WaitStatus> {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    let ret = retry(|| unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) });
    // With WNOHANG, a child that has not exited leaves si_pid at 0.
    if ret == -1 || unsafe { info.si_pid() } == 0 {
        return None;
    }
    let status = unsafe { info.si_status() };
    Some(match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_DUMPED => status | 0x80,
        _ => status,
    })
}

/// Reaps child `pid` if it has exited. `Err` means it is not our child (already reaped).
pub fn try_reap(pid: Pid) -> io::Result<Option<WaitStatus>> {
    let mut status = 0;
    let ret = retry(|| unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) });
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        _ => Ok(Some(status)),
    }
}

/// Reaps every child that has exited, whichever it is, calling `f(pid, status)` for each.
/// Only where no pid needs pinning any more: the zygote (it signals none of its children by
/// number after reaping them), and a guardian's very last step, after its leader was reaped.
pub fn reap_any(mut f: impl FnMut(Pid, WaitStatus)) {
    loop {
        let mut status = 0;
        let pid = retry(|| unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) });
        if pid <= 0 {
            return;
        }
        f(pid, status);
    }
}

/// Result of `kill(-pgid, 0)`: whether any process, live or zombie, is in the group.
/// macOS answers `EPERM` for a group whose members are all zombies (TEARDOWN.md Q2).
pub fn group_probe(pgid: Pid) -> i32 {
    if unsafe { libc::kill(-pgid, 0) } == 0 {
        0
    } else {
        errno()
    }
}

// ---------------------------------------------------------------------------------------------
// The signal chokepoint (R1.1)

/// Whom a signal goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A pid that the caller has pinned: its own unreaped child.
    Process(Pid),
    /// A process group whose leader is the caller's unreaped child.
    Group(Pid),
    /// A process through a pidfd, which names that very process whatever happens to its pid.
    PidFd(RawFd),
}

/// Why [`signal`] did not send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalError {
    /// The target is one we must never signal.
    Refused,
    /// `kill` failed with this errno.
    Os(i32),
}

/// Pids and groups that are never signalled in this process, besides its own pid and group: a
/// guardian records its test process here. Statics are per process after fork.
static PROTECTED: [AtomicI32; 2] = [AtomicI32::new(0), AtomicI32::new(0)];

/// Adds the test process's pid and process group to the refused targets.
pub fn protect(pid: Pid, pgrp: Pid) {
    PROTECTED[0].store(pid, Ordering::Relaxed);
    PROTECTED[1].store(pgrp, Ordering::Relaxed);
}

/// Sends `sig` to `target`. Every signal the crate sends goes through here. It refuses ids ≤ 1,
/// our own pid and process group, and the protected ids. For numbers, the caller guarantees
/// they are pinned by an unreaped child of its own (see `guardian`).
pub fn signal(target: Target, sig: libc::c_int) -> Result<(), SignalError> {
    let (id, raw) = match target {
        Target::Process(p) => (p, p),
        Target::Group(g) => (g, -g),
        Target::PidFd(fd) => return pidfd_signal(fd, sig).map_err(SignalError::Os),
    };
    let own = id == getpid() || id == getpgrp();
    let protected = PROTECTED.iter().any(|p| p.load(Ordering::Relaxed) == id);
    if id <= 1 || own || protected {
        return Err(SignalError::Refused);
    }
    if unsafe { libc::kill(raw, sig) } == 0 {
        Ok(())
    } else {
        Err(SignalError::Os(errno()))
    }
}

// ---------------------------------------------------------------------------------------------
// Signal dispositions

/// The highest valid signal number.
#[cfg(target_os = "linux")]
pub(crate) const MAX_SIGNAL: libc::c_int = 64;
#[cfg(not(target_os = "linux"))]
pub(crate) const MAX_SIGNAL: libc::c_int = 31;

/// Empty signal mask and default dispositions, for the server just before exec: a harness that
/// blocks or ignores SIGTERM must not make the server immune to it.
pub fn reset_signals() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..=MAX_SIGNAL {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// Sets `sig` to ignored (`true`) or default (`false`).
pub fn set_ignored(sig: libc::c_int, ignored: bool) {
    let action = if ignored {
        libc::SIG_IGN
    } else {
        libc::SIG_DFL
    };
    unsafe { libc::signal(sig, action) };
}

/// Raises the soft limit on open files to the hard limit (a zygote holds one fd per fixture).
pub fn raise_fd_limit() {
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Switches the calling process to `uid`, `gid` and supplementary `groups`, in the order that
/// works (groups and gid while still privileged). For the server's child, before exec.
pub fn set_credentials(uid: Option<u32>, gid: Option<u32>, groups: Option<&[u32]>) -> bool {
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
pub fn lookup_user(name: &str) -> io::Result<Option<(u32, u32, std::path::PathBuf)>> {
    use std::os::unix::ffi::OsStrExt;
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the user name"))?;
    let mut buf = vec![0u8; 16 << 10];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid pointers; the strings in `pwd` point into `buf`, read before it drops.
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
    // SAFETY: pw_dir is a NUL-terminated string in `buf`.
    let home = unsafe { CStr::from_ptr(pwd.pw_dir) };
    let home = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(home.to_bytes()));
    Ok(Some((pwd.pw_uid, pwd.pw_gid, home)))
}

/// The groups user `name` belongs to, `gid` among them (`getgrouplist`). Test side only.
pub fn group_list(name: &str, gid: u32) -> io::Result<Vec<u32>> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the user name"))?;
    let mut count: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; count as usize];
        let before = count;
        // SAFETY: `groups` has room for `count` entries; the call updates `count`.
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

pub fn chdir(dir: &CStr) -> bool {
    unsafe { libc::chdir(dir.as_ptr()) == 0 }
}

// ---------------------------------------------------------------------------------------------
// Numbers without allocating

pub fn parse_pid(digits: &[u8]) -> Option<Pid> {
    Pid::try_from(parse_u64(digits)?).ok()
}

/// Decimal digits, without allocating (the guardian uses it).
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chokepoint_refuses_init_zero_self_and_own_group() {
        for target in [
            Target::Process(0),
            Target::Process(1),
            Target::Process(-5),
            Target::Group(0),
            Target::Group(1),
            Target::Process(getpid()),
            Target::Group(getpgrp()),
        ] {
            assert_eq!(signal(target, 0), Err(SignalError::Refused), "{target:?}");
        }
    }

    #[test]
    fn chokepoint_refuses_protected_ids_in_a_child() {
        // `protect` changes a static of this process: do it in a forked child only.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            protect(4242, 4343);
            let ok = signal(Target::Process(4242), 0) == Err(SignalError::Refused)
                && signal(Target::Group(4343), 0) == Err(SignalError::Refused);
            exit(if ok { 0 } else { 1 });
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    #[test]
    fn numbers_parse_without_allocating() {
        assert_eq!(parse_u64(b"12345"), Some(12345));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1x"), None);
    }

    #[test]
    fn fds_travel_over_a_socket() {
        let (a, b) = socketpair(true).unwrap();
        let (r, w) = pipe().unwrap();
        send_with_fds(a.as_raw_fd(), b"hi", &[w.as_raw_fd()]).unwrap();
        drop(w);
        let mut buf = [0u8; 8];
        let mut fds = [-1; 4];
        assert_eq!(recv_with_fds(b.as_raw_fd(), &mut buf, &mut fds), 2);
        assert_eq!(&buf[..2], b"hi");
        assert!(fds[0] >= 0 && fds[1] == -1);
        assert!(write_all(fds[0], b"x"));
        close(fds[0]);
        let mut one = [0u8; 1];
        assert!(read_exact(r.as_raw_fd(), &mut one));
        assert_eq!(&one, b"x");
    }
}
