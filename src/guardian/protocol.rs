//! The guardian's protocol with the test side.
//!
//! One `SOCK_STREAM` Unix socket per fixture, the *control socket*:
//! ```text
//! test side ── Plan (once, when the guardian was forked by the zygote) ──▶ guardian
//!           ── PAUSE | RESUME (numbered), STOP ─────────────────────────▶
//!           ◀── SPAWNED | SPAWN_FAILED, LEADER_EXITED, GONE, LISTENING…, FROZEN…, STOPPED ──
//!           ◀── GUARDIAN_DIED (written by the zygote when the guardian died before STOPPED)
//! ```
//! Every message is an explicit [`Msg`] of fixed size, written with one `write` (atomic below
//! `PIPE_BUF`, and each end has one writer). EOF is never the only signal: a child the test
//! process forks without exec inherits its end of the socket, so EOF may never come while that
//! child lives.
//!
//! The zygote's socket (`SOCK_SEQPACKET`, one per test process) carries `HELLO` once from the
//! zygote and then one `FORK` per fixture from the test side, with the guardian's three fds.

use std::ffi::CString;
use std::time::Duration;

use crate::sys::{Pid, WaitStatus};

/// Bumped whenever a message or the plan changes shape: a zygote of another build refuses to
/// serve (the executable was replaced by a rebuild while tests ran), and the test side falls
/// back to a forked guardian.
pub(crate) const PROTOCOL_VERSION: u32 = 7;

/// One message. Plain data, no padding: 10 × u32, 16 bytes, 2 × i32, 3 × u64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Msg {
    pub kind: u32,
    pub flags: u32,
    /// Leader pid (`SPAWNED`), listening process (`LISTENING`), zygote pid (`HELLO`).
    pub pid: Pid,
    /// A raw wait status (`LEADER_EXITED`, `GONE`, `STOPPED`, `GUARDIAN_DIED`).
    pub status: WaitStatus,
    /// Stage (`SPAWN_FAILED`), reason (`STOPPED`), address family (`LISTENING`), version
    /// (`HELLO`), processes not stopped (`FROZEN`).
    pub detail: u32,
    pub port: u32,
    pub killed: u32,
    pub escapees: u32,
    /// `STOPPED`: how many processes of the fixture lived when the stop began (leader included);
    /// `FROZEN`: how many live processes the pause or resume reached.
    pub processes: u32,
    /// `PAUSE`, `RESUME` and the `FROZEN` answering them: the request's number.
    pub seq: u32,
    pub addr: [u8; 16],
    /// The guardian's own pid (`SPAWNED`, `SPAWN_FAILED`).
    pub guardian: Pid,
    pub errno: i32,
    /// `STOPPED` with `F_USAGE`: CPU the reaped tree used (µs), and its largest process's peak
    /// resident size (bytes).
    pub cpu_us: u64,
    pub max_rss: u64,
    /// `SPAWNED` with `F_CGROUP`: the guardian's start time, which with its pid names the
    /// fixture's cgroup.
    pub start: u64,
}

impl Msg {
    pub(crate) const SIZE: usize = std::mem::size_of::<Msg>();

    // guardian → test side
    pub(crate) const SPAWNED: u32 = 1;
    pub(crate) const SPAWN_FAILED: u32 = 2;
    /// The leader exited (observed, not reaped); other processes may live on (a daemon).
    pub(crate) const LEADER_EXITED: u32 = 3;
    /// The leader exited and no other process of the fixture lives (before any stop request).
    pub(crate) const GONE: u32 = 4;
    /// A process of the fixture listens on a TCP socket.
    pub(crate) const LISTENING: u32 = 5;
    pub(crate) const STOPPED: u32 = 6;
    // zygote → test side
    pub(crate) const GUARDIAN_DIED: u32 = 7;
    pub(crate) const HELLO: u32 = 8;
    // test side → guardian, test side → zygote
    pub(crate) const STOP: u32 = 9;
    pub(crate) const FORK: u32 = 10;
    pub(crate) const PAUSE: u32 = 11;
    pub(crate) const RESUME: u32 = 12;
    // guardian → test side: the answer to PAUSE or RESUME
    pub(crate) const FROZEN: u32 = 13;

