//! Rules about the library's source that no runtime test can see reliably, checked by reading it.
//!
//! - R1.1: every signal is sent by `sys::signal`, the chokepoint (`kill` appears nowhere else,
//!   and elsewhere in `sys` only with signal 0, which sends nothing; `pidfd_send_signal` only
//!   behind it).
//! - R7.1: nothing waits for "any child" (`wait()`, `waitpid(-1)`, `waitid(P_ALL)`), except the
//!   zygote, a process of its own whose children are all its to reap, and a guardian's last step,
//!   after its leader was reaped (no pid needs pinning then).
//! - R4.2: `PR_SET_PDEATHSIG` only for the server's child of the single-threaded guardian, never
//!   from a test thread.
//! - R5.1, R5.2, R3.4: only the guardian and the zygote (separate processes) change process
//!   groups, signal dispositions or the subreaper flag; the test process's side never does.
//! - No sleeps as synchronisation in the library.
//! - Nothing in the guardian can unwind (a panic there once ran the rest of the test in a second
//!   process): no `unwrap`, `expect`, `panic!`, `unreachable!` in `guardian/` and `sys/`.
//! - Durations saturate: no `Instant + Duration` outside `deadline.rs`, which uses `checked_add`.
//! - The zygote's constructor hook is referenced where guardians are launched, so that the
//!   linker keeps it in every test binary.
//! - The tokio API adds no second child-exit watcher (DESIGN.md, child-exit monitoring: the
//!   guardian is the only one) and `Drop` uses no runtime: nothing in the library uses
//!   `tokio::process` or `tokio::signal`, blocks on a runtime, or looks one up; tokio appears
//!   only in `async_api.rs`.

use std::fs;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as paths relative to it (`guardian/stop.rs`).
fn library_files() -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src()).unwrap();
                files.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    for expected in [
        "guardian/main_loop.rs",
        "guardian/stop.rs",
        "sys/mod.rs",
        "sys/linux.rs",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} in {files:?}"
        );
    }
    files
}

