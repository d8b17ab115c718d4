//! The ready-made servers (`process_fixture::servers`) against the real PostgreSQL, Redis and
//! nginx: isolation of databases, templates, drops, the shared cluster across processes and
//! after a SIGKILLed user, missing binaries. A server that is not installed is skipped (and
//! fails under `CI`, where `.ci/run` installs them all).
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use process_fixture::servers::{Nginx, Postgres, PostgresServer, Redis};
use process_fixture::{Error, SCOPE_ENV};
use support::{wait_until, Proc, SOON};

/// `Ok(Some(x))`, or `None` after saying why, for a server that is not installed here.
fn installed<T>(result: Result<T, Error>) -> Option<T> {
    match result {
        Err(Error::NotInstalled { program, hint }) if std::env::var_os("CI").is_none() => {
            println!("skipped: {program} is not installed: {hint}");
            None
        }
        other => Some(other.expect("the server")),
    }
}

/// One statement through `psql`, the rows as text (`-tA`).
fn psql(port: u16, database: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
        ])
        .args(["-d", database, "-tAc", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn databases(pg: &PostgresServer) -> String {
    psql(
        pg.port(),
        "postgres",
        "SELECT datname FROM pg_database ORDER BY 1",
    )
    .unwrap()
}

#[test]
fn each_database_is_its_own_and_is_dropped_with_its_handle() {
    let Some(pg) = installed(Postgres::new().spawn()) else {
        return;
    };
    let (a, b) = (pg.database().unwrap(), pg.database().unwrap());
    assert_ne!(a.name(), b.name());
    psql(pg.port(), a.name(), "CREATE TABLE only_in_a (x int)").unwrap();
    let err = psql(pg.port(), b.name(), "SELECT * FROM only_in_a").unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
    assert!(a.url().ends_with(&format!(":{}/{}", pg.port(), a.name())));
    let name = a.name().to_owned();
    assert!(databases(&pg).contains(&name));
    drop(a);
    assert!(!databases(&pg).contains(&name), "dropped");
}

#[test]
fn a_database_is_dropped_even_with_a_session_still_open() {
    let Some(pg) = installed(Postgres::new().spawn()) else {
        return;
    };
    let db = pg.database().unwrap();
    let name = db.name().to_owned();
    let mut session = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
        ])
        .args(["-d", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let connected = || {
        let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'");
        psql(pg.port(), "postgres", &sql).is_ok_and(|n| n == "1")
    };
    assert!(wait_until(SOON, connected), "psql never connected");
    drop(db);
    assert!(!databases(&pg).contains(&name));
    drop(session.stdin.take());
    session.wait().unwrap();
}

#[test]
fn a_template_is_made_once_and_every_database_is_a_copy_of_it() {
    let schema = "CREATE TABLE users (id int PRIMARY KEY, name text); \
                  INSERT INTO users VALUES (1, 'seed');";
    let Some(pg) = installed(Postgres::new().template_sql(schema).spawn()) else {
        return;
    };
    let (a, b) = (pg.database().unwrap(), pg.database().unwrap());
    psql(
        pg.port(),
        a.name(),
        "INSERT INTO users VALUES (2, 'only a')",
    )
    .unwrap();
    assert_eq!(
        psql(pg.port(), a.name(), "SELECT count(*) FROM users").unwrap(),
        "2"
    );
    assert_eq!(
        psql(pg.port(), b.name(), "SELECT name FROM users").unwrap(),
        "seed"
    );
    let templates = databases(&pg)
        .lines()
        .filter(|d| d.starts_with("pf_template_"))
        .count();
    assert_eq!(templates, 1, "{}", databases(&pg));
}

#[test]
fn bad_template_sql_is_a_setup_error_with_the_servers_message() {
    let Some(pg) = installed(Postgres::new().template_sql("CREATE TABLE (").spawn()) else {
        return;
    };
    let e = pg.database().unwrap_err();
    assert!(matches!(&e, Error::ServerSetup { .. }), "{e}");
    assert!(e.to_string().contains("syntax error"), "{e}");
}

#[test]
fn the_cluster_and_its_files_are_gone_after_its_stop() {
    let Some(pg) = installed(Postgres::new().spawn()) else {
        return;
    };
    let dir = pg.dir().unwrap().to_owned();
    assert!(dir.join("data/PG_VERSION").is_file());
    let (pid, port) = (pg.server().pid(), pg.port());
    drop(pg);
    assert!(!dir.exists());
    assert!(Proc::read(pid).map_or(true, |p| !p.is_live()));
    assert!(support::port_is_free(port));
}

#[test]
fn missing_binaries_say_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let e = Postgres::new().bin_dir(empty.path()).spawn().unwrap_err();
    assert!(matches!(&e, Error::NotInstalled { .. }), "{e}");
    assert!(e.to_string().contains("has no initdb and postgres"), "{e}");
}

/// Not a test of its own: a test process holding the run's shared cluster until its stdin
/// closes (or it is killed); prints `port=<port> pid=<pid>`.
#[test]
#[ignore = "run by the_shared_cluster_serves_processes_and_stops_after_a_killed_user"]
fn shared_cluster_member() {
    let pg = Postgres::shared().expect("the shared cluster");
    let db = pg.database().expect("a database");
    let dir = pg.dir().expect("a directory").display().to_string();
    println!(
        "\nport={} pid={} db={} dir={dir}",
        pg.port(),
        pg.server().pid(),
        db.name()
    );
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

#[test]
fn the_shared_cluster_serves_processes_and_stops_after_a_killed_user() {
    if installed(Postgres::new().builder()).is_none() {
        return;
    }
    let scope = support::marker("pg-shared");
    let start = || {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "shared_cluster_member",
                "--ignored",
                "--nocapture",
            ])
            .env(SCOPE_ENV, &scope)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("port=") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the member ended");
        }
        (child, line, out) // the reader stays open: the member still prints its result
    };
    let (mut a, line_a, _out_a) = start();
    let (mut b, line_b, _out_b) = start();
    let field = support::holder::number;
    assert_eq!(field(&line_a, "pid"), field(&line_b, "pid"), "one cluster");
    let pid = field(&line_a, "pid");
    let dir = std::path::PathBuf::from(support::holder::field(&line_a, "dir"));
    assert!(dir.join("data").is_dir());
    a.kill().unwrap(); // SIGKILL: its database stays, its lease ends
    a.wait().unwrap();
    drop(b.stdin.take());
    b.wait().unwrap();
    let deadline = process_fixture::DEFAULT_LINGER + SOON;
    assert!(
        wait_until(deadline, || Proc::read(pid).map_or(true, |p| !p.is_live())),
        "the shared cluster still runs"
    );
    assert!(
        wait_until(SOON, || !dir.exists()),
        "{} is left",
        dir.display()
    );
}

