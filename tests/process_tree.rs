//! `ProcessFixture::processes()`: the fixture's process tree, leader first, each process with its
//! parent and command line.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use std::time::Duration;

use process_fixture::ProcessFixture;

#[test]
fn processes_lists_the_tree_and_the_report_counts_it() {
    let fx = ProcessFixture::builder(support::server())
        .args([
            "--mode",
            "forking-master",
            "--workers",
            "4",
            "--port",
            "{port}",
        ])
        .spawn()
        .expect("spawn");
    let leader = fx.pid();
    let workers = || fx.processes().iter().filter(|p| p.parent == leader).count();
    // The master may say it is ready before its last fork.
    assert!(support::wait_until(Duration::from_secs(10), || workers() == 4));
    let tree = fx.processes();
    assert_eq!(tree.first().map(|p| p.pid), Some(leader), "{tree:?}");
    let workers: Vec<_> = tree.iter().filter(|p| p.parent == leader).collect();
    assert_eq!(workers.len(), 4, "{tree:?}");
    assert!(tree.iter().all(|p| !p.command.is_empty()), "{tree:?}");
    let report = fx.stop().expect("stop");
    // Counted by the guardian when the stop began: the master and its 4 workers.
    assert_eq!(report.processes_at_stop, Some(5), "{report:?}");
}
