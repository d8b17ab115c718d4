//! The guardian's view of the fixture's processes: the leader, kept unreaped until the very end,
//! and every other process, found by walking the guardian's descendants (with the subreaper,
//! every process the server started is one) or, with the process group only, by the group.
//!
//! Signals by number go only to ids pinned by an unreaped child of the guardian: the leader (and
//! so its group id), and the guardian's direct children. A deeper descendant in another group is
//! signalled through a pidfd opened and checked against what the walk saw, never by number: by
//! the time the signal is sent its pid may belong to a stranger.

use crate::sys::{self, Pid, ProcStat, Target, WaitStatus};

/// The server's first process. Its pid is its process group id.
pub(super) struct Leader {
    pub pid: Pid,
    /// Wait status once observed (without reaping).
    pub exit: Option<WaitStatus>,
    reaped: bool,
}

impl Leader {
    pub(super) fn new(pid: Pid) -> Leader {
        Leader {
            pid,
            exit: None,
            reaped: false,
        }
    }

    /// Observes the exit without reaping: the zombie keeps pid and pgid pinned.
    pub(super) fn exited(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = sys::peek_exit(self.pid);
        }
        self.exit.is_some()
    }

    /// Signals the leader. Only while unreaped: then its pid is still ours.
    pub(super) fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            let _ = sys::signal(Target::Process(self.pid), sig);
        }
    }

    /// Signals the leader's process group, whose id is the leader's pid: pinned while unreaped.
    pub(super) fn signal_group(&self, sig: libc::c_int) {
        if !self.reaped {
            let _ = sys::signal(Target::Group(self.pid), sig);
        }
    }

    /// Reaps the leader, the very last step. Returns its wait status.
    pub(super) fn reap(&mut self) -> Option<WaitStatus> {
        match sys::try_reap(self.pid) {
            Ok(Some(status)) => {
                self.reaped = true;
                Some(status)
            }
            _ => None,
        }
    }
}

/// The most processes one walk follows (a fixed stack: the guardian does not allocate).
const WALK_MAX: usize = 1024;

/// What one look at the processes found, the leader aside.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Census {
    /// Live processes besides the leader.
    pub live: u32,
    /// Of those, outside the leader's process group.
    pub escapees: u32,
    /// Of those, how many ignore SIGTERM (SigIgn): they will never act on it.
    pub ignoring_term: u32,
    /// Of those, how many were not stopped (by SIGSTOP) when seen.
    pub running: u32,
    /// Direct children found dead (and reaped): their children came to the guardian, maybe
    /// after the list was read, so this look proves nothing about emptiness.
    pub dead_children: u32,
    /// errno of a listing that failed: could not look, which is never "empty".
    pub list_error: i32,
}

/// Everything of the fixture besides the leader.
pub(super) struct Tree {
    me: Pid,
    pgid: Pid,
    pub subreaper: bool,
    /// May signal a deeper descendant through a pidfd.
    pidfd: bool,
    /// Escapees already counted (distinct pids; bounded, never allocated).
    seen: [Pid; 256],
    seen_len: usize,
    pub escapees: u32,
}

impl Tree {
    pub(super) fn new(pgid: Pid, subreaper: bool, pidfd: bool) -> Tree {
        Tree {
            me: sys::getpid(),
            pgid,
            subreaper,
            pidfd,
            seen: [0; 256],
            seen_len: 0,
            escapees: 0,
        }
    }

    /// Reaps dead direct children (never the leader) and counts the live ones. Enough to tell
    /// emptiness with the subreaper: a live descendant always has a live direct child of ours
    /// above it.
    fn sweep_children(&self) -> Census {
        let mut census = Census::default();
        let listed = sys::for_each_own_child(|child| {
            if child == self.pgid {
                return; // the leader: observed and reaped only by `Leader`
            }
            match sys::proc_stat(child) {
                Some(stat) if stat.is_live() => census.live += 1,
                _ => {
                    census.dead_children += 1;
                    let _ = sys::try_reap(child);
                }
            }
        });
        if !listed {
            census.list_error = sys::errno().max(1);
        }
        census
    }

    /// Has every process of the fixture exited? The leader's exit is observed *before* the list
    /// of children is read: the kernel re-parents a process's children before it becomes a
    /// zombie, so an exited leader's children are all in that list. A look that met a dead child
    /// is repeated (its children may have come to us after the list was read). `Err(errno)`:
    /// the processes could not be listed, so nothing is known.
    pub(super) fn settled(&mut self, leader: &mut Leader) -> Result<bool, i32> {
        let exited = leader.exited();
        loop {
            let census = self.sweep_children();
            if census.list_error != 0 {
                return Err(census.list_error);
            }
            if census.dead_children > 0 {
                continue; // bounded: each pass reaps what it counts
            }
            if !exited || census.live > 0 {
                return Ok(false);
            }
            return if self.subreaper {
                Ok(true)
            } else {
                self.group_empty()
            };
        }
    }

    /// No live process has the leader's group; a listing that fails is never taken for empty.
    /// Linux: no live entry in /proc with that pgrp. macOS: `kill(-pgid, 0)` gives EPERM for an all-zombie group, ESRCH for a gone one.
    fn group_empty(&self) -> Result<bool, i32> {
        let mut live = 0;
        if sys::for_each_process(|_, stat| {
            live += u32::from(stat.pgrp == self.pgid && stat.is_live())
        }) {
            return Ok(live == 0);
        }
        match sys::group_probe(self.pgid) {
            libc::EPERM | libc::ESRCH => Ok(true),
            0 => Ok(false),
            errno => Err(errno),
        }
    }

