//! The calling process: its ids, its group, its limits, its directory, its environment, exit.

use std::ffi::CStr;

use super::Pid;

/// What the guardian reads of a process (`/proc/<pid>/stat` on Linux, libproc on macOS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub(crate) state: u8,
    pub(crate) ppid: Pid,
    pub(crate) pgrp: Pid,
    /// Start time (clock ticks since boot on Linux, µs since the epoch on macOS): tells a
    /// recycled pid from the process that had it.
    pub(crate) start: u64,
}

impl ProcStat {
    /// Zombies (`Z`) and dead tasks (`X`) hold a pid but run no code.
    pub(crate) fn is_live(&self) -> bool {
        self.state != b'Z' && self.state != b'X'
    }

    /// Stopped by a signal (`T`) or under a tracer (`t`): runs no code until continued.
    pub(crate) fn is_stopped(&self) -> bool {
        self.state == b'T' || self.state == b't'
    }
}

/// Every descendant of `pid` (children of all its threads, depth first). Test side only.
pub(crate) fn descendants(pid: Pid) -> Vec<Pid> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        super::os::for_each_child(p, |c| {
            out.push(c);
            stack.push(c);
        });
    }
    out
}

/// Lets another runnable task have the CPU.
pub(crate) fn yield_now() {
    // SAFETY: sched_yield takes no argument.
    unsafe { libc::sched_yield() };
}

/// `getpid()`.
pub(crate) fn getpid() -> Pid {
    // SAFETY: getpid takes no argument and cannot fail.
    unsafe { libc::getpid() }
}

/// `getppid()`.
pub(crate) fn getppid() -> Pid {
    // SAFETY: getppid takes no argument and cannot fail.
    unsafe { libc::getppid() }
}

/// `getpgrp()`.
pub(crate) fn getpgrp() -> Pid {
    // SAFETY: getpgrp takes no argument and cannot fail.
    unsafe { libc::getpgrp() }
}

/// `getpgid(pid)`, or -1.
pub(crate) fn getpgid(pid: Pid) -> Pid {
    // SAFETY: getpgid takes no pointer.
    unsafe { libc::getpgid(pid) }
}

/// Makes the calling process the leader of a new process group.
pub(crate) fn new_process_group() -> bool {
    // SAFETY: setpgid takes no pointer.
    unsafe { libc::setpgid(0, 0) == 0 }
}

/// `_exit(code)`: no atexit handlers, no flushing (async-signal-safe).
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit takes no pointer and runs no code of ours.
    unsafe { libc::_exit(code) }
}

/// Raises the soft limit on open files to the hard limit (a zygote holds one fd per fixture).
pub(crate) fn raise_fd_limit() {
    // SAFETY: `lim` is a local rlimit (plain old data, zeroed), filled by getrlimit before it
    // is read and passed back by reference.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// `chdir(dir)`.
pub(crate) fn chdir(dir: &CStr) -> bool {
    // SAFETY: `dir` is a NUL-terminated string borrowed for the call.
    unsafe { libc::chdir(dir.as_ptr()) == 0 }
}

/// The value of environment variable `name`, read with `getenv` (no allocation, so it can run
/// before `main`).
///
/// # Safety
/// No other thread may change the environment while this runs or while the result is used
/// (the result points into the environment block, valid until it is changed).
pub(crate) unsafe fn getenv(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: `name` is NUL-terminated; the caller guarantees that nobody changes the
    // environment concurrently.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string, which stays valid as long as the
    // environment is not changed (the caller's promise).
    Some(unsafe { CStr::from_ptr(value) })
}

/// Registers `f` to run at a normal exit of the process (`atexit`). False when it could not.
pub(crate) fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: `f` is a plain function with no arguments, valid for the life of the program.
    unsafe { libc::atexit(f) == 0 }
}

/// What the reaped children of the calling process used, with theirs: CPU (user + system, µs)
/// and the peak resident size of the largest one (bytes). A plain syscall (the guardian).
pub(crate) fn children_usage() -> Option<(u64, u64)> {
    // SAFETY: rusage is plain old data: all zeros is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live local for getrusage to fill.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return None;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    // ru_maxrss: KiB on Linux, bytes on macOS.
    let unit = if cfg!(target_os = "linux") { 1024 } else { 1 };
    Some((
        us(ru.ru_utime) + us(ru.ru_stime),
        ru.ru_maxrss as u64 * unit,
    ))
}
