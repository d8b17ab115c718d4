//! The test side of the stop: ask the guardian to stop, wait (bounded) for its report, stop the
//! output monitor, and turn the report into a [`StopReport`] or an error. The guardian runs the
//! stop sequence itself; the test process never signals the server.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::error::{Error, StopFailure};
use crate::guardian::{self, Msg, Origin, Outcome, Stopped};
use crate::report::{Containment, GuardianKind, StopReport, UsageSource};
use crate::running::Running;
use crate::sys;

/// Lines of each stream in error messages.
pub(crate) const ERROR_TAIL_LINES: usize = 30;
/// How long a guardian forked from the test process may take to exit after its report.
const FORKED_EXIT_WAIT: Duration = Duration::from_millis(100);

/// Stops the fixture: returns once the guardian reported that nothing is left, or its bound
/// passed. A server that had crashed before the stop is an error unless it was allowed to.
pub(crate) fn stop(run: &mut Running) -> Result<StopReport, Error> {
    stop_with(run, None)
}

/// [`stop`], the leader signalled with `signal` instead of the configured stop signal.
pub(crate) fn stop_with(run: &mut Running, signal: Option<i32>) -> Result<StopReport, Error> {
    let report = finish_keeping(run, false, signal)?;
    match report.exit_status {
        Some(status) if report.exited_before_stop && !status.success() && !run.allow_early_exit => {
            Err(Error::ExitedBeforeStop {
                program: run.program.clone(),
                status,
                report: Box::new(report),
                output: Box::new(run.tail(ERROR_TAIL_LINES)),
            })
        }
        _ => Ok(report),
    }
}

/// The stop before a restart: the same sequence, but the fixture's directory stays, with its
/// files, for the next server. A server that had exited on its own is no error here: the
/// report says so, and the restart starts it again.
pub(crate) fn stop_for_restart(run: &mut Running) -> Result<StopReport, Error> {
    finish_keeping(run, true, None)
}

/// Sends STOP, waits for the report, then (bounded) for the guardian to be gone, and stops the
/// monitor. Idempotent: a second call finds the control socket gone and reports nothing more.
pub(crate) fn finish(run: &mut Running) -> Result<StopReport, Error> {
    finish_keeping(run, false, None)
}

/// [`finish`]; with `keep_dir`, the guardian leaves the fixture's directory in place.
fn finish_keeping(
    run: &mut Running,
    keep_dir: bool,
    signal: Option<i32>,
) -> Result<StopReport, Error> {
    let started = Instant::now();
    let Some(ctl) = run.ctl.take() else {
        return Err(incomplete(
            run,
            StopFailure::NoReport {
                waited: Duration::ZERO,
            },
            None,
        ));
    };
    // No directory left to remove here: kept for a look (a failed spawn), or never made.
    send_stop(&ctl, keep_dir || run.dir.is_none(), signal);
    let bound = guardian::stop_bound(run.grace);
    let outcome = run.monitor.wait_for(Deadline::from(started, bound), |s| {
        let died = s.guardian_died.map(Err);
        s.stopped
            .map(Ok)
            .or(died)
            .map(Some)
            .or_else(|| s.guardian_closed.then_some(None))
    });
    let elapsed = started.elapsed();
    // Reported: the guardian exits at once; wait (briefly) until it is reaped too.
    let reap_wait = outcome.map_or(Duration::ZERO, |_| guardian::REAP_WAIT);
    guardian::stopped(&ctl, run.origin, Deadline::after(reap_wait));
    drop(ctl);
    let forked_status = match run.origin {
        Origin::Forked(pid) => guardian::reap_forked(pid, Deadline::after(FORKED_EXIT_WAIT)),
        Origin::Zygote => None,
    };
    run.monitor.shutdown();
    if !keep_dir {
        drop(run.dir.take()); // the guardian removed it; this only makes sure
    }
    match outcome {
        Some(Some(Ok(stopped))) => confirmed(run, &stopped, elapsed),
        Some(Some(Err(status))) => Err(guardian_died(run, Some(status))),
        Some(None) => Err(guardian_died(run, forked_status)),
        None => Err(incomplete(
            run,
            StopFailure::NoReport { waited: bound },
            None,
        )),
    }
}

