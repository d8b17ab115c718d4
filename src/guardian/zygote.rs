//! The zygote: the test executable, exec'd once per test process in *zygote mode*, which forks
//! one guardian per fixture.
//!
//! A constructor hook (`.init_array` on Linux, `__mod_init_func` on macOS) runs before `main` in
//! every program that links this crate. It does nothing unless `PROCESS_FIXTURE_ZYGOTE` names
//! this protocol version and the process's parent; then the process becomes the zygote and never
//! reaches `main`. Nothing has to be installed, and nothing of the test process is copied: the
//! zygote is a fresh exec (about 0.4 MiB of private memory), and a guardian forked from it costs
//! a small page-table copy, not the test process's. Its command line is
//! `process-fixture-guardian`, its name `pf-zygote`: `pkill -f <test binary>` does not hit it.
//!
//! It serves `FORK` requests on its socket (the test side's end is shared by all fixtures of the
//! process; each `sendmsg` on a `SOCK_SEQPACKET` socket is atomic), reaps its guardians, and is a
//! subreaper: when a guardian dies before finishing its stop (SIGKILL, the OOM killer), its
//! server's leader dies with it (PR_SET_PDEATHSIG) and the leader's orphans land here, where they
//! are SIGKILLed; a server in a cgroup of its own has it killed whole (`cgroup.kill`, which
//! reaches what re-parented elsewhere too); the zygote tells the test side with `GUARDIAN_DIED`. When the test process is
//! gone it waits for its guardians (each stops its server) and exits.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use super::main_loop::{report, Ends, MAX_LISTENERS};
use super::protocol::{Msg, Plan, PROTOCOL_VERSION, STAGE_FORK};
use crate::sys::{self, ChildEvents, Pid, Target};

/// The environment variable that makes a process the zygote: `<version>:<parent pid>`.
pub(crate) const ZYGOTE_ENV: &CStr = c"PROCESS_FIXTURE_ZYGOTE";
/// The zygote's `argv[0]`.
pub(crate) const ZYGOTE_ARGV0: &str = "process-fixture-guardian";
/// Exit status of a zygote of another build (the executable was replaced since).
const EXIT_VERSION: i32 = 71;
// A FORK's fds, and one more to tell a request with too many, fit in one message.
const _: () = assert!(3 + MAX_LISTENERS < sys::MAX_FDS);

/// The longest fixture directory path a `FORK` carries.
const DIR_MAX: usize = 4096;
/// The largest plan a guardian accepts (argv and environment of the server).
const PLAN_MAX: usize = 64 << 20;

/// Runs before `main` in every process that links this crate; see the module docs. Referenced
/// by `launch`, so that the linker keeps it.
#[used]
#[cfg_attr(target_os = "linux", link_section = ".init_array.00101")]
#[cfg_attr(target_os = "macos", link_section = "__DATA,__mod_init_func")]
pub(super) static HOOK: extern "C" fn() = hook;

extern "C" fn hook() {
    // SAFETY: before main, while the process is single-threaded: nothing changes the
    // environment while `value` is read.
    let Some(value) = (unsafe { sys::getenv(ZYGOTE_ENV) }) else {
        return;
    };
    let value = value.to_bytes();
    let mut parts = value.splitn(2, |&b| b == b':');
    let version = parts.next().and_then(sys::parse_u64);
    let parent = parts.next().and_then(sys::parse_pid);
    if parent != Some(sys::getppid()) {
        return; // not started by a test process of ours: carry on as the program it is
    }
    if version != Some(u64::from(PROTOCOL_VERSION)) {
        sys::exit(EXIT_VERSION);
    }
    run(sys::getppid())
}

/// The zygote's state.
struct Zygote {
    sock: RawFd,
    events: ChildEvents,
    test_watch: RawFd,
    test_pid: Pid,
    test_pgrp: Pid,
    /// Live guardians and this zygote's copy of each one's control socket, for `GUARDIAN_DIED`
    /// (closed once the guardian is reaped: the test side's hang-up says "reaped").
    guardians: Vec<(Pid, RawFd)>,
    /// Each live guardian's start time, which with its pid names its server's cgroup.
    starts: Vec<(Pid, u64)>,
    /// Each live guardian's fixture directory, to remove if it is killed.
    dirs: Vec<(Pid, CString)>,
    /// Directories of killed guardians, removed once their orphans are gone.
    dirs_to_remove: Vec<CString>,
    /// The test process is gone or closed our socket: exit once the guardians are done.
    closing: bool,
    /// A guardian died before finishing: kill every orphan that lands here.
    sweeping: bool,
}

