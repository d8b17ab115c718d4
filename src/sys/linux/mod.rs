//! Linux: cgroup v2, subreaper and the other `prctl` attributes, pidfd, signalfd, `/proc`, seccomp user
//! notification, socket queries, sock_diag. One file per mechanism; the names below are the
//! platform's side of the facade in `sys/mod.rs` (macOS provides the same ones).

mod cgroup;
mod pidfd;
mod prctl;
mod procfs;
mod seccomp;
mod signalfd;
mod sock_diag;
mod socket;

pub(crate) use cgroup::{enable_controller, join_cgroup, pollfd_changed, Cgroup};
pub(crate) use pidfd::{exit_watch, pidfd_getfd, pidfd_open, pidfd_signal};
pub(crate) use prctl::{become_subreaper, set_name, set_parent_death_signal};
pub(crate) use procfs::{
    command_line, for_each_child, for_each_own_child, for_each_process, holds_socket,
    ignores_signal, proc_stat, socket_inodes, socket_owner, thread_group,
};
pub(crate) use seccomp::{
    continue_listen_call, install_listen_filter, listen_call_valid, privileged,
    receive_listen_call, LISTEN_EVENTS,
};
pub(crate) use signalfd::ChildEvents;
pub(crate) use sock_diag::{tcp_listener_pid, tcp_listeners, ListenerScan};
pub(crate) use socket::{is_listening, tcp_local_address};
