//! Soak: many spawn/stop cycles of a server with workers leave nothing behind and leak no fd
//! (docs/design.md, R7.2; and R2.1, the group is empty once `stop` returns).
//!
//! Each cycle spawns `fixture-server --mode forking-master --workers 2` (the master exits on
//! SIGTERM and orphans its workers, which share the listening socket), records its processes,
//! stops it and checks at once that its process group is empty (not even a zombie), that none of
//! its processes exists any more, that its guardian was reaped and that its port binds again. At
//! the end, no process carrying the soak's environment marker exists, every process recorded in
//! any cycle is gone, and the test process's open fd count is back to the baseline measured
//! before the loop (after one warm-up cycle, so that one-time lazy initialisation is not counted
//! as a leak).
//!
//! Sequential: `PF_SOAK_CYCLES` cycles (default 200, about 3 s on a loaded 2-core machine, so it
//! always runs) and a 30-cycle version. Parallel: 4 threads × 25 cycles. The cycle rate and the
//! fd counts are printed (`--nocapture`); nothing is asserted about timing.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use support::{marked_processes, marker, MARKER_VAR};

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use process_fixture::{ProcessFixture, Ready};
use support::Proc;

const EVENTUALLY: Duration = Duration::from_secs(30);

/// The fd count is per process: with `cargo test` the soaks of this binary run on parallel
/// threads of one process, so they take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One spawn/stop cycle of a forking master with 2 workers, checked. Returns its processes
/// (master, workers, guardian).
fn cycle(server: &Path, marker: &str, label: &str) -> Vec<Proc> {
    let fx = ProcessFixture::builder(server)
        .args([
            "--mode",
            "forking-master",
            "--workers",
            "2",
            "--port",
            "{port}",
        ])
        .env(MARKER_VAR, marker)
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY)
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: spawn failed: {e}"));
    let (pgid, port) = (fx.pgid(), fx.port());
    let guardian = Proc::read(fx.guardian_pid())
        .unwrap_or_else(|| panic!("{label}: the guardian is not in /proc"));
    // Readiness is a TCP connect: the master may not have forked both workers yet.
    let forked = support::wait_until(EVENTUALLY, || support::live_members(pgid).len() >= 3);
    let tree = support::live_members(pgid);
    assert!(forked, "{label}: expected master + 2 workers, got {tree:?}");
    let report = fx
        .stop()
        .unwrap_or_else(|e| panic!("{label}: stop failed: {e}"));
    let members = support::group_members(pgid);
    assert!(
        members.is_empty(),
        "{label}: group {pgid} not empty after stop: {members:?} ({report:?})"
    );
    for p in &tree {
        assert!(
            !p.still_exists(),
            "{label}: {p:?} survived the stop ({report:?})"
        );
    }
    assert!(
        support::port_is_free(port),
        "{label}: port {port} still in use after the stop ({report:?})"
    );
    // The guardian exits right after its report and is reaped by its parent (the zygote, or
    // the test process at its next spawn): no zombie piles up. `stop` does not wait for that.
    assert!(
        support::wait_until(EVENTUALLY, || !guardian.still_exists()),
        "{label}: the guardian {guardian:?} was not reaped"
    );
    let mut tree = tree;
    tree.push(guardian);
    tree
}

/// Runs `threads` × `per_thread` checked cycles, then the end-of-soak checks.
fn soak(name: &str, threads: usize, per_thread: usize) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = support::server();
    let marker = marker(name);
    let mut recorded = cycle(&server, &marker, &format!("{name} warm-up"));
    let fd_baseline = support::open_fds();

    let started = Instant::now();
    let per_thread_trees: Vec<Vec<Proc>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (server, marker) = (&server, &marker);
                s.spawn(move || {
                    let mut trees = Vec::new();
                    for i in 0..per_thread {
                        let label = format!("{name} thread {t} cycle {i}");
                        trees.extend(cycle(server, marker, &label));
                    }
                    trees
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let elapsed = started.elapsed();
    recorded.extend(per_thread_trees.into_iter().flatten());

    let leftovers = marked_processes(&marker);
    assert!(
        leftovers.is_empty(),
        "{name}: processes of the soak still run: {leftovers:?}"
    );
    let survivors: Vec<&Proc> = recorded.iter().filter(|p| p.still_exists()).collect();
    assert!(
        survivors.is_empty(),
        "{name}: recorded processes still exist: {survivors:?}"
    );
    // Reader threads may close their ends a moment after `stop` returns: let the count settle.
    support::wait_until(Duration::from_secs(1), || {
        support::open_fds() == fd_baseline
    });
    let fd_end = support::open_fds();
    let cycles = threads * per_thread;
    eprintln!(
        "{name}: {cycles} cycles ({threads} thread(s)) in {elapsed:.2?}: {:.1} cycles/s; \
         {} processes checked; open fds: baseline {fd_baseline}, end {fd_end}",
        cycles as f64 / elapsed.as_secs_f64(),
        recorded.len(),
    );
    assert_eq!(
        fd_end, fd_baseline,
        "{name}: R7.2: the open fd count did not return to its baseline"
    );
}

fn configured_cycles() -> usize {
    match std::env::var("PF_SOAK_CYCLES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("PF_SOAK_CYCLES={v:?} is not a number")),
        Err(_) => 200,
    }
}

#[test]
fn soak_30_cycles() {
    soak("soak_30_cycles", 1, 30);
}

#[test]
fn soak_full_cycles() {
    soak("soak_full_cycles", 1, configured_cycles());
}

#[test]
fn soak_parallel_4_threads_x_25_cycles() {
    soak("soak_parallel_4x25", 4, 25);
}
