//! PostgreSQL under a fixture: a fresh cluster in the fixture's own directory, ready when the
//! postmaster logs that it accepts connections, then `SELECT 1` through `psql`; stopped with
//! SIGINT, PostgreSQL's fast shutdown.
//!
//! ```text
//! cargo run --example postgres
//! ```
//!
//! Needs `initdb`, `postgres` and `psql` in one directory: the one named by `POSTGRES_BIN`, or
//! one on `PATH`, or Debian's `/usr/lib/postgresql/<version>/bin` (`apt-get install
//! postgresql`). Without them, prints `skipped: postgres not found; set
//! POSTGRES_BIN=/path/to/postgresql/bin …`, unless `CI` is set: then that is an error.
//! tests/real_servers.rs runs this as a test.
//!
//! `initdb` runs inside the fixture, before `exec postgres` (one `sh -c`), rather than as a
//! `std::process::Command` beforehand: the fixture's directory exists only from `spawn` on, is
//! given to the server's user, and is removed after the stop, so the cluster needs no directory
//! of ours to create, chown or clean up; `initdb` runs as the same user with the same
//! environment; and if it fails, `spawn` says so with its output. The price: start-to-ready
//! includes `initdb`.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use process_fixture::{ProcessFixture, Ready, Signal};

/// A throwaway cluster: no fsync at all (`--no-sync`, `fsync=off`): nothing here must survive a
/// crash. Local connections are trusted, the superuser is `postgres` whoever runs it, and the C
/// locale does not depend on the locales the machine has.
const SCRIPT: &str = r#"
set -e
"$PG_BIN/initdb" --pgdata="{dir}/data" --username=postgres --auth=trust --no-sync \
    --no-locale --encoding=UTF8
exec "$PG_BIN/postgres" -D "{dir}/data" -k "{dir}" -p {port} \
    -c listen_addresses=127.0.0.1 -c fsync=off
"#;

fn main() -> common::Result {
    run()
}

/// Creates a cluster and starts PostgreSQL on it, runs `SELECT 1`, stops it (SIGINT) and checks
/// that nothing of it survived.
pub(crate) fn run() -> common::Result {
    let what = "/path/to/postgresql/bin (the directory with initdb, postgres and psql)";
    let Some(bin) = common::locate("postgres", "POSTGRES_BIN", what, postgres_bin)? else {
        return Ok(());
    };
    let mut builder = ProcessFixture::builder("sh");
    builder
        .args(["-c", SCRIPT])
        .env("PG_BIN", &bin)
        .ready(Ready::stderr(
            "database system is ready to accept connections",
        ))
        .ready_timeout(Duration::from_secs(60)) // initdb included
        .stop_signal(Signal::INT); // fast shutdown: end sessions, checkpoint, exit
    if common::running_as_root() {
        // PostgreSQL refuses to run as root; the fixture gives its directory to this user.
        builder.user("postgres");
    }
    common::exercise("postgres", &builder, |srv| {
        let dir = srv.dir().ok_or("the fixture has no directory")?;
        let answer = select_1(&bin, dir, srv.port())?;
        println!("postgres: SELECT 1 -> {answer:?}");
        assert_eq!(answer, "1");
        Ok(())
    })
}

/// Runs `SELECT 1` through `psql` over the server's unix socket in `dir`.
fn select_1(bin: &Path, dir: &Path, port: u16) -> common::Result<String> {
    let output = Command::new(bin.join("psql"))
        .arg("-X") // no ~/.psqlrc
        .args(["-h".as_ref(), dir.as_os_str()])
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-tA", "-c", "SELECT 1"]) // the bare value, no header
        .output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("psql failed ({}): {stderr}", output.status).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The directory with `initdb`, `postgres` and `psql`: one on `PATH`, or else Debian's
/// `/usr/lib/postgresql/<version>/bin` of the highest version.
fn postgres_bin() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "postgres", "psql"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    let on_path = common::find_program("initdb", &[]).and_then(|p| Some(p.parent()?.to_owned()));
    if let Some(dir) = on_path.filter(|d| complete(d)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}
