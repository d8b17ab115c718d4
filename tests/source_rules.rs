//! Rules about the library's source that no runtime test can see reliably, checked by reading it.
//! R-numbers are the requirements of docs/design.md.
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
//! - The tokio API adds no second child-exit watcher (one waiter per child, docs/design.md, R7.1:
//!   the guardian is the only one) and `Drop` uses no runtime: nothing in the library uses
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
        "sys/signal.rs",
        "sys/wait.rs",
        "sys/linux/pidfd.rs",
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
        offenders("libc::kill", &["sys/signal.rs"]),
        Vec::<String>::new()
    );
    assert_eq!(offenders("killpg", &[]), Vec::<String>::new());
    assert_eq!(
        offenders("SYS_pidfd_send_signal", &["sys/linux/pidfd.rs"]),
        Vec::<String>::new()
    );
    assert_eq!(offenders("pidfd_signal(", &["sys/"]), Vec::<String>::new());
    // In sys/signal.rs: the chokepoint's own call, and probes with signal 0.
    let kills = uses("sys/signal.rs", "libc::kill(");
    let real: Vec<_> = kills.iter().filter(|l| !l.contains(", 0)")).collect();
    assert_eq!(
        real.len(),
        1,
        "one kill with a real signal, in sys::signal: {kills:?}"
    );
    assert!(real[0].contains("kill(raw, sig)"), "{real:?}");
    let pidfd = uses("sys/signal.rs", "pidfd_signal(");
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
            offenders(needle, &["sys/wait.rs"]),
            Vec::<String>::new(),
            "{needle}"
        );
    }
    assert_eq!(
        uses("sys/wait.rs", "waitpid(-1").len(),
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
        // The keeper runs before main, where std has not ignored SIGPIPE yet: it does that one
        // thing std would have done, and nothing else of this list.
        let keeper: &[&str] = if call == "set_ignored(" {
            &["shared/keeper.rs"]
        } else {
            &[]
        };
        assert_eq!(
            offenders(call, &[&["sys/", "guardian/"], keeper].concat()),
            Vec::<String>::new(),
            "{call}"
        );
        assert_eq!(
            offenders(
                call,
                &[
                    &[
                        "sys/",
                        "guardian/main_loop.rs",
                        "guardian/server.rs",
                        "guardian/zygote.rs"
                    ],
                    keeper
                ]
                .concat()
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

/// A zygote guardian's server resets only `STRAY_SIGNALS` before exec. That is right only while
/// the zygote starts by resetting every disposition, and nothing in the guardian or the zygote
/// ignores any other signal.
#[test]
fn guardians_ignore_only_the_stray_signals() {
    let ignores: Vec<String> = library_files()
        .into_iter()
        .filter(|f| f.starts_with("guardian/"))
        .flat_map(|f| uses(&f, "set_ignored("))
        .collect();
    assert!(
        ignores
            .iter()
            .all(|l| l.contains("set_ignored(sig, true)") || l.contains(", false)")),
        "{ignores:?}"
    );
    assert_eq!(
        ignores.iter().filter(|l| l.contains(", true)")).count(),
        1,
        "{ignores:?}"
    );
    assert_eq!(
        uses("guardian/main_loop.rs", "for sig in STRAY_SIGNALS").len(),
        1
    );
    assert_eq!(
        uses("guardian/zygote.rs", "sys::reset_signals(None)").len(),
        1
    );
    let resets = uses("guardian/server.rs", "reset_signals(");
    assert!(
        resets.len() == 1 && resets[0].contains("STRAY_SIGNALS"),
        "{resets:?}"
    );
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
    // The keeper's too: `spawn_shared` refers to it.
    assert_eq!(uses("shared/mod.rs", "black_box(&keeper::HOOK)").len(), 1);
    assert_eq!(uses("shared/keeper.rs", "#[used]").len(), 1);
}

/// Every ready-made server hands out the builder it makes, so that a user can change anything;
/// and none starts a process but through a fixture (the `pg_config --bindir` query aside).
#[test]
fn ready_made_servers_expose_their_builder() {
    for file in [
        "servers/postgres.rs",
        "servers/redis.rs",
        "servers/nginx.rs",
    ] {
        assert_eq!(
            uses(file, "pub fn builder(&self) -> Result<Builder, Error>").len(),
            1,
            "{file}"
        );
    }
    assert_eq!(
        offenders(
            "Command::new(",
            &["guardian/", "shared/", "servers/postgres.rs"]
        ),
        Vec::<String>::new()
    );
    assert_eq!(uses("servers/postgres.rs", "Command::new(").len(), 1);
}

/// A shared server's keeper never holds a test runner's pipes (nextest would wait for them, and
/// call the test leaky) and never shares the test's process group (a Ctrl-C or a runner's kill
/// of the test's group must not take the server of the other tests with it).
#[test]
fn the_keeper_gets_null_stdio_and_a_group_of_its_own() {
    let start = uses("shared/mod.rs", "fn start_keeper(");
    assert_eq!(start.len(), 1);
    for needle in [
        ".stdout(Stdio::null())",
        ".stderr(Stdio::null())",
        ".process_group(0)",
    ] {
        assert_eq!(uses("shared/mod.rs", needle).len(), 1, "{needle}");
    }
    assert_eq!(
        offenders("KEEPER_ENV", &["shared/"]),
        Vec::<String>::new(),
        "only shared/ starts a keeper"
    );
    // The keeper's stdin, the listening socket, is replaced by /dev/null before anything else.
    assert_eq!(
        uses("shared/keeper.rs", "sys::dup2(null.as_raw_fd(), 0)").len(),
        1
    );
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

/// The library's modules, top to bottom: a module may use those below it, never one above it.
/// `cargo test --test source_rules -- modules_only_use --nocapture` prints the graph.
const LAYERS: &[&str] = &[
    "async_api",
    "servers",
    "builder",
    "shared",
    "spawn",
    "diagnose",
    "plan",
    "dir",
    "config",
    "ready",
    "fixture",
    "pause",
    "wait_output",
    "teardown",
    "running",
    "inspect",
    "output",
    "placeholders",
    "port",
    "guardian",
    "cgroup",
    "error",
    "report",
    "signal",
    "deadline",
    "force",
    "sys",
    "text",
];

/// The top-level modules each module of the library refers to by a `crate::` path, comments
/// and unit tests aside (doc links are not imports). A module's own files count as one.
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut graph = std::collections::BTreeMap::new();
    let reexports = reexports();
    for file in library_files() {
        let module = file.split(['/', '.']).next().unwrap_or_default().to_owned();
        if module == "lib" {
            continue;
        }
        let targets: &mut std::collections::BTreeSet<String> =
            graph.entry(module.clone()).or_default();
        for line in uses(&file, "crate::") {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let paths: Vec<&str> = match rest.strip_prefix('{') {
                    Some(list) => list.split('}').next().unwrap_or("").split(',').collect(),
                    None => vec![rest],
                };
                for path in paths {
                    let name: String = path
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let target = match reexports.get(&name) {
                        Some(home) => home.clone(), // `crate::Builder` is `crate::builder::Builder`
                        None => name,
                    };
                    let is_module = target.chars().next().is_some_and(|c| c.is_lowercase());
                    if is_module && target != module {
                        targets.insert(target);
                    }
                }
            }
        }
    }
    graph
}

/// What `lib.rs` re-exports, by name, with the module it comes from (`Builder` → `builder`).
fn reexports() -> std::collections::BTreeMap<String, String> {
    let mut map = std::collections::BTreeMap::new();
    for line in uses("lib.rs", "pub use ") {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items
            .trim_end_matches(';')
            .trim_matches(|c| c == '{' || c == '}');
        for item in items.split(',') {
            map.insert(item.trim().to_owned(), module.to_owned());
        }
    }
    map
}

#[test]
fn modules_only_use_modules_below_them() {
    let graph = module_graph();
    let layer = |m: &str| LAYERS.iter().position(|l| *l == m);
    for (module, targets) in &graph {
        println!(
            "{module} -> {}",
            Vec::from_iter(targets.iter().cloned()).join(", ")
        );
    }
    let mut upward = Vec::new();
    for (module, targets) in &graph {
        let own = layer(module).unwrap_or_else(|| panic!("{module} is missing from LAYERS"));
        for target in targets {
            let theirs = layer(target).unwrap_or_else(|| panic!("{target} is missing from LAYERS"));
            if theirs <= own {
                upward.push(format!("{module} -> {target}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "upward (or circular) imports: {upward:?}"
    );
}

/// Every `libc::name(` in `text`: a call of a libc function (the status macros such as
/// `WIFEXITED`, plain arithmetic on an int, are upper case and not counted).
fn libc_calls(text: &str) -> Vec<String> {
    let mut calls = Vec::new();
    for (at, _) in text.match_indices("libc::") {
        let rest = &text[at + "libc::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let starts_lower = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        if starts_lower && rest[name.len()..].starts_with('(') {
            calls.push(name);
        }
    }
    calls
}

#[test]
fn libc_functions_are_called_only_in_sys() {
    // Tests included: a raw call in a test module is still a raw call outside sys.
    let found: Vec<String> = library_files()
        .into_iter()
        .filter(|f| !f.starts_with("sys/"))
        .flat_map(|f| {
            let text = fs::read_to_string(src().join(&f)).unwrap();
            libc_calls(&text)
                .into_iter()
                .map(move |name| format!("{f}: libc::{name}("))
        })
        .collect();
    assert_eq!(found, Vec::<String>::new(), "wrap them in a sys function");
    // The rule itself sees calls.
    assert_eq!(
        libc_calls("x(libc::getpid()); libc::c_int; libc::WIFEXITED(s)"),
        ["getpid"]
    );
}

#[test]
fn every_unsafe_block_must_say_why_it_is_sound() {
    // clippy::undocumented_unsafe_blocks checks each block for a `// SAFETY:` comment; this
    // keeps the lint switched on for the whole package.
    let manifest =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let lints = manifest
        .split("\n[lints.clippy]\n")
        .nth(1)
        .expect("a [lints.clippy] table in Cargo.toml");
    let table = lints.split("\n[").next().unwrap_or("");
    assert!(
        table
            .lines()
            .any(|l| l.replace(' ', "") == "undocumented_unsafe_blocks=\"deny\""),
        "undocumented_unsafe_blocks = \"deny\" in [lints.clippy]: {table}"
    );
}

#[test]
fn sys_exports_an_explicit_list_of_crate_private_items() {
    // sys is a private module: `pub` there would claim a public API it does not have (and
    // trips `unreachable_pub`), and a glob re-export would hide what the facade offers.
    for file in library_files()
        .into_iter()
        .filter(|f| f.starts_with("sys/"))
    {
        let public: Vec<String> = uses(&file, "pub ")
            .into_iter()
            .filter(|l| l.trim_start().starts_with("pub "))
            .collect();
        assert_eq!(public, Vec::<String>::new(), "{file}: pub(crate), not pub");
        let globs: Vec<String> = uses(&file, "use ")
            .into_iter()
            .filter(|l| l.contains("::*") && !l.contains("super::*"))
            .collect();
        assert_eq!(globs, Vec::<String>::new(), "{file}: name what is used");
    }
}

#[test]
fn the_stop_thaws_a_paused_tree_before_its_first_signal() {
    let stop = std::fs::read_to_string(src().join("guardian/stop.rs")).unwrap();
    let thaw = stop
        .find("if g.paused {")
        .expect("the stop checks for a pause");
    let first = stop
        .find("g.leader.signal(sig)")
        .expect("the leader's stop signal");
    assert!(
        thaw < first,
        "a paused tree must be continued before the stop signal"
    );
}

#[test]
fn cgroup_control_files_are_written_only_in_sys_cgroup() {
    // `cgroup.kill`, `cgroup.freeze` and `cgroup.procs` act on processes: like signals, one place.
    for file in ["cgroup.kill\"", "cgroup.freeze\"", "cgroup.procs\""] {
        assert_eq!(
            offenders(
                file,
                &[
                    "sys/linux/cgroup.rs",
                    "sys/macos/absent.rs",
                    "cgroup/find.rs"
                ]
            ),
            Vec::<String>::new(),
            "{file}"
        );
    }
    // The test side's module only finds, names and reads (find.rs opens cgroup.procs to check
    // that it may write it): every write goes through sys.
    for file in ["cgroup/mod.rs", "cgroup/find.rs"] {
        assert_eq!(uses(file, "std::fs::write"), Vec::<String>::new(), "{file}");
        assert_eq!(uses(file, ".write_all("), Vec::<String>::new(), "{file}");
    }
}

#[test]
fn the_server_joins_its_cgroup_before_anything_else() {
    let server = std::fs::read_to_string(src().join("guardian/server.rs")).unwrap();
    let child = &server[server.find("fn exec_server(").expect("exec_server")..];
    let join = child
        .find("join_cgroup(")
        .expect("the child joins its cgroup");
    let group = child
        .find("new_process_group()")
        .expect("the child's own group");
    assert!(
        join < group,
        "nothing of the server may run (or fork) outside its cgroup"
    );
}

#[test]
fn a_wake_by_cgroup_events_is_acknowledged_by_reading_it() {
    // kernfs reports a change of `cgroup.events` to every poll until the file is read again:
    // a function that polls it and does not read it spins (the guardian once did, through a
    // whole grace period).
    let reads = [
        ".acknowledge",
        ".populated()",
        ".frozen()",
        "settled()",
        "Cgroup::acknowledge",
    ];
    for file in library_files()
        .into_iter()
        .filter(|f| !f.starts_with("sys/"))
    {
        let text = fs::read_to_string(src().join(&file)).unwrap();
        for (at, _) in text.match_indices("pollfd_changed(") {
            let start = text[..at].rfind("fn ").expect("inside a function");
            let end = text[at..]
                .find("\n}\n")
                .into_iter()
                .chain(text[at..].find("\n    }\n"))
                .min()
                .map_or(text.len(), |e| at + e);
            let body = &text[start..end];
            assert!(
                reads.iter().any(|r| body.contains(r)),
                "{file}: a poll on cgroup.events that never reads it again:\n{body}"
            );
        }
    }
}

#[test]
fn the_server_starts_inside_its_cgroup_before_any_fallback() {
    let server = std::fs::read_to_string(src().join("guardian/server.rs")).unwrap();
    let spawn = &server[server.find("fn spawn_in(").expect("spawn_in")..];
    let inside = spawn
        .find("spawn_in_cgroup(")
        .expect("CLONE_INTO_CGROUP tried");
    let shared = spawn.find("spawn_shared(").expect("the fallback");
    assert!(
        inside < shared,
        "a move into a cgroup waits out an RCU grace period: start inside it first"
    );
}
