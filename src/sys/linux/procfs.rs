//! `/proc`: process state, children, every process, and what a process holds.
//!
//! The guardian's readers (`proc_stat`, `for_each_child`, ...) read into stack buffers through
//! plain syscalls: they do not allocate.

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::sys::fd::{close, read};
use crate::sys::no_alloc::{parse_hex, parse_pid, parse_u64, StackPath};
use crate::sys::process::getpid;
use crate::sys::{errno, retry, Pid, ProcStat};

/// Opens a path read-only, close-on-exec; -1 on failure (errno set).
fn open_read(path: &CStr) -> RawFd {
    // SAFETY: `path` is NUL-terminated and borrowed for the call.
    retry(|| unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })
}

/// Reads a small file into `buf`; returns the byte count, or `None` when it cannot be opened.
fn read_file(path: &CStr, buf: &mut [u8]) -> Option<usize> {
    let fd = open_read(path);
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < buf.len() {
        let n = read(fd, &mut buf[len..]);
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    close(fd);
    Some(len)
}

/// `/proc/<pid>/stat`, or `None` when the process is gone (or there is no /proc).
pub(crate) fn proc_stat(pid: Pid) -> Option<ProcStat> {
    let mut path = StackPath::new();
    path.push(b"/proc/").push_pid(pid).push(b"/stat");
    let mut buf = [0u8; 512];
    let len = read_file(path.as_cstr(), &mut buf)?;
    parse_stat(&buf[..len])
}

/// Parses `pid (comm) S ppid pgrp …`; comm may contain spaces and parentheses, so split after the
/// last `)`.
fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let mut fields = text[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let ppid = parse_pid(fields.next()?)?;
    let pgrp = parse_pid(fields.next()?)?;
    // Start time is field 22; the iterator is now at field 6, so it is `nth(16)`.
    let start = parse_u64(fields.nth(16)?)?;
    Some(ProcStat {
        state,
        ppid,
        pgrp,
        start,
    })
}

/// Whether process `pid` ignores signal `sig` (`SigIgn` in `/proc/<pid>/status`): an ignored
/// signal is discarded for good, so waiting for the process to act on it is pointless. `None`
/// when it cannot be read. A blocked or caught signal is not "ignored".
pub(crate) fn ignores_signal(pid: Pid, sig: libc::c_int) -> Option<bool> {
    let mut path = StackPath::new();
    path.push(b"/proc/").push_pid(pid).push(b"/status");
    let mut buf = [0u8; 2048];
    let len = read_file(path.as_cstr(), &mut buf)?;
    let mask = status_field(&buf[..len], b"SigIgn:").and_then(parse_hex)?;
    Some((1..=64).contains(&sig) && mask & (1u64 << (sig - 1)) != 0)
}

/// The thread group (process) of thread `tid` (`Tgid:` in `/proc/<tid>/status`).
pub(crate) fn thread_group(tid: Pid) -> Option<Pid> {
    let mut path = StackPath::new();
    path.push(b"/proc/").push_pid(tid).push(b"/status");
    let mut buf = [0u8; 2048];
    let len = read_file(path.as_cstr(), &mut buf)?;
    status_field(&buf[..len], b"Tgid:").and_then(parse_pid)
}

/// The trimmed value of a `Name:\tvalue` line of a `/proc/<pid>/status` text.
fn status_field<'a>(text: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let line = text
        .split(|&b| b == b'\n')
        .find(|line| line.starts_with(name))?;
    let value = &line[name.len()..];
    let start = value.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = value.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    Some(&value[start..end])
}

/// Calls `f` with each name in directory `dir` that is a number (a pid or tid). `false` when the
/// directory cannot be read.
fn for_each_numeric_entry(dir: &CStr, mut f: impl FnMut(Pid)) -> bool {
    // SAFETY: `dir` is NUL-terminated and borrowed for the call.
    let fd = retry(|| unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    });
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    let ok = loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes of entries into `buf`, a live
        // local; `fd` is the directory opened above, closed only after the loop.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break n == 0;
        }
        let mut off = 0usize;
        while off + 19 <= n as usize {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n as usize {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(pid) = parse_pid(name) {
                f(pid);
            }
            off += reclen;
        }
    };
    close(fd);
    ok
}

/// Calls `f` for each direct child of `pid`, whichever of its threads forked it
/// (`/proc/<pid>/task/<tid>/children` is per thread). `false` when the kernel lists no
/// children (no CONFIG_PROC_CHILDREN, no /proc) or `pid` is gone: "could not look", never
/// "no children".
pub(crate) fn for_each_child(pid: Pid, mut f: impl FnMut(Pid)) -> bool {
    let mut dir = StackPath::new();
    dir.push(b"/proc/").push_pid(pid).push(b"/task");
    let mut ok = true;
    let listed = for_each_numeric_entry(dir.as_cstr(), |tid| {
        ok &= for_each_task_child(pid, tid, &mut f);
    });
    listed && ok
}

/// Calls `f` for each child of the calling process, which must be single-threaded (the
/// guardian, the zygote): its one task lists them all. Read at every wake, so it skips the
/// listing of tasks. `false` when it cannot be read.
pub(crate) fn for_each_own_child(mut f: impl FnMut(Pid)) -> bool {
    let me = getpid();
    for_each_task_child(me, me, &mut f)
}

