//! What the real-server examples share, and with them tests/real_servers.rs (which runs each
//! example's `run` as a test): finding the server (an environment variable, then `PATH`) or
//! skipping it, and one measured lifetime of a fixture that ends with the proof that nothing of
//! the server survived (read from /proc: Linux).
#![allow(dead_code)] // each example uses a different subset
#![allow(unreachable_pub)] // a module of each example and of tests/real_servers.rs

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use process_fixture::{Builder, ProcessFixture};

/// The crate's own test helpers: /proc readers, the port check, a plain HTTP GET.
#[path = "../../tests/support/mod.rs"]
pub mod support;

/// What the examples return: any error ends them with a message and a failure status.
pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Whether a missing server is a failure instead of a skip: CI installs every server
/// (`.ci/run`), so there a missing one means the installation broke.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The server `server`: the path in the environment variable `var` if it is set, else what
/// `search` finds. A path given in `var` must exist (a wrong one is an error, never a skip).
/// When neither gives one, writes `skipped: <server> not found; set <var>=<what>` and gives
/// `None`; in CI that is an error instead.
///
/// The skip line goes to the process's stderr itself, not through `eprintln!`: libtest captures
/// what `print!` and `eprint!` write in a test that passes, and a skipped test passes, so the
/// line would never show in a plain `cargo test`.
pub fn locate(
    server: &str,
    var: &str,
    what: &str,
    search: impl FnOnce() -> Option<PathBuf>,
) -> Result<Option<PathBuf>> {
    if let Some(given) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(given);
        if !path.exists() {
            return Err(format!("{var}={}: no such file or directory", path.display()).into());
        }
        return Ok(Some(path));
    }
    match search() {
        Some(path) => Ok(Some(path)),
        None if in_ci() => Err(format!(
            "{server} not found, and CI is set (.ci/run installs it); set {var}={what}"
        )
        .into()),
        None => {
            let line = format!("skipped: {server} not found; set {var}={what}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            Ok(None)
        }
    }
}

/// A ready-made server's builder (`process_fixture::servers`), or `None` after saying why it is
/// skipped when its server is not installed; in CI that is an error instead.
pub fn installed<T>(made: std::result::Result<T, process_fixture::Error>) -> Result<Option<T>> {
    match made {
        Err(process_fixture::Error::NotInstalled { program, hint }) if !in_ci() => {
            let line = format!("skipped: {program} not found: {hint}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            Ok(None)
        }
        other => Ok(Some(other?)),
    }
}

/// gunicorn: the program named by `GUNICORN`, else `gunicorn` on `PATH` (see [`locate`]).
pub fn gunicorn() -> Result<Option<PathBuf>> {
    locate("gunicorn", "GUNICORN", "/path/to/gunicorn", || {
        find_program("gunicorn", &[])
    })
}

/// A WSGI app for gunicorn (as `app.py`, `app:app`): each answer names the worker that served
/// it, `hello from gunicorn worker <pid>`.
pub const WSGI_APP: &str = r#"
import os

def app(environ, start_response):
    body = b"hello from gunicorn worker %d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

/// The program `name` in the directories of `PATH`, then in `more` (system directories that
/// are often missing from a user's `PATH`, such as `/usr/sbin`).
pub fn find_program(name: &str, more: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(more.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether we run as root, which PostgreSQL refuses to do.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Waits until `count` lines of the server's output have matched `pattern` (each call of
/// `wait_for_output` goes on after the line the previous one found).
pub fn wait_for_lines(srv: &ProcessFixture, pattern: &str, count: usize) -> Result {
    for _ in 0..count {
        srv.wait_for_output(pattern, Duration::from_secs(30))?;
    }
    Ok(())
}

/// The pids of the server's processes below its leader, now.
pub fn descendants(srv: &ProcessFixture) -> Vec<u32> {
    support::descendants(srv.pid())
        .iter()
        .filter(|p| p.is_live())
        .map(|p| p.pid)
        .collect()
}

/// Starts the server, lets `talk` use it, stops it, prints the `StopReport` and the figures,
/// and checks that nothing of the server survived: its process group is empty, every process
/// it had is gone (not even a zombie), and its port binds again.
pub fn exercise(
    server: &str,
    builder: &Builder,
    talk: impl FnOnce(&ProcessFixture) -> Result,
) -> Result {
    let started = Instant::now();
    let srv = builder.spawn()?;
    let ready = started.elapsed();
    println!(
        "{server}: ready, leader pid {}, port {}",
        srv.pid(),
        srv.port()
    );
    talk(&srv)?; // on an error, dropping `srv` stops the server all the same
    let (pgid, port) = (srv.pgid(), srv.port());
    let mut alive = support::descendants(srv.pid());
    alive.extend(support::Proc::read(srv.pid()));
    alive.retain(support::Proc::is_live);
    let report = srv.stop()?;
    println!("{server}: {report}");
    support::assert_nothing_left(pgid, &alive, port);
    // The figures. Processes ended: all those alive before the stop (now gone). Next to it,
    // StopReport::killed + 1: the leader and what the guardian itself had to signal besides it;
    // a server that ends its own workers leaves it nothing else to signal.
    println!(
        "{server}: nothing survived; start-to-ready {:.1} ms, stop {:.1} ms, \
         processes ended {} (StopReport::killed + 1 = {})",
        ready.as_secs_f64() * 1e3,
        report.elapsed.as_secs_f64() * 1e3,
        alive.len(),
        report.processes_signalled + 1
    );
    Ok(())
}
