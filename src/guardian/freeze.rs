//! Pause and resume, on the test side's request: the whole tree (the leader, its group, and the
//! escapees the guardian knows) stopped with SIGSTOP, continued with SIGCONT. A process that
//! forks while the signals go out makes a child that the first pass did not see, so a pause
//! signals again until a pass finds every live process stopped: a stopped process cannot fork.
//! Same chokepoint, same pinned ids as the stop sequence.
//!
//! With a cgroup, `cgroup.freeze` instead: atomic and fork-proof, confirmed by `frozen 1` in
//! `cgroup.events` (an event, not a poll). Frozen processes are not in the stopped state, and
//! a thawed one gets no SIGCONT (a server that handles it sees nothing).

use std::time::Duration;

use super::main_loop::{report, Guardian};
use super::protocol::Msg;
use crate::deadline::{Backoff, Deadline};
use crate::sys;

/// How long a pause re-signals until every process is seen stopped.
const PAUSE_WAIT: Duration = Duration::from_secs(1);
/// Poll cap between passes: a stop by signal is noticed by no event.
const PAUSE_POLL_MAX: Duration = Duration::from_millis(5);

impl Guardian<'_> {
    /// Stops every live process of the fixture, and answers with how many were reached and how
    /// many were still not stopped when the wait ended.
    pub(super) fn pause(&mut self, seq: u32) {
        self.paused = true;
        let deadline = Deadline::after(PAUSE_WAIT);
        if self.cgroup.is_some() {
            let frozen = self.freeze_cgroup(true, deadline);
            let live = self.live();
            return self.answer(seq, true, live, if frozen { 0 } else { live.max(1) });
        }
        let mut backoff = Backoff::new(PAUSE_POLL_MAX);
        let (live, running) = loop {
            let (live, running) = self.signal_tree(libc::SIGSTOP);
            if running == 0 || deadline.passed() {
                break (live, running);
            }
            self.sleep(deadline, Some(backoff.next()));
        };
        self.answer(seq, true, live, running);
    }

    /// Continues every live process of the fixture.
    pub(super) fn resume(&mut self, seq: u32) {
        self.thaw();
        let live = self.live();
        self.answer(seq, false, live, 0);
    }

    /// Continues every process: thaws the cgroup, or sends SIGCONT.
    pub(super) fn thaw(&mut self) {
        self.paused = false;
        if self.cgroup.is_some() {
            self.freeze_cgroup(false, Deadline::after(PAUSE_WAIT));
        } else {
            self.signal_tree(libc::SIGCONT);
        }
    }

    /// Writes `cgroup.freeze` and waits, woken by `cgroup.events`, until `frozen` says it is
    /// done or `deadline` passes. Returns whether it is.
    fn freeze_cgroup(&mut self, on: bool, deadline: Deadline) -> bool {
        let Some(cgroup) = &self.cgroup else {
            return false;
        };
        cgroup.freeze(on);
        loop {
            let done = self.cgroup.as_ref().and_then(sys::Cgroup::frozen) == Some(on);
            if done || deadline.passed() {
                return done;
            }
            self.sleep(deadline, None);
        }
    }

    /// Live processes of the fixture, the leader included.
    fn live(&mut self) -> u32 {
        self.tree.count_live(&self.leader) + u32::from(!self.leader.exited())
    }

    /// Sends `sig` to the leader and to every other live process. Returns how many live
    /// processes there were, leader included, and how many of them were not stopped *before*
    /// this pass (so a pass that finds none running proves that the previous one stopped all).
    pub(super) fn signal_tree(&mut self, sig: libc::c_int) -> (u32, u32) {
        let leader_live = !self.leader.exited();
        let leader_running =
            leader_live && sys::proc_stat(self.leader.pid).is_some_and(|s| !s.is_stopped());
        if leader_live {
            self.leader.signal(sig);
        }
        let census = self.tree.signal_unnoted(&self.leader, Some(sig));
        (
            census.live + u32::from(leader_live),
            census.running + u32::from(leader_running),
        )
    }

    fn answer(&self, seq: u32, paused: bool, live: u32, running: u32) {
        let mut msg = Msg::new(Msg::FROZEN);
        msg.seq = seq;
        msg.flags = if paused { Msg::F_PAUSED } else { 0 };
        msg.processes = live;
        msg.detail = running;
        report(&self.ends, &msg);
    }
}
