//! macOS: kqueue for exits and SIGCHLD, libproc for the process tree. No subreaper, no pidfd, no
//! seccomp, no socket tables: containment is the process group, readiness of a port is polled.
//! Type-checked in CI (`cargo clippy --target x86_64-apple-darwin`); not run by us. The names
//! below are the platform's side of the facade in `sys/mod.rs` (Linux provides the same ones).

mod absent;
mod kqueue;
mod libproc;

pub(crate) use absent::{
    become_subreaper, continue_listen_call, enable_controller, holds_socket, install_listen_filter,
    is_listening, join_cgroup, listen_call_valid, pidfd_getfd, pidfd_open, pidfd_signal,
    pollfd_changed, privileged, receive_listen_call, set_name, set_parent_death_signal,
    socket_inodes, socket_owner, tcp_listener_pid, tcp_listeners, tcp_local_address, Cgroup,
    ListenerScan, LISTEN_EVENTS,
};
pub(crate) use kqueue::{exit_watch, ChildEvents};
pub(crate) use libproc::{
    command_line, for_each_child, for_each_own_child, for_each_process, ignores_signal, proc_stat,
    thread_group,
};
