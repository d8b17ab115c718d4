//! Linux: subreaper, pidfd, signalfd, `/proc`, seccomp user notification, sock_diag.

use std::ffi::CStr;
use std::os::fd::RawFd;

use super::{close, errno, parse_pid, parse_u64, read, retry, Pid, ProcStat};

/// Makes the calling process a child subreaper: orphans of its descendants re-parent to it.
pub fn become_subreaper() -> bool {
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// Names the calling process (`comm`), so `ps` shows a guardian as such.
pub fn set_name(name: &CStr) {
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

/// `PR_SET_PDEATHSIG` for the calling process. Only for the server's child of the guardian,
/// which is single-threaded: the signal follows the death of the parent *thread*, which there
/// is the whole guardian (TEARDOWN.md R4.2 forbids it on a test thread).
pub fn set_parent_death_signal(sig: libc::c_int) -> bool {
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) == 0 }
}

/// A pidfd for `pid` (Linux ≥ 5.3): names that very process, whatever happens to its number.
pub fn pidfd_open(pid: Pid) -> Option<RawFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then_some(fd as RawFd)
}

/// Signals the process a pidfd names (never a recycled pid).
pub fn pidfd_signal(fd: RawFd, sig: libc::c_int) -> Result<(), i32> {
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
pub fn pidfd_getfd(pidfd: RawFd, target_fd: RawFd) -> Option<RawFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, target_fd, 0) };
    (fd >= 0).then_some(fd as RawFd)
}

