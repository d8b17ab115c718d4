//! Reuse safety (docs/design.md, R1.1–R1.3): while any process of the fixture lives, the leader is
//! kept unreaped, so its pid, which is the group id, cannot be handed to a stranger while group
//! signals are still being sent. Seen from outside: during the stop of a server whose workers
//! outlive the leader, the leader is a zombie (`Z`) whose parent is the guardian; only once the
//! workers are gone is it reaped, and then nothing of the group is left, not even a zombie.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use std::time::Duration;

use process_fixture::{ProcessFixture, Ready};
use support::Proc;

const EVENTUALLY: Duration = Duration::from_secs(10);

#[test]
fn the_leader_stays_an_unreaped_zombie_until_its_workers_are_gone() {
    // The master exits 0 on SIGTERM at once; its workers block SIGTERM and live on until the
    // SIGKILL that follows the group grace, min(grace, 1 s) = 1 s. (Workers that *ignore* it
    // would get no grace at all: they could never act on it.)
    let fx = ProcessFixture::builder(support::server())
        .args([
            "--mode",
            "workers-block-term",
            "--workers",
            "2",
            "--port",
            "{port}",
        ])
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY)
        .grace_period(Duration::from_secs(2))
        .spawn()
        .expect("spawn");
    let (leader, guardian, port) = (fx.pid(), fx.guardian_pid(), fx.port());
    let enough = || support::live_members(leader).len() >= 3;
    assert!(
        support::wait_until(EVENTUALLY, enough),
        "master and 2 workers"
    );
    let workers: Vec<Proc> = support::live_members(leader)
        .into_iter()
        .filter(|p| p.pid != leader)
        .collect();

    let stopping = std::thread::spawn(move || fx.stop());
    let held = support::wait_until(EVENTUALLY, || {
        let zombie_leader =
            Proc::read(leader).is_some_and(|p| p.state == 'Z' && p.ppid == guardian);
        zombie_leader && workers.iter().any(Proc::still_live)
    });
    let report = stopping.join().expect("stop panicked").expect("stop");

    assert!(
        held,
        "the leader was not kept as a zombie while its workers lived"
    );
    assert!(report.escalated, "{report:?}");
    assert_eq!(
        report.exit_status.and_then(|s| s.code()),
        Some(0),
        "{report:?}"
    );
    // Reaped last: after the stop, the pid is free and the group has no member, live or zombie.
    assert!(Proc::read(leader).is_none(), "the leader was not reaped");
    support::assert_nothing_left(leader, &workers, port);
}
