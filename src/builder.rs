//! [`Builder`]: what a test says about its server. It only collects the configuration; `spawn`
//! reads it once and does the rest.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::config::Config;
use crate::error::Error;
use crate::fixture::ProcessFixture;
use crate::ready::Ready;
use crate::report::Containment;
use crate::shared::SharedFixture;
use crate::signal::Signal;

/// Configures and spawns a [`ProcessFixture`]. Made by [`ProcessFixture::builder`].
///
/// In arguments, environment values, files ([`Builder::file`]), the working directory and the
/// paths of readiness probes:
/// - `{port}` is replaced by the fixture's port (picked free, or [`Builder::port`]);
/// - `{port:NAME}` by a further free port, one per NAME ([`ProcessFixture::named_port`]);
/// - `{dir}` by the fixture's own temporary directory ([`ProcessFixture::dir`]).
///
/// Methods take and return `&mut Self`, as [`std::process::Command`] does, so one builder can
/// spawn many fixtures.
///
/// ```no_run
/// use process_fixture::{ProcessFixture, Ready};
/// use std::time::Duration;
///
/// let srv = ProcessFixture::builder("python3")
///     .args(["-m", "http.server", "--bind", "127.0.0.1", "{port}"])
///     .env("PYTHONUNBUFFERED", "1")
///     .ready(Ready::tcp())
///     .ready_timeout(Duration::from_secs(10))
///     .spawn()?;
/// println!("serving at {}", srv.url());
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Builder does nothing until spawn() is called"]
pub struct Builder {
    cfg: Config,
}

