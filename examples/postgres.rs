//! PostgreSQL from the ready-made fixture (`process_fixture::servers::Postgres`): a cluster
//! started from an `initdb` made once per machine, a template with a schema made once, and a
//! fresh database of its own for each test; then an `INSERT` and a `SELECT` through `psql`, and
//! the proof that the database, the cluster and its files are gone.
//!
//! ```text
//! cargo run --example postgres
//! ```
//!
//! Needs PostgreSQL's `initdb` and `postgres` (and `psql` for this example's queries): the
//! directory named by `POSTGRES_BIN`, or `initdb` on `PATH`, `pg_config --bindir`, or Debian's
//! `/usr/lib/postgresql/<version>/bin` (`apt-get install postgresql`). Without them, prints
//! `skipped: …`, unless `CI` is set: then that is an error. tests/real_servers.rs runs this as a
//! test.

#[path = "common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use process_fixture::servers::Postgres;

const SCHEMA: &str = "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);";

fn main() -> common::Result {
    run()
}

/// Starts a cluster, makes two databases from the template, checks that they are apart, and
/// that nothing is left after the stop.
pub(crate) fn run() -> common::Result {
    let started = Instant::now();
    let Some(pg) = common::installed(Postgres::new().template_sql(SCHEMA).spawn())? else {
        return Ok(());
    };
    println!("postgres: ready in {:.1} ms at {}", ms(started), pg.url());
    let started = Instant::now();
    let (a, b) = (pg.database()?, pg.database()?);
    println!(
        "postgres: two databases in {:.1} ms: {} and {}",
        ms(started),
        a.url(),
        b.url()
    );
    psql(&a.url(), "INSERT INTO notes (body) VALUES ('only in a')")?;
    let in_a = psql(&a.url(), "SELECT count(*) FROM notes")?;
    let in_b = psql(&b.url(), "SELECT count(*) FROM notes")?;
    println!("postgres: notes in a: {in_a}, in b: {in_b}");
    assert_eq!((in_a.as_str(), in_b.as_str()), ("1", "0"));
    let name = a.name().to_owned();
    drop(a); // DROP DATABASE
    let left = psql(
        &pg.url(),
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    )?;
    assert_eq!(left, "0", "the database is dropped with its handle");
    drop(b);
    let fixture = pg.server().fixture().ok_or("a cluster of its own")?;
    let (pgid, port, dir) = (fixture.pgid(), pg.port(), pg.dir().map(|d| d.to_owned()));
    let mut alive = common::descendants(fixture);
    alive.extend([fixture.pid()]);
    let alive: Vec<_> = alive
        .into_iter()
        .filter_map(common::support::Proc::read)
        .collect();
    drop(pg); // SIGINT (fast shutdown), then the full stop sequence
    common::support::assert_nothing_left(pgid, &alive, port);
    assert!(
        dir.is_some_and(|d| !d.exists()),
        "the cluster's files are removed"
    );
    println!("postgres: nothing survived, no file left");
    Ok(())
}

/// One statement through `psql`, its rows as bare text.
fn psql(url: &str, sql: &str) -> common::Result<String> {
    let output = Command::new("psql")
        .args(["-X", "-tA", url, "-c", sql])
        .output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("psql failed ({}): {stderr}", output.status).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