fn run(test_pid: Pid) -> ! {
    // The socket from the test process is our stdin: move it up, put /dev/null in its place.
    let sock = sys::dup_above_stdio(0);
    let null = sys::dev_null();
    let (Ok(null), true) = (null, sock >= 0) else {
        sys::exit(70)
    };
    sys::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0);
    drop(null);
    sys::set_name(c"pf-zygote");
    // posix_spawn keeps what the test process ignores: back to default, so that the guardians
    // know their dispositions (`STRAY_SIGNALS`, which their servers reset) without asking.
    sys::reset_signals(None);
    super::main_loop::ignore_stray_signals();
    let Some(events) = ChildEvents::new() else {
        sys::exit(70)
    };
    sys::become_subreaper();
    sys::raise_fd_limit();
    let test_watch = sys::exit_watch(test_pid).unwrap_or(-1);
    if sys::getppid() != test_pid {
        sys::exit(0); // the test process died before we could watch it
    }
    let mut hello = Msg::new(Msg::HELLO);
    hello.pid = sys::getpid();
    hello.detail = PROTOCOL_VERSION;
    if sys::send_with_fds(sock, hello.as_bytes(), &[]).is_err() {
        sys::exit(0);
    }
    let mut z = Zygote {
        sock,
        events,
        test_watch,
        test_pid,
        test_pgrp: sys::getpgid(test_pid),
        guardians: Vec::new(),
        starts: Vec::new(),
        dirs: Vec::new(),
        dirs_to_remove: Vec::new(),
        closing: false,
        sweeping: false,
    };
    z.serve()
}

impl Zygote {
    fn serve(&mut self) -> ! {
        loop {
            if self.closing && self.guardians.is_empty() {
                sys::exit(0);
            }
            let (sock, watch) = if self.closing {
                (-1, -1)
            } else {
                (self.sock, self.test_watch)
            };
            let mut fds = [
                sys::pollfd(sock),
                sys::pollfd(watch),
                sys::pollfd(self.events.fd()),
            ];
            sys::poll(&mut fds, None);
            if fds[0].revents != 0 {
                self.receive();
            }
            if fds[1].revents != 0 {
                self.closing = true;
            }
            if fds[2].revents != 0 {
                self.events.drain();
                self.reap();
            }
        }
    }

    /// One request from the test side: `FORK` with the guardian's control socket, the server's
    /// stdout and stderr write ends and its listening sockets (socket activation), followed by
    /// the fixture's directory (may be empty).
    fn receive(&mut self) {
        let mut buf = [0u8; Msg::SIZE + DIR_MAX];
        let mut fds = [-1; 3 + MAX_LISTENERS + 1];
        let n = sys::recv_with_fds(self.sock, &mut buf, &mut fds);
        if n == 0 || (n < 0 && sys::errno() != libc::EAGAIN && sys::errno() != libc::EINTR) {
            self.closing = true;
        }
        let mut head = [0u8; Msg::SIZE];
        head.copy_from_slice(&buf[..Msg::SIZE]);
        let is_fork = n >= Msg::SIZE as isize && Msg::from_bytes(&head).kind == Msg::FORK;
        // One fd too many means the request is not ours: drop it.
        if is_fork && fds[..3].iter().all(|&fd| fd >= 0) && fds[3 + MAX_LISTENERS] < 0 {
            let dir = CString::new(&buf[Msg::SIZE..n as usize]).ok();
            let mut listeners = [-1; MAX_LISTENERS];
            listeners.copy_from_slice(&fds[3..3 + MAX_LISTENERS]);
            let ends = Ends {
                ctl: fds[0],
                stdout: fds[1],
                stderr: fds[2],
                test_watch: self.test_watch,
                listeners,
            };
            if let Some(pid) = self.fork_guardian(ends) {
                if let Some(dir) = dir.filter(|d| !d.is_empty()) {
                    self.dirs.push((pid, dir));
                }
            }
        } else {
            fds.iter()
                .filter(|&&fd| fd >= 0)
                .for_each(|&fd| sys::close(fd));
        }
    }

    /// Forks the guardian with `ends`, then closes the zygote's copies of them but the control
    /// socket, which it keeps to report the guardian's death.
    fn fork_guardian(&mut self, ends: Ends) -> Option<Pid> {
        // SAFETY: the zygote is single-threaded; the child becomes the guardian and never returns.
        let forked = match unsafe { sys::fork() } {
            Ok(0) => guardian_child(ends, self.test_pid, self.test_pgrp),
            Ok(pid) => {
                self.guardians.push((pid, ends.ctl));
                // Our unreaped child: the start time read now is its own.
                let start = sys::proc_stat(pid).map_or(0, |s| s.start);
                self.starts.push((pid, start));
                Some(pid)
            }
            Err(e) => {
                let mut failed = Msg::new(Msg::SPAWN_FAILED);
                failed.detail = STAGE_FORK;
                failed.errno = e.raw_os_error().unwrap_or(0);
                report(&ends, &failed);
                sys::close(ends.ctl);
                None
            }
        };
        sys::close(ends.stdout);
        sys::close(ends.stderr);
        ends.listeners().iter().for_each(|&fd| sys::close(fd));
        forked
    }