    // flags
    pub(crate) const F_ESCALATED: u32 = 1;
    pub(crate) const F_CONFIRMED: u32 = 2;
    pub(crate) const F_REAPED: u32 = 4;
    pub(crate) const F_SUBREAPER: u32 = 8;
    pub(crate) const F_LISTEN_EVENTS: u32 = 16;
    /// `STOPPED`: the fixture was gone (all exited on their own) before the stop request.
    pub(crate) const F_GONE_BEFORE: u32 = 32;
    /// `STOPPED`: the leader had exited on its own before the stop request.
    pub(crate) const F_LEADER_EXITED_BEFORE: u32 = 64;
    /// `SPAWNED`: the guardian was forked by the zygote (not from the test process).
    pub(crate) const F_ZYGOTE: u32 = 128;
    /// `STOP`: keep the fixture's directory (a failed spawn's, kept for inspection). A `STOP`'s
    /// `detail`, when not 0, is the signal for the leader instead of the plan's stop signal.
    pub(crate) const F_KEEP_DIR: u32 = 256;
    /// `FROZEN`: the fixture is paused now (else: running again).
    pub(crate) const F_PAUSED: u32 = 512;
    /// `STOPPED`: `cpu_us` and `max_rss` are filled.
    pub(crate) const F_USAGE: u32 = 1024;
    /// `SPAWNED`: the server runs in a cgroup of its own; `STOPPED`: the stop used it.
    pub(crate) const F_CGROUP: u32 = 2048;
    /// `STOPPED` with `F_USAGE`: `cpu_us` is the cgroup's (the whole tree's).
    pub(crate) const F_CGROUP_CPU: u32 = 4096;
    /// `STOPPED` with `F_USAGE`: `max_rss` is the cgroup's `memory.peak` (the tree together).
    pub(crate) const F_CGROUP_MEMORY: u32 = 8192;
    /// `SPAWNED`: the guardian looks for the plan's `watch_port` and reports its listener.
    pub(crate) const F_PORT_WATCH: u32 = 16384;

    // STOPPED reasons (detail)
    pub(crate) const CONFIRMED: u32 = 0;
    /// Processes were still alive when the last deadline passed.
    pub(crate) const STILL_ALIVE: u32 = 1;
    /// The processes could not be listed (errno in `errno`): nothing could be confirmed.
    pub(crate) const CANNOT_LIST: u32 = 2;

    pub(crate) fn new(kind: u32) -> Msg {
        Msg {
            kind,
            ..Msg::default()
        }
    }

    pub(crate) fn from_bytes(bytes: &[u8; Msg::SIZE]) -> Msg {
        // SAFETY: Msg is plain old data of exactly SIZE bytes with no padding, written by the
        // same build (the zygote checks PROTOCOL_VERSION).
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: as above; every byte of a padding-free repr(C) struct is initialised.
        unsafe { std::slice::from_raw_parts((self as *const Msg).cast(), Msg::SIZE) }
    }
}

/// The stages of starting the server, reported by `SPAWN_FAILED` (in `detail`).
pub(crate) const STAGE_FORK: u32 = 1;
pub(crate) const STAGE_CHDIR: u32 = 2;
pub(crate) const STAGE_EXEC: u32 = 3;
pub(crate) const STAGE_CREDENTIALS: u32 = 4;
pub(crate) const STAGE_SETUP: u32 = 5;
pub(crate) const STAGE_CGROUP: u32 = 6;

/// The stage of starting the server that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Fork,
    Chdir,
    Exec,
    Credentials,
    Setup,
    Cgroup,
}

