//! R8.2: the guardian, a fork of the test process without exec, never allocates. `alloc-trap`
//! (fixtures-bin) has a global allocator that kills any forked child that allocates, checks that
//! the trap fires, then spawns and stops fixtures through every part of the guardian.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use std::process::Command;

#[test]
fn the_guardian_never_allocates_after_fork() {
    let out = Command::new(support::bin("alloc-trap"))
        .arg("--server")
        .arg(support::server())
        .output()
        .expect("running alloc-trap");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.lines().any(|l| l == "ok"), "{stdout}");
    // The self-check's child, and nothing else, tripped the trap.
    assert_eq!(
        stderr.matches("allocation in a forked child").count(),
        1,
        "{stderr}"
    );
    assert!(
        stdout.contains("setsid-escapee: ") && stdout.contains("1 escapee(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ignore-term: ") && stdout.contains("needed SIGKILL"),
        "{stdout}"
    );
}
