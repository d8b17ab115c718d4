//! libproc: process state, children and every process.

use crate::sys::process::getpid;
use crate::sys::{Pid, ProcStat};

pub(crate) fn proc_stat(pid: Pid) -> Option<ProcStat> {
    // SAFETY: proc_bsdinfo is plain old data: all zeros is valid.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the call writes at most `size` bytes into `info`, a live local of that size.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if n != size {
        return None;
    }
    Some(ProcStat {
        state: match info.pbi_status {
            libc::SZOMB => b'Z',
            libc::SSTOP => b'T',
            _ => b'R',
        },
        ppid: info.pbi_ppid as Pid,
        pgrp: info.pbi_pgid as Pid,
        start: info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec,
    })
}

/// Not known on macOS: every process gets its grace.
pub(crate) fn ignores_signal(_pid: Pid, _sig: libc::c_int) -> Option<bool> {
    None
}

pub(crate) fn thread_group(tid: Pid) -> Option<Pid> {
    Some(tid)
}

/// Up to 4096 pids through a libproc call that fills `buf` and returns how many it wrote.
fn for_each_listed(mut f: impl FnMut(Pid), list: impl Fn(&mut [Pid]) -> libc::c_int) -> bool {
    let mut buf = [0 as Pid; 4096];
    let n = list(&mut buf);
    if n < 0 {
        return false;
    }
    for &pid in &buf[..(n as usize).min(buf.len())] {
        if pid > 0 {
            f(pid);
        }
    }
    true
}

pub(crate) fn for_each_child(pid: Pid, f: impl FnMut(Pid)) -> bool {
    // SAFETY: the call writes at most the byte size of `buf` (given) into `buf`, borrowed
    // mutably for it.
    for_each_listed(f, |buf| unsafe {
        libc::proc_listchildpids(
            pid,
            buf.as_mut_ptr().cast(),
            std::mem::size_of_val(buf) as i32,
        )
    })
}

pub(crate) fn for_each_own_child(f: impl FnMut(Pid)) -> bool {
    for_each_child(getpid(), f)
}

pub(crate) fn for_each_process(mut f: impl FnMut(Pid, ProcStat)) -> bool {
    for_each_listed(
        |pid| {
            if let Some(stat) = proc_stat(pid) {
                f(pid, stat);
            }
        },
        // SAFETY: the call writes at most the byte size of `buf` (given) into `buf`, borrowed
        // mutably for it.
        |buf| unsafe {
            libc::proc_listallpids(buf.as_mut_ptr().cast(), std::mem::size_of_val(buf) as i32)
        },
    )
}

/// The process's name (libproc has no command line without the sysctl dance).
pub(crate) fn command_line(pid: Pid) -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the call writes at most `buf.len()` bytes into `buf`, a live local.
    let n = unsafe { libc::proc_name(pid, buf.as_mut_ptr().cast(), buf.len() as u32) };
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}