    /// Sends `sig` (when given) to every live process of the fixture besides the leader, and
    /// counts them. The group gets it by number (the leader, unreaped, pins the id); members
    /// outside the group get it one by one.
    pub(super) fn signal_all(&mut self, leader: &Leader, sig: Option<libc::c_int>) -> Census {
        // Counted before the group signal, which may end them all at once.
        let mut census = self.walk(sig);
        if !self.subreaper {
            let group = self.count_group();
            census.live = census.live.max(group.live);
            census.running = census.running.max(group.running);
        }
        if let Some(sig) = sig {
            leader.signal_group(sig);
        }
        census
    }

    /// Counts the live processes of the fixture besides the leader, signalling none: the
    /// escapees it sees are not noted, since only those a signal was meant for count.
    pub(super) fn count_live(&mut self, leader: &Leader) -> u32 {
        self.signal_unnoted(leader, None).live
    }

    /// [`Tree::signal_all`] for a pause or a resume: the escapees it reaches are not noted, since
    /// the stop report counts those the stop itself signalled.
    pub(super) fn signal_unnoted(&mut self, leader: &Leader, sig: Option<libc::c_int>) -> Census {
        let (seen_len, escapees) = (self.seen_len, self.escapees);
        let census = self.signal_all(leader, sig);
        (self.seen_len, self.escapees) = (seen_len, escapees);
        census
    }

    /// Live members of the leader's group other than the leader, from /proc (the process-group
    /// containment, where orphaned members are not the guardian's descendants): a census of
    /// them with `live` and `running` only.
    fn count_group(&self) -> Census {
        let mut census = Census::default();
        sys::for_each_process(|pid, stat| {
            if stat.pgrp == self.pgid && pid != self.pgid && stat.is_live() {
                census.live += 1;
                census.running += u32::from(!stat.is_stopped());
            }
        });
        census
    }

    /// Walks the guardian's descendants depth first (the leader counted apart), signalling
    /// those outside the group with `sig`.
    fn walk(&mut self, sig: Option<libc::c_int>) -> Census {
        let mut census = Census::default();
        let mut stack = [0 as Pid; WALK_MAX];
        let mut depth = 0;
        let mut overflow = false;
        let mut push = |stack: &mut [Pid; WALK_MAX], depth: &mut usize, pid: Pid| {
            if *depth < WALK_MAX {
                stack[*depth] = pid;
                *depth += 1;
            } else {
                overflow = true;
            }
        };
        if !sys::for_each_own_child(|c| push(&mut stack, &mut depth, c)) {
            census.list_error = sys::errno().max(1);
        }
        while depth > 0 {
            depth -= 1;
            let pid = stack[depth];
            let Some(stat) = sys::proc_stat(pid) else {
                continue; // gone since it was listed
            };
            if pid != self.pgid {
                self.visit(pid, &stat, sig, &mut census);
            }
            if stat.is_live() && !sys::for_each_child(pid, |c| push(&mut stack, &mut depth, c)) {
                // It may have exited since: only a listing of a live process that fails counts.
                if sys::proc_stat(pid).is_some_and(|s| s.is_live()) {
                    census.list_error = sys::errno().max(1);
                }
            }
        }
        if overflow {
            census.list_error = libc::E2BIG;
        }
        census
    }

    fn visit(&mut self, pid: Pid, stat: &ProcStat, sig: Option<libc::c_int>, census: &mut Census) {
        let child = stat.ppid == self.me;
        if !stat.is_live() {
            if child {
                census.dead_children += 1;
                let _ = sys::try_reap(pid);
            }
            return;
        }
        census.live += 1;
        census.running += u32::from(!stat.is_stopped());
        if sys::ignores_signal(pid, libc::SIGTERM) == Some(true) {
            census.ignoring_term += 1;
        }
        if stat.pgrp == self.pgid {
            return; // the group signal reaches it
        }
        census.escapees += 1;
        self.note_escapee(pid);
        if let Some(sig) = sig {
            if child {
                // Our unreaped child: its pid, and the group it may lead, are pinned.
                let _ = sys::signal(Target::Process(pid), sig);
                if stat.pgrp == pid {
                    let _ = sys::signal(Target::Group(pid), sig);
                }
            } else if self.pidfd {
                signal_checked(pid, stat, sig);
            }
        }
    }

    fn note_escapee(&mut self, pid: Pid) {
        if !self.seen[..self.seen_len].contains(&pid) && self.seen_len < self.seen.len() {
            self.seen[self.seen_len] = pid;
            self.seen_len += 1;
            self.escapees += 1;
        }
    }
}

/// Signals a process that is not our child through a pidfd, after checking that the pidfd names
/// the process the walk saw (same parent, same start time), not a stranger that got its pid.
fn signal_checked(pid: Pid, seen: &ProcStat, sig: libc::c_int) {
    let Some(fd) = sys::pidfd_open(pid) else {
        return;
    };
    let same = sys::proc_stat(pid).is_some_and(|s| s.start == seen.start && s.ppid == seen.ppid);
    if same {
        let _ = sys::signal(Target::PidFd(fd), sig);
    }
    sys::close(fd);
}
