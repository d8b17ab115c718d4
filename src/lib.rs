//! A real server process as an RAII test fixture.
//!
//! ```no_run
//! use process_fixture::{ProcessFixture, Ready};
//! use std::time::Duration;
//!
//! let srv = ProcessFixture::builder("my-server")
//!     .args(["--listen", "127.0.0.1:{port}"]) // {port} is replaced in args and env values
//!     .env("RUST_LOG", "info")
//!     .ready(Ready::tcp()) // until the fixture's port accepts a connection
//!     .ready_timeout(Duration::from_secs(10))
//!     .spawn()?;
//! // ... talk to srv.url() ...
//! let report = srv.stop()?; // or just drop it
//! assert!(!report.escalated);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A runnable one, with `sh` as the server and a log line as the readiness signal:
//!
//! ```
//! use process_fixture::{ProcessFixture, Ready};
//!
//! let srv = ProcessFixture::builder("sh")
//!     .args(["-c", "echo listening on port $PORT; exec sleep 600"])
//!     .env("PORT", "{port}")
//!     .ready(Ready::stdout("^listening on port [0-9]+$"))
//!     .spawn()?;
//! assert_eq!(srv.stdout(), format!("listening on port {}\n", srv.port()));
//! let report = srv.stop()?; // SIGTERM ends `sleep` at once
//! assert!(!report.escalated);
//! assert_eq!(report.exit_status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)), Some(15));
//! # Ok::<(), process_fixture::Error>(())
//! ```
//!
//! # What you get
//! - The server runs in **its own process group** (stdin `/dev/null`, empty signal mask, default
//!   dispositions), so a Ctrl-C or a signal to your `cargo test | tee` job does not reach it, and
//!   one group signal reaches all its workers.
//! - **Output is always drained** from the first byte into bounded buffers (the last 1 MiB of
//!   each stream), so a chatty server never blocks; [`ProcessFixture::stdout`] and
//!   [`ProcessFixture::stderr`] give it back, and errors carry its tail.
//! - **Readiness** ([`Ready`], default [`Ready::tcp`]): on Linux the fixture learns from the
//!   kernel that the server's own processes listen on its port (no connection reaches the server
//!   before the test's own, and another process's listener is an error, not "ready"); HTTP status,
//!   log lines (which may capture the port a server picked itself), unix sockets, files,
//!   sd_notify, your own check, and `all`/`any` of them. A server that dies first fails `spawn`
//!   at once with its exit status and output; a timeout says what it saw and what is probably
//!   wrong ([`Diagnosis`]).
//! - **Placeholders and a directory**: `{port}`, `{port:NAME}` and `{dir}` in arguments,
//!   environment, files written by [`Builder::file`] (a config file that needs the port) and
//!   probe paths; the fixture's own directory is removed once the server is gone (that of a
//!   failed spawn is kept for a look, and swept an hour after its test process is gone).
//! - **Another user** ([`Builder::user`]) for servers that refuse root, and a tokio API (feature
//!   `tokio`: `Builder::spawn_async`, `ProcessFixture::stop_async`) that never blocks the executor.
//! - **Resilience tests**: [`ProcessFixture::restart`] (the same ports, kept reserved, and the
//!   same directory), [`ProcessFixture::pause`] and [`ProcessFixture::resume`] (the whole tree
//!   stopped and continued), and [`Builder::socket_activation`] (the fixture listens and passes
//!   the sockets to the server as fds 3, 4, …, systemd style), so that a restart refuses no
//!   connection. [`ProcessFixture::processes`] lists the tree.
//! - **Teardown that leaves nothing**: dropping the fixture (or [`ProcessFixture::stop`]) runs the
//!   stop sequence below. A test that panics gets the server's last 40 lines in its own captured
//!   output.
//! - **A crash is loud**: a server that was killed by a signal or exited non-zero before the stop
//!   makes `Drop` panic with its output (never while the thread is already panicking: then the
//!   output is printed), and `stop()` return [`Error::ExitedBeforeStop`];
//!   [`Builder::allow_early_exit`] opts out. This is the one panic of the crate.
//!
//! # The process tree
//! ```text
//! test process ── control socket ──▶ guardian (own group, stdio /dev/null, Linux: subreaper)
//!   └─ zygote (this executable, exec'd once)  └─ server leader (own group, pgid = pid)
//!        forks one guardian per fixture             └─ workers … (and escapees, re-parented to it)
//! ```
//! Each fixture has a **guardian**: a small process that is the server's parent. Guardians are
//! forked by a *zygote*, the test executable exec'd once per test process in a special mode (a
//! constructor hook of this crate runs before `main`), so nothing of the test process is copied:
//! its memory, however large, costs nothing. Being the parent, the guardian can keep the leader
//! unreaped until every other process is gone, so no signal it sends by number can reach a
//! recycled pid. Being a subreaper (Linux), it catches descendants that leave the group with
//! `setsid` or a double fork. Being a separate process that watches the test process, it notices
//! when the test process dies however it dies (SIGKILL, abort, CI timeout) and runs the same stop
//! sequence. The test process itself never signals the server, installs no signal handler, and
//! never changes its own process group.
//!
//! # How stop works
//! 1. The leader gets the stop signal (default SIGTERM) and SIGCONT, and up to the grace period
//!    (default 5 s) to exit; its exit is observed without reaping it. A leader that ignores the
//!    signal gets no grace.
//! 2. Every other live process of the fixture (the group, escapees) gets SIGTERM then SIGCONT, and
//!    up to `min(grace, 1 s)`, unless they all ignore SIGTERM.
//! 3. What is left gets SIGKILL, re-sent on every wake until no live process remains (up to 5 s).
//! 4. The leader is reaped last; its exit status goes into the [`StopReport`].
//!
//! The guardian sleeps until something happens (a message, a child's exit, a `listen()`), so an
//! idle fixture costs nothing and a cooperative stop costs the server's own exit time plus well
//! under a millisecond. The output readers are never waited on for EOF.
//!
//! # Platforms
//! Linux is the first-class target. macOS builds and works with [`Containment::ProcessGroup`]: the
//! guardian still holds the leader and sees the lifeline, but a descendant that calls `setsid`
//! escapes.

#![cfg(unix)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
mod async_api;
mod builder;
mod cgroup;
mod config;
mod deadline;
mod diagnose;
mod dir;
mod error;
mod fixture;
mod force;
mod guardian;
mod inspect;
mod output;
mod pause;
mod placeholders;
mod plan;
mod port;
mod ready;
mod report;
mod running;
pub mod servers;
mod shared;
mod signal;
mod spawn;
mod sys;
mod teardown;
mod text;
mod wait_output;

pub use builder::Builder;
pub use config::{DEFAULT_GRACE, DEFAULT_LINGER, DEFAULT_READY_TIMEOUT, ECHO_ENV};
pub use error::{
    Diagnosis, Error, ExecStage, OutputTail, PauseFailure, PortHolder, SharedFailure, StopFailure,
};
pub use fixture::ProcessFixture;
pub use inspect::Process;
pub use output::OUTPUT_CAP;
pub use ready::{ParseReadyError, Ready};
pub use report::{Containment, GuardianKind, StopReport, UsageSource};
pub use shared::{SharedFixture, SCOPE_ENV};
pub use signal::Signal;
