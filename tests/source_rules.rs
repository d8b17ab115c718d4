//! Rules about the library's source that no runtime test can see reliably, checked by reading it.
//!
//! - R1.1: every signal is sent by `sys::signal`, the chokepoint (`kill` appears nowhere else,
//!   and elsewhere in `sys` only with signal 0, which sends nothing).
//! - R7.1: nothing waits for "any child" (`wait()`, `waitpid(-1)`, `waitid(P_ALL)`).
//! - R4.2: no `PR_SET_PDEATHSIG`.
//! - R5.1, R5.2, R3.4: only the guardian (a separate process) changes process groups, signal
//!   dispositions or the subreaper flag; the test process's side never calls those.
//! - No sleeps as synchronisation in the library.

use std::fs;
use std::path::Path;

fn source(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn library_files() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected the library's modules, found {files:?}"
    );
    files
}

/// Lines of `file` (outside its `#[cfg(test)]` module) that contain `needle`.
fn uses(file: &str, needle: &str) -> Vec<String> {
    let text = source(file);
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Files (other than `allowed`) that use `needle`.
fn offenders(needle: &str, allowed: &[&str]) -> Vec<String> {
    library_files()
        .into_iter()
        .filter(|f| !allowed.contains(&f.as_str()))
        .filter(|f| !uses(f, needle).is_empty())
        .collect()
}

#[test]
fn signals_are_sent_only_through_the_chokepoint() {
    assert_eq!(offenders("libc::kill", &["sys.rs"]), Vec::<String>::new());
    assert_eq!(offenders("killpg", &[]), Vec::<String>::new());
    assert_eq!(offenders("pidfd_send_signal", &[]), Vec::<String>::new());
    // In sys.rs: the chokepoint's own call, and probes with signal 0.
    let kills = uses("sys.rs", "libc::kill(");
    let real: Vec<_> = kills.iter().filter(|l| !l.contains(", 0)")).collect();
    assert_eq!(
        real.len(),
        1,
        "one kill with a real signal, in sys::signal: {kills:?}"
    );
    assert!(real[0].contains("kill(raw, sig)"), "{real:?}");
}

#[test]
fn nothing_waits_for_any_child() {
    for needle in ["waitpid(-1", "libc::wait(", "P_ALL", "wait4(", "wait3("] {
        assert_eq!(offenders(needle, &[]), Vec::<String>::new(), "{needle}");
    }
}

#[test]
fn no_parent_death_signal() {
    assert_eq!(offenders("PDEATHSIG", &[]), Vec::<String>::new());
}

#[test]
fn only_the_guardian_changes_groups_dispositions_and_reaper_state() {
    for call in [
        "new_process_group(",
        "set_ignored(",
        "reset_signals(",
        "become_subreaper(",
        "protect(",
    ] {
        let callers: Vec<String> = library_files()
            .into_iter()
            .filter(|f| f != "sys.rs")
            .filter(|f| uses(f, &format!("sys::{call}")).len() + uses(f, call).len() > 0)
            .collect();
        assert_eq!(
            callers,
            vec!["guardian.rs".to_string()],
            "{call} called from {callers:?}"
        );
    }
    for raw in [
        "libc::setpgid",
        "libc::setsid",
        "libc::signal(",
        "libc::sigaction",
        "PR_SET_CHILD_SUBREAPER",
    ] {
        assert_eq!(offenders(raw, &["sys.rs"]), Vec::<String>::new(), "{raw}");
    }
}

#[test]
fn the_library_never_sleeps() {
    assert_eq!(offenders("thread::sleep", &[]), Vec::<String>::new());
    assert_eq!(offenders("libc::sleep", &[]), Vec::<String>::new());
    assert_eq!(offenders("nanosleep", &[]), Vec::<String>::new());
}
