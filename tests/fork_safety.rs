//! docs/design.md, R8.2: where a fork without exec of the test process remains (the fallback guardian, forced
//! here with `PROCESS_FIXTURE_FORCE=no-zygote`), it never allocates. `alloc-trap` (fixtures-bin)
//! has a global allocator that kills any forked child that allocates, checks that the trap fires,
//! then spawns and stops fixtures through every part of the guardian. The same binary then runs
//! with the zygote, where nothing forks the test process at all.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use std::process::Command;

/// Runs `alloc-trap` with `force` as `PROCESS_FIXTURE_FORCE`; returns its stdout.
fn alloc_trap(force: &str) -> String {
    let out = Command::new(support::bin("alloc-trap"))
        .arg("--server")
        .arg(support::server())
        .env("PROCESS_FIXTURE_FORCE", force)
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
    stdout.into_owned()
}

#[test]
fn the_forked_guardian_never_allocates_after_fork() {
    let stdout = alloc_trap("no-zygote");
    assert_eq!(stdout.matches("guardian: Forked").count(), 4, "{stdout}");
}

#[test]
fn with_the_zygote_nothing_forks_the_test_process() {
    let stdout = alloc_trap("");
    assert_eq!(stdout.matches("guardian: Zygote").count(), 4, "{stdout}");
}
