//! macOS: kqueue for exits and SIGCHLD, libproc for the process tree. No subreaper, no pidfd, no
//! seccomp: containment is the process group (DESIGN.md), readiness of a port is polled.
//! Type-checked in CI (`cargo clippy --target x86_64-apple-darwin`); not run by us.

use std::ffi::CStr;
use std::os::fd::RawFd;

use super::{close, Pid, ProcStat};

pub fn become_subreaper() -> bool {
    false
}

pub fn set_name(_name: &CStr) {}

pub fn set_parent_death_signal(_sig: libc::c_int) -> bool {
    false
}

pub fn pidfd_open(_pid: Pid) -> Option<RawFd> {
    None
}

pub fn pidfd_signal(_fd: RawFd, _sig: libc::c_int) -> Result<(), i32> {
    Err(libc::ENOSYS)
}

pub fn pidfd_getfd(_pidfd: RawFd, _target_fd: RawFd) -> Option<RawFd> {
    None
}

/// macOS: a plain `fork()`; the child runs `child` and exits with what it returns.
///
/// # Safety
/// As `fork()`: the child makes only async-signal-safe calls.
pub unsafe fn spawn_shared(child: &mut dyn FnMut() -> i32) -> std::io::Result<Pid> {
    match super::fork()? {
        0 => super::exit(child()),
        pid => Ok(pid),
    }
}

/// A kqueue fd with one filter registered; readable once the filter has fired.
fn kqueue_with(ident: usize, filter: i16, fflags: u32) -> Option<RawFd> {
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return None;
    }
    unsafe { libc::fcntl(kq, libc::F_SETFD, libc::FD_CLOEXEC) };
    let change = libc::kevent {
        ident,
        filter,
        flags: libc::EV_ADD | libc::EV_CLEAR,
        fflags,
        data: 0,
        udata: std::ptr::null_mut(),
    };
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
pub fn exit_watch(pid: Pid) -> Option<RawFd> {
    if let Some(kq) = kqueue_with(pid as usize, libc::EVFILT_PROC, libc::NOTE_EXIT) {
        return Some(kq);
    }
    let mut fds = [0 as RawFd; 2];
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return None;
    }
    unsafe { libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC) };
    close(fds[1]);
    Some(fds[0])
}

pub(super) fn close_range(first: RawFd, last: RawFd) {
    if first > last {
        return;
    }
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = if max <= 0 { 65_536 } else { max.min(1 << 20) } as RawFd;
    for fd in first..=last.min(max) {
        close(fd);
    }
}

/// Our fds are all close-on-exec; nothing to do.
pub fn cloexec_from_3() {}

/// SIGCHLD as a readable fd: a kqueue with `EVFILT_SIGNAL`.
pub struct ChildEvents {
    fd: RawFd,
}

impl ChildEvents {
    pub fn new() -> Option<ChildEvents> {
        kqueue_with(libc::SIGCHLD as usize, libc::EVFILT_SIGNAL, 0).map(|fd| ChildEvents { fd })
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    pub fn drain(&self) {
        let mut events: [libc::kevent; 4] = unsafe { std::mem::zeroed() };
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
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

pub fn proc_stat(pid: Pid) -> Option<ProcStat> {
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if n != size {
        return None;
    }
    Some(ProcStat {
        state: if info.pbi_status == libc::SZOMB {
            b'Z'
        } else {
            b'R'
        },
        ppid: info.pbi_ppid as Pid,
        pgrp: info.pbi_pgid as Pid,
        start: info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec,
    })
}

/// Not known on macOS: every process gets its grace.
pub fn ignores_signal(_pid: Pid, _sig: libc::c_int) -> Option<bool> {
    None
}

pub fn thread_group(tid: Pid) -> Option<Pid> {
    Some(tid)
}

/// Up to 4096 pids through a libproc call that fills `buf` and returns how many it wrote.
fn for_each_listed(mut f: impl FnMut(Pid), list: impl Fn(&mut [Pid]) -> libc::c_int) -> bool {
    let mut buf = [0 as Pid; 4096];
    let n = list(&mut buf);
    if n < 0 {
        return false;
    }
    for &pid in &buf[..(n as usize).min(buf.len())] {
        if pid > 0 {
            f(pid);
        }
    }
    true
}

pub fn for_each_child(pid: Pid, f: impl FnMut(Pid)) -> bool {
    for_each_listed(f, |buf| unsafe {
        libc::proc_listchildpids(
            pid,
            buf.as_mut_ptr().cast(),
            std::mem::size_of_val(buf) as i32,
        )
    })
}

pub fn for_each_own_child(f: impl FnMut(Pid)) -> bool {
    for_each_child(super::getpid(), f)
}

pub fn for_each_process(mut f: impl FnMut(Pid, ProcStat)) -> bool {
    for_each_listed(
        |pid| {
            if let Some(stat) = proc_stat(pid) {
                f(pid, stat);
            }
        },
        |buf| unsafe {
            libc::proc_listallpids(buf.as_mut_ptr().cast(), std::mem::size_of_val(buf) as i32)
        },
    )
}

pub const LISTEN_EVENTS: bool = false;

pub fn install_listen_filter(_no_new_privs: bool) -> Option<RawFd> {
    None
}

pub fn privileged() -> bool {
    false
}

pub struct ListenCall {
    pub id: u64,
    pub tid: Pid,
    pub fd: RawFd,
}

pub fn receive_listen_call(_notify_fd: RawFd) -> Option<ListenCall> {
    None
}

pub fn listen_call_valid(_notify_fd: RawFd, _id: u64) -> bool {
    false
}

pub fn continue_listen_call(_notify_fd: RawFd, _id: u64) {}

pub fn is_listening(_fd: RawFd) -> bool {
    false
}

pub fn tcp_local_address(_fd: RawFd) -> Option<(u16, [u8; 16], u16)> {
    None
}

/// The process's name (libproc has no command line without the sysctl dance).
pub fn command_line(pid: Pid) -> Option<String> {
    let mut buf = [0u8; 256];
    let n = unsafe { libc::proc_name(pid, buf.as_mut_ptr().cast(), buf.len() as u32) };
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// Not known on macOS.
pub fn tcp_listener_pid(_port: u16) -> Option<Pid> {
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpListener {
    pub addr: std::net::SocketAddr,
    pub inode: u64,
}

/// Not readable on macOS: readiness of a port connects instead.
pub fn tcp_listeners() -> Option<Vec<TcpListener>> {
    None
}

pub struct ListenerScan;

impl ListenerScan {
    pub fn new() -> ListenerScan {
        ListenerScan
    }

    pub fn listeners(&mut self) -> Option<Vec<TcpListener>> {
        None
    }

    pub fn listener_on(&mut self, _addr: std::net::SocketAddr) -> Option<Option<TcpListener>> {
        None
    }
}

pub fn socket_owner(_inodes: &[u64]) -> Option<Pid> {
    None
}

pub fn socket_inodes(_pid: Pid) -> Vec<u64> {
    Vec::new()
}
