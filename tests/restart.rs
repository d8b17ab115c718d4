//! `restart()`: the full stop of the old tree, then the same configuration started again on the
//! same ports (reserved by the fixture the whole time: no other fixture of any process gets
//! them in between) and the same directory with its files; a server that does not come back
//! fails like a spawn and leaves nothing; a paused fixture restarts too.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use process_fixture::{Error, ProcessFixture, Ready};
use support::ready_server::{get, local, ready_server};
use support::{marked_processes, marker, Proc, MARKER_VAR, SOON};

fn two_port_server() -> process_fixture::Builder {
    let mut b = ProcessFixture::builder(ready_server());
    // The admin port first: ready (on {port}) then means both listen.
    b.args([
        "--listen",
        "127.0.0.1:{port:admin}",
        "--listen",
        "127.0.0.1:{port}",
    ])
    .temp_dir()
    .ready(Ready::http("/"))
    .ready_timeout(Duration::from_secs(30));
    b
}

#[test]
fn a_restart_keeps_the_ports_and_the_directory_and_stops_the_old_tree() {
    let mut fx = two_port_server().spawn().expect("spawn");
    let (port, admin, first) = (fx.port(), fx.named_port("admin"), fx.pid());
    let old = Proc::read(first).expect("the first leader runs");
    let data = fx.dir().expect("a directory").join("data");
    std::fs::write(&data, "kept").unwrap();

    for round in 1..=3 {
        let report = fx.restart().expect("restart");
        assert!(!report.escalated && !report.exited_before_stop, "{report}");
        assert_eq!((fx.port(), fx.named_port("admin")), (port, admin));
        assert_ne!(fx.pid(), first, "round {round}: a new leader");
        assert!(!old.still_exists(), "the old leader is gone: {old:?}");
        assert_eq!(std::fs::read_to_string(&data).unwrap(), "kept");
        assert!(get(local(port)).contains("conn="), "serves on {port}");
        assert!(get(local(admin)).contains("conn="), "serves on {admin}");
        assert!(
            fx.stdout().starts_with("starting"),
            "the output starts afresh: {:?}",
            fx.stdout()
        );
    }
    let dir = fx.dir().unwrap().to_path_buf();
    fx.stop().expect("stop");
    assert!(!dir.exists(), "removed after the last stop: {dir:?}");
}

#[test]
fn no_other_fixture_gets_the_port_while_the_fixture_restarts() {
    let mut fx = two_port_server().spawn().expect("spawn");
    let port = fx.port();
    let done = AtomicBool::new(false);
    let (tries, taken) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let other = ProcessFixture::builder(ready_server())
                    .args(["--listen", "127.0.0.1:{port}"])
                    .port(port)
                    .spawn();
                tries.fetch_add(1, Ordering::Relaxed);
                match other {
                    Err(Error::PortInUse { .. }) => {}
                    Err(e) => panic!("expected PortInUse, got {e}"),
                    Ok(_) => {
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        for _ in 0..5 {
            fx.restart().expect("restart");
        }
        done.store(true, Ordering::Relaxed);
    });
    assert!(tries.load(Ordering::Relaxed) > 0);
    assert_eq!(
        taken.load(Ordering::Relaxed),
        0,
        "another fixture got port {port} during a restart"
    );
}

#[test]
fn a_server_that_does_not_come_back_fails_like_a_spawn_and_leaves_nothing() {
    let tag = marker("restart-fails");
    let mut fx = ProcessFixture::builder(ready_server())
        .args(["--once", "{dir}/ran", "--listen", "127.0.0.1:{port}"])
        .env(MARKER_VAR, &tag)
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_secs(30))
        .spawn()
        .expect("the first start");
    let port = fx.port();
    match fx.restart() {
        Err(Error::ExitedBeforeReady { status, output, .. }) => {
            assert_eq!(status.code(), Some(4));
            assert!(output.stderr.contains("already ran"), "{output:?}");
        }
        other => panic!("expected ExitedBeforeReady, got {other:?}"),
    }
    assert!(
        support::wait_until(SOON, || marked_processes(&tag).is_empty()),
        "left running: {:?}",
        marked_processes(&tag)
    );
    assert!(support::port_is_free(port));
    drop(fx); // spent: nothing more to do, no panic
}

