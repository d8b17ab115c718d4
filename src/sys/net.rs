//! What the platforms report about listening sockets (the types only; Linux fills them, macOS
//! reports nothing).

use std::os::fd::RawFd;

use super::Pid;

/// One pending `listen()` caught by the listen watch: the calling thread and the socket fd it
/// passed.
pub(crate) struct ListenCall {
    pub(crate) id: u64,
    pub(crate) tid: Pid,
    pub(crate) fd: RawFd,
}

/// A listening TCP socket: its local address and socket inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpListener {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) inode: u64,
}
