//! The guardian's entry ([`setup`], [`run`]) and main loop: start the leader, sleep until
//! something happens, report it, and on STOP (or when the test process is gone) run the stop
//! sequence and exit.

use std::os::fd::RawFd;
use std::time::Duration;

use super::listen::ListenWatch;
use super::port::PortWatch;
use super::protocol::{Msg, Plan, STAGE_CGROUP};
use super::server;
use super::stop;
use super::tree::{Leader, Tree};
use crate::deadline::{Backoff, Deadline};
use crate::sys::{self, Cgroup, ChildEvents, Pid};

/// Idle polling cap, only where exits cannot wake the guardian (process-group containment after
/// the leader exited: orphaned members are not its children).
const IDLE_POLL_MAX: Duration = Duration::from_millis(50);

/// The most listening sockets a fixture passes to its server (socket activation).
pub(crate) const MAX_LISTENERS: usize = 8;

/// The fds a guardian keeps (all others are closed right after its fork).
#[derive(Clone, Copy)]
pub(crate) struct Ends {
    /// Its end of the control socket.
    pub ctl: RawFd,
    /// Write ends of the server's stdout and stderr pipes.
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Readable when the test process exits (pidfd / kqueue), or -1.
    pub test_watch: RawFd,
    /// Socket activation: the listening sockets, in the order the server gets them (fds 3,
    /// 4, …), -1 past the last. The guardian keeps them open for the fixture's whole life.
    pub listeners: [RawFd; MAX_LISTENERS],
}

impl Ends {
    /// The listening sockets, as many as there are.
    pub(crate) fn listeners(&self) -> &[RawFd] {
        let n = self.listeners.iter().take_while(|&&fd| fd >= 0).count();
        &self.listeners[..n]
    }
}

/// `fds` as the fixed array of [`Ends::listeners`]; `None` if there are too many.
pub(crate) fn listener_array(fds: &[RawFd]) -> Option<[RawFd; MAX_LISTENERS]> {
    let mut array = [-1; MAX_LISTENERS];
    if fds.len() > MAX_LISTENERS {
        return None;
    }
    array[..fds.len()].copy_from_slice(fds);
    Some(array)
}

/// The guardian's state while the server runs.
pub(super) struct Guardian<'a> {
    pub(super) plan: &'a Plan,
    pub(super) ends: Ends,
    pub(super) leader: Leader,
    pub(super) tree: Tree,
    /// SIGCHLD as an fd: wakes on every exit of a child (and, as subreaper, of every orphan).
    pub(super) events: Option<ChildEvents>,
    /// The server's cgroup, when it has one: the stop's kill and confirmation, the pause.
    pub(super) cgroup: Option<Cgroup>,
    /// Its namesake on the v1 memory hierarchy, where the memory is counted on a hybrid system.
    pub(super) memory: Option<Cgroup>,
    listen: Option<ListenWatch>,
    /// Looking for the fixture's port, where there are no `listen()` events; until found.
    port: Option<PortWatch>,
    leader_exit_reported: bool,
    pub(super) gone_reported: bool,
    /// STOP asked to keep the fixture's directory.
    keep_dir: bool,
    /// STOP named the signal for the leader (else the plan's).
    pub(super) stop_signal: Option<libc::c_int>,
    /// PAUSE was the last of PAUSE and RESUME: the stop thaws the tree first.
    pub(super) paused: bool,
    /// Partial control message from the test side.
    ctl_buf: [u8; Msg::SIZE],
    ctl_len: usize,
}

