//! A fixture's configuration, as the builder collects it and `spawn` reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::output::Echo;
use crate::placeholders::{find, named_ports};
use crate::ready::Ready;
use crate::report::Containment;
use crate::signal::Signal;

/// How long `spawn` waits for readiness by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the leader gets to exit after the stop signal by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// How long a shared server outlives its last user by default
/// ([`Builder::linger`](crate::Builder::linger)): longer than the gap between one test process's
/// end and the next one's start under cargo-nextest on a loaded machine, short enough that a
/// run leaves nothing behind a second after its last test.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(1000);
/// Echo every server line to the test's output when set (to anything but `0`), as
/// [`Builder::echo_output`](crate::Builder::echo_output)`(true)` does for one fixture.
///
/// ```sh
/// PROCESS_FIXTURE_ECHO=1 cargo test my_test -- --nocapture   # every line, live, prefixed "[my-server] "
/// ```
pub const ECHO_ENV: &str = "PROCESS_FIXTURE_ECHO";

/// Everything a [`Builder`](crate::Builder) was told.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    /// Changes to the inherited environment: `Some` sets, `None` removes.
    pub(crate) env: BTreeMap<OsString, Option<OsString>>,
    pub(crate) env_clear: bool,
    pub(crate) current_dir: Option<PathBuf>,
    pub(crate) port: Option<u16>,
    pub(crate) ready: Ready,
    pub(crate) ready_timeout: Duration,
    pub(crate) grace: Duration,
    pub(crate) stop_signal: Signal,
    pub(crate) containment: Option<Containment>,
    pub(crate) listen_events: Option<bool>,
    pub(crate) files: Vec<(PathBuf, Vec<u8>)>,
    /// Directory trees copied into the fixture's directory: (from, to inside it).
    pub(crate) copies: Vec<(PathBuf, PathBuf)>,
    pub(crate) temp_dir: bool,
    /// Where the fixture's directory is made (default: `std::env::temp_dir()`).
    pub(crate) dir_in: Option<PathBuf>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) user: Option<String>,
    pub(crate) echo: Option<bool>,
    /// The echo's prefix instead of the program's name.
    pub(crate) echo_prefix: Option<String>,
    /// Echo every line to stderr.
    pub(crate) echo_to_stderr: bool,
    /// Whether the server may exit on its own before the stop
    /// ([`Builder::allow_early_exit`](crate::Builder::allow_early_exit)).
    pub(crate) allow_early_exit: bool,
    /// The fixture listens on its ports itself and passes the sockets to the server
    /// ([`Builder::socket_activation`](crate::Builder::socket_activation)).
    pub(crate) socket_activation: bool,
    /// The server writes to the test process's own stdout and stderr, uncaptured.
    pub(crate) inherit_output: bool,
    /// A shared server: how long it outlives its last user.
    pub(crate) linger: Duration,
}

impl Config {
    pub(crate) fn new(program: &OsStr) -> Config {
        Config {
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
            copies: Vec::new(),
            temp_dir: false,
            dir_in: None,
            uid: None,
            gid: None,
            user: None,
            echo: None,
            echo_prefix: None,
            echo_to_stderr: false,
            allow_early_exit: false,
            socket_activation: false,
            inherit_output: false,
            linger: DEFAULT_LINGER,
        }
    }

    pub(crate) fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    pub(crate) fn echo(&self) -> Option<Echo> {
        let from_env = || std::env::var_os(ECHO_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        let on = self.echo.unwrap_or_else(from_env);
        on.then(|| {
            let name = Path::new(&self.program)
                .file_name()
                .unwrap_or(&self.program);
            Echo {
                prefix: (self.echo_prefix.clone())
                    .unwrap_or_else(|| name.to_string_lossy().into_owned()),
                to_stderr: self.echo_to_stderr,
            }
        })
    }

    /// Every text placeholders may appear in.
    pub(crate) fn texts(&self) -> impl Iterator<Item = &[u8]> {
        let args = self.args.iter().map(|a| a.as_bytes());
        let env = self.env.values().flatten().map(|v| v.as_bytes());
        let files = self
            .files
            .iter()
            .flat_map(|(name, body)| [name.as_os_str().as_bytes(), body.as_slice()]);
        let dir = self.current_dir.iter().map(|d| d.as_os_str().as_bytes());
        args.chain(env).chain(files).chain(dir)
    }

    /// The NAMEs of every `{port:NAME}` and `{fd:NAME}`, sorted (the order of the sockets passed
    /// with socket activation, after the fixture's own port).
    pub(crate) fn port_names(&self) -> BTreeSet<String> {
        self.texts().flat_map(named_ports).collect()
    }

    /// Whether the fixture gets a directory: `{dir}` somewhere, a file, or asked for.
    pub(crate) fn wants_dir(&self) -> bool {
        let mentions = |t: &[u8]| find(t, b"{dir}").is_some();
        self.temp_dir
            || !self.files.is_empty()
            || !self.copies.is_empty()
            || self.texts().any(mentions)
            || self
                .ready
                .paths()
                .any(|p| mentions(p.as_os_str().as_bytes()))
    }

    /// Whether the server can know its port: `{port}` or `{fd}` appears anywhere it could read
    /// it, or it gets its socket by socket activation.
    pub(crate) fn mentions_port(&self) -> bool {
        self.socket_activation
            || self
                .texts()
                .any(|t| find(t, b"{port}").is_some() || find(t, b"{fd}").is_some())
    }
}