#[test]
fn a_paused_fixture_restarts_running() {
    let mut fx = two_port_server().spawn().expect("spawn");
    let first = fx.pid();
    fx.pause().expect("pause");
    let report = fx.restart().expect("restart");
    assert!(!report.escalated, "{report}");
    assert!(!fx.is_paused());
    assert_ne!(fx.pid(), first, "a new server");
    assert!(get(local(fx.port())).contains("conn="), "that serves");
}

/// A test process SIGKILLed at any moment of a restart (during the stop of the old tree, the
/// start of the new one, or its readiness wait) leaves nothing: every process that carries
/// the holder's marker (servers, workers, guardians, the zygote) is gone soon after.
#[test]
fn a_test_process_killed_in_the_middle_of_a_restart_leaves_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    for restarts in [0, 1, 3] {
        let tag = marker("killed-mid-restart");
        let mut holder = Command::new(support::bin("fixture-holder"))
            .arg("--server")
            .arg(support::server())
            .args(["--mode", "forking-master", "--then", "restart-loop"])
            .env(MARKER_VAR, &tag)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting fixture-holder");
        let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
        for _ in 0..=restarts {
            lines.next().expect("a line").expect("reading the holder");
        }
        // Between the stop of one tree and the start of the next, only the holder (and, with a
        // zygote, that) may be there: wait for a moment when more is, so the kill is not vacuous.
        let started = support::wait_until(SOON, || marked_processes(&tag).len() >= 2);
        holder.kill().expect("SIGKILL the holder");
        holder.wait().expect("reaping the holder");
        assert!(started, "the holder never had a server");
        assert!(
            support::wait_until(SOON, || marked_processes(&tag).is_empty()),
            "after {restarts} restarts: left {:?}",
            marked_processes(&tag)
                .iter()
                .map(|&p| (p, support::comm(p)))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_forking_server_restarts_without_its_old_workers() {
    let mut fx =
        support::fixture_server::server("forking-master", &["--workers", "2"], Ready::tcp())
            .spawn()
            .expect("spawn");
    assert!(support::wait_until(SOON, || fx.processes().len() == 3));
    let old: Vec<Proc> = fx
        .processes()
        .iter()
        .filter_map(|p| Proc::read(p.pid))
        .collect();
    let report = fx.restart().expect("restart");
    assert_eq!(report.processes_at_stop, Some(3), "{report}");
    for p in &old {
        assert!(!p.still_exists(), "{p:?} survived the restart");
    }
    assert!(support::wait_until(SOON, || fx.processes().len() == 3));
}

/// `Ready::file` after a restart waits for the new server to write the file: the one the old
/// server wrote is not taken for readiness.
#[test]
fn a_file_probe_after_a_restart_waits_for_the_new_file() {
    use std::os::unix::fs::MetadataExt;
    let mut fx = ProcessFixture::builder(ready_server())
        .args(["--delay-ms", "300", "--file", "{dir}/ready.flag"])
        .ready(Ready::file("{dir}/ready.flag"))
        .ready_timeout(Duration::from_secs(30))
        .spawn()
        .expect("spawn");
    let flag = fx.dir().expect("a directory").join("ready.flag");
    let identity = |m: std::fs::Metadata| (m.ino(), m.mtime(), m.mtime_nsec());
    let before = identity(std::fs::metadata(&flag).expect("the first server's file"));
    fx.restart().expect("restart");
    let after = identity(std::fs::metadata(&flag).expect("the new server's file"));
    assert_ne!(before, after, "ready on the old server's file");
}