/// Lines of `file` (outside its `#[cfg(test)]` module) that contain `needle`, comments aside.
fn uses(file: &str, needle: &str) -> Vec<String> {
    let path = src().join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Files (other than those `allowed`, by prefix) that use `needle`.
fn offenders(needle: &str, allowed: &[&str]) -> Vec<String> {
    library_files()
        .into_iter()
        .filter(|f| !allowed.iter().any(|a| f.starts_with(a)))
        .filter(|f| !uses(f, needle).is_empty())
        .collect()
}

#[test]
fn signals_are_sent_only_through_the_chokepoint() {
    assert_eq!(
        offenders("libc::kill", &["sys/mod.rs"]),
        Vec::<String>::new()
    );
    assert_eq!(offenders("killpg", &[]), Vec::<String>::new());
    assert_eq!(
        offenders("SYS_pidfd_send_signal", &["sys/linux.rs"]),
        Vec::<String>::new()
    );
    assert_eq!(offenders("pidfd_signal(", &["sys/"]), Vec::<String>::new());
    // In sys/mod.rs: the chokepoint's own call, and probes with signal 0.
    let kills = uses("sys/mod.rs", "libc::kill(");
    let real: Vec<_> = kills.iter().filter(|l| !l.contains(", 0)")).collect();
    assert_eq!(
        real.len(),
        1,
        "one kill with a real signal, in sys::signal: {kills:?}"
    );
    assert!(real[0].contains("kill(raw, sig)"), "{real:?}");
    let pidfd = uses("sys/mod.rs", "pidfd_signal(");
    assert_eq!(
        pidfd.len(),
        1,
        "only sys::signal uses pidfd_signal: {pidfd:?}"
    );
}

#[test]
fn nothing_waits_for_any_child_but_the_zygote_and_a_finished_guardian() {
    for needle in ["waitpid(-1", "libc::wait(", "P_ALL", "wait4(", "wait3("] {
        assert_eq!(
            offenders(needle, &["sys/mod.rs"]),
            Vec::<String>::new(),
            "{needle}"
        );
    }
    assert_eq!(
        uses("sys/mod.rs", "waitpid(-1").len(),
        1,
        "only in sys::reap_any"
    );
    assert_eq!(
        offenders(
            "reap_any(",
            &["sys/", "guardian/zygote.rs", "guardian/stop.rs"]
        ),
        Vec::<String>::new()
    );
    // In the stop sequence, only after the leader was reaped (step 5).
    let stop = std::fs::read_to_string(src().join("guardian/stop.rs")).unwrap();
    let leader_reaped = stop.find("g.leader.reap()").expect("the leader is reaped");
    let reap_any = stop.find("sys::reap_any(").expect("reap_any in stop");
    assert!(
        reap_any > leader_reaped,
        "reap_any before the leader's reap"
    );
}

#[test]
fn parent_death_signal_only_for_the_guardians_server_child() {
    assert_eq!(offenders("PDEATHSIG", &["sys/"]), Vec::<String>::new());
    assert_eq!(
        offenders("set_parent_death_signal(", &["sys/", "guardian/server.rs"]),
        Vec::<String>::new()
    );
    assert_eq!(
        uses("guardian/server.rs", "set_parent_death_signal(").len(),
        1
    );
}

#[test]
fn only_the_guardian_changes_groups_dispositions_and_reaper_state() {
    for call in [
        "new_process_group(",
        "set_ignored(",
        "reset_signals(",
        "become_subreaper(",
        "protect(",
        "block_signal(",
        "set_credentials(",
        "ChildEvents::new(",
    ] {
        assert_eq!(
            offenders(call, &["sys/", "guardian/"]),
            Vec::<String>::new(),
            "{call}"
        );
        assert_eq!(
            offenders(
                call,
                &[
                    "sys/",
                    "guardian/main_loop.rs",
                    "guardian/server.rs",
                    "guardian/zygote.rs"
                ]
            ),
            Vec::<String>::new(),
            "{call}: not from the test side of guardian/ (client.rs)"
        );
    }
    for raw in [
        "libc::setpgid",
        "libc::setsid",
        "libc::signal(",
        "libc::sigaction",
        "PR_SET_CHILD_SUBREAPER",
        "pthread_sigmask",
    ] {
        assert_eq!(offenders(raw, &["sys/"]), Vec::<String>::new(), "{raw}");
    }
}

#[test]
fn the_library_never_sleeps() {
    for needle in ["thread::sleep", "libc::sleep", "nanosleep", "usleep"] {
        assert_eq!(offenders(needle, &[]), Vec::<String>::new(), "{needle}");
    }
}

#[test]
fn nothing_in_the_guardian_can_unwind() {
    // What runs in the guardian: its modules (but launch.rs, the test side) and sys, which it calls.
    let guardian_code: Vec<String> = library_files()
        .into_iter()
        .filter(|f| {
            (f.starts_with("guardian/") && f != "guardian/client.rs") || f.starts_with("sys/")
        })
        .collect();
    assert!(guardian_code.len() >= 8, "{guardian_code:?}");
    for needle in [
        ".unwrap()",
        ".expect(",
        "panic!(",
        "unreachable!(",
        "todo!(",
    ] {
        let found: Vec<&String> = guardian_code
            .iter()
            .filter(|f| !uses(f, needle).is_empty())
            .collect();
        assert!(
            found.is_empty(),
            "{needle} in code the guardian runs: {found:?}"
        );
    }
}

#[test]
fn durations_saturate() {
    for needle in [
        "Instant::now() +",
        "+ timeout",
        "+ grace",
        "+ self.grace",
        "+ Duration::",
    ] {
        assert_eq!(offenders(needle, &[]), Vec::<String>::new(), "{needle}");
    }
    assert_eq!(
        offenders("checked_add", &["deadline.rs"]),
        Vec::<String>::new(),
        "deadlines are made in deadline.rs"
    );
}

#[test]
fn the_zygote_hook_is_kept_by_the_linker() {
    assert_eq!(uses("guardian/client.rs", "black_box(&HOOK)").len(), 1);
    assert_eq!(uses("guardian/zygote.rs", "#[used]").len(), 1);
}

#[test]
fn the_async_api_adds_no_child_watcher_and_drop_needs_no_runtime() {
    for needle in [
        "tokio::process",
        "tokio::signal",
        "block_on",
        "Handle::current",
        "Handle::try_current",
    ] {
        assert_eq!(offenders(needle, &[]), Vec::<String>::new(), "{needle}");
    }
    assert_eq!(
        offenders("tokio::", &["async_api.rs"]),
        Vec::<String>::new(),
        "tokio outside async_api.rs"
    );
    assert!(!uses("async_api.rs", "tokio::task::spawn_blocking").is_empty());
}
