//! When a fixture is done, its guardian is gone too: not running and not a zombie. After
//! `stop()`, and for a fixture in a `static` once the test process's exit is seen; its directory
//! is removed as well, also when the test process or the guardian is SIGKILLed. Real processes,
//! real signals; pids are compared with their start time, so a recycled pid is never taken for
//! the guardian.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use process_fixture::{ProcessFixture, Ready};
use support::holder::{field, number};
use support::Proc;

fn spawn_server() -> ProcessFixture {
    ProcessFixture::builder(support::server())
        .args(["--mode", "well-behaved", "--port", "{port}"])
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_secs(30))
        .spawn()
        .expect("spawn")
}

#[test]
fn stop_returns_once_the_guardian_is_gone() {
    const CYCLES: usize = 100;
    let mut left = Vec::new();
    for i in 0..CYCLES {
        let fx = spawn_server();
        let guardian =
            Proc::read(fx.guardian_pid()).expect("the guardian runs while its fixture does");
        fx.stop().expect("stop");
        if guardian.still_exists() {
            left.push((i, Proc::read(guardian.pid)));
        }
    }
    assert!(
        left.is_empty(),
        "{} of {CYCLES} stops returned while the guardian still existed: {left:?}",
        left.len()
    );
}

fn holder(then: &str) -> (Child, String) {
    support::holder::start("well-behaved", then)
}

#[test]
fn a_static_fixture_and_its_guardian_are_gone_when_the_exit_is_seen() {
    let (mut child, line) = holder("exit-static");
    let server = Proc::read(number(&line, "pid")).expect("the server runs");
    let guardian = Proc::read(number(&line, "guardian")).expect("the guardian runs");
    let dir = PathBuf::from(field(&line, "dir"));
    assert!(dir.is_dir(), "{dir:?}");
    writeln!(child.stdin.take().unwrap(), "go").expect("go");
    let status = child.wait().expect("waiting for the holder");
    let (server_left, guardian_left) = (server.still_exists(), guardian.still_exists());
    let dir_left = dir.exists();
    assert!(status.success(), "holder: {status:?}");
    assert!(
        !server_left && !guardian_left && !dir_left,
        "after the holder's exit was seen: server still exists: {server_left} ({:?}), \
         guardian still exists: {guardian_left} ({:?}), directory still exists: {dir_left}",
        Proc::read(server.pid),
        Proc::read(guardian.pid)
    );
}

/// How long a removal after a death may take: the guardian (or the zygote) has to notice the
/// death and stop the server first.
const REMOVAL: Duration = Duration::from_secs(20);

fn forked_guardians() -> bool {
    std::env::var("PROCESS_FIXTURE_FORCE").is_ok_and(|v| v.contains("no-zygote"))
}

#[test]
fn the_directory_is_removed_when_the_test_process_is_killed() {
    let (mut child, line) = holder("wait");
    let dir = PathBuf::from(field(&line, "dir"));
    assert!(dir.is_dir(), "{dir:?}");
    child.kill().expect("SIGKILL the holder"); // our unreaped child: its pid is pinned
    child.wait().expect("reaping the holder");
    assert!(
        support::wait_until(REMOVAL, || !dir.exists()),
        "{dir:?} still exists {REMOVAL:?} after the test process was SIGKILLed"
    );
}

#[test]
fn the_directory_is_removed_when_the_guardian_is_killed() {
    let fx = ProcessFixture::builder(support::server())
        .args(["--mode", "well-behaved", "--port", "{port}"])
        .ready(Ready::tcp())
        .temp_dir()
        .spawn()
        .expect("spawn");
    let dir = fx.dir().expect("a temp dir").to_path_buf();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/file"), "x").unwrap();
    let guardian = Proc::read(fx.guardian_pid()).expect("the guardian runs");
    // SAFETY: a plain syscall. The guardian cannot have been reaped (it only exits once told to
    // stop), so its pid is still its own.
    assert_eq!(unsafe { libc::kill(guardian.pid as i32, libc::SIGKILL) }, 0);
    let mut fx = Some(fx);
    if forked_guardians() {
        // No zygote: the test side, which reaps the forked guardian, removes it on stop.
        let _ = fx.take().map(ProcessFixture::stop);
    }
    assert!(
        support::wait_until(REMOVAL, || !dir.exists()),
        "{dir:?} still exists {REMOVAL:?} after the guardian was SIGKILLed"
    );
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(fx)));
}
