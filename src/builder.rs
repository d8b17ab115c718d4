//! Configuration of a fixture: [`Builder`], [`Signal`], and the placeholders (`{port}`,
//! `{port:NAME}`, `{dir}`) it fills in.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::guardian::{ListenEvents, Plan};
use crate::{sys, Containment, Error, ProcessFixture, Ready};

/// A signal to stop the server with (see [`Builder::stop_signal`]).
///
/// ```
/// use process_fixture::{ProcessFixture, Ready, Signal};
/// // PostgreSQL's fast shutdown is SIGINT; nginx's graceful one SIGQUIT.
/// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none())
///     .stop_signal(Signal::INT)
///     .spawn()?;
/// let report = srv.stop()?;
/// assert!(report.to_string().contains("SIGINT"), "{report}");
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    /// `SIGTERM`, the default.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// `SIGINT` (what Ctrl-C sends; PostgreSQL's fast shutdown).
    pub const INT: Signal = Signal(libc::SIGINT);
    /// `SIGQUIT` (nginx's graceful stop).
    pub const QUIT: Signal = Signal(libc::SIGQUIT);
    /// `SIGHUP`.
    pub const HUP: Signal = Signal(libc::SIGHUP);
    /// `SIGUSR1`.
    pub const USR1: Signal = Signal(libc::SIGUSR1);
    /// `SIGUSR2`.
    pub const USR2: Signal = Signal(libc::SIGUSR2);
    /// `SIGWINCH` (Apache httpd's graceful stop).
    pub const WINCH: Signal = Signal(libc::SIGWINCH);
    /// `SIGKILL`: no grace at all.
    pub const KILL: Signal = Signal(libc::SIGKILL);

    /// Any signal by number; checked at spawn ([`Error::InvalidSignal`]).
    ///
    /// ```
    /// use process_fixture::Signal;
    /// assert_eq!(Signal::from_raw(15), Signal::TERM);
    /// ```
    pub const fn from_raw(signal: i32) -> Signal {
        Signal(signal)
    }

    /// The signal number.
    ///
    /// ```
    /// assert_eq!(process_fixture::Signal::INT.as_raw(), 2);
    /// ```
    pub const fn as_raw(self) -> i32 {
        self.0
    }
}

/// How long `spawn` waits for readiness by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the leader gets to exit after the stop signal by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// Echo every server line to the test's output when set (to anything but `0`), as
/// [`Builder::echo_output`]`(true)` does for one fixture.
///
/// ```sh
/// PROCESS_FIXTURE_ECHO=1 cargo test my_test -- --nocapture   # every line, live, prefixed "[my-server] "
/// ```
pub const ECHO_ENV: &str = "PROCESS_FIXTURE_ECHO";

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
    program: OsString,
    args: Vec<OsString>,
    /// Changes to the inherited environment: `Some` sets, `None` removes.
    env: BTreeMap<OsString, Option<OsString>>,
    env_clear: bool,
    current_dir: Option<PathBuf>,
    port: Option<u16>,
    ready: Ready,
    ready_timeout: Duration,
    grace: Duration,
    stop_signal: Signal,
    containment: Option<Containment>,
    listen_events: Option<bool>,
    files: Vec<(PathBuf, Vec<u8>)>,
    temp_dir: bool,
    uid: Option<u32>,
    gid: Option<u32>,
    user: Option<String>,
    echo: Option<bool>,
}

