//! Signals: the one checked call that sends them all, and dispositions.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use super::errno;
use super::process::{getpgrp, getpid};
use super::Pid;

/// Whom a signal goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A pid that the caller has pinned: its own unreaped child.
    Process(Pid),
    /// A process group whose leader is the caller's unreaped child.
    Group(Pid),
    /// A process through a pidfd, which names that very process whatever happens to its pid.
    PidFd(RawFd),
}

/// Why [`signal`] did not send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignalError {
    /// The target is one we must never signal.
    Refused,
    /// `kill` failed with this errno.
    Os(i32),
}

/// Pids and groups that are never signalled in this process, besides its own pid and group: a
/// guardian records its test process here. Statics are per process after fork.
static PROTECTED: [AtomicI32; 2] = [AtomicI32::new(0), AtomicI32::new(0)];

/// Adds the test process's pid and process group to the refused targets.
pub(crate) fn protect(pid: Pid, pgrp: Pid) {
    PROTECTED[0].store(pid, Ordering::Relaxed);
    PROTECTED[1].store(pgrp, Ordering::Relaxed);
}

/// Sends `sig` to `target`. Every signal the crate sends goes through here. It refuses ids ≤ 1,
/// our own pid and process group, and the protected ids. For numbers, the caller guarantees
/// they are pinned by an unreaped child of its own (see `guardian`).
pub(crate) fn signal(target: Target, sig: libc::c_int) -> Result<(), SignalError> {
    let (id, raw) = match target {
        Target::Process(p) => (p, p),
        Target::Group(g) => (g, -g),
        Target::PidFd(fd) => return super::os::pidfd_signal(fd, sig).map_err(SignalError::Os),
    };
    let own = id == getpid() || id == getpgrp();
    let protected = PROTECTED.iter().any(|p| p.load(Ordering::Relaxed) == id);
    if id <= 1 || own || protected {
        return Err(SignalError::Refused);
    }
    // SAFETY: kill takes no pointer; whom it reaches is checked above.
    if unsafe { libc::kill(raw, sig) } == 0 {
        Ok(())
    } else {
        Err(SignalError::Os(errno()))
    }
}

/// Result of `kill(-pgid, 0)`: whether any process, live or zombie, is in the group.
/// macOS answers `EPERM` for a group whose members are all zombies.
pub(crate) fn group_probe(pgid: Pid) -> i32 {
    // SAFETY: kill takes no pointer, and signal 0 sends nothing.
    if unsafe { libc::kill(-pgid, 0) } == 0 {
        0
    } else {
        errno()
    }
}

/// The highest valid signal number.
#[cfg(target_os = "linux")]
pub(crate) const MAX_SIGNAL: libc::c_int = 64;
/// The highest valid signal number.
#[cfg(not(target_os = "linux"))]
pub(crate) const MAX_SIGNAL: libc::c_int = 31;

/// Empty signal mask and default dispositions, for the server just before exec: a harness that
/// blocks or ignores SIGTERM must not make the server immune to it. `only`: the signals that can
/// be other than default (exec resets handlers, so only ignored ones matter), where the caller
/// knows them; `None`: all of them (62 syscalls).
pub(crate) fn reset_signals(only: Option<&[libc::c_int]>) {
    // SAFETY: `set` is a local sigset_t, initialised by sigemptyset before use; a null old
    // mask is allowed. Async-signal-safe, so sound in the child after fork or clone.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        let all = (1..=MAX_SIGNAL).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP);
        match only {
            Some(signals) => signals.iter().copied().for_each(set_default),
            None => all.for_each(set_default),
        }
    }
}

/// Sets `sig` to its default disposition, glibc's own real-time signals included (32 and 33,
/// which `signal` refuses to touch, though an ignored one passes through exec like any other).
fn set_default(sig: libc::c_int) {
    #[cfg(target_os = "linux")]
    // SAFETY: a zeroed kernel sigaction is SIG_DFL with no flags and an empty mask, installing
    // no handler; 8 is the size of the kernel's signal set.
    unsafe {
        let action = [0u64; 4];
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            action.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8,
        );
    }
    #[cfg(not(target_os = "linux"))]
    // SAFETY: SIG_DFL is not a handler.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Sets `sig` to ignored (`true`) or default (`false`).
pub(crate) fn set_ignored(sig: libc::c_int, ignored: bool) {
    let action = if ignored {
        libc::SIG_IGN
    } else {
        libc::SIG_DFL
    };
    // SAFETY: SIG_IGN and SIG_DFL are not handlers: no code of ours runs at delivery.
    unsafe { libc::signal(sig, action) };
}

/// Blocks `sig` in the calling thread (so that it is read from an fd instead of delivered).
#[cfg(target_os = "linux")]
pub(crate) fn block_signal(sig: libc::c_int) {
    // SAFETY: `set` is a local sigset_t, initialised by sigemptyset before use; a null old mask
    // is allowed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chokepoint_refuses_init_zero_self_and_own_group() {
        for target in [
            Target::Process(0),
            Target::Process(1),
            Target::Process(-5),
            Target::Group(0),
            Target::Group(1),
            Target::Process(getpid()),
            Target::Group(getpgrp()),
        ] {
            assert_eq!(signal(target, 0), Err(SignalError::Refused), "{target:?}");
        }
    }

    #[test]
    fn chokepoint_refuses_protected_ids_in_a_child() {
        // `protect` changes a static of this process: do it in a forked child only.
        // SAFETY: the child makes only atomic stores, the checks of `signal` (which send
        // nothing) and `_exit`: no allocation, no lock.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            protect(4242, 4343);
            let ok = signal(Target::Process(4242), 0) == Err(SignalError::Refused)
                && signal(Target::Group(4343), 0) == Err(SignalError::Refused);
            super::super::process::exit(if ok { 0 } else { 1 });
        }
        let mut status = 0;
        // SAFETY: `status` is a live int for waitpid to write.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