impl Stage {
    /// An unknown number is taken for the fork (the first stage).
    fn from_raw(stage: u32) -> Stage {
        match stage {
            STAGE_CHDIR => Stage::Chdir,
            STAGE_EXEC => Stage::Exec,
            STAGE_CREDENTIALS => Stage::Credentials,
            STAGE_SETUP => Stage::Setup,
            STAGE_CGROUP => Stage::Cgroup,
            _ => Stage::Fork,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Stage::Fork => "fork",
            Stage::Chdir => "changing to the working directory",
            Stage::Exec => "exec",
            Stage::Credentials => "switching user and groups",
            Stage::Setup => "setting up the guardian",
            Stage::Cgroup => "making the server's cgroup and moving it in",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A message from the guardian (or the zygote, for `GuardianDied`), decoded once, on arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Report {
    /// The leader runs.
    Spawned {
        pid: Pid,
        guardian: Pid,
        /// The guardian reports `listen()` calls (`Listening`).
        listen_events: bool,
        /// The guardian looks for the fixture's port and reports its listener (`Listening`).
        port_watch: bool,
        /// The guardian was forked by the zygote.
        zygote: bool,
        /// The guardian is a child subreaper.
        subreaper: bool,
        /// The server runs in a cgroup of its own, named by the guardian's pid and this start
        /// time.
        cgroup: Option<u64>,
    },
    /// The server could not be started.
    SpawnFailed {
        stage: Stage,
        errno: i32,
        guardian: Pid,
    },
    /// The leader exited (observed, not reaped); other processes may live on.
    LeaderExited { status: WaitStatus },
    /// The leader exited and nothing else of the fixture lives (before any stop request).
    Gone { status: WaitStatus },
    /// A process of the fixture listens on a TCP socket.
    Listening {
        pid: Pid,
        addr: std::net::SocketAddr,
    },
    /// The stop sequence is done.
    Stopped(Stopped),
    /// The guardian died before it reported `Stopped` (written by the zygote).
    GuardianDied { status: WaitStatus },
    /// The answer to PAUSE or RESUME number `seq`.
    Frozen(Frozen),
}

/// The `FROZEN` report: what a pause or a resume did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frozen {
    /// The number of the request it answers.
    pub seq: u32,
    /// The fixture is paused now (the answer to PAUSE), or running again (RESUME).
    pub paused: bool,
    /// Live processes the request reached, leader included.
    pub processes: u32,
    /// PAUSE: processes still not stopped when the guardian's wait ended (0: all stopped).
    pub running: u32,
}

/// How the stop sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No process of the fixture lives.
    Confirmed,
    /// Processes were still alive when the last deadline passed.
    StillAlive,
    /// The processes could not be listed (this errno): nothing could be confirmed.
    CannotList(i32),
}

/// The `STOPPED` report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stopped {
    /// The leader's wait status, when the guardian reaped it.
    pub exit_status: Option<WaitStatus>,
    /// SIGKILL was needed.
    pub escalated: bool,
    pub outcome: Outcome,
    /// The guardian was a child subreaper (else: process-group containment).
    pub subreaper: bool,
    /// The leader had exited on its own before the stop request.
    pub leader_exited_before: bool,
    /// Everything had exited on its own before the stop request.
    pub gone_before: bool,
    /// Processes signalled besides the leader.
    pub signalled: u32,
    /// Of those, outside the leader's process group.
    pub escapees: u32,
    /// Processes of the fixture alive when the stop began, leader included.
    pub processes_at_stop: u32,
    /// What the tree used: CPU (µs) and peak memory (bytes).
    pub usage: Option<(u64, u64)>,
    /// The stop killed and confirmed through the fixture's cgroup.
    pub cgroup: bool,
    /// `usage`'s CPU is the cgroup's (else the reaped processes').
    pub cgroup_cpu: bool,
    /// `usage`'s memory is the cgroup's peak (else the largest reaped process's).
    pub cgroup_memory: bool,
}

impl Msg {
    /// The message as a [`Report`]; `None` for a kind the test side is never sent.
    pub(crate) fn decode(&self) -> Option<Report> {
        let flag = |f: u32| self.flags & f != 0;
        Some(match self.kind {
            Msg::SPAWNED => Report::Spawned {
                pid: self.pid,
                guardian: self.guardian,
                listen_events: flag(Msg::F_LISTEN_EVENTS),
                port_watch: flag(Msg::F_PORT_WATCH),
                zygote: flag(Msg::F_ZYGOTE),
                subreaper: flag(Msg::F_SUBREAPER),
                cgroup: flag(Msg::F_CGROUP).then_some(self.start),
            },
            Msg::SPAWN_FAILED => Report::SpawnFailed {
                stage: Stage::from_raw(self.detail),
                errno: self.errno,
                guardian: self.guardian,
            },
            Msg::LEADER_EXITED => Report::LeaderExited {
                status: self.status,
            },
            Msg::GONE => Report::Gone {
                status: self.status,
            },
            Msg::LISTENING => {
                use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
                let ip = match self.detail as i32 {
                    libc::AF_INET => {
                        IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&self.addr[..4]).ok()?))
                    }
                    libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(self.addr)),
                    _ => return None,
                };
                Report::Listening {
                    pid: self.pid,
                    addr: std::net::SocketAddr::new(ip, u16::try_from(self.port).ok()?),
                }
            }
            Msg::STOPPED => Report::Stopped(Stopped {
                exit_status: flag(Msg::F_REAPED).then_some(self.status),
                escalated: flag(Msg::F_ESCALATED),
                outcome: if flag(Msg::F_CONFIRMED) {
                    Outcome::Confirmed
                } else if self.detail == Msg::CANNOT_LIST {
                    Outcome::CannotList(self.errno)
                } else {
                    Outcome::StillAlive
                },
                subreaper: flag(Msg::F_SUBREAPER),
                leader_exited_before: flag(Msg::F_LEADER_EXITED_BEFORE),
                gone_before: flag(Msg::F_GONE_BEFORE),
                signalled: self.killed,
                escapees: self.escapees,
                processes_at_stop: self.processes,
                usage: flag(Msg::F_USAGE).then_some((self.cpu_us, self.max_rss)),
                cgroup: flag(Msg::F_CGROUP),
                cgroup_cpu: flag(Msg::F_CGROUP_CPU),
                cgroup_memory: flag(Msg::F_CGROUP_MEMORY),
            }),
            Msg::GUARDIAN_DIED => Report::GuardianDied {
                status: self.status,
            },
            Msg::FROZEN => Report::Frozen(Frozen {
                seq: self.seq,
                paused: flag(Msg::F_PAUSED),
                processes: self.processes,
                running: self.detail,
            }),
            _ => return None,
        })
    }
}