/// The guardian's whole life, in a fresh fork that has already run [`setup`]. Never returns.
pub(super) fn run(plan: &Plan, ends: Ends, flags: u32) -> ! {
    let subreaper = plan.subreaper && sys::become_subreaper();
    let events = ChildEvents::new();
    let start = sys::proc_stat(sys::getpid()).map_or(0, |s| s.start);
    let started = make_cgroup(plan, start).and_then(|(cgroup, memory)| {
        let cgroups = [cgroup.as_ref(), memory.as_ref()];
        match server::spawn_leader(plan, &ends, cgroups, flags & Msg::F_ZYGOTE != 0) {
            Ok((pid, listen)) => Ok((pid, listen, (cgroup, memory))),
            Err(failed) => {
                cgroup.map(Cgroup::remove);
                memory.map(Cgroup::remove);
                Err(failed)
            }
        }
    });
    let (leader_pid, listen, (cgroup, memory)) = match started {
        Ok(started) => started,
        Err(failed) => {
            report(&ends, &failed);
            sys::exit(0);
        }
    };
    let port = (listen.is_none() && plan.watch_port != 0)
        .then(|| PortWatch::new(plan.watch_port))
        .flatten();
    let mut spawned = Msg::new(Msg::SPAWNED);
    spawned.pid = leader_pid;
    spawned.guardian = sys::getpid();
    spawned.start = start;
    spawned.flags = flags
        | if subreaper { Msg::F_SUBREAPER } else { 0 }
        | if cgroup.is_some() { Msg::F_CGROUP } else { 0 }
        | if listen.is_some() {
            Msg::F_LISTEN_EVENTS
        } else {
            0
        }
        | if port.is_some() { Msg::F_PORT_WATCH } else { 0 };
    report(&ends, &spawned);
    let mut g = Guardian {
        plan,
        ends,
        leader: Leader::new(leader_pid),
        tree: Tree::new(leader_pid, subreaper, plan.pidfd),
        events,
        cgroup,
        memory,
        listen,
        port,
        leader_exit_reported: false,
        gone_reported: false,
        keep_dir: false,
        stop_signal: None,
        paused: false,
        ctl_buf: [0; Msg::SIZE],
        ctl_len: 0,
    };
    g.watch();
    let stopped = stop::stop(&mut g);
    if stopped.flags & Msg::F_CONFIRMED != 0 && !g.keep_dir {
        if let Some(dir) = &plan.dir {
            remove_dir(dir, flags & Msg::F_ZYGOTE != 0);
        }
    }
    report(&g.ends, &stopped);
    sys::exit(if stopped.detail == Msg::CONFIRMED {
        0
    } else {
        1
    });
}

/// The server's cgroup, `<parent>/<guardian pid>.<start>`, when the plan asks for one, and its
/// namesake on the v1 memory hierarchy when the plan names one (best effort: it only counts).
/// Made here, not by the test side, so that the name says whose it is: a later sweep removes
/// it once no process has that pid and start time. `Err`: it was required and cannot be made.
fn make_cgroup(plan: &Plan, start: u64) -> Result<(Option<Cgroup>, Option<Cgroup>), Msg> {
    let Some(parent) = &plan.cgroup else {
        return Ok((None, None));
    };
    let mut name = sys::StackPath::new();
    name.push_pid(sys::getpid()).push(b".").push_u64(start);
    let name = name.as_cstr().to_bytes();
    let cgroup = match Cgroup::create(parent, name) {
        Ok(cgroup) => cgroup,
        Err(errno) if plan.cgroup_required => return Err(server::failed(STAGE_CGROUP, errno)),
        Err(_) => return Ok((None, None)),
    };
    let memory =
        (plan.memory_cgroup.as_deref()).and_then(|p| Cgroup::create_memory_v1(p, name).ok());
    Ok((Some(cgroup), memory))
}

/// Removes the fixture's directory once nothing of the server lives, without following
/// symlinks. Raw syscalls on Linux (a forked guardian may not allocate); on macOS only in a
/// guardian from the zygote (single-threaded, so `std` may allocate), else the test side does it.
fn remove_dir(dir: &std::ffi::CStr, zygote: bool) {
    #[cfg(target_os = "linux")]
    {
        let _ = zygote;
        sys::remove_tree(dir);
    }
    #[cfg(not(target_os = "linux"))]
    if zygote {
        use std::os::unix::ffi::OsStrExt;
        let _ = std::fs::remove_dir_all(std::ffi::OsStr::from_bytes(dir.to_bytes()));
    }
}