impl Builder {
    pub(crate) fn new(program: &OsStr) -> Builder {
        Builder {
            program: program.to_owned(),
            args: Vec::new(),
            env: BTreeMap::new(),
            env_clear: false,
            current_dir: None,
            port: None,
            ready: Ready::tcp(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            grace: DEFAULT_GRACE,
            stop_signal: Signal::TERM,
            containment: None,
            listen_events: None,
            files: Vec::new(),
            temp_dir: false,
            uid: None,
            gid: None,
            user: None,
            echo: None,
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
            b.env.insert(key.to_owned(), value.map(OsStr::to_owned));
        }
        b.current_dir = command.get_current_dir().map(Path::to_path_buf);
        b
    }

    /// Adds an argument (placeholders are filled in).
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").arg("--port").arg("{port}");
    /// ```
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
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
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (placeholders are filled in the value).
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").env("DATA_DIR", "{dir}");
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
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
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts the server with an empty environment (plus what is set after this call).
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").env_clear().env("PATH", "/usr/bin");
    /// ```
    pub fn env_clear(&mut self) -> &mut Self {
        self.env.clear();
        self.env_clear = true;
        self
    }

    /// Sets the server's working directory (placeholders are filled in: `current_dir("{dir}")`).
    /// A missing directory is [`Error::CurrentDir`].
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").current_dir("tests/data");
    /// ```
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.current_dir = Some(dir.as_ref().to_owned());
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
        self.port = Some(port);
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
        self.ready = ready;
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
        self.ready_timeout = timeout;
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
        self.grace = grace;
        self
    }

    /// The signal sent to the leader first (default [`Signal::TERM`]).
    ///
    /// ```
    /// use process_fixture::Signal;
    /// let _ = process_fixture::ProcessFixture::builder("postgres").stop_signal(Signal::INT);
    /// ```
    pub fn stop_signal(&mut self, signal: Signal) -> &mut Self {
        self.stop_signal = signal;
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
        self.containment = Some(containment);
        self
    }

    /// Whether to learn of each `listen()` of the server's processes from the kernel (Linux,
    /// seccomp user notification): [`Ready::tcp`] then knows the moment the port listens, with no
    /// polling and no connection to the server. The default is on where it needs nothing of the
    /// server (a privileged test process, e.g. root in CI) and off elsewhere, where it would set
    /// no_new_privs on the server (a setuid program it runs would not gain privileges); `true`
    /// accepts that, `false` never watches. Without it, the port is polled (at most every 2 ms).
    ///
    /// ```
    /// let _ = process_fixture::ProcessFixture::builder("my-server").listen_events(true);
    /// ```
    pub fn listen_events(&mut self, on: bool) -> &mut Self {
        self.listen_events = Some(on);
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
        self.files
            .push((name.as_ref().to_owned(), contents.as_ref().to_owned()));
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
        self.temp_dir = true;
        self
    }

    /// Runs the server as this user id (as `CommandExt::uid`). Needs privileges.
    ///
    /// ```no_run
    /// let _ = process_fixture::ProcessFixture::builder("my-server").uid(65534).gid(65534);
    /// ```
    pub fn uid(&mut self, uid: u32) -> &mut Self {
        self.uid = Some(uid);
        self
    }

    /// Runs the server with this group id (as `CommandExt::gid`). Needs privileges.
    ///
    /// ```no_run
    /// let _ = process_fixture::ProcessFixture::builder("my-server").gid(65534);
    /// ```
    pub fn gid(&mut self, gid: u32) -> &mut Self {
        self.gid = Some(gid);
        self
    }

    /// Runs the server as the user `name` (looked up at spawn): its uid, primary group and
    /// supplementary groups, and `HOME`, `USER` and `LOGNAME` unless set here. PostgreSQL refuses
    /// to run as root: `.user("postgres")`. An unknown user is [`Error::User`].
    ///
    /// ```no_run
    /// let _ = process_fixture::ProcessFixture::builder("postgres").user("postgres");
    /// ```
    pub fn user(&mut self, name: &str) -> &mut Self {
        self.user = Some(name.to_owned());
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
        self.echo = Some(on);
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
        crate::fixture::spawn(self)
    }

    pub(crate) fn readiness(&self) -> (&Ready, Duration) {
        (&self.ready, self.ready_timeout)
    }