    /// Reaps every child that exited: guardians (telling the test side about one that died
    /// before finishing) and orphans.
    fn reap(&mut self) {
        // The zygote's children are its guardians and orphans of dead guardians' servers: all
        // of them are its to reap.
        sys::reap_any(|pid, status| {
            if let Some(i) = self.guardians.iter().position(|&(g, _)| g == pid) {
                let (_, ctl) = self.guardians.swap_remove(i);
                let start = self
                    .starts
                    .iter()
                    .position(|(g, _)| *g == pid)
                    .map(|j| self.starts.swap_remove(j).1);
                let dir = self
                    .dirs
                    .iter()
                    .position(|(g, _)| *g == pid)
                    .map(|j| self.dirs.swap_remove(j).1);
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    self.sweeping = true;
                    if let Some(start) = start {
                        crate::cgroup::Named {
                            guardian: pid,
                            start,
                        }
                        .kill_orphaned();
                    }
                    tell_guardian_died(ctl, status);
                }
                if libc::WIFSIGNALED(status) {
                    // Killed before its stop finished: the directory is ours to remove.
                    self.dirs_to_remove.extend(dir);
                }
                sys::close(ctl);
            }
        });
        if self.sweeping {
            self.sweeping = self.kill_orphans() > 0;
        }
        if !self.sweeping {
            for dir in self.dirs_to_remove.drain(..) {
                use std::os::unix::ffi::OsStrExt;
                let _ = std::fs::remove_dir_all(std::ffi::OsStr::from_bytes(dir.to_bytes()));
            }
        }
    }

    /// SIGKILLs every live child that is not a guardian (orphans of a dead guardian's server;
    /// our unreaped children, so their pids are pinned). Returns how many were found.
    fn kill_orphans(&self) -> usize {
        let mut found = 0;
        sys::for_each_own_child(|pid| {
            if self.guardians.iter().any(|&(g, _)| g == pid) {
                return;
            }
            found += 1;
            let _ = sys::signal(Target::Process(pid), libc::SIGKILL);
            if sys::getpgid(pid) == pid {
                let _ = sys::signal(Target::Group(pid), libc::SIGKILL);
            }
        });
        found
    }
}

/// Tells the test side, on the guardian's control socket, that it died before finishing.
fn tell_guardian_died(ctl: RawFd, status: i32) {
    let mut msg = Msg::new(Msg::GUARDIAN_DIED);
    msg.status = status;
    let _ = sys::set_nonblocking(ctl);
    let _ = sys::write_once(ctl, msg.as_bytes());
}

/// In the zygote's fresh child: become the guardian. Reads the plan from the control socket (a
/// fork of the single-threaded zygote may allocate), then runs like any guardian.
fn guardian_child(ends: Ends, test_pid: Pid, test_pgrp: Pid) -> ! {
    super::main_loop::setup(&ends, None, test_pid, test_pgrp);
    let Some(plan) = read_plan(&ends) else {
        sys::exit(0); // the test side went away before sending it
    };
    let ends = if plan.pidfd {
        ends
    } else {
        Ends {
            test_watch: -1,
            ..ends
        }
    };
    super::main_loop::run(&plan, ends, Msg::F_ZYGOTE)
}

/// Reads the length-prefixed plan, giving up if the test process dies meanwhile.
fn read_plan(ends: &Ends) -> Option<Plan> {
    let mut len = [0u8; 4];
    if !read_watching(ends, &mut len) {
        return None;
    }
    let total = u32::from_ne_bytes(len) as usize;
    if !(4..=PLAN_MAX).contains(&total) {
        return None;
    }
    let mut bytes = vec![0u8; total];
    bytes[..4].copy_from_slice(&len);
    if !read_watching(ends, &mut bytes[4..]) {
        return None;
    }
    Plan::decode(&bytes)
}

fn read_watching(ends: &Ends, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let mut fds = [sys::pollfd(ends.ctl), sys::pollfd(ends.test_watch)];
        sys::poll(&mut fds, None);
        if fds[1].revents != 0 && fds[0].revents == 0 {
            return false;
        }
        let n = sys::read(ends.ctl, &mut buf[done..]);
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}
