//! The stop sequence, run by the guardian on a STOP message or when the test process is gone. It
//! reads top to bottom.
//!
//! Waiting is only worth it for a process that can act on the signal: one that *ignores* it
//! (SigIgn) has discarded it for good, so it gets no grace; a *stopped* one gets SIGCONT with the
//! first signal. Waits wake on exits (SIGCHLD through an fd), not on polls, so a stop costs the
//! server's own exit time plus well under a millisecond.
//!
//! With a cgroup the graceful phase is the same; the escalation adds `cgroup.kill` (every
//! process inside, forks in flight included, however it re-parented), the confirmation adds the
//! cgroup's `populated 0` (an event that wakes the waits), and what the server used is read
//! from the cgroup before it is removed.

use std::time::Duration;

use super::main_loop::Guardian;
use super::protocol::Msg;
use crate::deadline::Backoff;
use crate::deadline::Deadline;
use crate::sys;

/// How long the rest of the fixture gets after its SIGTERM, at most (it is also ≤ the grace).
pub(crate) const GROUP_GRACE_MAX: Duration = Duration::from_secs(1);
/// How long SIGKILL is re-sent before the guardian gives up confirming (an unkillable process).
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);
/// Slack on top of the stop's own deadlines: scheduling, the leader's reaping, the report.
const STOP_SLACK: Duration = Duration::from_secs(2);

/// The longest time from STOP to the `STOPPED` report: the leader's grace, the rest of the
/// fixture's grace, the SIGKILL wait, and slack. Saturates (a grace of `Duration::MAX`).
pub(crate) fn stop_bound(grace: Duration) -> Duration {
    [GROUP_GRACE_MAX, KILL_WAIT, STOP_SLACK]
        .into_iter()
        .fold(grace, crate::deadline::add)
}

/// Re-send interval cap for SIGKILL (a group that forks), and poll cap where no exit wakes us.
const STOP_POLL_MAX: Duration = Duration::from_millis(10);

/// Leader first; grace; everything else TERM + CONT; SIGKILL re-sent until no live process
/// remains; then, and only then, reap the leader.
pub(super) fn stop(g: &mut Guardian) -> Msg {
    let mut msg = Msg::new(Msg::STOPPED);
    if g.tree.subreaper {
        msg.flags |= Msg::F_SUBREAPER;
    }
    if g.cgroup.is_some() {
        msg.flags |= Msg::F_CGROUP;
    }
    if g.leader.exited() {
        msg.flags |= Msg::F_LEADER_EXITED_BEFORE;
    }
    if g.gone_reported {
        msg.flags |= Msg::F_GONE_BEFORE;
    }

    // 0. A paused fixture is thawed first: a stopped process could not act on its signal, and
    //    the stop of a paused fixture takes no longer than that of a running one.
    if g.paused {
        g.thaw();
    }

    // 1. Leader first: nginx, gunicorn and PostgreSQL stop their workers when the master is asked.
    //    SIGCONT with it: a stopped leader could not act on it. A leader that ignores the signal
    //    gets no grace.
    let sig = g.stop_signal.unwrap_or(g.plan.stop_signal);
    // Counted before any signal: the processes the stop is about (nginx: master and workers).
    msg.processes = g.tree.count_live(&g.leader) + u32::from(!g.leader.exited());
    if !g.leader.exited() {
        g.leader.signal(sig);
        g.leader.signal(libc::SIGCONT);
        if sys::ignores_signal(g.leader.pid, sig) != Some(true) {
            g.wait_leader(Deadline::after(g.plan.grace));
        }
    }

    // 2. Everything else, unless nothing else lives: SIGTERM then SIGCONT (a stopped process keeps
    //    TERM pending until continued) to the group and to every live process outside it,
    //    then a short grace, skipped when every live process ignores SIGTERM.
    let mut outcome = g.settled();
    if outcome != Ok(true) {
        let census = g.tree.signal_all(&g.leader, Some(libc::SIGTERM));
        g.tree.signal_all(&g.leader, Some(libc::SIGCONT));
        msg.killed = census.live;
        let leader_ignores =
            g.leader.exited() || sys::ignores_signal(g.leader.pid, libc::SIGTERM) == Some(true);
        let all_ignore = leader_ignores && census.ignoring_term == census.live;
        if !all_ignore {
            let group_grace = g.plan.grace.min(GROUP_GRACE_MAX);
            outcome = g.wait_settled(Deadline::after(group_grace), None);
        }
    }

    // 3. Escalate: SIGKILL, re-sent on every wake until no live process remains (a forking group makes new ones meanwhile).
    if outcome != Ok(true) {
        msg.flags |= Msg::F_ESCALATED;
        outcome = g.wait_settled(Deadline::after(KILL_WAIT), Some(libc::SIGKILL));
    }

    // 4. Confirmed, or why not: not being able to look is never "empty".
    match outcome {
        Ok(true) => msg.flags |= Msg::F_CONFIRMED,
        Ok(false) => msg.detail = Msg::STILL_ALIVE,
        Err(errno) => {
            msg.detail = Msg::CANNOT_LIST;
            msg.errno = errno;
        }
    }

    // 5. Reap the leader last (its pid stays pinned until then). Never signal by number after this.
    if let Some(status) = g.leader.reap() {
        msg.flags |= Msg::F_REAPED;
        msg.status = status;
    }
    // Reap whatever else has died, by name or not (without /proc there are no names): no pid
    // needs pinning any more.
    sys::reap_any(|_, _| {});
    // Everything of the tree that was ours to reap is reaped: what it used is ours to tell.
    g.usage(&mut msg);
    // 6. The cgroup goes once it is empty (else a later spawn's sweep removes it).
    for cgroup in [g.cgroup.take(), g.memory.take()].into_iter().flatten() {
        if msg.flags & Msg::F_CONFIRMED != 0 {
            cgroup.remove();
        } else {
            cgroup.close();
        }
    }
    msg.escapees = g.tree.escapees;
    msg.killed = msg.killed.max(msg.escapees);
    msg
}