    pub(crate) fn fixed_port(&self) -> Option<u16> {
        self.port
    }

    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }

    pub(crate) fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// The program and its arguments as given, for error messages (shortened).
    pub(crate) fn command_line(&self) -> String {
        let mut line = self.program_name();
        for arg in &self.args {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        crate::text::shorten(line, 300)
    }

    pub(crate) fn echo(&self) -> Option<String> {
        let from_env = || std::env::var_os(ECHO_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        let on = self.echo.unwrap_or_else(from_env);
        on.then(|| {
            let name = Path::new(&self.program)
                .file_name()
                .unwrap_or(&self.program);
            name.to_string_lossy().into_owned()
        })
    }

    pub(crate) fn requested_containment(&self) -> Containment {
        match self.containment {
            Some(c) => c,
            None if cfg!(target_os = "linux") => Containment::Subreaper,
            None => Containment::ProcessGroup,
        }
    }

    /// Every text placeholders may appear in.
    fn texts(&self) -> impl Iterator<Item = &[u8]> {
        let args = self.args.iter().map(|a| a.as_bytes());
        let env = self.env.values().flatten().map(|v| v.as_bytes());
        let files = self
            .files
            .iter()
            .flat_map(|(name, body)| [name.as_os_str().as_bytes(), body.as_slice()]);
        let dir = self.current_dir.iter().map(|d| d.as_os_str().as_bytes());
        args.chain(env).chain(files).chain(dir)
    }

    /// The NAMEs of every `{port:NAME}`.
    pub(crate) fn port_names(&self) -> BTreeSet<String> {
        self.texts().flat_map(named_ports).collect()
    }

    /// Whether the fixture gets a directory: `{dir}` somewhere, a file, or asked for.
    pub(crate) fn wants_dir(&self, ready: &Ready) -> bool {
        let mentions = |t: &[u8]| find(t, b"{dir}").is_some();
        self.temp_dir
            || !self.files.is_empty()
            || self.texts().any(mentions)
            || ready.paths().any(|p| mentions(p.as_os_str().as_bytes()))
    }

    /// Whether `{port}` appears anywhere the server could read it.
    pub(crate) fn mentions_port(&self) -> bool {
        self.texts().any(|t| find(t, b"{port}").is_some())
    }

    /// Checks everything and prepares what the guardian needs, with placeholders filled in.
    pub(crate) fn plan(&self, values: &Values, user: Option<&User>) -> Result<Plan, Error> {
        let program = self.program_name();
        let signal = self.stop_signal.as_raw();
        if !(1..=sys::MAX_SIGNAL).contains(&signal) {
            return Err(Error::InvalidSignal { program, signal });
        }
        if self.containment == Some(Containment::Subreaper) && !cfg!(target_os = "linux") {
            return Err(Error::Unsupported {
                program,
                what: "Containment::Subreaper (Linux only)",
            });
        }
        let env = self.environment(values, user);
        // NUL bytes first: they make any file lookup fail for the wrong reason.
        let mut argv = vec![self.c_string(self.program.as_bytes(), || "the program name".into())?];
        let path = self.resolve_program(&env)?;
        for (i, arg) in self.args.iter().enumerate() {
            let arg = values.substitute(arg.as_bytes());
            argv.push(self.c_string(&arg, || format!("argument {}", i + 1))?);
        }
        let envp = env
            .iter()
            .map(|(k, v)| {
                let what = || format!("environment variable {}", k.to_string_lossy());
                self.c_string(k.as_bytes(), what)?;
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                self.c_string(&kv, what)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cwd = match self.working_dir(values) {
            Some(dir) => Some(self.check_dir(&dir)?),
            None => None,
        };
        let path = self.c_string(path.as_os_str().as_bytes(), || "the program path".into())?;
        let mut plan = Plan::new(path, argv, envp);
        plan.cwd = cwd;
        plan.stop_signal = signal;
        plan.grace = self.grace;
        plan.subreaper = self.containment != Some(Containment::ProcessGroup);
        plan.pidfd = !crate::force::forced("no-pidfd");
        plan.listen = self.listen_choice();
        plan.uid = user.map(|u| u.uid).or(self.uid);
        plan.gid = user.map(|u| u.gid).or(self.gid);
        plan.groups = user.map(|u| u.groups.clone());
        Ok(plan)
    }

    /// The server's working directory, placeholders filled in.
    pub(crate) fn working_dir(&self, values: &Values) -> Option<PathBuf> {
        let dir = self.current_dir.as_ref()?;
        let bytes = values.substitute(dir.as_os_str().as_bytes());
        Some(PathBuf::from(OsString::from_vec(bytes)))
    }

    /// Looks up the user given to [`Builder::user`], if any.
    pub(crate) fn lookup_user(&self) -> Result<Option<User>, Error> {
        let Some(name) = &self.user else {
            return Ok(None);
        };
        let fail = |reason: String| Error::User {
            program: self.program_name(),
            user: name.clone(),
            reason,
        };
        let found = sys::lookup_user(name).map_err(|e| fail(e.to_string()))?;
        let (uid, gid, home) = found.ok_or_else(|| fail("no such user".into()))?;
        let groups = sys::group_list(name, gid).map_err(|e| fail(e.to_string()))?;
        Ok(Some(User {
            name: name.clone(),
            uid,
            gid,
            groups,
            home,
        }))
    }

    /// The uid and gid the server runs as, when set (to give its directory to).
    pub(crate) fn owner(&self, user: Option<&User>) -> Option<(u32, u32)> {
        match user {
            Some(u) => Some((u.uid, u.gid)),
            None => self.uid.map(|uid| (uid, self.gid.unwrap_or(uid))),
        }
    }

    /// Writes the files of [`Builder::file`] into `dir`, placeholders filled in.
    pub(crate) fn write_files(&self, dir: &Path, values: &Values) -> Result<(), Error> {
        for (name, body) in &self.files {
            let name = PathBuf::from(OsString::from_vec(
                values.substitute(name.as_os_str().as_bytes()),
            ));
            let path = dir.join(&name);
            let fail = |source| Error::File {
                program: self.program_name(),
                path: path.clone(),
                source,
            };
            if name.is_absolute() || name.components().any(|c| c.as_os_str() == "..") {
                let outside = std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a fixture's file must stay inside its directory (no absolute path, no ..)",
                );
                return Err(fail(outside));
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(fail)?;
            }
            std::fs::write(&path, values.substitute(body)).map_err(fail)?;
        }
        Ok(())
    }

    /// Whether the guardian watches `listen()` calls, and at what price (see `listen_events`).
    fn listen_choice(&self) -> ListenEvents {
        if crate::force::forced("no-seccomp")
            || self.listen_events == Some(false)
            || !sys::LISTEN_EVENTS
        {
            return ListenEvents::Off;
        }
        match (sys::privileged(), self.listen_events) {
            (true, _) => ListenEvents::On {
                no_new_privs: false,
            },
            (false, Some(true)) => ListenEvents::On { no_new_privs: true },
            (false, _) => ListenEvents::Off,
        }
    }

    /// The server's environment: inherited unless cleared, with our changes, placeholders filled
    /// in; and, for a user, `HOME`, `USER` and `LOGNAME` unless set.
    fn environment(&self, values: &Values, user: Option<&User>) -> BTreeMap<OsString, OsString> {
        let mut env: BTreeMap<OsString, OsString> = if self.env_clear {
            BTreeMap::new()
        } else {
            std::env::vars_os().collect()
        };
        if let Some(user) = user {
            for (key, value) in [
                ("HOME", user.home.as_os_str()),
                ("USER", OsStr::new(&user.name)),
                ("LOGNAME", OsStr::new(&user.name)),
            ] {
                if !self.env.contains_key(OsStr::new(key)) {
                    env.insert(key.into(), value.to_owned());
                }
            }
        }
        for (key, value) in &self.env {
            match value {
                Some(v) => env.insert(
                    key.clone(),
                    OsString::from_vec(values.substitute(v.as_bytes())),
                ),
                None => env.remove(key),
            };
        }
        if let Some(notify) = &values.notify {
            env.insert("NOTIFY_SOCKET".into(), notify.clone());
        }
        env
    }

    /// `bytes` as a C string, or [`Error::NulByte`] naming `what`.
    fn c_string(&self, bytes: &[u8], what: impl FnOnce() -> String) -> Result<CString, Error> {
        CString::new(bytes).map_err(|_| Error::NulByte {
            program: self.program_name(),
            what: what(),
        })
    }

    fn check_dir(&self, dir: &Path) -> Result<CString, Error> {
        let c_dir = self.c_string(dir.as_os_str().as_bytes(), || {
            "the working directory".into()
        })?;
        let bad = |source| Error::CurrentDir {
            program: self.program_name(),
            path: dir.into(),
            source,
        };
        let meta = std::fs::metadata(dir).map_err(bad)?;
        if !meta.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory");
            return Err(bad(source));
        }
        Ok(c_dir)
    }

    /// Finds the program as `execvp` would, but before the fork, so that "not found" is a clear
    /// error and the guardian need not search. A name with a `/` is a path (relative to the test
    /// process's working directory); otherwise `PATH` (the server's, if set) is searched.
    fn resolve_program(&self, env: &BTreeMap<OsString, OsString>) -> Result<PathBuf, Error> {
        let not_found = || Error::ProgramNotFound {
            program: self.program_name(),
        };
        if self.program.as_bytes().contains(&b'/') {
            let path = PathBuf::from(&self.program);
            let path = if path.is_relative() {
                std::env::current_dir()
                    .map_err(Error::io(
                        &self.program_name(),
                        "reading the working directory",
                    ))?
                    .join(path)
            } else {
                path
            };
            return if path.is_file() {
                Ok(path)
            } else {
                Err(not_found())
            };
        }
        if self.program.is_empty() {
            return Err(not_found());
        }
        let search = env
            .get(OsStr::new("PATH"))
            .cloned()
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        let candidates: Vec<PathBuf> = std::env::split_paths(&search)
            .map(|dir| dir.join(&self.program))
            .filter(|p| p.is_file())
            .collect();
        let executable = |p: &&PathBuf| {
            p.metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        };
        // A file that is found but not executable is exec'd anyway, to report EACCES as execvp does.
        candidates
            .iter()
            .find(executable)
            .or(candidates.first())
            .cloned()
            .ok_or_else(not_found)
    }
}

/// A user the server runs as ([`Builder::user`]).
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

/// What the placeholders stand for in one spawn, and what else the environment gets.
#[derive(Clone, Debug, Default)]
pub(crate) struct Values {
    pub port: u16,
    pub named: BTreeMap<String, u16>,
    pub dir: Option<PathBuf>,
    /// `NOTIFY_SOCKET` for `Ready::sd_notify()`.
    pub notify: Option<OsString>,
}

impl Values {
    /// `text` with every `{port}`, `{port:NAME}` and `{dir}` replaced. A `{port:NAME}` or `{dir}`
    /// without a value (never the case once spawn prepared the values) is left as it is.
    pub fn substitute(&self, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.iter().position(|&b| b == b'{') {
            out.extend_from_slice(&rest[..open]);
            rest = &rest[open..];
            let close = rest.iter().position(|&b| b == b'}');
            let key = close.map(|c| &rest[1..c]);
            match key.and_then(|k| self.value(k)) {
                Some(value) => {
                    out.extend_from_slice(&value);
                    rest = &rest[close.unwrap_or(0) + 1..];
                }
                None => {
                    out.push(b'{');
                    rest = &rest[1..];
                }
            }
        }
        out.extend_from_slice(rest);
        out
    }

    fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        match key {
            b"port" => Some(self.port.to_string().into_bytes()),
            b"dir" => self.dir.as_ref().map(|d| d.as_os_str().as_bytes().to_vec()),
            _ => {
                let name = std::str::from_utf8(key.strip_prefix(b"port:")?).ok()?;
                self.named.get(name).map(|p| p.to_string().into_bytes())
            }
        }
    }
}

