//! Where fixtures' cgroups live: a writable cgroup v2 hierarchy, found once per process, and in
//! it `<this process's cgroup>/process-fixture/<PID namespace>/`, where each guardian makes its
//! fixture's cgroup named `<guardian pid>.<guardian start time>`. The namespace (the inode of
//! `/proc/self/ns/pid`) is part of the path because a pid means something only in its own: a
//! sweep looks only at the cgroups of guardians whose pids it can check. Also the two clean-ups that the guardian cannot
//! do itself: the sweep of cgroups left by guardians that died (run once per process, at the
//! first spawn that uses a cgroup), and the kill of a cgroup whose guardian has just died (run
//! by the zygote, or by the test side for a guardian it forked).
//!
//! Nothing here signals a process: `cgroup.kill` reaches exactly the processes in the cgroup,
//! whatever their pids are by now.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::sys::{self, Cgroup, Pid};

mod find;
use find::Hierarchy;

/// How long a clean-up waits for a killed cgroup to empty before it leaves it for a later one.
const EMPTY_WAIT: Duration = Duration::from_secs(1);

/// Where this process's fixtures get their cgroups, or why they cannot have one (a sentence,
/// for [`Error::ContainmentUnavailable`](crate::Error::ContainmentUnavailable)). Found once;
/// the first call also sweeps what dead guardians left there.
pub(crate) fn parent() -> Result<&'static Path, &'static str> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        if crate::force::forced("no-cgroup") {
            return Err("switched off by PROCESS_FIXTURE_FORCE=no-cgroup".into());
        }
        let parent = find::find(Hierarchy::V2)?;
        sweep(&parent);
        Ok(parent)
    });
    match found {
        Ok(path) => Ok(path),
        Err(reason) => Err(reason),
    }
}

/// Where a fixture's memory is counted when its v2 cgroup cannot count it: the same place on
/// the v1 memory hierarchy, where a hybrid system keeps the memory controller (each guardian
/// makes a cgroup of the same name there too). `None`: the v2 cgroups count it themselves (the
/// controller could be enabled for them), or it is counted nowhere.
pub(crate) fn memory_parent() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let v2 = parent().ok()?;
        if memory_on_v2(v2) {
            return None;
        }
        let v1 = find::find(Hierarchy::MemoryV1).ok()?;
        sweep_memory_v1(&v1);
        Some(v1)
    });
    found.as_deref()
}

/// Enables the v2 memory controller for the fixtures' cgroups where their ancestors have it
/// (`process-fixture/` and the namespace's directory have no processes of their own, so they may
/// pass it on). Whether the fixtures' cgroups get it.
fn memory_on_v2(parent: &Path) -> bool {
    for dir in [parent.parent(), Some(parent)].into_iter().flatten() {
        if let Ok(dir) = CString::new(dir.as_os_str().as_bytes()) {
            sys::enable_controller(&dir, b"memory");
        }
    }
    std::fs::read_to_string(parent.join("cgroup.subtree_control"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
}

/// The name a guardian gives its fixture's cgroup.
pub(crate) fn name(guardian: Pid, start: u64) -> String {
    format!("{guardian}.{start}")
}

/// A fixture's cgroup, by the name its guardian gave it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Named {
    pub guardian: Pid,
    pub start: u64,
}

impl Named {
    fn open(self) -> Option<Cgroup> {
        let parent = CString::new(parent().ok()?.as_os_str().as_bytes()).ok()?;
        Cgroup::open(&parent, name(self.guardian, self.start).as_bytes()).ok()
    }

    /// Whether it is frozen (`cgroup.events`); `None` when it cannot be read (gone).
    pub(crate) fn frozen(self) -> Option<bool> {
        let cg = self.open()?;
        let frozen = cg.frozen();
        cg.close();
        frozen
    }

    /// Kills and removes it, if it is still there: its guardian died before its stop finished.
    /// Returns whether it was found.
    pub(crate) fn kill_orphaned(self) -> bool {
        let found = self.open().map(kill_and_remove).is_some();
        if let Some(v1) = memory_parent() {
            let _ = std::fs::remove_dir(v1.join(name(self.guardian, self.start)));
        }
        found
    }
}

/// Kills every process in `cg`, waits (bounded) until none lives, and removes it.
fn kill_and_remove(cg: Cgroup) {
    let deadline = Deadline::after(EMPTY_WAIT);
    while cg.populated() != Some(false) && !deadline.passed() {
        cg.kill();
        let mut fds = [sys::pollfd_changed(cg.events_fd())];
        sys::poll(&mut fds, deadline.remaining());
    }
    if cg.populated() == Some(false) {
        cg.remove();
    } else {
        cg.close();
    }
}

/// Cgroups in `parent` whose guardian is gone (no process with that pid and start time), killed
/// and removed.
fn sweep(parent: &Path) {
    let Ok(c_parent) = CString::new(parent.as_os_str().as_bytes()) else {
        return;
    };
    for (pid, start) in dead_guardians(parent) {
        log::debug!("process-fixture: removing the cgroup of dead guardian {pid}");
        if let Ok(cg) = Cgroup::open(&c_parent, name(pid, start).as_bytes()) {
            kill_and_remove(cg);
        }
    }
}

/// The v1 memory cgroups of dead guardians: removed (they are empty once their v2 cgroup was
/// killed, since the same processes were in both).
fn sweep_memory_v1(parent: &Path) {
    for (pid, start) in dead_guardians(parent) {
        let _ = std::fs::remove_dir(parent.join(name(pid, start)));
    }
}

/// The guardians named by cgroups in `parent` that no longer live. A name with start time 0 (a
/// guardian without `/proc`) is never among them: its guardian's life cannot be checked.
fn dead_guardians(parent: &Path) -> Vec<(Pid, u64)> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| parse_name(&entry.file_name()))
        .filter(|&(pid, start)| {
            start != 0 && !sys::proc_stat(pid).is_some_and(|s| s.start == start)
        })
        .collect()
}

fn parse_name(name: &OsStr) -> Option<(Pid, u64)> {
    let (pid, start) = name.to_str()?.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(parse_name(OsStr::new(&name(123, 456))), Some((123, 456)));
        assert_eq!(parse_name(OsStr::new("cgroup.procs")), None);
        assert_eq!(parse_name(OsStr::new("12")), None);
    }
}
