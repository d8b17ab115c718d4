//! The tokio API (feature `tokio`) never blocks the executor: on a `current_thread` runtime, a
//! task that ticks every millisecond keeps ticking through a 300 ms readiness wait, through a
//! wait for a later line, and through the stop of a server that needs its whole grace; on a
//! `multi_thread` runtime too. (Spawned with the blocking `spawn()`, the same ticker stalls for
//! the whole wait: the first test shows the difference, so that it can fail.)
#![cfg(target_os = "linux")]
// support reads /proc
// `#[tokio::test]` blocks on the runtime it makes; clippy.toml forbids that in the library.
#![allow(clippy::disallowed_methods)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use process_fixture::{Builder, ProcessFixture, Ready};

/// A task that counts 1 ms ticks until dropped.
struct Ticker {
    ticks: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    fn start() -> Ticker {
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = ticks.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ticker { ticks, task }
    }

    fn count(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `ready-server` ready after 300 ms (a line), then a later line after 100 ms more.
fn slow_server() -> Builder {
    let mut b = ProcessFixture::builder(support::bin("ready-server"));
    b.args([
        "--delay-ms",
        "300",
        "--say",
        "up",
        "--later",
        "reloaded",
        "--later-ms",
        "100",
    ])
    .ready(Ready::stdout("^up$"));
    b
}

/// A server that blocks SIGTERM: its stop waits the whole grace (300 ms), then SIGKILL.
fn term_blocking_server() -> Builder {
    let mut b = ProcessFixture::builder(support::server());
    b.args(["--mode", "block-term", "--port", "{port}"])
        .grace_period(Duration::from_millis(300));
    b
}

/// How many ticks happen during `f`, and how long it took.
async fn ticks_during<T>(
    ticker: &Ticker,
    f: impl std::future::Future<Output = T>,
) -> (T, u64, Duration) {
    let (before, t) = (ticker.count(), Instant::now());
    let value = f.await;
    (value, ticker.count() - before, t.elapsed())
}

/// The executor kept going: at least a third of the 1 ms ticks of `took` happened (a frozen one
/// ticks about once; a loaded 2-core machine may still lose some).
fn assert_kept_ticking(what: &str, ticks: u64, took: Duration) {
    let expected = took.as_millis() as u64;
    assert!(
        ticks * 3 >= expected && ticks >= 50,
        "{what}: {ticks} ticks in {took:?}: the executor was blocked"
    );
}

async fn exercise() {
    let ticker = Ticker::start();
    tokio::task::yield_now().await;
    let (fx, ticks, took) = ticks_during(&ticker, slow_server().spawn_async()).await;
    let fx = fx.expect("spawn_async");
    assert!(took >= Duration::from_millis(300), "ready after {took:?}");
    assert_kept_ticking("spawn_async", ticks, took);

    let (line, ticks, took) = ticks_during(
        &ticker,
        fx.wait_for_output_async("reloaded", Duration::from_secs(10)),
    )
    .await;
    assert_eq!(line.expect("the later line"), "reloaded");
    if took >= Duration::from_millis(60) {
        assert_kept_ticking("wait_for_output_async", ticks, took);
    }
    fx.stop_async().await.expect("stop_async");

    let fx = term_blocking_server()
        .spawn_async()
        .await
        .expect("spawn_async");
    let (report, ticks, took) = ticks_during(&ticker, fx.stop_async()).await;
    let report = report.expect("stop_async");
    assert!(report.escalated, "{report:?}");
    assert!(
        took >= Duration::from_millis(300),
        "the grace was not waited: {took:?}"
    );
    assert_kept_ticking("stop_async", ticks, took);

    let key = support::marker("async-shared");
    let (shared, ticks, took) = ticks_during(&ticker, slow_server().spawn_shared_async(&key)).await;
    let shared = shared.expect("spawn_shared_async");
    assert!(shared.started_here() && shared.is_running());
    assert_kept_ticking("spawn_shared_async", ticks, took);
}

#[tokio::test(flavor = "current_thread")]
async fn current_thread_runtime_keeps_ticking() {
    exercise().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_runtime_keeps_ticking() {
    exercise().await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_blocking_spawn_does_freeze_a_current_thread_runtime() {
    // The control: the same wait through the blocking API stalls the ticker. If this ever
    // passed with many ticks, the ticker would prove nothing above.
    let ticker = Ticker::start();
    tokio::task::yield_now().await;
    let (before, t) = (ticker.count(), Instant::now());
    let fx = slow_server().spawn().expect("spawn");
    let (ticks, took) = (ticker.count() - before, t.elapsed());
    assert!(took >= Duration::from_millis(300));
    assert!(
        ticks <= 2,
        "{ticks} ticks in {took:?} although the thread was blocked"
    );
    fx.stop_async().await.expect("stop");
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_start_future_leaves_nothing_behind() {
    let marker = support::marker("async-drop");
    let mut b = slow_server();
    b.env(support::MARKER_VAR, &marker);
    let start = b.spawn_async();
    // Give up on it half-way through the readiness wait: the blocking task finishes the spawn
    // and drops the fixture, which stops the server.
    let _ = tokio::time::timeout(Duration::from_millis(150), start).await;
    assert!(
        !support::marked_processes(&marker).is_empty(),
        "the server should be starting when the future is dropped"
    );
    let gone = support::wait_until(Duration::from_secs(10), || {
        support::marked_processes(&marker).is_empty()
    });
    assert!(gone, "left: {:?}", support::marked_processes(&marker));
}
