//! The fixture's processes and sockets as the test process sees them: who belongs to the
//! server's tree, which sockets they hold, and who else holds a port. Read from `/proc` (Linux)
//! or `libproc` (macOS); where nothing can be read (a sandbox) every answer says so.

use std::net::SocketAddr;

use crate::error::PortHolder;
use crate::report::Containment;
use crate::sys::{self, Pid};

/// One live process of the server's tree ([`ProcessFixture::processes`](crate::ProcessFixture::processes)).
///
/// ```
/// use process_fixture::{ProcessFixture, Ready};
/// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn()?;
/// let tree = srv.processes();
/// # if cfg!(target_os = "linux") {
/// assert_eq!(tree[0].pid, srv.pid()); // the leader first
/// assert_eq!(tree[0].command, "sleep 60");
/// # }
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub parent: u32,
    /// Its command line, arguments separated by spaces (shortened), or `[name]` when it has none
    /// (a kernel-style name); empty if it could not be read.
    pub command: String,
}

/// The processes of one fixture: the guardian's descendants (the leader, its workers, and the
/// escapees the subreaper caught).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tree {
    pub(crate) guardian: Pid,
    pub(crate) leader: Pid,
    pub(crate) containment: Containment,
}

impl Tree {
    /// Whether the processes can be looked at (no /proc in a sandbox: not).
    pub(crate) fn can_inspect(&self) -> bool {
        sys::proc_stat(self.guardian).is_some()
    }

    /// The pids of the tree now.
    pub(crate) fn pids(&self) -> Vec<Pid> {
        sys::descendants(self.guardian)
    }

    /// The live processes of the tree (zombies left out), the leader first.
    pub(crate) fn processes(&self) -> Vec<Process> {
        let mut list: Vec<Process> = self
            .pids()
            .into_iter()
            .filter_map(|pid| {
                let stat = sys::proc_stat(pid).filter(|s| s.is_live())?;
                Some(Process {
                    pid: pid as u32,
                    parent: stat.ppid as u32,
                    command: sys::command_line(pid).unwrap_or_default(),
                })
            })
            .collect();
        list.sort_by_key(|p| (p.pid != self.leader as u32, p.pid));
        list
    }

    /// The socket inodes the tree's processes hold.
    pub(crate) fn socket_inodes(&self) -> Vec<u64> {
        self.pids()
            .into_iter()
            .flat_map(sys::socket_inodes)
            .collect()
    }

    /// The process holding one of these sockets, if it is a stranger. With the process group
    /// only, an escapee of ours is not our descendant: a holder that started after our leader is
    /// taken for one of ours (it cannot be told apart), one older than it for a stranger.
    pub(crate) fn stranger_holding(&self, inodes: &[u64]) -> Option<PortHolder> {
        let owner = sys::socket_owner(inodes)?;
        if self.pids().contains(&owner) {
            return None;
        }
        if self.containment == Containment::ProcessGroup {
            let started = |pid| sys::proc_stat(pid).map(|s| s.start);
            if started(owner) >= started(self.leader) {
                return None;
            }
        }
        Some(crate::port::holder(owner as u32))
    }

    /// Where the tree's processes listen: the addresses `reported` by the guardian, and those
    /// found by inode.
    pub(crate) fn listening(&self, reported: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let mut addrs = reported;
        let ours = self.socket_inodes();
        for l in sys::tcp_listeners().unwrap_or_default() {
            if ours.contains(&l.inode) && !addrs.contains(&l.addr) {
                addrs.push(l.addr);
            }
        }
        addrs
    }

    /// The live processes as lines for a diagnosis: `pid N: command`.
    pub(crate) fn describe_alive(&self) -> Vec<String> {
        if !self.can_inspect() {
            return vec!["(they cannot be listed here: /proc is not readable)".to_owned()];
        }
        self.processes()
            .into_iter()
            .map(|p| format!("pid {}: {}", p.pid, p.command))
            .collect()
    }
}
