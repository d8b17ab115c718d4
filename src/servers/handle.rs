//! [`Server`]: a ready-made server, running for this test alone or shared by the run.

use std::fmt;
use std::path::Path;

use crate::fixture::ProcessFixture;
use crate::shared::SharedFixture;

/// A running ready-made server: a fixture of this test's own ([`Server::fixture`]), or a
/// handle on the one the run shares ([`Server::shared`]). Dropping it stops an own server, or
/// detaches from a shared one.
pub struct Server {
    handle: Handle,
    scheme: &'static str,
}

enum Handle {
    Own(Box<ProcessFixture>),
    Shared(SharedFixture),
}

impl Server {
    pub(super) fn own(fixture: ProcessFixture, scheme: &'static str) -> Server {
        Server {
            handle: Handle::Own(Box::new(fixture)),
            scheme,
        }
    }

    pub(super) fn shared_of(shared: SharedFixture, scheme: &'static str) -> Server {
        Server {
            handle: Handle::Shared(shared),
            scheme,
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        match &self.handle {
            Handle::Own(f) => f.port(),
            Handle::Shared(s) => s.port(),
        }
    }

    /// `<scheme>://127.0.0.1:<port>`: `redis://…`, `http://…`, `postgres://postgres@…`.
    pub fn url(&self) -> String {
        format!("{}127.0.0.1:{}", self.scheme, self.port())
    }

    /// Its directory (data, config, sockets), removed after its stop.
    pub fn dir(&self) -> Option<&Path> {
        match &self.handle {
            Handle::Own(f) => f.dir(),
            Handle::Shared(s) => s.dir(),
        }
    }

    /// The leader's pid.
    pub fn pid(&self) -> u32 {
        match &self.handle {
            Handle::Own(f) => f.pid(),
            Handle::Shared(s) => s.pid(),
        }
    }

    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        match &self.handle {
            Handle::Own(f) => f.is_running(),
            Handle::Shared(s) => s.is_running(),
        }
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        match &self.handle {
            Handle::Own(f) => f.stdout(),
            Handle::Shared(s) => s.stdout(),
        }
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        match &self.handle {
            Handle::Own(f) => f.stderr(),
            Handle::Shared(s) => s.stderr(),
        }
    }

    /// The fixture, when this server is this test's own.
    pub fn fixture(&self) -> Option<&ProcessFixture> {
        match &self.handle {
            Handle::Own(f) => Some(f),
            Handle::Shared(_) => None,
        }
    }

    /// The shared handle, when this server is the run's.
    pub fn shared(&self) -> Option<&SharedFixture> {
        match &self.handle {
            Handle::Own(_) => None,
            Handle::Shared(s) => Some(s),
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url())
            .field("pid", &self.pid())
            .field("shared", &self.shared().is_some())
            .finish()
    }
}
