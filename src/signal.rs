//! [`Signal`]: the signal a server is stopped with.

use std::fmt;

/// A signal to stop the server with (see [`Builder::stop_signal`](crate::Builder::stop_signal)).
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

    /// Any signal by number; checked at spawn ([`Error::InvalidSignal`](crate::Error::InvalidSignal)).
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

impl fmt::Display for Signal {
    /// The signal's name (`SIGINT`), or its number where it has no name here.
    ///
    /// ```
    /// assert_eq!(process_fixture::Signal::INT.to_string(), "SIGINT");
    /// assert_eq!(process_fixture::Signal::from_raw(40).to_string(), "signal 40");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGQUIT, "SIGQUIT"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGUSR1, "SIGUSR1"),
            (libc::SIGUSR2, "SIGUSR2"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGWINCH, "SIGWINCH"),
        ];
        match named.iter().find(|(n, _)| *n == self.0) {
            Some((_, name)) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}