/// Whether to watch `listen()` calls through seccomp (see `guardian::listen`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenEvents {
    Off,
    /// Install the filter; set no_new_privs first when the guardian is not privileged.
    On {
        no_new_privs: bool,
    },
}

/// Everything the guardian and the server need, prepared by the test side: sent over the
/// control socket to a zygote-forked guardian, or simply present in a forked one.
pub(crate) struct Plan {
    pub path: CString,
    pub cwd: Option<CString>,
    pub stop_signal: libc::c_int,
    /// May be `Duration::MAX`: "as long as it takes" (durations saturate).
    pub grace: Duration,
    /// Make the guardian a child subreaper (Linux), so that escapees re-parent to it.
    pub subreaper: bool,
    /// Where the guardian makes the fixture's cgroup (`…/process-fixture`), if it may.
    pub cgroup: Option<CString>,
    /// Without its cgroup the server must not start (`Containment::Cgroup`).
    pub cgroup_required: bool,
    /// Where the guardian makes a cgroup of the same name on the v1 memory hierarchy, to count
    /// the server's memory (a hybrid system), if it may.
    pub memory_cgroup: Option<CString>,
    /// Use pidfds (Linux ≥ 5.3); `false` when `PROCESS_FIXTURE_FORCE=no-pidfd`.
    pub pidfd: bool,
    pub listen: ListenEvents,
    /// Without `listen()` events: the port on 127.0.0.1 the guardian looks for (0: none).
    pub watch_port: u16,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Option<Vec<u32>>,
    /// The fixture's temporary directory: removed by the guardian once the server is gone
    /// (unless STOP says keep it), or by the zygote when the guardian was killed.
    pub dir: Option<CString>,
    /// Socket activation: the index in `envp` of the `LISTEN_PID=` entry the server's child
    /// fills in with its own pid (the sockets themselves travel with the guardian's fds).
    pub listen_pid_slot: Option<usize>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Null-terminated pointer arrays into `argv`/`envp`, built once, before any fork.
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into the CStrings the plan owns, never shared mutably.
unsafe impl Send for Plan {}

impl Plan {
    /// A plan that stops with `stop_signal` and waits `grace` before SIGKILL, with every kernel
    /// feature that is there. The defaults of these two are the builder's, not the guardian's.
    pub(crate) fn new(
        path: CString,
        argv: Vec<CString>,
        envp: Vec<CString>,
        stop_signal: i32,
        grace: Duration,
    ) -> Plan {
        let mut plan = Plan {
            path,
            cwd: None,
            stop_signal,
            grace,
            subreaper: true,
            cgroup: None,
            cgroup_required: false,
            memory_cgroup: None,
            pidfd: true,
            listen: ListenEvents::Off,
            watch_port: 0,
            uid: None,
            gid: None,
            groups: None,
            dir: None,
            listen_pid_slot: None,
            argv,
            envp,
            argv_ptrs: Vec::new(),
            envp_ptrs: Vec::new(),
        };
        plan.argv_ptrs = nul_terminated(&plan.argv);
        plan.envp_ptrs = nul_terminated(&plan.envp);
        plan
    }

    pub(crate) fn argv_ptrs(&self) -> *const *const libc::c_char {
        self.argv_ptrs.as_ptr()
    }

