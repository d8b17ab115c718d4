//! Readiness: when is a freshly spawned server usable, and what is wrong when it is not?
//!
//! Probes are event-driven where the system gives an event, and polled where it does not:
//! - a line of output: matched by the monitor as it arrives, which wakes the waiter at once;
//! - the port: on Linux the guardian hears of every `listen()` of the server's processes from the
//!   kernel (seccomp), where available; otherwise the guardian asks the kernel every ≤ 1 ms
//!   which socket listens on the fixture's address (sock_diag netlink), finds the process of the
//!   fixture that holds it, and reports it as an event would (the test side asks now and then
//!   itself, and every ≤ 2 ms for another address or a captured port);
//!   only where neither can be read (macOS) does a probe connect. No connection reaches the
//!   server before the test's own, and a listener of another process is never taken for ours:
//!   `spawn` fails with [`Error::PortInUse`] naming it;
//! - sd_notify `READY=1`, on the fixture's private `NOTIFY_SOCKET`;
//! - HTTP, once the port listens; a unix socket, a file, a closure: polled with a growing pause.
//!
//! Every wait also watches the fixture: a server that dies fails `spawn` at once with its exit
//! status, and a leader that fails while a helper it started lives on counts as dead (only a
//! leader that exits 0 has daemonised).

mod context;
mod http;
mod parse;
mod probe;
mod wait;

pub use parse::ParseReadyError;
pub(crate) use probe::Probe;
pub use probe::Ready;

pub(crate) use context::{resolve, Context, FileBefore};
pub(crate) use wait::{covers, wait, Failure, Seen};
