//! [`Postgres`]: a PostgreSQL cluster tuned for tests, started from an `initdb` made once per
//! machine, and a fresh database per test by `CREATE DATABASE … TEMPLATE`.
//!
//! The steps, and why:
//! - **initdb once**: `initdb` takes about a second; its result depends only on the binaries
//!   and the user, so it is made once into `$TMPDIR/pf-pgcache-<uid>/<binaries>-<server uid>`
//!   (under a lock, built aside and renamed into place), and every cluster starts from a copy
//!   ([`Builder::copy_dir`]) in the fixture's directory, which the stop removes.
//! - **tuned for tests**: `fsync`, `synchronous_commit` and `full_page_writes` off: nothing
//!   here has to survive a crash. Listening on 127.0.0.1 and on a unix socket in the
//!   fixture's directory only. Trust authentication, superuser `postgres`.
//! - **a database per test**: `CREATE DATABASE` from a template costs milliseconds, a cluster
//!   hundreds of them. With [`Postgres::template_sql`] the template is made once (per cluster
//!   and SQL text), so migrations run once per run.
//! - **SQL over the wire**: the few statements this sends go over PostgreSQL's own protocol
//!   (`pg_wire`), without a client crate or a `psql` process each.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::builder::Builder;
use crate::deadline::{Backoff, Deadline};
use crate::error::Error;
use crate::fixture::ProcessFixture;
use crate::ready::Ready;
use crate::signal::Signal;
use crate::sys;
use crate::text::fnv1a;

use super::handle::Server;
use super::lookup;
use super::pg_wire::Session;

const NAME: &str = "postgres";
/// How long one connection or statement may take.
const SQL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `initdb` may take (once per machine).
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// SQLSTATE 55006, `object_in_use`: a database another session still has open (a session
/// that has just said goodbye may take a moment to go).
const IN_USE: &str = "SQLSTATE 55006";

/// A PostgreSQL cluster for tests; see the module docs for what it does.
///
/// ```
/// use process_fixture::servers::Postgres;
/// # if Postgres::new().builder().is_err() { return Ok(()); }
/// let pg = Postgres::new()
///     .template_sql("CREATE TABLE users (id int PRIMARY KEY, name text);")
///     .spawn()?;
/// let db = pg.database()?;          // a copy of the template: the table is there, empty
/// assert!(db.url().starts_with("postgres://postgres@127.0.0.1:"));
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Postgres {
    bin_dir: Option<PathBuf>,
    user: Option<String>,
    template: Option<String>,
    settings: Vec<(String, String)>,
    data_in: Option<PathBuf>,
}

/// A tmpfs with at least this much room holds the clusters by default.
const TMPFS_ROOM: u64 = 1 << 30;

impl Postgres {
    /// A cluster with the defaults: binaries found as [`Postgres::bin_dir`] says, run as
    /// `postgres` when the test process is root.
    pub fn new() -> Postgres {
        Postgres::default()
    }

    /// One cluster for the whole run ([`Builder::spawn_shared`]), with the defaults.
    pub fn shared() -> Result<PostgresServer, Error> {
        Postgres::new().spawn_shared()
    }

