//! Figures for BENCHMARKS.md, "Shared servers": what `spawn_shared` costs.
//!
//! ```text
//! PF_BENCH_N=200 cargo bench -p fixtures-bin --bench shared
//! ```
//!
//! - attach: `spawn_shared` of a key whose server runs (a handle is held meanwhile), then drop:
//!   the rendezvous lock, a connect, the configuration sent and compared, the answer;
//! - first start: `spawn_shared` of a new key (a keeper is started, then the server), against
//!   `spawn()` of the same builder; `fixture-server --mode well-behaved`, `Ready::tcp()`.
//!
//! Nothing is asserted about time: this prints figures.

use std::time::{Duration, Instant};

use fixtures_bin::summary;
use process_fixture::{Builder, ProcessFixture, Ready};

const SERVER: &str = env!("CARGO_BIN_EXE_fixture-server");

fn rounds() -> usize {
    fixtures_bin::rounds(100)
}

fn server() -> Builder {
    let mut b = ProcessFixture::builder(SERVER);
    b.args(["--mode", "well-behaved", "--port", "{port}"])
        .ready(Ready::tcp())
        .linger(Duration::ZERO);
    b
}

fn attach() {
    let key = format!("bench-attach-{}", std::process::id());
    let b = server();
    let held = b.spawn_shared(&key).expect("spawn_shared");
    let mut samples = Vec::new();
    for _ in 0..rounds() * 10 {
        let t = Instant::now();
        let again = b.spawn_shared(&key).expect("attach");
        samples.push(t.elapsed());
        assert_eq!(again.pid(), held.pid());
    }
    println!(
        "attach to a running shared server: {}",
        summary(&mut samples)
    );
}

fn first_start() {
    let b = server();
    let (mut shared, mut own) = (Vec::new(), Vec::new());
    for round in 0..rounds() {
        let key = format!("bench-first-{}-{round}", std::process::id());
        let t = Instant::now();
        let srv = b.spawn_shared(&key).expect("spawn_shared");
        shared.push(t.elapsed());
        assert!(srv.started_here());
        drop(srv);
        let t = Instant::now();
        let fx = b.spawn().expect("spawn");
        own.push(t.elapsed());
        fx.stop().expect("stop");
    }
    println!(
        "first start, spawn_shared (keeper + server): {}",
        summary(&mut shared)
    );
    println!(
        "first start, spawn (for comparison):        {}",
        summary(&mut own)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches: nothing to list
    }
    attach();
    first_start();
}