fn for_each_task_child(pid: Pid, tid: Pid, f: &mut impl FnMut(Pid)) -> bool {
    let mut path = StackPath::new();
    // For our own single task, an ENOENT is no listing at all (no /proc), not an exited thread.
    let own = tid == getpid();
    path.push(b"/proc/")
        .push_pid(pid)
        .push(b"/task/")
        .push_pid(tid)
        .push(b"/children");
    let fd = open_read(path.as_cstr());
    if fd < 0 {
        // A thread that exited since the task list was read has no children to list.
        return !own && errno() == libc::ENOENT;
    }
    let mut buf = [0u8; 4096];
    let mut current: Option<i64> = None;
    loop {
        let n = read(fd, &mut buf);
        if n <= 0 {
            break;
        }
        for &b in &buf[..n as usize] {
            if b.is_ascii_digit() {
                current = Some(current.unwrap_or(0) * 10 + i64::from(b - b'0'));
            } else if let Some(child) = current.take() {
                f(child as Pid);
            }
        }
    }
    if let Some(child) = current {
        f(child as Pid);
    }
    close(fd);
    true
}

/// Calls `f` for every process in `/proc`. Costs about 9 µs a process (measured): for
/// containment by process group only, where the guardian cannot list its descendants.
pub(crate) fn for_each_process(mut f: impl FnMut(Pid, ProcStat)) -> bool {
    for_each_numeric_entry(c"/proc", |pid| {
        if let Some(stat) = proc_stat(pid) {
            f(pid, stat);
        }
    })
}

/// The socket inodes process `pid` holds (`/proc/<pid>/fd`).
pub(crate) fn socket_inodes(pid: Pid) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|fd| {
            let link = std::fs::read_link(fd.path()).ok()?;
            let text = link.to_str()?;
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Whether `pid` holds the socket with this inode (one of its fds links to `socket:[inode]`).
/// Stack buffers and plain syscalls: the guardian's port watch calls it.
pub(crate) fn holds_socket(pid: Pid, inode: u64) -> bool {
    let mut want = StackPath::new();
    want.push(b"socket:[").push_u64(inode).push(b"]");
    let want = want.as_cstr().to_bytes();
    let mut dir = StackPath::new();
    dir.push(b"/proc/").push_pid(pid).push(b"/fd");
    let mut found = false;
    for_each_numeric_entry(dir.as_cstr(), |fd| {
        if found {
            return;
        }
        let mut link = StackPath::new();
        link.push(b"/proc/")
            .push_pid(pid)
            .push(b"/fd/")
            .push_pid(fd);
        let mut target = [0u8; 64];
        // SAFETY: the path is NUL-terminated; the kernel writes at most `target.len()` bytes
        // into the live local.
        let n = unsafe {
            libc::readlink(
                link.as_cstr().as_ptr(),
                target.as_mut_ptr().cast(),
                target.len(),
            )
        };
        found = n > 0 && &target[..n as usize] == want;
    });
    found
}

/// The command line of `pid` (arguments joined by spaces, at most 200 bytes), or its `comm` for
/// a kernel thread or a zombie; `None` when it does not exist.
pub(crate) fn command_line(pid: Pid) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut text: String = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        text = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        text = format!("[{}]", text.trim_end());
    }
    Some(crate::text::shorten(text, 200))
}

/// A process holding one of these socket inodes (a scan of every `/proc/*/fd`: slow, for error
/// messages only).
pub(crate) fn socket_owner(inodes: &[u64]) -> Option<Pid> {
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: Pid = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|l| targets.iter().any(|t| l.as_os_str() == t.as_str()))
                })
                .then_some(pid)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_names() {
        // A real line's shape: 52 fields, start time (field 22) = 9876543.
        let line = b"42 (a) b) (c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 9876543 \
                     8192 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 1 1 1 1 1 1 0\n";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            ProcStat {
                state: b'S',
                ppid: 7,
                pgrp: 42,
                start: 9_876_543
            }
        );
        assert!(parse_stat(b"42 (short) S 7 42").is_none(), "truncated");
        assert!(parse_stat(b"garbage").is_none());
    }

    #[test]
    fn proc_reads_agree_with_libc() {
        let me = getpid();
        let stat = proc_stat(me).unwrap();
        assert_eq!(stat.pgrp, crate::sys::process::getpgrp());
        assert_eq!(stat.ppid, crate::sys::process::getppid());
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let field22 = text[text.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(19)
            .unwrap();
        assert_eq!(stat.start.to_string(), field22, "start time is field 22");
        assert!(stat.is_live());
        let mut found = false;
        assert!(for_each_process(|pid, _| found |= pid == me));
        assert!(found);
        assert_eq!(thread_group(me), Some(me));
        // SIGKILL can never be ignored; the test harness does not ignore SIGTERM.
        assert_eq!(ignores_signal(me, libc::SIGKILL), Some(false));
    }

    #[test]
    fn children_of_any_thread_are_listed() {
        // The harness runs this test on a thread that is not the main task: the child hangs off
        // this thread's own list, which `for_each_child` must read too.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let mut seen = false;
        let listed = for_each_child(getpid(), |p| seen |= p as u32 == child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(listed && seen);
        assert!(
            !for_each_child(999_999_999, |_| {}),
            "a missing pid is not 'no children'"
        );
    }

    #[test]
    fn status_fields() {
        let text = b"Name:\tx\nTgid:\t77\nSigIgn:\t0000000000004000\n";
        assert_eq!(status_field(text, b"Tgid:"), Some(&b"77"[..]));
        assert_eq!(
            status_field(text, b"SigIgn:"),
            Some(&b"0000000000004000"[..])
        );
        assert_eq!(status_field(text, b"Missing:"), None);
    }
}