    /// The directory with `initdb` and `postgres`. Default: `$POSTGRES_BIN`, else the
    /// directory of `initdb` on `PATH` (symlinks resolved), else `pg_config --bindir`, else
    /// the newest `/usr/lib/postgresql/*/bin`.
    pub fn bin_dir(mut self, dir: impl AsRef<Path>) -> Postgres {
        self.bin_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// The user the server runs as (default: `postgres` when the test process is root, else
    /// the test's own user: PostgreSQL refuses to run as root).
    pub fn user(mut self, name: &str) -> Postgres {
        self.user = Some(name.to_owned());
        self
    }

    /// SQL run once into a template database; every [`PostgresServer::database`] is then a
    /// copy of it (schema, seed data, extensions), so the migrations run once per cluster.
    pub fn template_sql(mut self, sql: &str) -> Postgres {
        self.template = Some(sql.to_owned());
        self
    }

    /// [`Postgres::template_sql`] from a file.
    pub fn template_sql_file(self, path: impl AsRef<Path>) -> Result<Postgres, Error> {
        let path = path.as_ref();
        let sql = std::fs::read_to_string(path).map_err(|source| Error::File {
            program: NAME.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        Ok(self.template_sql(&sql))
    }

    /// Where the cluster's directory (and the `initdb` cache) go. Default: `/dev/shm` where it
    /// is a writable tmpfs with 1 GiB free (Linux), else `$TMPDIR`: on a disk, the file copy of
    /// a `CREATE DATABASE` costs about 80 ms (flushed to the device whatever `fsync` says), in
    /// memory about 6.
    pub fn data_in(mut self, base: impl AsRef<Path>) -> Postgres {
        self.data_in = Some(base.as_ref().to_owned());
        self
    }

    /// A server setting (`-c name=value`), for example `("max_connections", "200")`.
    pub fn setting(mut self, name: &str, value: &str) -> Postgres {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The builder this makes (after making the `initdb` cache if needed): change anything
    /// before spawning it yourself.
    pub fn builder(&self) -> Result<Builder, Error> {
        let bin = self.find_bin_dir()?;
        let user = self.server_user();
        let base = self.data_in.clone().unwrap_or_else(default_base);
        let cache = initdb_cache(&base, &bin, user.as_deref())?;
        let mut b = Builder::new(bin.join("postgres"));
        b.dir_in(base)
            .copy_dir(cache, "data")
            .args(["-D", "{dir}/data", "-k", "{dir}", "-p", "{port}"])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"]);
        for (name, value) in &self.settings {
            b.args(["-c", &format!("{name}={value}")]);
        }
        b.ready(Ready::stderr(
            "database system is ready to accept connections",
        ))
        .ready_timeout(Duration::from_secs(60))
        .stop_signal(Signal::INT); // fast shutdown: sessions ended, checkpoint, exit
        if let Some(user) = user {
            b.user(user);
        }
        Ok(b)
    }

    /// A cluster for this test alone.
    pub fn spawn(&self) -> Result<PostgresServer, Error> {
        let fixture = self.builder()?.spawn()?;
        Ok(self.server(Server::own(fixture, "postgres://postgres@")))
    }

    /// The run's cluster for these binaries, user and settings (the template is per
    /// [`PostgresServer`]: several templates can live in one cluster).
    pub fn spawn_shared(&self) -> Result<PostgresServer, Error> {
        let b = self.builder()?;
        let key = format!(
            "process-fixture-postgres {:016x}",
            fnv1a(format!("{:?} {:?} {:?}", self.bin_dir, self.user, self.settings).as_bytes())
        );
        let shared = b.spawn_shared(&key)?;
        Ok(self.server(Server::shared_of(shared, "postgres://postgres@")))
    }

    fn server(&self, server: Server) -> PostgresServer {
        let version = server
            .dir()
            .and_then(|d| std::fs::read_to_string(d.join("data/PG_VERSION")).ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        PostgresServer {
            server,
            version,
            template_sql: self.template.clone(),
            template: OnceLock::new(),
        }
    }

    fn server_user(&self) -> Option<String> {
        match &self.user {
            Some(u) => Some(u.clone()),
            None if lookup::running_as_root() => Some("postgres".to_owned()),
            None => None,
        }
    }

    fn find_bin_dir(&self) -> Result<PathBuf, Error> {
        let given = self.bin_dir.clone().map(|d| (d, "bin_dir")).or_else(|| {
            let env = std::env::var_os("POSTGRES_BIN").filter(|d| !d.is_empty());
            env.map(|d| (PathBuf::from(d), "POSTGRES_BIN"))
        });
        if let Some((dir, from)) = given {
            return match dir.join("initdb").is_file() && dir.join("postgres").is_file() {
                true => Ok(dir),
                false => Err(lookup::not_installed(
                    NAME,
                    &format!("{from} {} has no initdb and postgres", dir.display()),
                )),
            };
        }
        let found = lookup::on_path("initdb")
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or_else(pg_config_bindir)
            .or_else(debian_bindir)
            .filter(|d| d.join("initdb").is_file() && d.join("postgres").is_file());
        found.ok_or_else(|| {
            lookup::not_installed(
                NAME,
                "no initdb and postgres on PATH, from pg_config --bindir, or in \
                 /usr/lib/postgresql/*/bin; install PostgreSQL (apt-get install postgresql, \
                 brew install postgresql), or set POSTGRES_BIN=/path/to/postgresql/bin",
            )
        })
    }
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(dir.trim()))
}

fn debian_bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// `/dev/shm` if it is a tmpfs we may write with room to spare, else `$TMPDIR`.
fn default_base() -> PathBuf {
    let shm = c"/dev/shm";
    let roomy = sys::free_bytes(shm).is_some_and(|free| free >= TMPFS_ROOM);
    match cfg!(target_os = "linux") && roomy && sys::can_create_in(shm) {
        true => PathBuf::from("/dev/shm"),
        false => std::env::temp_dir(),
    }
}

/// The `initdb` of `bin` for `user`, made once: `<base>/pf-pgcache-<uid>/<hash>-<user>/data`.
fn initdb_cache(base: &Path, bin: &Path, user: Option<&str>) -> Result<PathBuf, Error> {
    let setup = |reason: String| Error::ServerSetup {
        program: NAME.to_owned(),
        what: "the initdb cache".to_owned(),
        reason,
    };
    // 0755, ours and checked: what is copied into every cluster must be no one else's to
    // change (a postgresql.conf planted here would run its commands as the server's user).
    let base = base.join(format!("pf-pgcache-{}", sys::effective_uid()));
    let base = crate::shared::own_dir(&base, 0o755).map_err(setup)?;
    let name = format!(
        "{:016x}-{}",
        fnv1a(bin.as_os_str().as_encoded_bytes()),
        user.unwrap_or("self")
    );
    let entry = base.join(&name);
    let data = entry.join("data");
    if data.join("PG_VERSION").is_file() {
        return Ok(data);
    }
    let _locked = crate::shared::lock_file(
        &base.join(format!("{name}.lock")),
        Deadline::after(INITDB_TIMEOUT),
    )
    .map_err(setup)?;
    if data.join("PG_VERSION").is_file() {
        return Ok(data); // made while we waited for the lock
    }
    let staging = base.join(format!("{name}.building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    run_initdb(bin, user, &staging).map_err(setup)?;
    std::fs::rename(&staging, &entry).map_err(|e| setup(format!("{}: {e}", entry.display())))?;
    Ok(data)
}

/// Runs `initdb` into `staging/data`, as `user`, under a fixture of its own (so that it is
/// the guardian's child, not a fork of the test process, and its output is kept for the error).
fn run_initdb(bin: &Path, user: Option<&str>, staging: &Path) -> Result<(), String> {
    std::fs::create_dir(staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    if let Some(user) = user {
        let (uid, gid) = sys::lookup_user(user)
            .ok()
            .flatten()
            .map(|(uid, gid, _)| (uid, gid))
            .ok_or_else(|| format!("no user {user:?} to run PostgreSQL as"))?;
        std::os::unix::fs::chown(staging, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let mut b = Builder::new(bin.join("initdb"));
    b.arg("--pgdata")
        .arg(staging.join("data"))
        .args(["--username=postgres", "--auth=trust", "--no-sync"])
        .args(["--no-locale", "--encoding=UTF8"])
        .ready(Ready::none())
        .allow_early_exit();
    if let Some(user) = user {
        b.user(user);
    }
    let initdb = b.spawn().map_err(|e| e.to_string())?;
    wait_for_exit(&initdb, Deadline::after(INITDB_TIMEOUT));
    let (stdout, stderr) = (initdb.stdout(), initdb.stderr());
    let report = initdb.stop().map_err(|e| e.to_string())?;
    match report.exit_status.map(|s| s.success()) {
        Some(true) => Ok(()),
        _ => Err(format!(
            "initdb did not succeed ({:?})\n{stdout}{stderr}",
            report.exit_status
        )),
    }
}

fn wait_for_exit(fixture: &ProcessFixture, deadline: Deadline) {
    let mut backoff = Backoff::new(Duration::from_millis(20));
    while fixture.is_running() && !deadline.passed() {
        sys::poll(&mut [], deadline.remaining_capped(Some(backoff.next())));
    }
}

/// A running cluster: [`Postgres::spawn`] (this test's own) or [`Postgres::spawn_shared`].
#[derive(Debug)]
pub struct PostgresServer {
    server: Server,
    /// The major version (`PG_VERSION`), 0 if unknown.
    version: u32,
    template_sql: Option<String>,
    /// The template's name, once made (or found).
    template: OnceLock<String>,
}

/// Names of databases this process made, unique per process.
static DATABASES: AtomicU64 = AtomicU64::new(0);

impl PostgresServer {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the cluster's maintenance database.
    pub fn url(&self) -> String {
        format!("{}/postgres", self.server.url())
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The cluster's directory: the data directory is `dir/data`, the unix socket
    /// `dir/.s.PGSQL.<port>`.
    pub fn dir(&self) -> Option<&Path> {
        self.server.dir()
    }

    /// The server (the fixture, or the shared handle).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// A fresh database of its own, dropped when the [`Database`] is: empty, or a copy of the
    /// template ([`Postgres::template_sql`]).
    pub fn database(&self) -> Result<Database, Error> {
        let template = match &self.template_sql {
            Some(sql) => Some(self.template(sql)?),
            None => None,
        };
        let name = format!(
            "pf_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let mut sql = format!("CREATE DATABASE {name}");
        if let Some(t) = &template {
            sql += &format!(" TEMPLATE {t}");
        }
        if self.version >= 15 {
            // A copy of the files (and a checkpoint, cheap without fsync) instead of the whole
            // template through the WAL: about 4 times faster for a small database.
            sql += " STRATEGY = FILE_COPY";
        }
        retrying(self.port(), "postgres", &sql).map_err(|e| setup("a database", e))?;
        Ok(Database {
            port: self.port(),
            name,
            force: self.version >= 13,
        })
    }

    /// The template for `sql`: found, or made (under a name of its own first, then renamed: a
    /// half-made template is never copied; two processes making it at once waste one).
    fn template(&self, sql: &str) -> Result<String, Error> {
        if let Some(name) = self.template.get() {
            return Ok(name.clone());
        }
        let name = format!("pf_template_{:016x}", fnv1a(sql.as_bytes()));
        let port = self.port();
        let fail = |e| setup("the template", e);
        let exists = format!("SELECT 1 FROM pg_database WHERE datname = '{name}'");
        if retrying(port, "postgres", &exists)
            .map_err(fail)?
            .is_empty()
        {
            let building = format!("{name}_{}", std::process::id());
            retrying(port, "postgres", &format!("CREATE DATABASE {building}")).map_err(fail)?;
            let made = Session::connect(port, &building, SQL_TIMEOUT)
                .map_err(|e| e.to_string())
                .and_then(|mut s| s.query(sql));
            if let Err(e) = made {
                let _ = retrying(port, "postgres", &format!("DROP DATABASE {building}"));
                return Err(setup("the template SQL", e));
            }
            let rename = format!("ALTER DATABASE {building} RENAME TO {name}");
            if retrying(port, "postgres", &rename).is_err() {
                // Another process made it meanwhile: use theirs.
                let _ = retrying(port, "postgres", &format!("DROP DATABASE {building}"));
            }
        }
        Ok(self.template.get_or_init(|| name).clone())
    }
}

fn setup(what: &str, reason: String) -> Error {
    Error::ServerSetup {
        program: NAME.to_owned(),
        what: what.to_owned(),
        reason,
    }
}

/// Runs `sql` in `database`, again while the database it needs is still in use by a session
/// that is going away (up to [`SQL_TIMEOUT`]).
fn retrying(port: u16, database: &str, sql: &str) -> Result<super::pg_wire::Rows, String> {
    let deadline = Deadline::after(SQL_TIMEOUT);
    let mut backoff = Backoff::new(Duration::from_millis(20));
    loop {
        let result = Session::connect(port, database, SQL_TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|mut s| s.query(sql));
        match result {
            Err(e) if e.contains(IN_USE) && !deadline.passed() => {
                sys::poll(&mut [], deadline.remaining_capped(Some(backoff.next())));
            }
            other => return other,
        }
    }
}

/// A database of its own, on a [`PostgresServer`]; dropped (`DROP DATABASE … WITH (FORCE)`,
/// closing what is still connected to it; before PostgreSQL 13, once they are gone) when this is.
#[derive(Debug)]
pub struct Database {
    port: u16,
    name: String,
    /// `WITH (FORCE)` is there (PostgreSQL 13 and later).
    force: bool,
}

impl Database {
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let force = if self.force { " WITH (FORCE)" } else { "" };
        let sql = format!("DROP DATABASE IF EXISTS {}{force}", self.name);
        if let Err(e) = retrying(self.port, "postgres", &sql) {
            log::warn!("process-fixture: dropping database {}: {e}", self.name);
        }
    }
}
