//! `Containment::Cgroup`: what only a cgroup stops (a fork storm; what a dead guardian's
//! server leaves, wherever it re-parented), the cgroup's own life (removed after the stop, a
//! stale one swept by a later spawn), its freezer, and hostile environments (a read-only
//! cgroup filesystem, a forced fallback, a PID namespace whose init never reaps, a stranger on
//! the leader's old pid). Tests that need a writable cgroup v2 hierarchy, or root, print why
//! they are skipped where the machine cannot run them.
#![cfg(target_os = "linux")] // cgroups

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process_fixture::{Containment, Error, ProcessFixture, Ready, UsageSource};
use support::fixture_server::server;
use support::{marked_processes, marker, MARKER_VAR, SOON};

fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

/// Where fixtures' cgroups are made here, or `None` (printed) when there is no cgroup.
fn cgroup_parent() -> Option<PathBuf> {
    let fx = ProcessFixture::builder("sleep")
        .arg("60")
        .ready(Ready::none())
        .containment(Containment::Cgroup)
        .spawn();
    match fx {
        Ok(fx) => {
            let dir = support::cgroup_of(fx.pid()).expect("the server's cgroup");
            Some(dir.parent().expect("its parent").to_path_buf())
        }
        Err(Error::ContainmentUnavailable { reason, .. }) => {
            eprintln!("skipped: no cgroup here: {reason}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A server in a cgroup of its own, its processes marked with `marker`.
fn in_cgroup(mode: &str, extra: &[&str], marker: &str) -> process_fixture::Builder {
    let mut b = server(mode, extra, Ready::tcp());
    b.containment(Containment::Cgroup).env(MARKER_VAR, marker);
    b
}

#[test]
fn a_fork_storm_is_stopped_whole_and_its_cgroup_removed() {
    if cgroup_parent().is_none() {
        return;
    }
    if !is_root() {
        eprintln!("skipped: RLIMIT_NPROC binds only another user, and switching needs root");
        return;
    }
    let mark = marker("fork-storm");
    let fx = in_cgroup("fork-storm", &["--workers", "64"], &mark)
        .user("nobody")
        .grace_period(Duration::from_millis(200))
        .spawn()
        .expect("spawn");
    let dir = support::cgroup_of(fx.pid()).expect("its cgroup");
    assert!(
        support::wait_until(SOON, || marked_processes(&mark).len() >= 32),
        "the storm did not grow: {}",
        marked_processes(&mark).len()
    );
    let storm = marked_processes(&mark).len();
    let report = fx.stop().expect("a confirmed stop");
    eprintln!("a fork storm of about {storm} processes: {report}");
    assert_eq!(report.containment, Containment::Cgroup, "{report}");
    assert!(report.escalated, "{report}");
    assert_eq!(marked_processes(&mark), Vec::<u32>::new(), "left: {report}");
    assert!(!dir.exists(), "{} is still there", dir.display());
}

/// The guardian sleeps through a stop's grace: a change of `cgroup.events` (the server joining)
/// left unread would wake every poll at once, and the guardian would spin until the end of the
/// grace. Its time on CPU, read while it waits, shows which.
#[test]
fn the_guardian_sleeps_through_the_grace() {
    if cgroup_parent().is_none() {
        return;
    }
    let grace = Duration::from_millis(400);
    let fx = in_cgroup("block-term", &[], &marker("grace"))
        .grace_period(grace)
        .spawn()
        .expect("spawn");
    let guardian = fx.guardian_pid();
    let on_cpu = || {
        let text = std::fs::read_to_string(format!("/proc/{guardian}/schedstat")).ok()?;
        text.split(' ')
            .next()?
            .parse::<u64>()
            .ok()
            .map(Duration::from_nanos)
    };
    let before = on_cpu().expect("the guardian's schedstat");
    let (report, waited) = std::thread::scope(|s| {
        let stop = s.spawn(|| fx.stop());
        let mut last = before;
        // Sampled until the stop returns: the last value read covers nearly all of the wait.
        support::wait_until(Duration::from_secs(30), || {
            last = on_cpu().unwrap_or(last);
            stop.is_finished()
        });
        (stop.join().expect("no panic"), last.saturating_sub(before))
    });
    let report = report.expect("a confirmed stop");
    assert!(report.escalated, "the leader blocks SIGTERM: {report}");
    // A spin would be on CPU for most of the 400 ms; a sleeping guardian for well under 1 ms.
    assert!(
        waited < Duration::from_millis(50),
        "the guardian was on CPU for {waited:?} of a {grace:?} grace"
    );
}

#[test]
fn a_sigkilled_guardian_leaves_nothing_of_its_cgroup() {
    if cgroup_parent().is_none() {
        return;
    }
    // Workers in the group and an escapee in a session of its own: with a forked guardian no
    // subreaper is above them once it dies; only the cgroup still holds them.
    for (mode, expected) in [("forking-master", 3), ("setsid-escapee", 2)] {
        let mark = marker(mode);
        let fx = in_cgroup(mode, &["--workers", "2"], &mark)
            .spawn()
            .expect("spawn");
        let dir = support::cgroup_of(fx.pid()).expect("its cgroup");
        assert!(
            support::wait_until(SOON, || marked_processes(&mark).len() >= expected),
            "{mode}: {:?}",
            marked_processes(&mark)
        );
        let killed = Instant::now();
        // SAFETY: plain syscall on our own fixture's guardian.
        let killed_it = unsafe { libc::kill(fx.guardian_pid() as i32, libc::SIGKILL) };
        assert_eq!(killed_it, 0);
        assert!(
            support::wait_until(SOON, || marked_processes(&mark).is_empty()),
            "{mode}: left after the guardian was SIGKILLed: {:?}",
            marked_processes(&mark)
        );
        let gone = killed.elapsed();
        assert!(
            support::wait_until(SOON, || !dir.exists()),
            "{mode}: {} stays",
            dir.display()
        );
        eprintln!("{mode}: nothing left {gone:?} after the guardian's SIGKILL");
        let err = fx.stop().expect_err("no guardian, no confirmed stop");
        assert!(err.to_string().contains("died"), "{err}");
    }
}

#[test]
fn a_cgroup_left_by_a_dead_guardian_is_removed_by_a_later_spawn() {
    const NAME: &str = "a_cgroup_left_by_a_dead_guardian_is_removed_by_a_later_spawn";
    if support::is_fresh(NAME) {
        // The first spawn of a process sweeps.
        let fx = server("well-behaved", &[], Ready::tcp())
            .spawn()
            .expect("spawn");
        assert_eq!(fx.stop().expect("stop").containment, Containment::Cgroup);
        return;
    }
    let Some(parent) = cgroup_parent() else {
        return;
    };
    // A guardian pid no process can have (above the largest pid_max), with a live process in
    // its cgroup, as a SIGKILLed run with no zygote would leave it.
    let stale = parent.join("4194305.1");
    let mut orphan = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep");
    // Another test process's first spawn (nextest runs them side by side) may sweep the stale
    // cgroup between its making and the move: that is the behaviour under test, so make it
    // again. Once the orphan is inside, whichever spawn sweeps first must kill it.
    let moved = (0..50).any(|_| {
        let _ = std::fs::create_dir(&stale);
        std::fs::write(stale.join("cgroup.procs"), orphan.id().to_string()).is_ok()
    });
    assert!(moved, "could not move the orphan into {}", stale.display());
    support::run_fresh(NAME, &[], &[]);
    let status = wait_child(&mut orphan, SOON);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the orphan in the stale cgroup was not killed"
    );
    assert!(
        support::wait_until(SOON, || !stale.exists()),
        "{} stays",
        stale.display()
    );
}

fn wait_child(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let mut status = None;
    support::wait_until(timeout, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

#[test]
fn the_report_counts_the_whole_trees_cpu_and_memory() {
    if cgroup_parent().is_none() {
        return;
    }
    // Four workers with 32 MiB each: the tree's peak is over 128 MiB, the largest process's
    // about 32.
    let fx = in_cgroup(
        "forking-master",
        &["--workers", "4", "--worker-mib", "32"],
        "usage",
    )
    .spawn()
    .expect("spawn");
    let resident = || -> u64 { fx.processes().iter().map(|p| rss(p.pid)).sum() };
    assert!(
        support::wait_until(SOON, || resident() > 128 << 20),
        "the workers did not fill their memory: {} bytes",
        resident()
    );
    let report = fx.stop().expect("stop");
    eprintln!("{report}");
    let peak = report.peak_memory.expect("peak_memory");
    match report.usage_source {
        Some(UsageSource::Cgroup) => {
            assert!(peak > 100 << 20, "{report}");
            assert!(report.to_string().contains("(the whole tree)"), "{report}");
        }
        Some(UsageSource::CgroupCpu) => {
            eprintln!("no memory controller for the cgroup here: the largest process's peak");
            assert!(peak > 32 << 20 && peak < 128 << 20, "{report}");
        }
        other => panic!("a cgroup's stop reports its usage: {other:?}"),
    }
    assert!(
        report.cpu_time.is_some_and(|c| c > Duration::ZERO),
        "{report}"
    );
}

/// Resident size of process `pid`, in bytes (`VmRSS`); 0 when gone.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map_or(0, |kb| kb << 10)
}

#[test]
fn pause_freezes_the_cgroup_and_is_paused_reads_it() {
    if cgroup_parent().is_none() {
        return;
    }
    let mark = marker("freeze");
    let fx = in_cgroup("fork-churn", &["--workers", "2"], &mark)
        .spawn()
        .expect("spawn");
    let dir = support::cgroup_of(fx.pid()).expect("its cgroup");
    fx.pause().expect("pause");
    assert!(support::cgroup_frozen(&dir), "not frozen");
    assert!(fx.is_paused());
    // The kernel's state, not a flag of ours: thawed behind our back, it says so.
    std::fs::write(dir.join("cgroup.freeze"), "0").expect("thawing by hand");
    assert!(support::wait_until(SOON, || !fx.is_paused()));
    fx.pause().expect("pause again");
    let report = fx.stop().expect("a paused fixture stops");
    assert!(!dir.exists(), "{report}");
    assert_eq!(marked_processes(&mark), Vec::<u32>::new(), "{report}");
}

#[test]
fn without_a_writable_cgroup_the_default_falls_back_and_cgroup_is_refused_with_the_reason() {
    const NAME: &str =
        "without_a_writable_cgroup_the_default_falls_back_and_cgroup_is_refused_with_the_reason";
    if support::is_fresh(NAME) {
        let expected = std::env::var("PF_EXPECTED_REASON").expect("PF_EXPECTED_REASON");
        let refused = ProcessFixture::builder("true")
            .ready(Ready::none())
            .containment(Containment::Cgroup)
            .spawn();
        match refused {
            Err(e @ Error::ContainmentUnavailable { .. }) => {
                assert!(e.to_string().contains(&expected), "{e}")
            }
            other => panic!("expected ContainmentUnavailable, got {other:?}"),
        }
        let fx = server("well-behaved", &[], Ready::tcp())
            .spawn()
            .expect("the default still spawns");
        let report = fx.stop().expect("stop");
        assert_eq!(report.containment, Containment::Subreaper, "{report}");
        return;
    }
    let forced = [
        ("PROCESS_FIXTURE_FORCE", "no-cgroup"),
        ("PF_EXPECTED_REASON", "no-cgroup"),
    ];
    support::run_fresh(NAME, &forced, &[]);
    let Some(parent) = cgroup_parent() else {
        return;
    };
    if !is_root() {
        eprintln!("skipped (read-only cgroup filesystem): needs root for a mount namespace");
        return;
    }
    let mount = cgroup2_mount(&parent);
    let remount = format!("mount -o remount,bind,ro {mount} && exec \"$0\" \"$@\"");
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &remount,
    ];
    support::run_fresh(NAME, &[("PF_EXPECTED_REASON", "read-only")], &wrapper);
}

#[test]
fn an_unprivileged_user_in_a_delegated_subtree_gets_cgroups() {
    const NAME: &str = "an_unprivileged_user_in_a_delegated_subtree_gets_cgroups";
    if support::is_fresh(NAME) {
        assert!(!is_root(), "not switched to another user");
        let mark = marker("delegated");
        let fx = in_cgroup("setsid-escapee", &[], &mark)
            .spawn()
            .expect("a cgroup in the delegated subtree");
        let report = fx.stop().expect("stop");
        assert_eq!(report.containment, Containment::Cgroup, "{report}");
        assert_eq!(marked_processes(&mark), Vec::<u32>::new(), "{report}");
        return;
    }
    let Some(parent) = cgroup_parent() else {
        return;
    };
    if !is_root() {
        eprintln!("skipped: needs root to delegate a subtree to another user");
        return;
    }
    // What `systemd-run --user --scope -p Delegate=yes` makes: a cgroup whose directory and
    // control files belong to the user, with the user's process in it.
    let root = PathBuf::from(cgroup2_mount(&parent));
    let delegated = root.join(format!("pf-delegated-{}", std::process::id()));
    std::fs::create_dir(&delegated).expect("the delegated cgroup");
    for file in [
        "",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
    ] {
        let path = delegated.join(file);
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
    }
    let enter = format!(
        "echo $$ > {}/cgroup.procs && exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$0\" \"$@\"",
        delegated.display()
    );
    let outcome = std::panic::catch_unwind(|| {
        support::run_fresh(NAME, &[], &["sh", "-c", &enter]);
    });
    remove_cgroup_tree(&delegated);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Removes an (empty) cgroup and every cgroup under it, deepest first.
fn remove_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The mount point of the cgroup2 filesystem that holds `dir`.
fn cgroup2_mount(dir: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mounts
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            right
                .starts_with("cgroup2 ")
                .then(|| left.split(' ').nth(4))?
        })
        .find(|point| dir.starts_with(point))
        .expect("the cgroup2 mount")
        .to_owned()
}

#[test]
fn in_a_pid_namespace_whose_init_never_reaps_nothing_is_left_and_no_stranger_is_signalled() {
    const NAME: &str =
        "in_a_pid_namespace_whose_init_never_reaps_nothing_is_left_and_no_stranger_is_signalled";
    if support::is_fresh(NAME) {
        return pid_namespace_body();
    }
    if !is_root() {
        eprintln!("skipped: needs root for a PID namespace");
        return;
    }
    // A fixture of ours lives across it: the namespace's sweep must not take its cgroup for a
    // dead guardian's (its pid means nothing there).
    let ours = server("well-behaved", &[], Ready::tcp())
        .spawn()
        .expect("spawn");
    let wrapper = ["unshare", "--pid", "--fork", "--mount-proc"];
    let out = support::run_fresh(NAME, &[], &wrapper);
    assert!(out.contains("stranger on"), "{out}");
    assert!(
        ours.is_running(),
        "the namespaced test process killed our fixture"
    );
    assert!(support::http_get(ours.port(), "/").is_ok());
    ours.stop().expect("stop");
}

/// Runs as pid 1 of a new PID namespace: the test process is the init that never reaps.
fn pid_namespace_body() {
    assert_eq!(std::process::id(), 1, "not the namespace's init");
    let mark = marker("pidns");
    let mut leaders = Vec::new();
    for mode in ["forking-master", "setsid-escapee"] {
        let fx = server(mode, &["--workers", "2"], Ready::tcp())
            .env(MARKER_VAR, &mark)
            .spawn()
            .expect("spawn");
        leaders.push(fx.pid());
        let report = fx.stop().expect("stop");
        eprintln!("{mode} as init's grandchild: {report}");
    }
    assert_eq!(marked_processes(&mark), Vec::<u32>::new());
    let zombies: Vec<_> = support::children(1)
        .into_iter()
        .filter(|p| !p.is_live())
        .collect();
    assert!(zombies.is_empty(), "zombies left on init: {zombies:?}");
    // A stranger steered onto the first leader's old pid (and so its old group id), then more
    // fixtures come and go: it must never get a signal from us.
    let old = leaders[0];
    std::fs::write("/proc/sys/kernel/ns_last_pid", (old - 1).to_string()).expect("ns_last_pid");
    let mut stranger = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .expect("the stranger");
    eprintln!(
        "stranger on pid {} (the old leader was {old})",
        stranger.id()
    );
    for _ in 0..3 {
        let fx = server("forking-master", &["--workers", "2"], Ready::tcp())
            .spawn()
            .expect("spawn");
        fx.pause().expect("pause");
        fx.resume().expect("resume");
        fx.stop().expect("stop");
    }
    assert!(
        stranger.try_wait().expect("try_wait").is_none(),
        "the stranger was signalled"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}
