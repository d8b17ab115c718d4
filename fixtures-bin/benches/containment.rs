//! Figures for BENCHMARKS.md: what a cgroup per fixture costs and what it buys, against the
//! subreaper, in one run.
//!
//! ```text
//! PF_BENCH_N=50 cargo bench -p fixtures-bin --bench containment
//! ```
//!
//! 1. The stop of a 50-process tree (`fixture-server --mode workers-ignore-term --workers 49`,
//!    no grace, so the stop is its kill), `Containment::Cgroup` and `Subreaper`.
//! 2. The stop of a fork storm (`--mode fork-storm`, RLIMIT_NPROC 64 for user nobody: every
//!    process forks without end in a session of its own and ignores SIGTERM; no grace),
//!    both ways, with how many processes were left afterwards. Root only (printed otherwise).
//! 3. The cost a cgroup adds to a spawn+stop cycle of `sleep 60` (`Ready::none()`), back to
//!    back: the default (a cgroup), `Containment::Cgroup`, `Subreaper`, taking turns; medians
//!    and the differences.
//! 4. The same cycle after a quiet moment (200 ms without a spawn, as between the tests of a
//!    suite), spawn and stop apart: the default containment (a cgroup, the server started
//!    inside it), `Containment::Cgroup` (on a hybrid system also the v1 memory cgroup, which a
//!    process can only be moved into), `Subreaper`. A move into a cgroup waits out an RCU grace
//!    period after a quiet moment; back-to-back cycles (3.) do not show it.
//! 5. The kernel's share, without the crate: CPU per child (`getrusage` of this process and its
//!    children) of a loop that clones `/bin/true` with a raw `clone3` and waits for it, 20 n
//!    children per way and round, two rounds, the ways taking turns: in this process's cgroup;
//!    in a new cgroup per child (`CLONE_INTO_CGROUP`, made before it, removed after it); in this
//!    process's cgroup with a cgroup made and removed around each child all the same; in one
//!    cgroup made once and reused. Made next to the fixtures' cgroups.
//!
//! Where no cgroup can be made, says so and measures the subreaper alone. Nothing is asserted.

use std::time::{Duration, Instant};

use fixtures_bin::{rounds, summary};
use process_fixture::{Containment, Error, ProcessFixture, Ready};

const SERVER: &str = env!("CARGO_BIN_EXE_fixture-server");
/// No grace: the stop goes straight to its kill, which is what is compared.
const GRACE: Duration = Duration::ZERO;

fn main() {
    let n = rounds(50);
    let kinds = available();
    println!("containment bench, n={n}");
    for &kind in &kinds {
        let mut stops = stop_times(kind, n.div_ceil(5).max(3), tree);
        println!("1. 50-process tree, {kind:?}: stop {}", summary(&mut stops));
    }
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } == 0 {
        for &kind in &kinds {
            let (mut stops, left) = storm_stops(kind, n.div_ceil(10).max(2));
            println!(
                "2. fork storm (64 processes), {kind:?}: stop {}, processes left afterwards: {left}",
                summary(&mut stops)
            );
        }
    } else {
        println!("2. fork storm: skipped (needs root to run it as another user)");
    }
    cycle_cost(&kinds, n);
    if kinds.contains(&Containment::Cgroup) {
        quiet_cycles(n.div_ceil(5).max(3));
        #[cfg(target_os = "linux")]
        kernel::kernel_cost(20 * n);
    }
}

/// Figure 5 (Linux: `clone3`, `O_PATH`).
#[cfg(target_os = "linux")]
mod kernel {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::{sleeper, wait_for};
    use fixtures_bin::rusage_cpu;
    use process_fixture::Containment;

    /// Figure 5's ways: (name, a new cgroup made and removed around each child, the child
    /// started in the cgroup).
    const KERNEL_WAYS: [(&str, bool, bool); 4] = [
        ("no cgroup of its own", false, false),
        ("a new cgroup per child", true, true),
        (
            "a cgroup made and removed per child, the child not in it",
            true,
            false,
        ),
        ("one cgroup, reused", false, true),
    ];

    /// Figure 5: what the kernel charges for a cgroup per child, without the crate.
    pub(super) fn kernel_cost(children: usize) {
        let Some(parent) = fixtures_cgroup_dir() else {
            return println!(
                "5. kernel cost: skipped (the fixtures' cgroup directory was not found)"
            );
        };
        let dir = parent.join(format!("bench-{}", std::process::id()));
        let mut per_child = vec![Vec::new(); KERNEL_WAYS.len()];
        for _ in 0..2 {
            for (i, &(_, per_child_dir, inside)) in KERNEL_WAYS.iter().enumerate() {
                per_child[i].push(clone_loop(&dir, children, per_child_dir, inside));
            }
        }
        let _ = std::fs::remove_dir(&dir);
        for ((name, ..), cpu) in KERNEL_WAYS.iter().zip(per_child) {
            let cpu: Vec<String> = cpu.iter().map(|d| format!("{d:.2?}")).collect();
            println!("5. CPU per child of /bin/true, {name}: {}", cpu.join(", "));
        }
    }

