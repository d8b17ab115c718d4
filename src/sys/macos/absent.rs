//! What macOS does not have (cgroups, subreaper, process name, parent-death signal, pidfd, seccomp,
//! socket tables): the same names as on Linux, answering "not here".

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::sys::{ListenCall, Pid, TcpListener};

pub(crate) fn become_subreaper() -> bool {
    false
}

pub(crate) fn set_name(_name: &CStr) {}

pub(crate) fn set_parent_death_signal(_sig: libc::c_int) -> bool {
    false
}

pub(crate) fn pidfd_open(_pid: Pid) -> Option<RawFd> {
    None
}

pub(crate) fn pidfd_signal(_fd: RawFd, _sig: libc::c_int) -> Result<(), i32> {
    Err(libc::ENOSYS)
}

pub(crate) fn pidfd_getfd(_pidfd: RawFd, _target_fd: RawFd) -> Option<RawFd> {
    None
}

pub(crate) const LISTEN_EVENTS: bool = false;

pub(crate) fn install_listen_filter(_no_new_privs: bool) -> Option<RawFd> {
    None
}

pub(crate) fn privileged() -> bool {
    false
}

pub(crate) fn receive_listen_call(_notify_fd: RawFd) -> Option<ListenCall> {
    None
}

pub(crate) fn listen_call_valid(_notify_fd: RawFd, _id: u64) -> bool {
    false
}

pub(crate) fn continue_listen_call(_notify_fd: RawFd, _id: u64) {}

pub(crate) fn is_listening(_fd: RawFd) -> bool {
    false
}

pub(crate) fn tcp_local_address(_fd: RawFd) -> Option<(u16, [u8; 16], u16)> {
    None
}

/// Not known on macOS.
pub(crate) fn tcp_listener_pid(_port: u16) -> Option<Pid> {
    None
}

/// Not readable on macOS: readiness of a port connects instead.
pub(crate) fn tcp_listeners() -> Option<Vec<TcpListener>> {
    None
}

pub(crate) struct ListenerScan;

impl ListenerScan {
    pub(crate) fn new() -> ListenerScan {
        ListenerScan
    }

    pub(crate) fn listeners(&mut self) -> Option<Vec<TcpListener>> {
        None
    }

    pub(crate) fn listener_on(
        &mut self,
        _addr: std::net::SocketAddr,
    ) -> Option<Option<TcpListener>> {
        None
    }

    pub(crate) fn is_open(&self) -> bool {
        false
    }
}

pub(crate) fn holds_socket(_pid: Pid, _inode: u64) -> bool {
    false
}

pub(crate) fn socket_owner(_inodes: &[u64]) -> Option<Pid> {
    None
}

pub(crate) fn socket_inodes(_pid: Pid) -> Vec<u64> {
    Vec::new()
}

/// No cgroups: none is ever made, so none is ever open.
pub(crate) enum Cgroup {}

impl Cgroup {
    pub(crate) fn create(_parent: &CStr, _name: &[u8]) -> Result<Cgroup, i32> {
        Err(libc::ENOSYS)
    }
    pub(crate) fn open(_parent: &CStr, _name: &[u8]) -> Result<Cgroup, i32> {
        Err(libc::ENOSYS)
    }
    pub(crate) fn create_memory_v1(_parent: &CStr, _name: &[u8]) -> Result<Cgroup, i32> {
        Err(libc::ENOSYS)
    }
    pub(crate) fn procs(&self) -> RawFd {
        match *self {}
    }
    pub(crate) fn events_fd(&self) -> RawFd {
        match *self {}
    }
    pub(crate) fn populated(&self) -> Option<bool> {
        match *self {}
    }
    pub(crate) fn acknowledge(&self) {
        match *self {}
    }
    pub(crate) fn dir_fd(&self) -> RawFd {
        match *self {}
    }
    pub(crate) fn frozen(&self) -> Option<bool> {
        match *self {}
    }
    pub(crate) fn kill(&self) -> bool {
        match *self {}
    }
    pub(crate) fn freeze(&self, _on: bool) -> bool {
        match *self {}
    }
    pub(crate) fn cpu_us(&self) -> Option<u64> {
        match *self {}
    }
    pub(crate) fn memory_peak(&self) -> Option<u64> {
        match *self {}
    }
    pub(crate) fn remove(self) -> bool {
        match self {}
    }
    pub(crate) fn close(self) {
        match self {}
    }
}

pub(crate) fn enable_controller(_dir: &CStr, _controller: &[u8]) -> bool {
    false
}

pub(crate) fn join_cgroup(_procs: RawFd) -> bool {
    false
}

pub(crate) fn pollfd_changed(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    }
}