impl Builder {
    /// Starts configuring a fixture for `program` (a path, or a name looked up on `PATH`), as
    /// [`ProcessFixture::builder`] does.
    ///
    /// ```
    /// let srv = process_fixture::Builder::new("sleep").arg("60")
    ///     .ready(process_fixture::Ready::none())
    ///     .spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Builder {
        Builder {
            cfg: Config::new(program.as_ref()),
        }
    }

    /// Takes what std lets a [`Command`] tell: its program, arguments, environment changes and
    /// working directory. std does not tell whether `env_clear` was called, nor its user and
    /// group (`CommandExt::uid`/`gid`/`groups`), `pre_exec` hooks, process group, `arg0` or
    /// stdio: set those here ([`Builder::env_clear`], [`Builder::uid`], [`Builder::gid`],
    /// [`Builder::user`]); stdio is always `/dev/null` in, pipes out.
    ///
    /// ```
    /// use process_fixture::ProcessFixture;
    /// use std::process::Command;
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "echo $GREETING; exec sleep 60"]).env("GREETING", "hello");
    /// let srv = process_fixture::Builder::from_command(&cmd)
    ///     .ready(process_fixture::Ready::stdout("hello"))
    ///     .spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn from_command(command: &Command) -> Builder {
        let mut b = Builder::new(command.get_program());
        b.args(command.get_args());
        for (key, value) in command.get_envs() {
            b.cfg.env.insert(key.to_owned(), value.map(OsStr::to_owned));
        }
        b.cfg.current_dir = command.get_current_dir().map(Path::to_path_buf);
        b
    }

    /// Adds an argument (placeholders are filled in).
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").arg("--port").arg("{port}");
    /// ```
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.cfg.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments (placeholders are filled in).
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").args(["--admin-port", "{port:admin}"]);
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cfg
            .args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (placeholders are filled in the value).
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").env("DATA_DIR", "{dir}");
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.cfg
            .env
            .insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Sets environment variables.
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").envs([("A", "1"), ("B", "2")]);
    /// ```
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Removes an environment variable from the server's environment.
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").env_remove("RUST_LOG");
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.cfg.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts the server with an empty environment (plus what is set after this call).
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").env_clear().env("PATH", "/usr/bin");
    /// ```
    pub fn env_clear(&mut self) -> &mut Self {
        self.cfg.env.clear();
        self.cfg.env_clear = true;
        self
    }

    /// Sets the server's working directory (placeholders are filled in: `current_dir("{dir}")`).
    /// A missing directory is [`Error::CurrentDir`].
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").current_dir("tests/data");
    /// ```
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cfg.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Fixes the port instead of picking a free one. A port something already listens on is
    /// refused with [`Error::PortInUse`] before anything is spawned. `0` means "pick one", as it
    /// does for `bind`.
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").port(8080);
    /// ```
    pub fn port(&mut self, port: u16) -> &mut Self {
        self.cfg.port = Some(port);
        self
    }

    /// How to tell that the server is ready (default: [`Ready::tcp`], the fixture's port
    /// listens; a program that listens on nothing says [`Ready::none`]).
    ///
    /// ```
    /// use process_fixture::Ready;
    /// let _ = process_fixture::ProcessFixture::builder("my-server").ready(Ready::http("/health"));
    /// ```
    pub fn ready(&mut self, ready: Ready) -> &mut Self {
        self.cfg.ready = ready;
        self
    }

    /// How long `spawn` waits for readiness (default 30 s). `Duration::MAX` waits as long as it
    /// takes: durations saturate, they never overflow.
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = process_fixture::ProcessFixture::builder("my-server").ready_timeout(Duration::from_secs(60));
    /// ```
    pub fn ready_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.cfg.ready_timeout = timeout;
        self
    }

    /// How long the leader gets to exit after the stop signal before the whole group is
    /// signalled (default 5 s). The group then gets at most 1 s more before SIGKILL. A process
    /// that *ignores* the signal gets no grace (it will never act on it). `Duration::MAX` means
    /// as long as it takes.
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = process_fixture::ProcessFixture::builder("my-server").grace_period(Duration::from_secs(1));
    /// ```
    pub fn grace_period(&mut self, grace: Duration) -> &mut Self {
        self.cfg.grace = grace;
        self
    }

    /// The signal sent to the leader first (default [`Signal::TERM`]).
    ///
    /// ```
    /// use process_fixture::Signal;
    /// let _ = process_fixture::ProcessFixture::builder("postgres").stop_signal(Signal::INT);
    /// ```
    pub fn stop_signal(&mut self, signal: Signal) -> &mut Self {
        self.cfg.stop_signal = signal;
        self
    }

    /// Requires a containment level instead of the best available (Linux: [`Containment::Subreaper`];
    /// elsewhere [`Containment::ProcessGroup`]). `ProcessGroup` forbids the subreaper: descendants
    /// that call `setsid` then escape, as they would on macOS. Requiring `Subreaper` where there is
    /// none fails at spawn with [`Error::Unsupported`].
    ///
    /// ```
    /// use process_fixture::Containment;
    /// let _ = process_fixture::ProcessFixture::builder("my-server").containment(Containment::ProcessGroup);
    /// ```
    pub fn containment(&mut self, containment: Containment) -> &mut Self {
        self.cfg.containment = Some(containment);
        self
    }

    /// Whether to learn of each `listen()` of the server's processes from the kernel (Linux,
    /// seccomp user notification): [`Ready::tcp`] then knows the moment the port listens, with no
    /// polling and no connection to the server. The default is on where it needs nothing of the
    /// server (a privileged test process, e.g. root in CI) and off elsewhere, where it would set
    /// no_new_privs on the server (a setuid program it runs would not gain privileges); `true`
    /// accepts that, `false` never watches. Without it, the guardian polls the port (at most
    /// every 1 ms) and tells the test process, which sleeps meanwhile.
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").listen_events(true);
    /// ```
    pub fn listen_events(&mut self, on: bool) -> &mut Self {
        self.cfg.listen_events = Some(on);
        self
    }

    /// Writes a file into the fixture's directory before the server starts, with placeholders
    /// filled in: a config file that needs the port (`nginx -c {dir}/nginx.conf`). `name` is
    /// relative to the directory (subdirectories are created). The directory is removed after
    /// the stop.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .file("app.conf", "port = {port}\n")
    ///     .args(["-c", "cat {dir}/app.conf; exec sleep 60"])
    ///     .ready(Ready::stdout("^port = "))
    ///     .spawn()?;
    /// assert_eq!(srv.stdout(), format!("port = {}\n", srv.port()));
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn file(&mut self, name: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> &mut Self {
        self.cfg
            .files
            .push((name.as_ref().to_owned(), contents.as_ref().to_owned()));
        self
    }

    /// Lets the server write to this process's own stdout and stderr instead of capturing them:
    /// for a command whose output is the point (the test command of the `process-fixture`
    /// CLI). Nothing is then captured: [`ProcessFixture::stdout`] is empty, errors carry no
    /// output tail, and a line probe never matches.
    ///
    /// ```
    /// let srv = process_fixture::ProcessFixture::builder("echo")
    ///     .arg("straight to the terminal")
    ///     .inherit_output()
    ///     .allow_early_exit()
    ///     .ready(process_fixture::Ready::none())
    ///     .spawn()?;
    /// assert_eq!(srv.stdout(), "");
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn inherit_output(&mut self) -> &mut Self {
        self.cfg.inherit_output = true;
        self
    }

    /// Makes the fixture's directory in `base` instead of `std::env::temp_dir()` (`$TMPDIR`):
    /// on a tmpfs such as `/dev/shm`, for a server that writes a lot and need not keep it.
    ///
    /// ```
    /// let base = tempfile::tempdir()?;
    /// let srv = process_fixture::ProcessFixture::builder("sleep")
    ///     .arg("60")
    ///     .temp_dir()
    ///     .dir_in(base.path())
    ///     .ready(process_fixture::Ready::none())
    ///     .spawn()?;
    /// assert!(srv.dir().unwrap().starts_with(base.path()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir_in(&mut self, base: impl AsRef<Path>) -> &mut Self {
        self.cfg.dir_in = Some(base.as_ref().to_owned());
        self
    }

    /// Copies the directory tree `from` into the fixture's directory as `to` (relative to it)
    /// before the server starts: files, subdirectories and symlinks, with their permission
    /// bits; owned by the server's user when one is set. A prepared data directory (a database
    /// cluster made once, a fixture of test data) that each fixture may then change at will.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let seed = tempfile::tempdir()?;
    /// std::fs::write(seed.path().join("greeting"), "hello")?;
    /// let srv = ProcessFixture::builder("sh")
    ///     .copy_dir(seed.path(), "data")
    ///     .args(["-c", "cat {dir}/data/greeting; echo; exec sleep 60"])
    ///     .ready(Ready::stdout("^hello$"))
    ///     .spawn()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn copy_dir(&mut self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> &mut Self {
        self.cfg
            .copies
            .push((from.as_ref().to_owned(), to.as_ref().to_owned()));
        self
    }

    /// Gives the fixture its own temporary directory even if no `{dir}` or file asks for one
    /// ([`ProcessFixture::dir`]). Owned by the server's user when one is set; removed after the
    /// stop; kept, and named in the error, when `spawn` fails.
    ///
    /// ```
    /// let srv = process_fixture::ProcessFixture::builder("sleep")
    ///     .arg("60")
    ///     .temp_dir()
    ///     .ready(process_fixture::Ready::none())
    ///     .spawn()?;
    /// assert!(srv.dir().unwrap().is_dir());
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn temp_dir(&mut self) -> &mut Self {
        self.cfg.temp_dir = true;
        self
    }

    /// Runs the server as this user id (as `CommandExt::uid`). Needs privileges.
    ///
    /// ```no_run
    /// let _ = process_fixture::ProcessFixture::builder("my-server").uid(65534).gid(65534);
    /// ```
    pub fn uid(&mut self, uid: u32) -> &mut Self {
        self.cfg.uid = Some(uid);
        self
    }

    /// Runs the server with this group id (as `CommandExt::gid`). Needs privileges.
    ///
    /// ```no_run
    /// let _ = process_fixture::ProcessFixture::builder("my-server").gid(65534);
    /// ```
    pub fn gid(&mut self, gid: u32) -> &mut Self {
        self.cfg.gid = Some(gid);
        self
    }

    /// Runs the server as the user `name` (looked up at spawn): its uid, primary group and
    /// supplementary groups, and `HOME`, `USER` and `LOGNAME` unless set here. PostgreSQL refuses
    /// to run as root: `.user("postgres")`. An unknown user is [`Error::User`].
    ///
    /// ```no_run
    /// let _ = process_fixture::ProcessFixture::builder("postgres").user("postgres");
    /// ```
    pub fn user(&mut self, name: impl Into<String>) -> &mut Self {
        self.cfg.user = Some(name.into());
        self
    }

    /// Prints every line the server writes, prefixed with the program's name, through the test
    /// harness's captured output: `cargo test` shows them with a failing test, `--nocapture`
    /// live. The environment variable `PROCESS_FIXTURE_ECHO=1` does it for every fixture.
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").echo_output(true);
    /// ```
    pub fn echo_output(&mut self, on: bool) -> &mut Self {
        self.cfg.echo = Some(on);
        self
    }

    /// Echoes the server's lines ([`Builder::echo_output`]) prefixed `[prefix]` instead of
    /// `[program]`, and, with `to_stderr`, every line to stderr, stdout's too: for a command
    /// line tool whose stdout belongs to another program (the `process-fixture` CLI's `--echo`).
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("redis-server").echo_as("db", true);
    /// ```
    pub fn echo_as(&mut self, prefix: &str, to_stderr: bool) -> &mut Self {
        self.cfg.echo = Some(true);
        self.cfg.echo_prefix = Some(prefix.to_owned());
        self.cfg.echo_to_stderr = to_stderr;
        self
    }

    /// Socket activation, as systemd does it: the fixture itself listens on `127.0.0.1` on its
    /// port and on each named port before the server starts, and passes the sockets to the
    /// server as fds 3, 4, … (the fixture's port first, then the named ports sorted by name),
    /// with `LISTEN_FDS`, `LISTEN_PID` (the server's own pid) and `LISTEN_FDNAMES` (`port`,
    /// then the names) set, as `sd_listen_fds(3)` and the `listenfd` crate expect. `{fd}` and
    /// `{fd:NAME}` give the numbers, for `gunicorn --bind fd://{fd}` or `uvicorn --fd {fd}`.
    ///
    /// There is no window in which another process could take a port: it is bound before the
    /// server exists. The fixture keeps its sockets open for its whole life, so a client that
    /// connects before the server accepts waits in the backlog, also across a
    /// [`restart`](ProcessFixture::restart): no connection is refused. No other fd of the
    /// fixture reaches the server. At most 8 ports.
    ///
    /// Readiness: since the sockets listen from the start, [`Ready::tcp`] holds as soon as the
    /// server process exists; ask the application instead ([`Ready::http`], a log line,
    /// [`Ready::sd_notify`]).
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// # if !cfg!(target_os = "linux") { return Ok(()); }
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", r#"[ "$LISTEN_PID" = $$ ] && [ -S /proc/$$/fd/{fd} ] &&
    ///                     echo "got $LISTEN_FDS socket named $LISTEN_FDNAMES"; exec sleep 60"#])
    ///     .socket_activation()
    ///     .ready(Ready::stdout("^got "))
    ///     .spawn()?;
    /// assert_eq!(srv.stdout(), "got 1 socket named port\n");
    /// std::net::TcpStream::connect(("127.0.0.1", srv.port()))?; // queued in the backlog
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn socket_activation(&mut self) -> &mut Self {
        self.cfg.socket_activation = true;
        self
    }

    /// Lets the server exit on its own before the stop without failing the test. By default a
    /// server that was killed by a signal or exited with a non-zero status before the stop
    /// makes `Drop` panic with its output (unless the thread is already panicking) and
    /// [`ProcessFixture::stop`] return [`Error::ExitedBeforeStop`]: a crash mid-test must not
    /// pass in silence. A one-shot program, or a server the test kills on purpose, opts out.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let job = ProcessFixture::builder("sh").args(["-c", "echo done; exit 3"])
    ///     .ready(Ready::stdout("done"))
    ///     .allow_early_exit()
    ///     .spawn()?;
    /// job.wait_for_output("never", std::time::Duration::from_secs(10)).unwrap_err(); // exited
    /// let report = job.stop()?; // Ok: the early exit was allowed
    /// assert_eq!(report.exit_status.and_then(|s| s.code()), Some(3));
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn allow_early_exit(&mut self) -> &mut Self {
        self.cfg.allow_early_exit = true;
        self
    }

    /// Starts the server and waits until it is ready.
    ///
    /// On any failure the whole process tree is torn down before the error is returned.
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo ready; exec sleep 60"])
    ///     .ready(Ready::stdout("^ready$"))
    ///     .spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn spawn(&self) -> Result<ProcessFixture, Error> {
        crate::spawn::spawn(&self.cfg)
    }

    /// Attaches to the server shared under `key` by every test of the run, starting it if this
    /// is the first request: one server for all the tests of a `cargo nextest run` (one process
    /// per test) or of a `cargo test` (threads, and the test binaries it runs). See
    /// [`SharedFixture`].
    ///
    /// - **Scope**: under nextest, the run (`NEXTEST_RUN_ID`): two runs never share a server.
    ///   Otherwise the parent process of the test process (the `cargo test` that runs the test
    ///   binaries, or your shell); [`SCOPE_ENV`](crate::SCOPE_ENV) sets it explicitly.
    /// - **Same key, same configuration**: a request whose configuration differs from the
    ///   running server's (program, arguments, environment, ports, files, readiness, stop, user)
    ///   fails with [`Error::Shared`] and [`SharedFailure::Mismatch`](crate::SharedFailure::Mismatch),
    ///   naming the fields. The readiness timeout and the linger are how one user waits: not
    ///   compared. The inherited environment and working directory are the first user's.
    /// - **Who starts it**: N processes asking at once start exactly one server; if its start
    ///   fails, every one of them gets the same error ([`SharedFailure::StartFailed`](crate::SharedFailure::StartFailed)).
    ///   A server that crashed, or one whose linger expired and is stopping, is never handed
    ///   out: the next request starts a new one.
    /// - **Who owns it**: a *keeper*, this test executable started again in a mode of its own
    ///   (stdio `/dev/null`, its own process group), holds the server as a [`ProcessFixture`]
    ///   and counts its users by their open connections, so a user killed by SIGKILL is counted
    ///   out too. After the last one, and the linger, it stops the server (its directory
    ///   removed) and exits; if the keeper itself is killed, the server's guardian stops it.
    /// - **Private**: the rendezvous is a unix socket in `$TMPDIR/pf-<uid>`, mode 0700, refused
    ///   if it is someone else's, open to others, or a symlink; both ends check the other's uid.
    ///
    /// A `Ready::custom` check cannot be shared (it is a closure of this process):
    /// [`SharedFailure::NotShareable`](crate::SharedFailure::NotShareable).
    ///
    /// ```
    /// use process_fixture::{ProcessFixture, Ready};
    /// fn server() -> process_fixture::SharedFixture {
    ///     ProcessFixture::builder("python3")
    ///         .args(["-m", "http.server", "--bind", "127.0.0.1", "{port}"])
    ///         .ready(Ready::tcp())
    ///         .spawn_shared("doc-http-server")
    ///         .expect("shared server")
    /// }
    /// # if std::process::Command::new("python3").arg("--version").output().is_err() { return; }
    /// let srv = server(); // in each test that needs it
    /// std::net::TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
    /// ```
    pub fn spawn_shared(&self, key: &str) -> Result<SharedFixture, Error> {
        crate::shared::spawn_shared(&self.cfg, key)
    }

    /// How long a shared server outlives its last user ([`Builder::spawn_shared`]); default
    /// [`DEFAULT_LINGER`](crate::DEFAULT_LINGER). Long enough to bridge the gap between one
    /// test process and the next; `Duration::ZERO` stops it as soon as the last handle is gone.
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = process_fixture::ProcessFixture::builder("my-server").linger(Duration::from_secs(5));
    /// ```
    pub fn linger(&mut self, linger: Duration) -> &mut Self {
        self.cfg.linger = linger;
        self
    }
}

impl Builder {
    #[cfg(test)]
    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }
}

impl ProcessFixture {
    /// Starts configuring a fixture for `program` (a path, or a name looked up on `PATH`).
    ///
    /// ```no_run
    /// let srv = process_fixture::ProcessFixture::builder("my-server").args(["--port", "{port}"]).spawn()?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn builder(program: impl AsRef<OsStr>) -> Builder {
        Builder::new(program.as_ref())
    }

    /// The one-liner: spawns what a [`Command`] describes and waits for `ready`.
    /// Placeholders (`{port}`, …) in its arguments and environment values are filled in.
    ///
    /// ```no_run
    /// use process_fixture::{ProcessFixture, Ready};
    /// use std::process::Command;
    ///
    /// let srv = ProcessFixture::spawn(Command::new("my-server").args(["--port", "{port}"]), Ready::tcp())?;
    /// # Ok::<(), process_fixture::Error>(())
    /// ```
    pub fn spawn(command: &Command, ready: Ready) -> Result<ProcessFixture, Error> {
        Builder::from_command(command).ready(ready).spawn()
    }
}