    /// CPU per child over `children` clones of `/bin/true`: in cgroup `dir` if `inside`, which is
    /// made and removed around each child if `per_child_dir` (else made once, left for the caller).
    fn clone_loop(dir: &Path, children: usize, per_child_dir: bool, inside: bool) -> Duration {
        let once = (inside && !per_child_dir).then(|| open_cgroup(dir));
        let before = cpu_with_children();
        for _ in 0..children {
            let fresh = per_child_dir.then(|| open_cgroup(dir));
            spawn_true(fresh.as_ref().or(once.as_ref()).filter(|_| inside));
            if let Some(fresh) = fresh {
                drop(fresh);
                // Empty once its child is reaped; bounded, should the kernel lag behind.
                wait_for(|| std::fs::remove_dir(dir).is_ok());
            }
        }
        (cpu_with_children() - before) / children as u32
    }

    /// `dir`, made if need be, open as `O_PATH` (what `CLONE_INTO_CGROUP` takes).
    fn open_cgroup(dir: &Path) -> std::fs::File {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => panic!("mkdir: {e}"),
            _ => {}
        }
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(dir)
            .expect("open the cgroup")
    }

    /// Runs `/bin/true` in a raw `clone3` child (in `cgroup` if given) and reaps it.
    fn spawn_true(cgroup: Option<&std::fs::File>) {
        use std::os::fd::AsRawFd;
        const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
        let mut args = [0u64; 11]; // struct clone_args: flags … cgroup
        args[4] = libc::SIGCHLD as u64; // exit_signal
        if let Some(cg) = cgroup {
            args[0] = CLONE_INTO_CGROUP;
            args[10] = cg.as_raw_fd() as u64;
        }
        let argv = [c"true".as_ptr(), std::ptr::null()];
        // SAFETY: clone3 with fork semantics; the child only execs or exits, both
        // async-signal-safe; `args` and `argv` outlive the call.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                args.as_ptr(),
                std::mem::size_of_val(&args),
            )
        };
        if pid == 0 {
            // SAFETY: as above, in the child.
            unsafe {
                libc::execv(c"/bin/true".as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        assert!(pid > 0, "clone3: {}", std::io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: our own child, reaped once.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    }

    /// utime + stime of this process and its reaped children.
    fn cpu_with_children() -> Duration {
        rusage_cpu(libc::RUSAGE_SELF) + rusage_cpu(libc::RUSAGE_CHILDREN)
    }

    /// Where the fixtures' cgroups are made: the parent of a `Containment::Cgroup` fixture's.
    fn fixtures_cgroup_dir() -> Option<PathBuf> {
        let fx = sleeper(Some(Containment::Cgroup)).spawn().ok()?;
        let text = std::fs::read_to_string(format!("/proc/{}/cgroup", fx.pid())).ok()?;
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
        fx.stop().ok()?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mounts.lines().find_map(|l| {
            let (fields, fs) = l.split_once(" - ")?;
            fs.starts_with("cgroup2 ")
                .then(|| fields.split(' ').nth(4).map(str::to_owned))?
        })?;
        PathBuf::from(format!("{mount}{path}"))
            .parent()
            .map(Path::to_path_buf)
    }
}

/// Figure 4: spawn and stop of `sleep`, each after 200 ms without any spawn.
fn quiet_cycles(n: usize) {
    for (name, kind) in WAYS {
        let (mut spawns, mut stops) = (Vec::new(), Vec::new());
        for _ in 0..n {
            // The quiet moment is the point of the figure, not a wait for something.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(200));
            let t = Instant::now();
            let fx = sleeper(kind).spawn().expect("spawn");
            spawns.push(t.elapsed());
            let t = Instant::now();
            fx.stop().expect("stop");
            stops.push(t.elapsed());
        }
        println!(
            "4. after a quiet moment, {name}: spawn {}; stop {}",
            summary(&mut spawns),
            summary(&mut stops)
        );
    }
}

/// Cgroup (when one can be made here) and Subreaper.
fn available() -> Vec<Containment> {
    let probe = ProcessFixture::builder("true")
        .ready(Ready::none())
        .containment(Containment::Cgroup)
        .spawn();
    match probe {
        Ok(_) => vec![Containment::Cgroup, Containment::Subreaper],
        Err(Error::ContainmentUnavailable { reason, .. }) => {
            println!("no cgroup here ({reason}): the subreaper alone");
            vec![Containment::Subreaper]
        }
        Err(e) => panic!("{e}"),
    }
}

fn tree(kind: Containment) -> ProcessFixture {
    let fx = ProcessFixture::builder(SERVER)
        .args([
            "--mode",
            "workers-ignore-term",
            "--workers",
            "49",
            "--port",
            "{port}",
        ])
        .ready(Ready::tcp())
        .containment(kind)
        .grace_period(GRACE)
        .spawn()
        .expect("spawn");
    wait_for(|| fx.processes().len() >= 50);
    fx
}

fn storm(kind: Containment) -> ProcessFixture {
    let fx = ProcessFixture::builder(SERVER)
        .args([
            "--mode",
            "fork-storm",
            "--workers",
            "64",
            "--port",
            "{port}",
        ])
        .ready(Ready::tcp())
        .user("nobody")
        .containment(kind)
        .grace_period(GRACE)
        .spawn()
        .expect("spawn");
    wait_for(|| fx.processes().len() >= 48);
    fx
}

fn stop_times(
    kind: Containment,
    n: usize,
    make: fn(Containment) -> ProcessFixture,
) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let fx = make(kind);
            let t = Instant::now();
            let _ = fx.stop();
            t.elapsed()
        })
        .collect()
}

