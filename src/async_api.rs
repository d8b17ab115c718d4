//! The tokio API (feature `tokio`): the same synchronous core on tokio's blocking pool, so the
//! executor never blocks, on a `current_thread` runtime too.
//!
//! Nothing here watches a child: the guardian does, and the test side only reads a socket and
//! pipes: one watcher per leader, never a second one through `tokio::process` (two watchers
//! of one child race for its exit). A start future that is dropped does not leak: the blocking task finishes
//! the spawn and drops the fixture, which stops the server.
//!
//! `Drop` stays synchronous and bounded, and uses no runtime (no `block_on`, no
//! `Handle::current()`): dropping a fixture in an async test blocks that task's thread for the
//! stop (the server's exit time; up to the grace period and more for a server that ignores
//! SIGTERM). Prefer `fixture.stop_async().await` there.

use std::time::Duration;

use crate::{Builder, Error, ProcessFixture, SharedFixture, StopReport};

/// Runs `f` on tokio's blocking pool and gives back its result, or its panic.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: only when the runtime shuts down, which drops this future too.
            Err(e) => panic!("process-fixture: blocking task cancelled: {e}"),
        },
    }
}

impl Builder {
    /// [`Builder::spawn`] without blocking the executor: the spawn and the readiness wait run on
    /// tokio's blocking pool.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), process_fixture::Error> {
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "sleep 0.2; echo up; exec sleep 60"])
    ///     .ready(Ready::stdout("^up$"))
    ///     .spawn_async()
    ///     .await?;
    /// let report = srv.stop_async().await?;
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn spawn_async(&self) -> Result<ProcessFixture, Error> {
        let builder = self.clone();
        blocking(move || builder.spawn()).await
    }

    /// [`Builder::spawn_shared`] without blocking the executor: the rendezvous and the wait for
    /// the keeper's answer (the first user's: the server's start) run on tokio's blocking pool.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), process_fixture::Error> {
    /// use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "sleep 0.1; echo up; exec sleep 60"])
    ///     .ready(Ready::stdout("^up$"))
    ///     .spawn_shared_async("doc-async-sh")
    ///     .await?;
    /// assert!(srv.is_running());
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn spawn_shared_async(&self, key: &str) -> Result<SharedFixture, Error> {
        let (builder, key) = (self.clone(), key.to_owned());
        blocking(move || builder.spawn_shared(&key)).await
    }
}

impl ProcessFixture {
    /// [`ProcessFixture::stop`] without blocking the executor. Prefer it to dropping the fixture
    /// in an async test: `Drop` is synchronous, and a stop can take the whole grace period.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), process_fixture::Error> {
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn_async().await?;
    /// let report = srv.stop_async().await?;
    /// assert!(!report.escalated);
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn stop_async(self) -> Result<StopReport, Error> {
        blocking(move || self.stop()).await
    }

    /// [`ProcessFixture::restart`] without blocking the executor. If the future is dropped
    /// before it completes, the restart goes on on the blocking pool and the restarted server is
    /// stopped there; the fixture is then spent.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), process_fixture::Error> {
    /// # use process_fixture::{ProcessFixture, Ready};
    /// let mut srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo up; exec sleep 60"])
    ///     .ready(Ready::stdout("^up$"))
    ///     .spawn_async()
    ///     .await?;
    /// let port = srv.port();
    /// let report = srv.restart_async().await?;
    /// assert_eq!(srv.port(), port);
    /// assert!(!report.escalated);
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn restart_async(&mut self) -> Result<StopReport, Error> {
        let restarting = self.begin_restart();
        let (fresh, report) = blocking(move || restarting.run()).await?;
        *self = fresh;
        Ok(report)
    }

    /// [`ProcessFixture::wait_for_output`] without blocking the executor.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), process_fixture::Error> {
    /// # use process_fixture::{ProcessFixture, Ready};
    /// use std::time::Duration;
    /// let srv = ProcessFixture::builder("sh")
    ///     .args(["-c", "echo up; sleep 0.1; echo reloaded; exec sleep 60"])
    ///     .ready(Ready::stdout("^up$"))
    ///     .spawn_async()
    ///     .await?;
    /// let line = srv.wait_for_output_async("reloaded", Duration::from_secs(10)).await?;
    /// assert_eq!(line, "reloaded");
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn wait_for_output_async(
        &self,
        pattern: &str,
        timeout: Duration,
    ) -> Result<String, Error> {
        let search = self.output_search(pattern, timeout)?;
        blocking(move || search.run()).await
    }
}
