//! cgroup v2: a fixture's own cgroup.
//!
//! A [`Cgroup`] is an fd on the cgroup's directory (and one on its `cgroup.events`); everything
//! else goes through `openat` on it, so no path longer than the cgroup's short name is ever
//! formatted: the guardian makes and uses it without allocating. The server's child joins it
//! by writing `0` (itself) to `cgroup.procs` before exec. `cgroup.kill` kills every process in
//! it at once, forks in flight included; `cgroup.freeze` stops them all; `cgroup.events` says
//! `populated 0` once none lives (zombies are not counted) and `frozen 1` once frozen, and
//! every change of it wakes a `poll` for `POLLPRI` ([`pollfd_changed`]).

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::sys::fd::{close, read};
use crate::sys::no_alloc::{parse_u64, StackPath};
use crate::sys::{errno, retry};

/// A fixture's cgroup, open.
pub(crate) struct Cgroup {
    /// The directory the cgroup is in (`…/process-fixture`), for its removal.
    parent: RawFd,
    dir: RawFd,
    events: RawFd,
    name: StackPath,
}

impl Cgroup {
    /// Makes cgroup `name` in `parent` and opens it. `Err(errno)`: `parent` cannot be opened,
    /// the cgroup cannot be made, or the kernel has no `cgroup.kill` (before Linux 5.14).
    pub(crate) fn create(parent: &CStr, name: &[u8]) -> Result<Cgroup, i32> {
        let mut cg = Cgroup::at(parent, name)?;
        let made = {
            let name = cg.name.as_cstr();
            // SAFETY: `name` is NUL-terminated; `parent` is an open directory fd.
            unsafe { libc::mkdirat(cg.parent, name.as_ptr(), 0o755) }
        };
        if made != 0 {
            let e = errno();
            close(cg.parent);
            return Err(e);
        }
        match cg.open_inside() {
            Ok(()) if cg.has(c"cgroup.kill") => Ok(cg),
            opened => {
                let e = opened.err().unwrap_or(libc::ENOSYS);
                cg.remove();
                Err(e)
            }
        }
    }

    /// Makes cgroup `name` in `parent` on the v1 memory hierarchy, where a hybrid system keeps
    /// the memory controller: only joined, read (`memory.max_usage_in_bytes`) and removed.
    pub(crate) fn create_memory_v1(parent: &CStr, name: &[u8]) -> Result<Cgroup, i32> {
        let mut cg = Cgroup::at(parent, name)?;
        let made = {
            let name = cg.name.as_cstr();
            // SAFETY: `name` is NUL-terminated; `parent` is an open directory fd.
            unsafe { libc::mkdirat(cg.parent, name.as_ptr(), 0o755) }
        };
        let name = cg.name.as_cstr();
        cg.dir = open_at(cg.parent, name, libc::O_PATH | libc::O_DIRECTORY);
        if made != 0 || cg.dir < 0 {
            let e = errno();
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    /// Opens cgroup `name` in `parent`, made earlier (by a guardian that died since).
    pub(crate) fn open(parent: &CStr, name: &[u8]) -> Result<Cgroup, i32> {
        let mut cg = Cgroup::at(parent, name)?;
        match cg.open_inside() {
            Ok(()) => Ok(cg),
            Err(e) => {
                cg.close_fds();
                Err(e)
            }
        }
    }

    fn at(parent: &CStr, name: &[u8]) -> Result<Cgroup, i32> {
        let parent = open_at(libc::AT_FDCWD, parent, libc::O_PATH | libc::O_DIRECTORY);
        if parent < 0 {
            return Err(errno());
        }
        let mut stack_name = StackPath::new();
        stack_name.push(name);
        Ok(Cgroup {
            parent,
            dir: -1,
            events: -1,
            name: stack_name,
        })
    }

    fn open_inside(&mut self) -> Result<(), i32> {
        let name = self.name.as_cstr();
        self.dir = open_at(self.parent, name, libc::O_PATH | libc::O_DIRECTORY);
        if self.dir < 0 {
            return Err(errno());
        }
        self.events = open_at(self.dir, c"cgroup.events", libc::O_RDONLY);
        if self.events < 0 {
            return Err(errno());
        }
        Ok(())
    }

    fn has(&self, file: &CStr) -> bool {
        // SAFETY: `file` is NUL-terminated; `dir` is an open directory fd.
        unsafe { libc::faccessat(self.dir, file.as_ptr(), libc::F_OK, 0) == 0 }
    }

    /// `cgroup.procs`, open for writing: the server's child writes `0` to it ([`join_cgroup`]).
    pub(crate) fn procs(&self) -> RawFd {
        open_at(self.dir, c"cgroup.procs", libc::O_WRONLY)
    }

    /// Its directory, open (`O_PATH`): what `CLONE_INTO_CGROUP` starts a process in.
    pub(crate) fn dir_fd(&self) -> RawFd {
        self.dir
    }

    /// The fd whose changes wake a poll ([`pollfd_changed`]).
    pub(crate) fn events_fd(&self) -> RawFd {
        self.events
    }

    /// Whether a live process is in it (`None`: cannot be read).
    pub(crate) fn populated(&self) -> Option<bool> {
        self.event(b"populated ")
    }

    /// Reads `cgroup.events`, which acknowledges the change that woke a poll (kernfs keeps
    /// reporting it to every poll until the file is read again).
    pub(crate) fn acknowledge(&self) {
        let _ = self.populated();
    }

    /// Whether it is frozen (`None`: cannot be read).
    pub(crate) fn frozen(&self) -> Option<bool> {
        self.event(b"frozen ")
    }

    fn event(&self, key: &[u8]) -> Option<bool> {
        let mut buf = [0u8; 128];
        // SAFETY: `buf` is a live local of the length given; `events` is an open fd. Reading it
        // also acknowledges the change that woke a poll.
        let n = unsafe { libc::pread(self.events, buf.as_mut_ptr().cast(), buf.len(), 0) };
        let text = &buf[..usize::try_from(n).ok()?];
        field(text, key).map(|v| v != 0)
    }

    /// Kills every process in it (`cgroup.kill`), including children forked meanwhile.
    pub(crate) fn kill(&self) -> bool {
        self.write(c"cgroup.kill", b"1")
    }

    /// Freezes or thaws every process in it (`cgroup.freeze`); [`Cgroup::frozen`] says when.
    pub(crate) fn freeze(&self, on: bool) -> bool {
        self.write(c"cgroup.freeze", if on { b"1" } else { b"0" })
    }

    fn write(&self, file: &CStr, value: &[u8]) -> bool {
        let fd = open_at(self.dir, file, libc::O_WRONLY);
        if fd < 0 {
            return false;
        }
        let done = crate::sys::fd::write_all(fd, value);
        close(fd);
        done
    }

    /// CPU time its processes used, dead ones included (`cpu.stat` `usage_usec`).
    pub(crate) fn cpu_us(&self) -> Option<u64> {
        let mut buf = [0u8; 512];
        let text = self.read(c"cpu.stat", &mut buf)?;
        field(text, b"usage_usec ")
    }

    /// The peak memory of its processes together, where the memory controller is enabled for
    /// it: `memory.peak` (v2), `memory.max_usage_in_bytes` (v1).
    pub(crate) fn memory_peak(&self) -> Option<u64> {
        [c"memory.peak", c"memory.max_usage_in_bytes"]
            .into_iter()
            .find_map(|file| {
                let mut buf = [0u8; 32];
                let text = self.read(file, &mut buf)?;
                parse_u64(text.split(|&b| b == b'\n').next()?)
            })
    }

    fn read<'b>(&self, file: &CStr, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        if self.dir < 0 {
            return None;
        }
        let fd = open_at(self.dir, file, libc::O_RDONLY);
        if fd < 0 {
            return None;
        }
        let n = read(fd, buf);
        close(fd);
        Some(&buf[..usize::try_from(n).ok()?])
    }

