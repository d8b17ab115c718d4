//! The guardian: a small process per fixture that owns the server and runs the stop sequence.
//!
//! ```text
//! test process ──control socket──▶ guardian (own group, stdio /dev/null, Linux: subreaper)
//!   │  (Plan, STOP)    ◀──reports──┘    └─ server leader (own group, pgid = pid)
//!   │                                        └─ workers …, escapees (re-parented to the guardian)
//!   └─ zygote (exec'd once per test process; forks the guardians; reaps them)
//! ```
//! Where it comes from ([`client`]): the test executable is exec'd once per test process in
//! *zygote mode* (a constructor hook, [`zygote`], runs before `main`), and the zygote forks one
//! guardian per fixture. Nothing of the test process is copied: its memory, however large, costs
//! nothing, no page of it is shared copy-on-write, and a panic can never unwind into the test's
//! frames. Where the executable cannot be re-run (a cdylib in another program, a handshake that
//! fails) the guardian is forked from the test process instead, as the first generation was: the
//! same code then runs in a fork of a multithreaded process, so everything here stays
//! async-signal-safe (no allocation, no locks, no `log`; `tests/fork_safety.rs` checks it with an
//! allocator that kills the process).
//!
//! Its life ([`main_loop`]): start the leader ([`server`]); sleep until something happens (a message,
//! a child exit as SIGCHLD through an fd, the test process's exit through a pidfd, a `listen()`
//! through seccomp: never a timer when idle, but for the port watch while the server starts); report what it sees; on `STOP`, or when the test
//! process is gone, run the stop sequence ([`stop`]) and exit. Because it is the leader's parent it
//! keeps the leader unreaped until nothing else lives, so no signal by number can reach a
//! recycled pid.
//!
//! Files: [`client`] is the test side (starting a guardian, stopping, reaping); [`protocol`] the
//! messages and the plan; [`main_loop`] the guardian's entry and main loop; [`stop`] the stop
//! sequence; [`server`] the leader's start; [`tree`] the fixture's processes; [`listen`] the
//! `listen()` watch; [`port`] the port watch where there are no `listen()` events; [`zygote`]
//! the zygote.

mod client;
mod freeze;
mod listen;
mod main_loop;
mod port;
pub(crate) mod protocol;
mod server;
mod stop;
mod tree;
mod zygote;

// What the rest of the crate uses.
pub(crate) use client::{
    current_exe, fork_gate, launch, reap_forked, reap_or_kill, reap_pending, stopped, Origin,
    REAP_WAIT,
};
pub(crate) use main_loop::MAX_LISTENERS;
pub(crate) use protocol::{Frozen, Outcome, Report, Stage, Stopped};
pub(crate) use protocol::{ListenEvents, Msg, Plan};
pub(crate) use stop::stop_bound;
pub(crate) use stop::KILL_WAIT;