/// What every guardian does first, in the child of its fork: own process group (terminal
/// signals and nextest's group kill miss it), only its own fds, stdio on /dev/null (it holds no
/// copy of the test's output), a name, and signal dispositions fit for a reaper.
pub(super) fn setup(ends: &Ends, dev_null: Option<RawFd>, test_pid: Pid, test_pgrp: Pid) {
    sys::new_process_group();
    sys::protect(test_pid, test_pgrp);
    sys::set_name(c"pf-guardian");
    let mut own = [-1; 4 + MAX_LISTENERS];
    own[..4].copy_from_slice(&[ends.ctl, ends.stdout, ends.stderr, ends.test_watch]);
    own[4..].copy_from_slice(&ends.listeners);
    if let Some(null) = dev_null {
        for fd in 0..=2 {
            sys::dup2(null, fd);
        }
    }
    sys::close_all_except(&own);
    ignore_stray_signals();
}

/// The signals the zygote and its guardians ignore, and no others (the zygote resets every
/// disposition first): the only ones a zygote guardian's server must reset.
pub(super) const STRAY_SIGNALS: [libc::c_int; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGPIPE,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// A stray `pkill` or a terminal signal must not kill (or job-control stop) a guardian or the
/// zygote and orphan a server: stop requests are messages. EPIPE on a socket is handled, not
/// fatal. A host that ignores SIGCHLD would have zombies auto-reaped, freeing the pinned pid
/// (the pinned leader pid would be freed): back to default. The server gets default dispositions back before exec.
pub(super) fn ignore_stray_signals() {
    for sig in STRAY_SIGNALS {
        sys::set_ignored(sig, true);
    }
    sys::set_ignored(libc::SIGCHLD, false);
}

/// Writes one report without blocking: a test side that no longer reads (dead, with a forked
/// child holding its end of the socket) must never stall the guardian. A full buffer drops it.
pub(super) fn report(ends: &Ends, msg: &Msg) {
    let _ = sys::write_once(ends.ctl, msg.as_bytes());
}

impl Guardian<'_> {
    /// Idle until a stop request or the test process's exit: reap orphans as they die, report the
    /// leader's exit, a listening socket, and once if the whole fixture is gone on its own (so
    /// readiness can fail fast; a daemonising leader that exits 0 while its daemon lives is not
    /// gone).
    fn watch(&mut self) {
        let _ = sys::set_nonblocking(self.ends.ctl);
        let mut backoff = Backoff::new(IDLE_POLL_MAX);
        let mut recheck = true;
        loop {
            if recheck {
                self.check_exits();
            }
            let mut fds = [
                sys::pollfd(self.ends.ctl),
                sys::pollfd(self.ends.test_watch),
                sys::pollfd(self.events.as_ref().map_or(-1, ChildEvents::fd)),
                sys::pollfd(self.listen.as_ref().map_or(-1, ListenWatch::fd)),
            ];
            let cap = (!self.exits_wake_us() && !self.gone_reported).then(|| backoff.next());
            let look = self.port.as_ref().map(PortWatch::due_in);
            sys::poll(&mut fds, cap.into_iter().chain(look).min());
            // Only an exit changes what `check_exits` finds, and where every exit wakes us it
            // does so through the events fd: a message, a `listen()` or a look of the port watch
            // alone need no look at the tree.
            recheck = !self.exits_wake_us() || fds[2].revents != 0;
            if fds[0].revents != 0 && self.stop_requested() {
                return;
            }
            if fds[1].revents != 0 {
                return; // the test process is gone
            }
            if fds[2].revents != 0 {
                self.drain_events();
            }
            if fds[3].revents != 0 {
                self.serve_listen(fds[3].revents, true);
            }
            self.look_for_port();
        }
    }

    /// A due look of the port watch; the listener is reported once, and the watch ends then,
    /// when sock_diag stops answering, or when nothing of the fixture lives.
    fn look_for_port(&mut self) {
        let Some(port) = &mut self.port else {
            return;
        };
        match port.look(sys::getpid()) {
            Ok(Some(found)) => report(&self.ends, &found),
            Ok(None) if !self.gone_reported => return,
            _ => {}
        }
        self.port = None;
    }

    /// Reports the leader's exit and the fixture being gone, each once; reaps dead orphans.
    fn check_exits(&mut self) {
        if !self.leader_exit_reported && self.leader.exited() {
            let mut msg = Msg::new(Msg::LEADER_EXITED);
            msg.status = self.leader.exit.unwrap_or_default();
            report(&self.ends, &msg);
            self.leader_exit_reported = true;
        }
        let settled = self.tree.settled(&mut self.leader);
        if !self.gone_reported && settled == Ok(true) {
            let mut msg = Msg::new(Msg::GONE);
            msg.status = self.leader.exit.unwrap_or_default();
            report(&self.ends, &msg);
            self.gone_reported = true;
        }
    }

    /// Reads what the test side sent, and carries out PAUSE and RESUME. True on STOP, or when
    /// the socket is closed or broken (the test side is gone).
    fn stop_requested(&mut self) -> bool {
        loop {
            let n = sys::read(self.ends.ctl, &mut self.ctl_buf[self.ctl_len..]);
            if n == 0 || (n < 0 && sys::errno() != libc::EAGAIN) {
                return true;
            }
            if n < 0 {
                return false;
            }
            self.ctl_len += n as usize;
            if self.ctl_len == Msg::SIZE {
                self.ctl_len = 0;
                let msg = Msg::from_bytes(&self.ctl_buf);
                match msg.kind {
                    Msg::STOP => {
                        self.keep_dir = msg.flags & Msg::F_KEEP_DIR != 0;
                        let sig = msg.detail as libc::c_int;
                        self.stop_signal = (1..=sys::MAX_SIGNAL).contains(&sig).then_some(sig);
                        return true;
                    }
                    Msg::PAUSE => self.pause(msg.seq),
                    Msg::RESUME => self.resume(msg.seq),
                    _ => {}
                }
            }
        }
    }

    /// Whether every exit that matters wakes us: SIGCHLD comes through an fd, and, as subreaper,
    /// every process of the fixture is a descendant.
    pub(super) fn exits_wake_us(&self) -> bool {
        self.events.is_some() && self.tree.subreaper
    }

    fn drain_events(&self) {
        if let Some(events) = &self.events {
            events.drain();
        }
    }

    /// Lets a pending `listen()` go ahead; reports it unless the stop is under way. A listener
    /// that hung up (every process that had the filter has exited) is closed for good: it would
    /// otherwise wake every poll at once, and the guardian would spin.
    fn serve_listen(&mut self, revents: libc::c_short, report_them: bool) {
        let Some(listen) = &mut self.listen else {
            return;
        };
        match listen.handle() {
            Some(msg) if report_them => report(&self.ends, &msg),
            Some(_) => {}
            None if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 => {
                if let Some(gone) = self.listen.take() {
                    gone.close();
                }
            }
            None => {}
        }
    }

    /// Sleeps until a child exits, a `listen()` waits, the cgroup's state changes, `deadline`
    /// passes, or `cap` (a poll interval for what no event reports).
    pub(super) fn sleep(&mut self, deadline: Deadline, cap: Option<Duration>) {
        let mut fds = [
            sys::pollfd(self.events.as_ref().map_or(-1, ChildEvents::fd)),
            sys::pollfd(self.listen.as_ref().map_or(-1, ListenWatch::fd)),
            sys::pollfd_changed(self.cgroup.as_ref().map_or(-1, Cgroup::events_fd)),
        ];
        sys::poll(&mut fds, deadline.remaining_capped(cap));
        if fds[0].revents != 0 {
            self.drain_events();
        }
        if fds[1].revents != 0 {
            self.serve_listen(fds[1].revents, false);
        }
        if fds[2].revents != 0 {
            // Until it is read, a change stays reported: every later poll would return at once
            // and the stop's waits would spin.
            self.cgroup.as_ref().map(Cgroup::acknowledge);
        }
    }
}