    pub(crate) fn envp_ptrs(&self) -> *const *const libc::c_char {
        self.envp_ptrs.as_ptr()
    }

    /// The environment's pointers (the terminating null included), to copy.
    pub(crate) fn envp_slice(&self) -> &[*const libc::c_char] {
        &self.envp_ptrs
    }

    /// The plan as bytes: a u32 length, then the fields.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(4096));
        w.u32(0); // length, filled in below
        w.bytes(self.path.as_bytes());
        w.opt_bytes(self.cwd.as_ref().map(|c| c.as_bytes()));
        w.u32(self.stop_signal as u32);
        w.u64(self.grace.as_secs());
        w.u32(self.grace.subsec_nanos());
        w.u32(
            u32::from(self.subreaper)
                | u32::from(self.pidfd) << 1
                | u32::from(self.cgroup_required) << 2,
        );
        w.opt_bytes(self.cgroup.as_ref().map(|c| c.as_bytes()));
        w.opt_bytes(self.memory_cgroup.as_ref().map(|c| c.as_bytes()));
        w.u32(match self.listen {
            ListenEvents::Off => 0,
            ListenEvents::On {
                no_new_privs: false,
            } => 1,
            ListenEvents::On { no_new_privs: true } => 2,
        });
        w.u32(u32::from(self.watch_port));
        w.opt_u32(self.uid);
        w.opt_u32(self.gid);
        w.u32(self.groups.as_ref().map_or(u32::MAX, |g| g.len() as u32));
        for &g in self.groups.iter().flatten() {
            w.u32(g);
        }
        w.opt_bytes(self.dir.as_ref().map(|c| c.as_bytes()));
        w.opt_u32(self.listen_pid_slot.map(|i| i as u32));
        for list in [&self.argv, &self.envp] {
            w.u32(list.len() as u32);
            for s in list {
                w.bytes(s.as_bytes());
            }
        }
        let len = w.0.len() as u32;
        w.0[..4].copy_from_slice(&len.to_ne_bytes());
        w.0
    }

    /// The inverse of `encode` (the whole message, length included). `None` if malformed.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Plan> {
        let mut r = Reader(bytes);
        let len = r.u32()? as usize;
        if len != bytes.len() {
            return None;
        }
        let path = r.cstring()?;
        let cwd = r.opt_cstring()?;
        let stop_signal = r.u32()? as libc::c_int;
        let grace = Duration::new(r.u64()?, r.u32()?.min(999_999_999));
        let features = r.u32()?;
        let cgroup = r.opt_cstring()?;
        let memory_cgroup = r.opt_cstring()?;
        let listen = match r.u32()? {
            0 => ListenEvents::Off,
            1 => ListenEvents::On {
                no_new_privs: false,
            },
            _ => ListenEvents::On { no_new_privs: true },
        };
        let watch_port = u16::try_from(r.u32()?).ok()?;
        let uid = r.opt_u32()?;
        let gid = r.opt_u32()?;
        let groups = match r.u32()? {
            u32::MAX => None,
            n => Some((0..n).map(|_| r.u32()).collect::<Option<Vec<_>>>()?),
        };
        let dir = r.opt_cstring()?;
        let listen_pid_slot = r.opt_u32()?.map(|i| i as usize);
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = r.u32()?;
            for _ in 0..n {
                list.push(r.cstring()?);
            }
        }
        let [argv, envp] = lists;
        let mut plan = Plan::new(path, argv, envp, stop_signal, grace);
        plan.cwd = cwd;
        plan.listen_pid_slot = listen_pid_slot.filter(|&i| i < plan.envp.len());
        plan.subreaper = features & 1 != 0;
        plan.pidfd = features & 2 != 0;
        plan.cgroup_required = features & 4 != 0;
        plan.cgroup = cgroup;
        plan.memory_cgroup = memory_cgroup;
        plan.listen = listen;
        plan.watch_port = watch_port;
        plan.uid = uid;
        plan.gid = gid;
        plan.groups = groups;
        plan.dir = dir;
        Some(plan)
    }
}

