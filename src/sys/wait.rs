//! Waiting for children: observing an exit without reaping, and reaping.

use std::io;

use super::{retry, Pid};

/// A raw wait status (the `int` of `waitpid`), so `ExitStatus::from_raw` can read it.
pub(crate) type WaitStatus = i32;

/// Has child `pid` exited? Observes without reaping (`WNOWAIT`): the zombie keeps its pid, and so
/// its process group number, out of reuse until the guardian reaps it, so signals sent by number
/// in the meantime cannot reach a stranger.
pub(crate) fn peek_exit(pid: Pid) -> Option<WaitStatus> {
    // SAFETY: siginfo_t is plain old data: all zeros is valid (and si_pid 0 means "none").
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a live siginfo_t for waitid to fill.
    let ret = retry(|| unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) });
    // With WNOHANG, a child that has not exited leaves si_pid at 0.
    // SAFETY: reading the pid field of a siginfo_t that waitid filled (or left zeroed).
    if ret == -1 || unsafe { info.si_pid() } == 0 {
        return None;
    }
    // SAFETY: waitid reported a child (si_pid set), so the status field is filled.
    let status = unsafe { info.si_status() };
    Some(match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_DUMPED => status | 0x80,
        _ => status,
    })
}

/// Reaps child `pid` if it has exited. `Err` means it is not our child (already reaped).
pub(crate) fn try_reap(pid: Pid) -> io::Result<Option<WaitStatus>> {
    let mut status = 0;
    // SAFETY: `status` is a live int for waitpid to write.
    let ret = retry(|| unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) });
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        _ => Ok(Some(status)),
    }
}

/// Reaps every child that has exited, whichever it is, calling `f(pid, status)` for each.
/// Only where no pid needs pinning any more: the zygote (it signals none of its children by
/// number after reaping them), and a guardian's very last step, after its leader was reaped.
pub(crate) fn reap_any(mut f: impl FnMut(Pid, WaitStatus)) {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a live int for waitpid to write.
        let pid = retry(|| unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) });
        if pid <= 0 {
            return;
        }
        f(pid, status);
    }
}