/// The report, when the guardian could confirm that nothing is left; the failure otherwise.
fn confirmed(run: &Running, stopped: &Stopped, elapsed: Duration) -> Result<StopReport, Error> {
    let report = report(run, stopped, elapsed);
    let failure = match stopped.outcome {
        Outcome::Confirmed => return Ok(report),
        Outcome::CannotList(errno) => StopFailure::CannotList {
            reason: io::Error::from_raw_os_error(errno),
        },
        Outcome::StillAlive => StopFailure::StillAlive {
            waited: guardian::KILL_WAIT,
        },
    };
    Err(incomplete(run, failure, Some(report)))
}

/// Asks the guardian to stop: one message, retried briefly if the socket is full. `keep_dir`:
/// the fixture's directory stays (a failed spawn's, for a look).
pub(crate) fn send_stop(ctl: &OwnedFd, keep_dir: bool, signal: Option<i32>) {
    let mut msg = Msg::new(Msg::STOP);
    msg.flags = if keep_dir { Msg::F_KEEP_DIR } else { 0 };
    msg.detail = signal.map_or(0, |s| s as u32);
    let deadline = Deadline::after(Duration::from_secs(1));
    while sys::write_once(ctl.as_raw_fd(), msg.as_bytes()) != Msg::SIZE as isize {
        if sys::errno() != libc::EAGAIN || deadline.passed() {
            return; // the guardian is gone (or stuck): the bounded wait that follows tells
        }
        sys::poll(&mut [], Some(Duration::from_millis(1)));
    }
}

fn report(run: &Running, stopped: &Stopped, elapsed: Duration) -> StopReport {
    StopReport {
        exit_status: stopped.exit_status.map(ExitStatus::from_raw),
        exited_before_stop: stopped.leader_exited_before,
        escalated: stopped.escalated,
        elapsed,
        processes_at_stop: Some(stopped.processes_at_stop as usize).filter(|&n| n > 0),
        processes_signalled: stopped.signalled as usize,
        escapees_signalled: stopped.escapees as usize,
        containment: if stopped.cgroup {
            Containment::Cgroup
        } else if stopped.subreaper {
            Containment::Subreaper
        } else {
            Containment::ProcessGroup
        },
        guardian: match run.origin {
            Origin::Zygote => GuardianKind::Zygote,
            Origin::Forked(_) => GuardianKind::Forked,
        },
        cpu_time: stopped.usage.map(|(us, _)| Duration::from_micros(us)),
        peak_memory: stopped.usage.map(|(_, rss)| rss).filter(|&rss| rss > 0),
        usage_source: stopped
            .usage
            .map(|_| match (stopped.cgroup_cpu, stopped.cgroup_memory) {
                (true, true) => UsageSource::Cgroup,
                (true, false) => UsageSource::CgroupCpu,
                _ => UsageSource::Reaped,
            }),
    }
}

/// The guardian is gone without a report (killed: the OOM killer, a stray `kill -9`).
pub(crate) fn guardian_died(run: &Running, status: Option<sys::WaitStatus>) -> Error {
    let fate = match run.origin {
        Origin::Zygote => {
            "on Linux the leader was killed with it (its parent-death signal) and the zygote \
             SIGKILLed the processes it left behind; on macOS they may still run"
        }
        Origin::Forked(_) => {
            "on Linux the leader was killed with it (its parent-death signal); processes it \
             had started may still run (a guardian forked from the test process has no zygote \
             above it to catch them)"
        }
    };
    let failure = StopFailure::GuardianDied {
        status: status.map(ExitStatus::from_raw),
        fate,
    };
    incomplete(run, failure, None)
}

pub(crate) fn incomplete(run: &Running, failure: StopFailure, report: Option<StopReport>) -> Error {
    Error::StopIncomplete {
        program: run.program.clone(),
        failure,
        report: report.map(Box::new),
    }
}
