//! What a stop did ([`StopReport`]), and the words it uses ([`Containment`], [`GuardianKind`]).

use std::process::ExitStatus;
use std::time::Duration;

/// How far the fixture's processes are contained (reported in [`StopReport::containment`]).
///
/// ```
/// use process_fixture::{Containment, ProcessFixture, Ready};
/// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none())
///     .containment(Containment::ProcessGroup) // as on macOS: a `setsid` child would escape
///     .spawn()?;
/// assert_eq!(srv.stop()?.containment, Containment::ProcessGroup);
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Containment {
    /// Linux: the server runs in a cgroup (v2) of its own, made by the guardian, which is also a
    /// child subreaper. The stop's last step is `cgroup.kill`, which kills every process in it
    /// at once, however fast it forks and wherever it re-parented; `populated 0` confirms the
    /// end; the cgroup's own counters say what the server used; a pause freezes it atomically.
    /// The default wherever a writable cgroup v2 hierarchy is found (pure v2, hybrid, or a
    /// delegated subtree); required with [`Builder::containment`](crate::Builder::containment),
    /// its absence is [`Error::ContainmentUnavailable`](crate::Error::ContainmentUnavailable).
    Cgroup,
    /// Linux: the guardian is a child subreaper, so descendants that leave the process group
    /// (`setsid`, double fork) re-parent to it and are killed too. The default where no
    /// writable cgroup is found (not root, no delegation).
    Subreaper,
    /// The process group only (macOS, or no subreaper): a descendant that calls `setsid` escapes.
    ProcessGroup,
}

/// Where the fixture's guardian came from (reported in [`StopReport::guardian`]).
///
/// ```
/// use process_fixture::{GuardianKind, ProcessFixture, Ready};
/// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn()?;
/// let report = srv.stop()?;
/// // Zygote normally; Forked under PROCESS_FIXTURE_FORCE=no-zygote.
/// assert!(matches!(report.guardian, GuardianKind::Zygote | GuardianKind::Forked));
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardianKind {
    /// Forked by the zygote, the test executable exec'd once per test process: nothing of the
    /// test process is copied. The normal case.
    Zygote,
    /// Forked from the test process itself: the fallback where the executable cannot be re-run
    /// (or `PROCESS_FIXTURE_FORCE=no-zygote`). Costs a copy of the test process's page tables.
    Forked,
}

/// What a stop did. Returned by [`ProcessFixture::stop`](crate::ProcessFixture::stop).
///
/// ```
/// use process_fixture::{ProcessFixture, Ready};
/// let srv = ProcessFixture::builder("sh").args(["-c", "echo up; exec sleep 60"]).ready(Ready::stdout("up")).spawn()?;
/// let report = srv.stop()?;
/// println!("{report}"); // stopped in 0.43ms: leader signal: 15 (SIGTERM), no SIGKILL needed, …
/// assert!(!report.escalated && !report.exited_before_stop);
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StopReport {
    /// The leader's exit status (`None` if it could not be reaped in time).
    pub exit_status: Option<ExitStatus>,
    /// Whether the leader had already exited on its own before the stop (a crash mid-test, or
    /// a daemonising leader); `exit_status` says how.
    pub exited_before_stop: bool,
    /// Whether SIGKILL was needed.
    pub escalated: bool,
    /// Time from the stop request to the confirmation that no process is left.
    pub elapsed: Duration,
    /// How many processes the server's tree had when the stop began, the leader included
    /// (nginx with 4 workers: 5). `None` where the processes cannot be listed (no `/proc`).
    pub processes_at_stop: Option<usize>,
    /// How many processes besides the leader were still alive when they were signalled:
    /// members of the leader's process group plus escapees.
    pub processes_signalled: usize,
    /// Of those, how many were descendants outside the process group (caught by the subreaper).
    pub escapees_signalled: usize,
    /// How the processes were contained.
    pub containment: Containment,
    /// Where the guardian came from.
    pub guardian: GuardianKind,
    /// CPU time (user + system) the server's processes used: the whole tree (see
    /// [`StopReport::usage_source`]).
    pub cpu_time: Option<Duration>,
    /// Peak memory, in bytes: of the tree together under a cgroup with the memory controller,
    /// else (resident set) of the largest process reaped (see [`StopReport::usage_source`]).
    pub peak_memory: Option<u64>,
    /// Where `cpu_time` and `peak_memory` come from; `None` when they are unknown.
    pub usage_source: Option<UsageSource>,
}

/// Where a [`StopReport`]'s `cpu_time` and `peak_memory` come from.
///
/// ```
/// use process_fixture::{ProcessFixture, Ready, UsageSource};
/// let srv = ProcessFixture::builder("sleep").arg("60").ready(Ready::none()).spawn()?;
/// let report = srv.stop()?;
/// assert!(report.usage_source.is_some());
/// println!("{report}"); // …, used 0.6ms of CPU, peak 1.9 MiB (largest process)
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageSource {
    /// The resource usage of the processes the guardian reaped (`getrusage(RUSAGE_CHILDREN)`):
    /// their CPU, with that of the children they reaped themselves; the peak memory of the
    /// largest one (not the sum). A process of the tree that another process reaped without
    /// waiting for it is not counted (under `Containment::ProcessGroup`, orphans reaped by init).
    Reaped,
    /// The fixture's cgroup: CPU from `cpu.stat` (every process that ever ran in it), peak
    /// memory of the tree together from `memory.peak`, or on a hybrid system, with
    /// `Containment::Cgroup` asked for, from the `memory.max_usage_in_bytes` of a namesake
    /// cgroup on the v1 memory hierarchy (not by default: a process can only be moved into a v1
    /// cgroup, and a move waits out an RCU grace period, 6–15 ms for a spawn). A cgroup
    /// counts the memory charged to it: file pages already cached for another cgroup (a
    /// program's own binary, often) are not, so a small server can show less than its RSS.
    Cgroup,
    /// CPU from the cgroup's `cpu.stat`; peak memory of the largest process reaped, as with
    /// `Reaped`: no memory controller could be had for the cgroup (on a hybrid system, the
    /// default containment).
    CgroupCpu,
}

impl std::fmt::Display for StopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped in {:.2?}: ", self.elapsed)?;
        match self.exit_status {
            Some(status) if self.exited_before_stop => {
                write!(f, "leader had exited on its own ({status})")?
            }
            Some(status) => write!(f, "leader {status}")?,
            None => write!(f, "leader not reaped")?,
        }
        let escalation = if self.escalated {
            "needed SIGKILL"
        } else {
            "no SIGKILL needed"
        };
        if let Some(n) = self.processes_at_stop {
            write!(f, ", {n} process(es) at the start")?;
        }
        write!(
            f,
            ", {escalation}, {} other process(es) signalled ({} escapee(s)), containment: {:?}",
            self.processes_signalled, self.escapees_signalled, self.containment
        )?;
        if let (Some(cpu), Some(peak)) = (self.cpu_time, self.peak_memory) {
            let mib = peak as f64 / f64::from(1 << 20);
            let of = match self.usage_source {
                Some(UsageSource::Cgroup) => "the whole tree",
                _ => "largest process",
            };
            write!(f, ", used {cpu:.1?} of CPU, peak {mib:.1} MiB ({of})")?;
        }
        Ok(())
    }
}