/// Stop times of fork storms, and the most processes of user nobody left alive after a stop.
fn storm_stops(kind: Containment, n: usize) -> (Vec<Duration>, usize) {
    let mut left = 0;
    let times = (0..n)
        .map(|_| {
            let fx = storm(kind);
            let t = Instant::now();
            let outcome = fx.stop();
            let took = t.elapsed();
            if let Err(e) = outcome {
                println!("   {kind:?}: {e}");
            }
            left = left.max(nobody_processes());
            kill_nobody();
            took
        })
        .collect();
    (times, left)
}

/// The containments compared in figures 3 and 4: the default (a cgroup, the server started
/// inside it), `Containment::Cgroup` asked for (on a hybrid system also the v1 memory cgroup),
/// the subreaper alone. `None` for the default.
const WAYS: [(&str, Option<Containment>); 3] = [
    ("default (cgroup)", None),
    ("Containment::Cgroup", Some(Containment::Cgroup)),
    ("Containment::Subreaper", Some(Containment::Subreaper)),
];

fn sleeper(kind: Option<Containment>) -> process_fixture::Builder {
    let mut b = ProcessFixture::builder("sleep");
    b.arg("60").ready(Ready::none());
    if let Some(kind) = kind {
        b.containment(kind);
    }
    b
}

/// Figure 3: spawn+stop cycles back to back, the three ways taking turns.
fn cycle_cost(kinds: &[Containment], n: usize) {
    if !kinds.contains(&Containment::Cgroup) {
        let mut s: Vec<Duration> = (0..n).map(|_| timed_cycle(None)).collect();
        return println!("3. spawn+stop of sleep, subreaper: {}", summary(&mut s));
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); WAYS.len()];
    for _ in 0..n {
        for (i, (_, kind)) in WAYS.iter().enumerate() {
            samples[i].push(timed_cycle(*kind));
        }
    }
    let mut medians = Vec::new();
    for ((name, _), s) in WAYS.iter().zip(&mut samples) {
        println!("3. spawn+stop of sleep, {name}: {}", summary(s));
        s.sort_unstable();
        medians.push(s[s.len() / 2].as_secs_f64() * 1e3);
    }
    println!(
        "3. a cgroup adds {:.3} ms to the median cycle by default, {:.3} ms asked for",
        medians[0] - medians[2],
        medians[1] - medians[2]
    );
}

fn timed_cycle(kind: Option<Containment>) -> Duration {
    let t = Instant::now();
    sleeper(kind).spawn().expect("spawn").stop().expect("stop");
    t.elapsed()
}

/// Live processes of user nobody (65534).
fn nobody_processes() -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534"))
                    && !s
                        .lines()
                        .any(|l| l.starts_with("State:") && l.contains('Z'))
            })
        })
        .count()
}

/// What a storm left (the subreaper may give up on one): a bench must not leave it running.
fn kill_nobody() {
    let _ = std::process::Command::new("pkill")
        .args(["-KILL", "-u", "nobody"])
        .status();
    wait_for(|| nobody_processes() == 0);
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pause = Duration::from_micros(100);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