fn nul_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn opt_bytes(&mut self, b: Option<&[u8]>) {
        self.u32(u32::from(b.is_some()));
        if let Some(b) = b {
            self.bytes(b);
        }
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        self.u32(u32::from(v.is_some()));
        self.u32(v.unwrap_or(0));
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.take(8)?.try_into().ok()?))
    }
    fn cstring(&mut self) -> Option<CString> {
        let n = self.u32()? as usize;
        CString::new(self.take(n)?).ok()
    }
    fn opt_cstring(&mut self) -> Option<Option<CString>> {
        match self.u32()? {
            0 => Some(None),
            _ => Some(Some(self.cstring()?)),
        }
    }
    fn opt_u32(&mut self) -> Option<Option<u32>> {
        let present = self.u32()? != 0;
        let v = self.u32()?;
        Some(present.then_some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn a_plan_survives_the_trip() {
        let mut plan = Plan::new(
            c("/bin/sh"),
            vec![c("sh"), c("-c"), c("x")],
            vec![c("A=1")],
            libc::SIGTERM,
            Duration::from_secs(5),
        );
        plan.cwd = Some(c("/tmp"));
        plan.grace = Duration::MAX;
        plan.subreaper = false;
        plan.cgroup = Some(c("/sys/fs/cgroup/process-fixture"));
        plan.cgroup_required = true;
        plan.memory_cgroup = Some(c("/sys/fs/cgroup/memory/process-fixture"));
        plan.listen = ListenEvents::On { no_new_privs: true };
        plan.uid = Some(70);
        plan.groups = Some(vec![1, 2]);
        plan.dir = Some(c("/tmp/pf-x"));
        let bytes = plan.encode();
        let back = Plan::decode(&bytes).expect("decodes");
        assert_eq!(back.path, plan.path);
        assert_eq!(back.argv, plan.argv);
        assert_eq!(back.envp, plan.envp);
        assert_eq!(back.cwd, plan.cwd);
        assert_eq!(back.grace, Duration::MAX);
        assert!(!back.subreaper && back.pidfd);
        assert_eq!(back.listen, plan.listen);
        assert_eq!((back.uid, back.gid), (Some(70), None));
        assert_eq!(back.groups, Some(vec![1, 2]));
        assert_eq!(back.dir, plan.dir);
        assert_eq!((&back.cgroup, back.cgroup_required), (&plan.cgroup, true));
        assert_eq!(back.memory_cgroup, plan.memory_cgroup);
        assert!(
            Plan::decode(&bytes[..bytes.len() - 1]).is_none(),
            "truncated"
        );
    }

    #[test]
    fn messages_have_no_padding() {
        assert_eq!(Msg::SIZE, 10 * 4 + 16 + 2 * 4 + 3 * 8);
        let mut m = Msg::new(Msg::LISTENING);
        m.port = 8080;
        let mut raw = [0u8; Msg::SIZE];
        raw.copy_from_slice(m.as_bytes());
        assert_eq!(Msg::from_bytes(&raw), m);
        assert_eq!(
            m.decode(),
            None,
            "LISTENING without an address family is no report"
        );
        m.detail = libc::AF_INET as u32;
        m.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        m.pid = 42;
        assert_eq!(
            m.decode(),
            Some(Report::Listening {
                pid: 42,
                addr: "127.0.0.1:8080".parse().unwrap()
            })
        );
    }

    #[test]
    fn stopped_decodes_into_typed_fields() {
        let mut m = Msg::new(Msg::STOPPED);
        m.flags = Msg::F_REAPED | Msg::F_ESCALATED | Msg::F_SUBREAPER;
        m.detail = Msg::CANNOT_LIST;
        m.errno = libc::EACCES;
        m.status = 9;
        m.killed = 4;
        m.processes = 5;
        let Some(Report::Stopped(s)) = m.decode() else {
            panic!("not STOPPED: {:?}", m.decode())
        };
        assert_eq!(s.exit_status, Some(9));
        assert!(s.escalated && s.subreaper && !s.gone_before && !s.leader_exited_before);
        assert_eq!(s.outcome, Outcome::CannotList(libc::EACCES));
        assert_eq!((s.signalled, s.processes_at_stop), (4, 5));
        m.flags = Msg::F_CONFIRMED;
        let Some(Report::Stopped(s)) = m.decode() else {
            panic!()
        };
        assert_eq!((s.outcome, s.exit_status), (Outcome::Confirmed, None));
        let mut f = Msg::new(Msg::SPAWN_FAILED);
        f.detail = STAGE_EXEC;
        assert!(matches!(
            f.decode(),
            Some(Report::SpawnFailed {
                stage: Stage::Exec,
                ..
            })
        ));
        assert_eq!(
            Stage::Chdir.to_string(),
            "changing to the working directory"
        );
    }
}
