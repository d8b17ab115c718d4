//! [`Redis`]: a Redis server with no persistence.

use crate::builder::Builder;
use crate::error::Error;
use crate::ready::Ready;

use super::handle::Server;
use super::lookup;

/// A Redis server on a port of its own, listening on 127.0.0.1 only, with no persistence (no
/// RDB snapshots, no AOF) and its working directory in the fixture's. `redis-server` from
/// `$REDIS_SERVER`, `PATH` or `/usr/bin`.
///
/// ```
/// use process_fixture::servers::Redis;
/// # if process_fixture::servers::Redis::new().builder().is_err() { return Ok(()); }
/// let redis = Redis::new().spawn()?;
/// assert!(redis.url().starts_with("redis://127.0.0.1:"));
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Redis {
    args: Vec<String>,
}

impl Redis {
    /// The defaults above.
    pub fn new() -> Redis {
        Redis::default()
    }

    /// One server for the whole run ([`Builder::spawn_shared`]), with the defaults.
    pub fn shared() -> Result<Server, Error> {
        Redis::new().spawn_shared()
    }

    /// More `redis-server` arguments (`--maxmemory 64mb`).
    pub fn args<I, S>(mut self, args: I) -> Redis
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The builder this makes: change anything before spawning it yourself.
    pub fn builder(&self) -> Result<Builder, Error> {
        let bin = lookup::program(
            "redis-server",
            "REDIS_SERVER",
            &["/usr/bin", "/usr/local/bin"],
            "Redis (apt-get install redis-server, brew install redis)",
        )?;
        let mut b = Builder::new(bin);
        b.args(["--port", "{port}", "--bind", "127.0.0.1", "--dir", "{dir}"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.args)
            .ready(Ready::stdout("Ready to accept connections"));
        Ok(b)
    }

    /// A server for this test alone.
    pub fn spawn(&self) -> Result<Server, Error> {
        Ok(Server::own(self.builder()?.spawn()?, "redis://"))
    }

    /// The run's server for this configuration.
    pub fn spawn_shared(&self) -> Result<Server, Error> {
        let key = format!("process-fixture-redis {}", self.args.join(" "));
        Ok(Server::shared_of(
            self.builder()?.spawn_shared(&key)?,
            "redis://",
        ))
    }
}