/// The NAMEs of the `{port:NAME}` placeholders in `text` (NAME: letters, digits, `_`, `-`).
fn named_ports(text: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(i) = find(rest, b"{port:") {
        rest = &rest[i + 6..];
        let end = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        if let Some(end) = end.filter(|&e| e > 0 && rest[e] == b'}') {
            names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            rest = &rest[end..];
        }
    }
    names
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values {
            port: 8080,
            named: [("admin".to_owned(), 9090)].into(),
            dir: Some("/tmp/fx".into()),
            notify: None,
        }
    }

    #[test]
    fn placeholders_are_replaced_everywhere() {
        let v = values();
        assert_eq!(
            v.substitute(b"--listen=127.0.0.1:{port}"),
            b"--listen=127.0.0.1:8080"
        );
        assert_eq!(v.substitute(b"{port}{port}"), b"80808080");
        assert_eq!(
            v.substitute(b"{port:admin} in {dir}/x"),
            b"9090 in /tmp/fx/x"
        );
        assert_eq!(v.substitute(b"{por} {port:nope} {"), b"{por} {port:nope} {");
        assert_eq!(v.substitute(b"json {\"a\": {port}}"), b"json {\"a\": 8080}");
    }

    #[test]
    fn named_ports_are_found() {
        assert_eq!(
            named_ports(b"a {port:admin} b {port:metrics-2}"),
            ["admin", "metrics-2"]
        );
        assert!(named_ports(b"{port:} {port:a b} {port}").is_empty());
    }

    #[test]
    fn nul_bytes_are_named() {
        let mut b = Builder::new(OsStr::new("true"));
        b.arg("ok").arg("bad\0arg");
        match b.plan(&values(), None) {
            Err(Error::NulByte { what, .. }) => assert_eq!(what, "argument 2"),
            other => panic!("expected NulByte, got {:?}", other.err()),
        }
        let mut b = Builder::new(OsStr::new("true"));
        b.env("FOO", "x\0y");
        match b.plan(&values(), None) {
            Err(Error::NulByte { what, .. }) => assert_eq!(what, "environment variable FOO"),
            other => panic!("expected NulByte, got {:?}", other.err()),
        }
    }

    #[test]
    fn environment_applies_changes_in_order() {
        let mut b = Builder::new(OsStr::new("true"));
        b.env("A", "1")
            .env_clear()
            .env("B", "{port}")
            .env("C", "3")
            .env_remove("C");
        let env = b.environment(&values(), None);
        assert_eq!(env.len(), 1);
        assert_eq!(env[OsStr::new("B")], "8080");
    }

    #[test]
    fn a_user_brings_home_and_name_unless_set() {
        let user = User {
            name: "pg".into(),
            uid: 70,
            gid: 70,
            groups: vec![70],
            home: "/var/lib/pg".into(),
        };
        let mut b = Builder::new(OsStr::new("true"));
        b.env_clear().env("HOME", "/elsewhere");
        let env = b.environment(&values(), Some(&user));
        assert_eq!(env[OsStr::new("HOME")], "/elsewhere");
        assert_eq!(env[OsStr::new("USER")], "pg");
    }

    #[test]
    fn program_lookup() {
        let b = Builder::new(OsStr::new("sh"));
        assert!(b
            .resolve_program(&b.environment(&values(), None))
            .unwrap()
            .is_absolute());
        let b = Builder::new(OsStr::new("surely-no-such-program-here"));
        assert!(matches!(
            b.resolve_program(&b.environment(&values(), None)),
            Err(Error::ProgramNotFound { .. })
        ));
    }
}
