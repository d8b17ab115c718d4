//! Figures for BENCHMARKS.md, "Restart, socket activation, pause": with real processes.
//!
//! ```text
//! PF_BENCH_N=50 cargo bench -p fixtures-bin --bench resilience
//! ```
//!
//! - restart: `restart()` against `stop()` then `spawn()` of the same builder, interleaved,
//!   for `fixture-server --mode well-behaved` and `--mode forking-master --workers 4`;
//! - socket activation: a client that GETs in a loop from `activated-server` while the fixture
//!   restarts it 10 times a round: the longest wait of one request, how many were served,
//!   refused (must be 0), and cut off (accepted by a server the restart stopped before it
//!   answered);
//! - pause and resume: how long `pause()` (until every process is seen stopped) and `resume()`
//!   take with 1, 5 and 50 processes in the tree (`forking-master` with 0, 4 and 49 workers).
//!
//! Nothing is asserted about time: this prints figures.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fixtures_bin::summary;
use process_fixture::{Builder, ProcessFixture, Ready};

const SERVER: &str = env!("CARGO_BIN_EXE_fixture-server");
const ACTIVATED: &str = env!("CARGO_BIN_EXE_activated-server");
const SETTLE_MAX: Duration = Duration::from_secs(10);

fn rounds() -> usize {
    fixtures_bin::rounds(30)
}

fn server(mode: &str, workers: usize) -> Builder {
    let mut b = ProcessFixture::builder(SERVER);
    b.args(["--mode", mode, "--port", "{port}"])
        .ready(Ready::tcp());
    if workers > 0 {
        b.args(["--workers", &workers.to_string()]);
    }
    b
}

/// Waits until the fixture has `n` processes (a forking master's workers are forked after its
/// bind, so after readiness).
fn settle(fx: &ProcessFixture, n: usize) {
    let deadline = Instant::now() + SETTLE_MAX;
    while fx.processes().len() != n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} processes",
            fx.processes().len()
        );
        std::thread::yield_now();
    }
}

fn restart_vs_stop_spawn(label: &str, b: &Builder, processes: usize) {
    let (mut restart, mut respawn) = (Vec::new(), Vec::new());
    let mut fx = b.spawn().expect("spawn");
    settle(&fx, processes);
    for _ in 0..rounds() {
        let t = Instant::now();
        fx.restart().expect("restart");
        restart.push(t.elapsed());
        settle(&fx, processes);

        let t = Instant::now();
        fx.stop().expect("stop");
        fx = b.spawn().expect("spawn");
        respawn.push(t.elapsed());
        settle(&fx, processes);
    }
    println!("restart, {label}: restart()      {}", summary(&mut restart));
    println!("restart, {label}: stop()+spawn() {}", summary(&mut respawn));
}

/// One GET: `Ok(true)` served, `Ok(false)` cut off, `Err` refused.
fn get(port: u16) -> Result<bool, ()> {
    let mut s = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Err(()),
        Err(_) => return Ok(false),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut text = String::new();
    let ok = s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok() && s.read_to_string(&mut text).is_ok();
    Ok(ok && text.contains("activated pid="))
}

fn activation_during_restarts() {
    let mut b = ProcessFixture::builder(ACTIVATED);
    b.socket_activation().ready(Ready::stdout("^ready$"));
    let mut fx = b.spawn().expect("spawn");
    let port = fx.port();
    let done = AtomicBool::new(false);
    let waits = Mutex::new(Vec::new());
    let counts = Mutex::new((0usize, 0usize, 0usize));
    let restarts = rounds().max(10) / 10 * 10;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let outcome = get(port);
                let mut c = counts.lock().unwrap();
                match outcome {
                    Ok(true) => {
                        c.0 += 1;
                        waits.lock().unwrap().push(t.elapsed());
                    }
                    Ok(false) => c.2 += 1,
                    Err(()) => c.1 += 1,
                }
            }
        });
        for _ in 0..restarts {
            fx.restart().expect("restart");
        }
        done.store(true, Ordering::Relaxed);
    });
    let (served, refused, cut) = *counts.lock().unwrap();
    let mut waits = waits.into_inner().unwrap();
    println!(
        "socket activation, {restarts} restarts: served {served}, refused {refused}, cut off {cut}; \
         wait of a served request: {}",
        summary(&mut waits)
    );
}

fn pause_resume(processes: usize) {
    let mut fx = if processes == 1 {
        server("well-behaved", 0).spawn()
    } else {
        server("forking-master", processes - 1).spawn()
    }
    .expect("spawn");
    settle(&fx, processes);
    let (mut pause, mut resume) = (Vec::new(), Vec::new());
    for _ in 0..rounds() {
        let t = Instant::now();
        fx.pause().expect("pause");
        pause.push(t.elapsed());
        let t = Instant::now();
        fx.resume().expect("resume");
        resume.push(t.elapsed());
    }
    println!("pause,  {processes:2} processes: {}", summary(&mut pause));
    println!("resume, {processes:2} processes: {}", summary(&mut resume));
    fx.restart().expect("a paused-and-resumed server restarts");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; there is nothing to list
    }
    restart_vs_stop_spawn("well-behaved", &server("well-behaved", 0), 1);
    restart_vs_stop_spawn("forking-master, 4 workers", &server("forking-master", 4), 5);
    activation_during_restarts();
    for n in [1, 5, 50] {
        pause_resume(n);
    }
}