    /// Closes it and removes the directory (which fails while a process lives in it).
    pub(crate) fn remove(mut self) -> bool {
        self.close_fds();
        let name = self.name.as_cstr();
        // SAFETY: `name` is NUL-terminated; `parent` is an open directory fd.
        let removed = unsafe { libc::unlinkat(self.parent, name.as_ptr(), libc::AT_REMOVEDIR) };
        close(self.parent);
        removed == 0 || errno() == libc::ENOENT
    }

    /// Closes it, leaving the directory.
    pub(crate) fn close(mut self) {
        self.close_fds();
        close(self.parent);
    }

    fn close_fds(&mut self) {
        for fd in [&mut self.dir, &mut self.events] {
            if *fd >= 0 {
                close(*fd);
                *fd = -1;
            }
        }
    }
}

/// Test side: enables `controller` for the children of cgroup directory `dir` (a write of
/// `+memory` to its `cgroup.subtree_control`). Fails where the parent lacks it, or where `dir`
/// has processes of its own.
pub(crate) fn enable_controller(dir: &CStr, controller: &[u8]) -> bool {
    let dir = open_at(libc::AT_FDCWD, dir, libc::O_PATH | libc::O_DIRECTORY);
    if dir < 0 {
        return false;
    }
    let fd = open_at(dir, c"cgroup.subtree_control", libc::O_WRONLY);
    close(dir);
    if fd < 0 {
        return false;
    }
    let mut value = StackPath::new();
    value.push(b"+").push(controller);
    let done = crate::sys::fd::write_all(fd, value.as_cstr().to_bytes());
    close(fd);
    done
}

/// In the server's child, before exec: moves the calling process into the cgroup whose
/// `cgroup.procs` is open as `procs`.
pub(crate) fn join_cgroup(procs: RawFd) -> bool {
    crate::sys::fd::write_all(procs, b"0")
}

/// A pollfd that wakes on a change of a `cgroup.events` file (kernfs reports it as
/// `POLLPRI`; the file is always readable, so `POLLIN` would never sleep).
pub(crate) fn pollfd_changed(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLPRI,
        revents: 0,
    }
}

/// The number after `key` at the start of a line of `text` (`populated 1`, `usage_usec 42`).
fn field(text: &[u8], key: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(key))
        .and_then(parse_u64)
}

fn open_at(dir: RawFd, path: &CStr, flags: libc::c_int) -> RawFd {
    // SAFETY: `path` is NUL-terminated; `dir` is an open directory fd or AT_FDCWD.
    retry(|| unsafe { libc::openat(dir, path.as_ptr(), flags | libc::O_CLOEXEC) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_the_start_of_a_line() {
        let text = b"populated 1\nfrozen 0\n";
        assert_eq!(field(text, b"populated "), Some(1));
        assert_eq!(field(text, b"frozen "), Some(0));
        assert_eq!(
            field(b"usage_usec 42\nuser_usec 40\n", b"usage_usec "),
            Some(42)
        );
        assert_eq!(field(b"nr_periods 3\n", b"usage_usec "), None);
    }
}