impl Guardian<'_> {
    /// Whether no live process of the fixture remains: the tree's census, and with a cgroup
    /// also its `populated 0` (which alone decides where the census cannot look).
    fn settled(&mut self) -> Result<bool, i32> {
        let census = self.tree.settled(&mut self.leader);
        match self.cgroup.as_ref().and_then(sys::Cgroup::populated) {
            Some(populated) => Ok(!populated && census.unwrap_or(true) && self.leader.exited()),
            None => census,
        }
    }

    /// CPU and peak memory: the cgroup's where it has them, else what the reaped processes
    /// used.
    fn usage(&self, msg: &mut Msg) {
        let reaped = sys::children_usage();
        let cgroup = self.cgroup.as_ref();
        let cpu = cgroup.and_then(sys::Cgroup::cpu_us);
        let peak = (cgroup.and_then(sys::Cgroup::memory_peak))
            .or_else(|| self.memory.as_ref().and_then(sys::Cgroup::memory_peak));
        let (Some(cpu_us), Some(max_rss)) =
            (cpu.or(reaped.map(|r| r.0)), peak.or(reaped.map(|r| r.1)))
        else {
            return;
        };
        msg.flags |= Msg::F_USAGE
            | if cpu.is_some() { Msg::F_CGROUP_CPU } else { 0 }
            | if peak.is_some() {
                Msg::F_CGROUP_MEMORY
            } else {
                0
            };
        (msg.cpu_us, msg.max_rss) = (cpu_us, max_rss);
    }

    /// Waits until the leader has exited or `deadline` passes, woken by its exit.
    fn wait_leader(&mut self, deadline: Deadline) {
        let mut backoff = Backoff::new(STOP_POLL_MAX);
        while !self.leader.exited() && !deadline.passed() {
            // The leader is our child: its exit raises SIGCHLD, so no poll is needed when that
            // comes through an fd.
            let cap = self.events.is_none().then(|| backoff.next());
            self.sleep(deadline, cap);
        }
    }

    /// Waits until no live process of the fixture remains, or `deadline` passes. With `kill`,
    /// sends it to every live process on each wake. `Err(errno)`: could not look, to the end.
    fn wait_settled(&mut self, deadline: Deadline, kill: Option<libc::c_int>) -> Result<bool, i32> {
        let mut backoff = Backoff::new(STOP_POLL_MAX);
        loop {
            if let Some(sig) = kill {
                if let Some(cgroup) = &self.cgroup {
                    cgroup.kill();
                }
                self.leader.signal(sig);
                self.tree.signal_all(&self.leader, Some(sig));
            }
            let outcome = self.settled();
            if outcome == Ok(true) || deadline.passed() {
                return outcome;
            }
            // A re-sent SIGKILL catches what a forking group made meanwhile (a cgroup's kill
            // needs no second write: the kernel kills what forks in it, and its emptiness is an
            // event); a poll covers what no exit event reports (orphans that are not ours, a
            // listing that failed).
            let resend = kill.is_some() && self.cgroup.is_none();
            let poll = resend || !self.exits_wake_us() || outcome.is_err();
            self.sleep(deadline, poll.then(|| backoff.next()));
        }
    }
}