#[test]
fn redis_answers_ping_and_keeps_nothing() {
    let Some(redis) = installed(Redis::new().spawn()) else {
        return;
    };
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    let mut conn = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"CONFIG GET save\r\nPING\r\n").unwrap();
    let mut answer = String::new();
    let mut buf = [0u8; 256];
    while !answer.contains("PONG") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "redis closed: {answer:?}");
        answer.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        answer.contains("save\r\n$0\r\n"),
        "no snapshots: {answer:?}"
    );
}

#[test]
fn nginx_serves_its_locations_and_the_default_one() {
    let Some(web) = installed(Nginx::with_config("location /hi { return 200 'hello'; }").spawn())
    else {
        return;
    };
    assert_eq!(support::http_get(web.port(), "/hi").unwrap(), "hello");
    assert_eq!(support::http_get(web.port(), "/").unwrap(), "ok\n");
    let dir = web.dir().unwrap().to_owned();
    assert!(dir.join("nginx.pid").is_file());
    drop(web);
    assert!(!dir.exists());
}

#[test]
fn redis_and_nginx_can_be_shared_too() {
    let Some(a) = installed(Redis::shared()) else {
        return;
    };
    let b = Redis::shared().unwrap();
    assert_eq!((a.pid(), a.port()), (b.pid(), b.port()));
    assert!(a.shared().is_some() && a.fixture().is_none());
    let Some(web) = installed(Nginx::new().spawn_shared()) else {
        return;
    };
    assert_eq!(support::http_get(web.port(), "/").unwrap(), "ok\n");
    // Another configuration is another server.
    let other = Nginx::with_config("location / { return 200 'other'; }")
        .spawn_shared()
        .unwrap();
    assert_ne!(other.pid(), web.pid());
    assert_eq!(support::http_get(other.port(), "/").unwrap(), "other");
}
