//! Configuration of a fixture: [`Builder`], and [`Signal`].

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::guardian::{ListenEvents, Plan};
use crate::{Containment, Error, ProcessFixture, Ready};

/// A signal to stop the server with (see [`Builder::stop_signal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    /// `SIGTERM`, the default.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// `SIGINT` (what Ctrl-C sends; some servers stop gracefully only on it).
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
    pub const fn from_raw(signal: i32) -> Signal {
        Signal(signal)
    }

    /// The signal number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }
}

/// How long `spawn` waits for readiness by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the leader gets to exit after the stop signal by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Configures and spawns a [`ProcessFixture`]. Made by [`ProcessFixture::builder`].
///
/// `{port}` in arguments and environment values is replaced by the fixture's port. Methods take
/// and return `&mut Self`, as [`std::process::Command`] does, so one builder can spawn many
/// fixtures.
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
            ready: Ready::none(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            grace: DEFAULT_GRACE,
            stop_signal: Signal::TERM,
            containment: None,
            listen_events: None,
        }
    }

    /// Takes program, arguments, environment changes and working directory from a `Command`.
    /// (`Command` does not tell whether `env_clear` was called: call it here if you need it.)
    pub fn from_command(command: &Command) -> Builder {
        let mut b = Builder::new(command.get_program());
        b.args(command.get_args());
        for (key, value) in command.get_envs() {
            b.env.insert(key.to_owned(), value.map(OsStr::to_owned));
        }
        b.current_dir = command.get_current_dir().map(Path::to_path_buf);
        b
    }

    /// Adds an argument. `{port}` in it is replaced by the fixture's port.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments. `{port}` in them is replaced by the fixture's port.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable. `{port}` in the value is replaced by the fixture's port.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Sets environment variables.
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
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts the server with an empty environment (plus what is set after this call).
    pub fn env_clear(&mut self) -> &mut Self {
        self.env.clear();
        self.env_clear = true;
        self
    }

    /// Sets the server's working directory. A missing directory is [`Error::CurrentDir`].
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Fixes the port instead of picking a free one. A port something already listens on is
    /// refused with [`Error::PortInUse`] before anything is spawned. `0` means "pick one", as it
    /// does for `bind`.
    pub fn port(&mut self, port: u16) -> &mut Self {
        self.port = Some(port);
        self
    }

    /// How to tell that the server is ready (default: [`Ready::none`]).
    pub fn ready(&mut self, ready: Ready) -> &mut Self {
        self.ready = ready;
        self
    }

    /// How long `spawn` waits for readiness (default 30 s). `Duration::MAX` waits as long as it
    /// takes: durations saturate, they never overflow.
    pub fn ready_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.ready_timeout = timeout;
        self
    }

    /// How long the leader gets to exit after the stop signal before the whole group is
    /// signalled (default 5 s). The group then gets at most 1 s more before SIGKILL. A process
    /// that *ignores* the signal gets no grace (it will never act on it). `Duration::MAX` means
    /// as long as it takes.
    pub fn grace_period(&mut self, grace: Duration) -> &mut Self {
        self.grace = grace;
        self
    }

    /// The signal sent to the leader first (default [`Signal::TERM`]).
    pub fn stop_signal(&mut self, signal: Signal) -> &mut Self {
        self.stop_signal = signal;
        self
    }

    /// Requires a containment level instead of the best available (Linux: [`Containment::Subreaper`];
    /// elsewhere [`Containment::ProcessGroup`]). `ProcessGroup` forbids the subreaper: descendants
    /// that call `setsid` then escape, as they would on macOS. Requiring `Subreaper` where there is
    /// none fails at spawn with [`Error::Unsupported`].
    pub fn containment(&mut self, containment: Containment) -> &mut Self {
        self.containment = Some(containment);
        self
    }

    /// Whether to learn of each `listen()` of the server's processes from the kernel (Linux,
    /// seccomp user notification): `Ready::tcp()` then knows the moment the port listens, with no
    /// polling and no connection to the server. The default is on where it needs nothing of the
    /// server (a privileged test process, e.g. root in CI) and off elsewhere, where it would set
    /// no_new_privs on the server (a setuid program it runs would not gain privileges); `true`
    /// accepts that, `false` never watches. Without it, the port is polled (at most every 2 ms).
    pub fn listen_events(&mut self, on: bool) -> &mut Self {
        self.listen_events = Some(on);
        self
    }

    /// Starts the server and waits until it is ready.
    ///
    /// On any failure the whole process tree is torn down before the error is returned.
    pub fn spawn(&self) -> Result<ProcessFixture, Error> {
        crate::fixture::spawn(self)
    }

    pub(crate) fn readiness(&self) -> (&Ready, Duration) {
        (&self.ready, self.ready_timeout)
    }

    pub(crate) fn fixed_port(&self) -> Option<u16> {
        self.port
    }

    pub(crate) fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// Checks everything and prepares what the guardian needs, with `{port}` filled in.
    pub(crate) fn plan(&self, port: u16) -> Result<Plan, Error> {
        let program = self.program_name();
        let signal = self.stop_signal.as_raw();
        if !(1..=MAX_SIGNAL).contains(&signal) {
            return Err(Error::InvalidSignal { program, signal });
        }
        if self.containment == Some(Containment::Subreaper) && !cfg!(target_os = "linux") {
            return Err(Error::Unsupported {
                program,
                what: "Containment::Subreaper (Linux only)",
            });
        }
        let port = port.to_string();
        let env = self.environment(&port);
        // NUL bytes first: they make any file lookup fail for the wrong reason.
        let mut argv = vec![self.c_string(self.program.as_bytes(), || "the program name".into())?];
        let path = self.resolve_program(&env)?;
        for (i, arg) in self.args.iter().enumerate() {
            let arg = substitute(arg.as_bytes(), &port);
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
        let cwd = match &self.current_dir {
            Some(dir) => Some(self.check_dir(dir)?),
            None => None,
        };
        let path = self.c_string(path.as_os_str().as_bytes(), || "the program path".into())?;
        let mut plan = Plan::new(path, argv, envp);
        plan.cwd = cwd;
        plan.stop_signal = signal;
        plan.grace = self.grace;
        plan.subreaper = self.containment != Some(Containment::ProcessGroup);
        plan.pidfd = !forced("no-pidfd");
        plan.listen = self.listen_choice();
        Ok(plan)
    }

    /// Whether the guardian watches `listen()` calls, and at what price (see `listen_events`).
    fn listen_choice(&self) -> ListenEvents {
        if forced("no-seccomp") || self.listen_events == Some(false) || !crate::sys::LISTEN_EVENTS {
            return ListenEvents::Off;
        }
        match (crate::sys::privileged(), self.listen_events) {
            (true, _) => ListenEvents::On {
                no_new_privs: false,
            },
            (false, Some(true)) => ListenEvents::On { no_new_privs: true },
            (false, _) => ListenEvents::Off,
        }
    }

    /// The server's environment: inherited unless cleared, with our changes, `{port}` filled in.
    fn environment(&self, port: &str) -> BTreeMap<OsString, OsString> {
        let mut env: BTreeMap<OsString, OsString> = if self.env_clear {
            BTreeMap::new()
        } else {
            std::env::vars_os().collect()
        };
        for (key, value) in &self.env {
            match value {
                Some(v) => env.insert(
                    key.clone(),
                    OsString::from_vec(substitute(v.as_bytes(), port)),
                ),
                None => env.remove(key),
            };
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

/// The highest valid signal number.
#[cfg(target_os = "linux")]
const MAX_SIGNAL: i32 = 64;
#[cfg(not(target_os = "linux"))]
const MAX_SIGNAL: i32 = 31;

/// Whether `PROCESS_FIXTURE_FORCE` (comma-separated) names this fallback (`no-pidfd`,
/// `no-zygote`, `no-seccomp`): kernel features are probed at run time, and each fallback can be
/// forced to test it (R8.3).
pub(crate) fn forced(fallback: &str) -> bool {
    std::env::var("PROCESS_FIXTURE_FORCE").is_ok_and(|v| v.split(',').any(|f| f.trim() == fallback))
}

/// Replaces every `{port}` in `text`.
fn substitute(text: &[u8], port: &str) -> Vec<u8> {
    const PLACEHOLDER: &[u8] = b"{port}";
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest
        .windows(PLACEHOLDER.len())
        .position(|w| w == PLACEHOLDER)
    {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(port.as_bytes());
        rest = &rest[i + PLACEHOLDER.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_placeholder_is_replaced_everywhere() {
        assert_eq!(
            substitute(b"--listen=127.0.0.1:{port}", "8080"),
            b"--listen=127.0.0.1:8080"
        );
        assert_eq!(substitute(b"{port}{port}", "1"), b"11");
        assert_eq!(substitute(b"{por}", "1"), b"{por}");
    }

    #[test]
    fn nul_bytes_are_named() {
        let mut b = Builder::new(OsStr::new("true"));
        b.arg("ok").arg("bad\0arg");
        match b.plan(1) {
            Err(Error::NulByte { what, .. }) => assert_eq!(what, "argument 2"),
            other => panic!("expected NulByte, got {:?}", other.err()),
        }
        let mut b = Builder::new(OsStr::new("true"));
        b.env("FOO", "x\0y");
        match b.plan(1) {
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
        let env = b.environment("99");
        assert_eq!(env.len(), 1);
        assert_eq!(env[OsStr::new("B")], "99");
    }

    #[test]
    fn program_lookup() {
        let b = Builder::new(OsStr::new("sh"));
        assert!(b
            .resolve_program(&b.environment("1"))
            .unwrap()
            .is_absolute());
        let b = Builder::new(OsStr::new("surely-no-such-program-here"));
        assert!(matches!(
            b.resolve_program(&b.environment("1")),
            Err(Error::ProgramNotFound { .. })
        ));
    }
}