/// Starts a process that shares our memory until it execs or exits (`clone(CLONE_VM |
/// CLONE_VFORK)` on a stack of its own, as `posix_spawn` does): no page table is copied and none
/// torn down, and we are suspended until then. For the guardian's server child, whose work before
/// `execve` is plain syscalls. `child` must exec or `_exit`, never return.
///
/// # Safety
/// Single-threaded caller with no signal handler installed (a handler running in the child would
/// run on shared memory); `child` touches no memory of ours but through the plain syscalls it
/// makes.
pub unsafe fn spawn_shared(child: &mut dyn FnMut() -> i32) -> std::io::Result<Pid> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&mut dyn FnMut` below, alive: the parent is suspended.
        let child = unsafe { &mut *(arg as *mut &mut dyn FnMut() -> i32) };
        let code = child();
        super::exit(code)
    }
    // 64 KiB, 16-byte aligned at its top; left uninitialised, so that only the pages the
    // child touches (from the top down) are ever dirtied.
    let mut stack = std::mem::MaybeUninit::<[u64; 8192]>::uninit();
    let top = stack
        .as_mut_ptr()
        .cast::<u64>()
        .add(8192)
        .cast::<libc::c_void>();
    let mut arg: &mut dyn FnMut() -> i32 = child;
    let pid = libc::clone(
        trampoline,
        top,
        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
        (&mut arg as *mut &mut dyn FnMut() -> i32).cast(),
    );
    if pid == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(pid)
}

/// An fd that becomes readable when `pid` exits: its pidfd.
pub fn exit_watch(pid: Pid) -> Option<RawFd> {
    pidfd_open(pid)
}

pub(super) fn close_range(first: RawFd, last: RawFd) {
    if first > last {
        return;
    }
    let ret =
        unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as libc::c_uint, 0) };
    if ret == 0 {
        return;
    }
    // Kernels before 5.9: one by one, up to the fd limit.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = if max <= 0 { 65_536 } else { max.min(1 << 20) } as RawFd;
    for fd in first..=last.min(max) {
        close(fd);
    }
}

/// Marks every fd from 3 up close-on-exec (the server's child, just before exec: whatever it
/// inherited by mistake goes away at exec, while the exec-status pipe stays open until then).
pub fn cloexec_from_3() {
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let _ = ret; // kernels before 5.11: the fds we hold are CLOEXEC already
}

/// Blocks `sig` in the calling thread (so that it is read from an fd instead of delivered).
fn block_signal(sig: libc::c_int) {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A C path built on the stack (the guardian may not allocate).
pub struct StackPath {
    buf: [u8; 96],
    len: usize,
}

impl StackPath {
    pub fn new() -> Self {
        StackPath {
            buf: [0; 96],
            len: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let take = bytes.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        self.len += take;
        self
    }

    pub fn push_pid(&mut self, pid: Pid) -> &mut Self {
        let mut digits = [0u8; 12];
        let mut n = pid.unsigned_abs();
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }

    pub fn as_cstr(&mut self) -> &CStr {
        self.buf[self.len] = 0;
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).unwrap_or(c"/")
    }
}

/// Opens a path read-only, close-on-exec; -1 on failure (errno set).
pub fn open_read(path: &CStr) -> RawFd {
    retry(|| unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })
}

/// Reads a small file into `buf`; returns the byte count, or `None` when it cannot be opened.
pub fn read_file(path: &CStr, buf: &mut [u8]) -> Option<usize> {
    let fd = open_read(path);
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < buf.len() {
        let n = read(fd, &mut buf[len..]);
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    close(fd);
    Some(len)
}

/// Hexadecimal digits (a `SigIgn:` mask), without allocating.
pub fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n * 16 + u64::from((d as char).to_digit(16)?);
    }
    Some(n)
}

// ---------------------------------------------------------------------------------------------
// Child exits as an fd (signalfd), so that the guardian sleeps until something happens.

/// SIGCHLD, readable from an fd. The signal is blocked in the calling thread (the guardian and
/// the zygote are single-threaded; a server gets an empty mask before exec).
pub struct ChildEvents {
    fd: RawFd,
}

impl ChildEvents {
    pub fn new() -> Option<ChildEvents> {
        block_signal(libc::SIGCHLD);
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
        }
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        (fd >= 0).then_some(ChildEvents { fd })
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Consumes what is pending (SIGCHLDs coalesce: the caller looks at every child after).
    pub fn drain(&self) {
        let mut buf = [0u8; 128 * 4];
        while read(self.fd, &mut buf) > 0 {}
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// `/proc/<pid>/stat`, or `None` when the process is gone (or there is no /proc).
pub fn proc_stat(pid: Pid) -> Option<ProcStat> {
    let mut path = StackPath::new();
    path.push(b"/proc/").push_pid(pid).push(b"/stat");
    let mut buf = [0u8; 512];
    let len = read_file(path.as_cstr(), &mut buf)?;
    parse_stat(&buf[..len])
}

/// Parses `pid (comm) S ppid pgrp …`; comm may contain spaces and parentheses, so split after the
/// last `)`.
fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let mut fields = text[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let ppid = parse_pid(fields.next()?)?;
    let pgrp = parse_pid(fields.next()?)?;
    // Start time is field 22; the iterator is now at field 6, so it is `nth(16)`.
    let start = parse_u64(fields.nth(16)?)?;
    Some(ProcStat {
        state,
        ppid,
        pgrp,
        start,
    })
}

/// Whether process `pid` ignores signal `sig` (`SigIgn` in `/proc/<pid>/status`): an ignored
/// signal is discarded for good, so waiting for the process to act on it is pointless. `None`
/// when it cannot be read. A blocked or caught signal is not "ignored".
pub fn ignores_signal(pid: Pid, sig: libc::c_int) -> Option<bool> {
    let mut path = StackPath::new();
    path.push(b"/proc/").push_pid(pid).push(b"/status");
    let mut buf = [0u8; 2048];
    let len = read_file(path.as_cstr(), &mut buf)?;
    let mask = status_field(&buf[..len], b"SigIgn:").and_then(parse_hex)?;
    Some((1..=64).contains(&sig) && mask & (1u64 << (sig - 1)) != 0)
}

/// The thread group (process) of thread `tid` (`Tgid:` in `/proc/<tid>/status`).
pub fn thread_group(tid: Pid) -> Option<Pid> {
    let mut path = StackPath::new();
    path.push(b"/proc/").push_pid(tid).push(b"/status");
    let mut buf = [0u8; 2048];
    let len = read_file(path.as_cstr(), &mut buf)?;
    status_field(&buf[..len], b"Tgid:").and_then(parse_pid)
}

/// The trimmed value of a `Name:\tvalue` line of a `/proc/<pid>/status` text.
fn status_field<'a>(text: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let line = text
        .split(|&b| b == b'\n')
        .find(|line| line.starts_with(name))?;
    let value = &line[name.len()..];
    let start = value.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = value.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    Some(&value[start..end])
}

/// Calls `f` with each name in directory `dir` that is a number (a pid or tid). `false` when the
/// directory cannot be read.
fn for_each_numeric_entry(dir: &CStr, mut f: impl FnMut(Pid)) -> bool {
    let fd = retry(|| unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    });
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    let ok = loop {
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break n == 0;
        }
        let mut off = 0usize;
        while off + 19 <= n as usize {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n as usize {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(pid) = parse_pid(name) {
                f(pid);
            }
            off += reclen;
        }
    };
    close(fd);
    ok
}

/// Calls `f` for each direct child of `pid`, whichever of its threads forked it
/// (`/proc/<pid>/task/<tid>/children` is per thread). `false` when the kernel lists no
/// children (no CONFIG_PROC_CHILDREN, no /proc) or `pid` is gone: "could not look", never
/// "no children".
pub fn for_each_child(pid: Pid, mut f: impl FnMut(Pid)) -> bool {
    let mut dir = StackPath::new();
    dir.push(b"/proc/").push_pid(pid).push(b"/task");
    let mut ok = true;
    let listed = for_each_numeric_entry(dir.as_cstr(), |tid| {
        ok &= for_each_task_child(pid, tid, &mut f);
    });
    listed && ok
}

/// Calls `f` for each child of the calling process, which must be single-threaded (the
/// guardian, the zygote): its one task lists them all. Read at every wake, so it skips the
/// listing of tasks. `false` when it cannot be read.
pub fn for_each_own_child(mut f: impl FnMut(Pid)) -> bool {
    let me = super::getpid();
    for_each_task_child(me, me, &mut f)
}

fn for_each_task_child(pid: Pid, tid: Pid, f: &mut impl FnMut(Pid)) -> bool {
    let mut path = StackPath::new();
    // For our own single task, an ENOENT is no listing at all (no /proc), not an exited thread.
    let own = tid == super::getpid();
    path.push(b"/proc/")
        .push_pid(pid)
        .push(b"/task/")
        .push_pid(tid)
        .push(b"/children");
    let fd = open_read(path.as_cstr());
    if fd < 0 {
        // A thread that exited since the task list was read has no children to list.
        return !own && errno() == libc::ENOENT;
    }
    let mut buf = [0u8; 4096];
    let mut current: Option<i64> = None;
    loop {
        let n = read(fd, &mut buf);
        if n <= 0 {
            break;
        }
        for &b in &buf[..n as usize] {
            if b.is_ascii_digit() {
                current = Some(current.unwrap_or(0) * 10 + i64::from(b - b'0'));
            } else if let Some(child) = current.take() {
                f(child as Pid);
            }
        }
    }
    if let Some(child) = current {
        f(child as Pid);
    }
    close(fd);
    true
}

/// Calls `f` for every process in `/proc`. Costs about 9 µs a process (TEARDOWN.md Q2): for
/// containment by process group only, where the guardian cannot list its descendants.
pub fn for_each_process(mut f: impl FnMut(Pid, ProcStat)) -> bool {
    for_each_numeric_entry(c"/proc", |pid| {
        if let Some(stat) = proc_stat(pid) {
            f(pid, stat);
        }
    })
}

// ---------------------------------------------------------------------------------------------
// seccomp: an event at every listen() of the server's processes (DESIGN.md, Readiness)

#[cfg(target_arch = "x86_64")]
const NATIVE_AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// Whether this build can watch listen() calls (an architecture whose filter we wrote).
pub const LISTEN_EVENTS: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Installs, in the calling process (the server's child, before exec), a seccomp filter that
/// turns every native-ABI `listen()` into a user notification, and returns the listener fd.
/// Without CAP_SYS_ADMIN the kernel requires no_new_privs: `no_new_privs` says whether to set it.
/// Async-signal-safe: the program is a constant on the stack.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn install_listen_filter(no_new_privs: bool) -> Option<RawFd> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const OFF_NR: u32 = 0; // offsetof(struct seccomp_data, nr)
    const OFF_ARCH: u32 = 4; // offsetof(struct seccomp_data, arch)
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let program = [
        ins(LD_W_ABS, 0, 0, OFF_ARCH),
        ins(JEQ_K, 1, 0, NATIVE_AUDIT_ARCH),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ins(LD_W_ABS, 0, 0, OFF_NR),
        ins(JEQ_K, 0, 1, libc::SYS_listen as u32),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_USER_NOTIF),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    if no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return None;
    }
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    (fd >= 0).then_some(fd as RawFd)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn install_listen_filter(_no_new_privs: bool) -> Option<RawFd> {
    None
}

/// Whether the calling process may install a seccomp filter without no_new_privs
/// (CAP_SYS_ADMIN in its user namespace; checked as "effective uid 0", which has it unless a
/// capability-dropping sandbox took it away, in which case the install fails and readiness
/// falls back to polling).
pub fn privileged() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// One pending `listen()`: the calling thread and the socket fd it passed.
pub struct ListenCall {
    pub id: u64,
    pub tid: Pid,
    pub fd: RawFd,
}

/// Takes the next notification from a listener fd (`None`: none pending, or its caller died).
pub fn receive_listen_call(notify_fd: RawFd) -> Option<ListenCall> {
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    let ret = unsafe { libc::ioctl(notify_fd, libc::SECCOMP_IOCTL_NOTIF_RECV as _, &mut req) };
    (ret == 0).then(|| ListenCall {
        id: req.id,
        tid: req.pid as Pid,
        fd: req.data.args[0] as RawFd,
    })
}

/// Is the notification still pending (its caller still in the syscall)? Checked after copying
/// its fd, so that the copy is known to be the socket it passed.
pub fn listen_call_valid(notify_fd: RawFd, id: u64) -> bool {
    unsafe { libc::ioctl(notify_fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _, &id) == 0 }
}

/// Lets the `listen()` go ahead as if nothing had intercepted it.
pub fn continue_listen_call(notify_fd: RawFd, id: u64) {
    let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    resp.id = id;
    resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
    unsafe { libc::ioctl(notify_fd, libc::SECCOMP_IOCTL_NOTIF_SEND as _, &mut resp) };
}

/// An integer socket option at `SOL_SOCKET` level.
fn socket_option(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for an int-sized option.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (ret == 0).then_some(value)
}

/// Whether socket `fd` is listening (`SO_ACCEPTCONN`).
pub fn is_listening(fd: RawFd) -> bool {
    socket_option(fd, libc::SO_ACCEPTCONN).is_some_and(|on| on != 0)
}

/// The local address of a TCP socket: `(family, address bytes (4 or 16 used), port)`.
pub fn tcp_local_address(fd: RawFd) -> Option<(u16, [u8; 16], u16)> {
    if socket_option(fd, libc::SO_PROTOCOL) != Some(libc::IPPROTO_TCP) {
        return None;
    }
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ret = unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return None;
    }
    let mut addr = [0u8; 16];
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in.
            let sin = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in) };
            addr[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
            Some((libc::AF_INET as u16, addr, u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6.
            let sin6 = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in6) };
            addr.copy_from_slice(&sin6.sin6_addr.s6_addr);
            Some((libc::AF_INET6 as u16, addr, u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Test side only (these allocate): listening sockets, who holds a port, what a process is.

/// A listening TCP socket: its local address and socket inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpListener {
    pub addr: std::net::SocketAddr,
    pub inode: u64,
}

/// Every listening TCP socket of this network namespace, through sock_diag netlink (one request
/// per address family, no /proc text to parse); `/proc/net/tcp{,6}` when netlink is refused (a
/// sandbox). `None` when neither can be read.
pub fn tcp_listeners() -> Option<Vec<TcpListener>> {
    ListenerScan::new().listeners()
}

/// Repeated looks at the listening sockets, through one netlink socket (a readiness wait looks
/// every few milliseconds: a socket per look would double its cost).
pub struct ListenerScan {
    sock: Option<std::os::fd::OwnedFd>,
}

impl ListenerScan {
    pub fn new() -> ListenerScan {
        ListenerScan { sock: diag::open() }
    }

    pub fn listeners(&mut self) -> Option<Vec<TcpListener>> {
        let by_diag = self.sock.as_ref().and_then(diag::listeners);
        if by_diag.is_none() {
            self.sock = None; // refused once: /proc from now on
        }
        by_diag.or_else(proc_net_listeners)
    }

    /// The listening socket a connection to `addr` would reach (an exact address, a wildcard
    /// one, or an IPv6 socket that takes IPv4 too), asked of the kernel by address: a lookup in
    /// its listener hash, where `listeners()` walks every bucket of it (≈ 5 µs against ≈ 29 µs
    /// here). `Some(None)`: nothing listens there. `None`: it cannot be asked (no sock_diag);
    /// use `listeners()`. With `SO_REUSEPORT`, one socket of the group is named.
    pub fn listener_on(&mut self, addr: std::net::SocketAddr) -> Option<Option<TcpListener>> {
        let found = diag::lookup(self.sock.as_ref()?, addr);
        if found.is_none() {
            self.sock = None;
        }
        found
    }
}

fn proc_net_listeners() -> Option<Vec<TcpListener>> {
    let mut out = Vec::new();
    let mut any = false;
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        any = true;
        out.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| parse_proc_net_line(l, v6)),
        );
    }
    any.then_some(out)
}

/// A `/proc/net/tcp{,6}` line in state 0A (listening): its address and inode.
fn parse_proc_net_line(line: &str, v6: bool) -> Option<TcpListener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if *fields.get(3)? != "0A" {
        return None;
    }
    let (ip_hex, port_hex) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    // The address is printed as 32-bit words in host byte order.
    let mut bytes = [0u8; 16];
    let words = ip_hex.len() / 8;
    for w in 0..words {
        let word = u32::from_str_radix(ip_hex.get(w * 8..w * 8 + 8)?, 16).ok()?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    let ip: std::net::IpAddr = if v6 {
        std::net::Ipv6Addr::from(bytes).into()
    } else {
        std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()
    };
    Some(TcpListener {
        addr: std::net::SocketAddr::new(ip, port),
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// sock_diag netlink (linux/inet_diag.h): a dump of TCP sockets in state LISTEN.
mod diag {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::TcpListener;

    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u32 = 10;

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct SockId {
        sport: [u8; 2],
        dport: [u8; 2],
        src: [u8; 16],
        dst: [u8; 16],
        interface: u32,
        cookie: [u32; 2],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Request {
        // struct nlmsghdr
        len: u32,
        kind: u16,
        flags: u16,
        seq: u32,
        pid: u32,
        // struct inet_diag_req_v2
        family: u8,
        protocol: u8,
        ext: u8,
        pad: u8,
        states: u32,
        id: SockId,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Message {
        family: u8,
        state: u8,
        timer: u8,
        retrans: u8,
        id: SockId,
        expires: u32,
        rqueue: u32,
        wqueue: u32,
        uid: u32,
        inode: u32,
    }

    pub(super) fn open() -> Option<OwnedFd> {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        // SAFETY: just created.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(super) fn listeners(sock: &OwnedFd) -> Option<Vec<TcpListener>> {
        let mut out = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            dump(sock, family as u8, &mut out)?;
        }
        Some(out)
    }

    /// The listener that takes connections to `addr`: an exact request (no dump), which the
    /// kernel answers with `inet_lookup`, as for an incoming connection to `addr` from nowhere
    /// (no established socket has the peer 0.0.0.0:0, so only listeners match).
    pub(super) fn lookup(sock: &OwnedFd, addr: SocketAddr) -> Option<Option<TcpListener>> {
        let mut id = SockId {
            sport: addr.port().to_be_bytes(),
            cookie: [u32::MAX; 2], // INET_DIAG_NOCOOKIE: any socket
            ..SockId::default()
        };
        let family = match addr.ip() {
            IpAddr::V4(ip) => {
                id.src[..4].copy_from_slice(&ip.octets());
                libc::AF_INET
            }
            IpAddr::V6(ip) => {
                id.src = ip.octets();
                libc::AF_INET6
            }
        };
        send(sock, family as u8, NLM_F_REQUEST, id)?;
        let mut buf = [0u8; 1024];
        let n = super::read(sock.as_raw_fd(), &mut buf);
        if n < 16 {
            return None;
        }
        let n = n as usize;
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        if len < 16 || len > n {
            return None;
        }
        if kind == NLMSG_ERROR {
            let code = i32::from_ne_bytes(buf[16..20].try_into().ok()?);
            return (code == -libc::ENOENT).then_some(None);
        }
        Some(listener(&buf[16..len]))
    }

    fn send(sock: &OwnedFd, family: u8, flags: u16, id: SockId) -> Option<()> {
        let req = Request {
            len: std::mem::size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags,
            family,
            protocol: libc::IPPROTO_TCP as u8,
            states: 1 << TCP_LISTEN,
            id,
            ..Request::default()
        };
        // SAFETY: sending a plain struct to the kernel (sockaddr_nl of zeros = the kernel).
        let sent = unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                sock.as_raw_fd(),
                (&req as *const Request).cast(),
                req.len as usize,
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        (sent >= 0).then_some(())
    }

    fn dump(sock: &OwnedFd, family: u8, out: &mut Vec<TcpListener>) -> Option<()> {
        send(sock, family, NLM_F_REQUEST | NLM_F_DUMP, SockId::default())?;
        let mut buf = vec![0u8; 32 << 10];
        loop {
            let n = super::read(sock.as_raw_fd(), &mut buf);
            if n <= 0 {
                return None;
            }
            let mut off = 0usize;
            while off + 16 <= n as usize {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().ok()?) as usize;
                let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().ok()?);
                if len < 16 || off + len > n as usize {
                    return None;
                }
                match kind {
                    NLMSG_DONE => return Some(()),
                    NLMSG_ERROR => return None,
                    _ => out.extend(listener(&buf[off + 16..off + len])),
                }
                off += (len + 3) & !3;
            }
        }
    }

    fn listener(payload: &[u8]) -> Option<TcpListener> {
        if payload.len() < std::mem::size_of::<Message>() {
            return None;
        }
        // SAFETY: plain old data of the right size, written by the kernel.
        let msg: Message = unsafe { std::ptr::read_unaligned(payload.as_ptr().cast()) };
        let ip: IpAddr = match msg.family as i32 {
            libc::AF_INET => {
                Ipv4Addr::new(msg.id.src[0], msg.id.src[1], msg.id.src[2], msg.id.src[3]).into()
            }
            libc::AF_INET6 => Ipv6Addr::from(msg.id.src).into(),
            _ => return None,
        };
        Some(TcpListener {
            addr: SocketAddr::new(ip, u16::from_be_bytes(msg.id.sport)),
            inode: u64::from(msg.inode),
        })
    }
}

/// The socket inodes process `pid` holds (`/proc/<pid>/fd`).
pub fn socket_inodes(pid: Pid) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|fd| {
            let link = std::fs::read_link(fd.path()).ok()?;
            let text = link.to_str()?;
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The command line of `pid` (arguments joined by spaces, at most 200 bytes), or its `comm` for
/// a kernel thread or a zombie; `None` when it does not exist.
pub fn command_line(pid: Pid) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut text: String = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        text = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        text = format!("[{}]", text.trim_end());
    }
    Some(crate::text::shorten(text, 200))
}

/// A process holding one of these socket inodes (a scan of every `/proc/*/fd`: slow, for error
/// messages only).
pub fn socket_owner(inodes: &[u64]) -> Option<Pid> {
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: Pid = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|l| targets.iter().any(|t| l.as_os_str() == t.as_str()))
                })
                .then_some(pid)
        })
}

/// A process listening on TCP `port`, on any address.
pub fn tcp_listener_pid(port: u16) -> Option<Pid> {
    let inodes: Vec<u64> = tcp_listeners()?
        .into_iter()
        .filter(|l| l.addr.port() == port)
        .map(|l| l.inode)
        .collect();
    if inodes.is_empty() {
        return None;
    }
    socket_owner(&inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_names() {
        // A real line's shape: 52 fields, start time (field 22) = 9876543.
        let line = b"42 (a) b) (c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 9876543 \
                     8192 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 1 1 1 1 1 1 0\n";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            ProcStat {
                state: b'S',
                ppid: 7,
                pgrp: 42,
                start: 9_876_543
            }
        );
        assert!(parse_stat(b"42 (short) S 7 42").is_none(), "truncated");
        assert!(parse_stat(b"garbage").is_none());
    }

    #[test]
    fn proc_reads_agree_with_libc() {
        let me = super::super::getpid();
        let stat = proc_stat(me).unwrap();
        assert_eq!(stat.pgrp, super::super::getpgrp());
        assert_eq!(stat.ppid, super::super::getppid());
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let field22 = text[text.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(19)
            .unwrap();
        assert_eq!(stat.start.to_string(), field22, "start time is field 22");
        assert!(stat.is_live());
        let mut found = false;
        assert!(for_each_process(|pid, _| found |= pid == me));
        assert!(found);
        assert_eq!(thread_group(me), Some(me));
        // SIGKILL can never be ignored; the test harness does not ignore SIGTERM.
        assert_eq!(ignores_signal(me, libc::SIGKILL), Some(false));
    }

    #[test]
    fn children_of_any_thread_are_listed() {
        // The harness runs this test on a thread that is not the main task: the child hangs off
        // this thread's own list, which `for_each_child` must read too.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let mut seen = false;
        let listed = for_each_child(super::super::getpid(), |p| seen |= p as u32 == child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(listed && seen);
        assert!(
            !for_each_child(999_999_999, |_| {}),
            "a missing pid is not 'no children'"
        );
    }

    #[test]
    fn parses_a_proc_net_tcp_line() {
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000";
        let l = parse_proc_net_line(line, false).unwrap();
        assert_eq!(l.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(l.inode, 123456);
        let closed = line.replace(" 0A ", " 06 ");
        assert_eq!(parse_proc_net_line(&closed, false), None);
    }

    #[test]
    fn sock_diag_and_proc_agree_on_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mine = socket_inodes(super::super::getpid());
        let by_diag = diag::open()
            .and_then(|s| diag::listeners(&s))
            .expect("sock_diag");
        let by_proc = proc_net_listeners().expect("/proc/net/tcp");
        for (how, list) in [("sock_diag", by_diag), ("/proc", by_proc)] {
            let found = list.iter().find(|l| l.addr == addr);
            let found = found.unwrap_or_else(|| panic!("{how} misses {addr}"));
            assert!(
                mine.contains(&found.inode),
                "{how}: inode {} is ours",
                found.inode
            );
        }
        assert_eq!(tcp_listener_pid(addr.port()), Some(super::super::getpid()));
    }

    #[test]
    fn paths_and_masks_without_allocating() {
        assert_eq!(parse_hex(b"0000000000004000"), Some(0x4000));
        assert_eq!(parse_hex(b"zz"), None);
        let mut p = StackPath::new();
        assert_eq!(
            p.push(b"/proc/").push_pid(123).push(b"/stat").as_cstr(),
            c"/proc/123/stat"
        );
    }

    #[test]
    fn status_fields() {
        let text = b"Name:\tx\nTgid:\t77\nSigIgn:\t0000000000004000\n";
        assert_eq!(status_field(text, b"Tgid:"), Some(&b"77"[..]));
        assert_eq!(
            status_field(text, b"SigIgn:"),
            Some(&b"0000000000004000"[..])
        );
        assert_eq!(status_field(text, b"Missing:"), None);
    }
}
