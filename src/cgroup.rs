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

/// The directory under a process's own cgroup that holds the fixtures' cgroups.
#[cfg(target_os = "linux")]
const DIR_NAME: &str = "process-fixture";
/// How long a clean-up waits for a killed cgroup to empty before it leaves it for a later one.
const EMPTY_WAIT: Duration = Duration::from_secs(1);

/// Where this process's fixtures get their cgroups, or why they cannot have one (a sentence,
/// for [`Error::ContainmentUnavailable`](crate::Error::ContainmentUnavailable)). Found once;
/// the first call also sweeps what dead guardians left there.
pub(crate) fn parent() -> Result<&'static Path, &'static str> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let parent = find()?;
        sweep(&parent);
        Ok(parent)
    });
    match found {
        Ok(path) => Ok(path),
        Err(reason) => Err(reason),
    }
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
        self.open().map(kill_and_remove).is_some()
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
/// and removed. A name with start time 0 (a guardian without `/proc`) is left alone: its
/// guardian's life cannot be checked.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let Some((pid, start)) = parse_name(&entry.file_name()) else {
            continue;
        };
        let alive = sys::proc_stat(pid).is_some_and(|s| s.start == start);
        if start != 0 && !alive {
            log::debug!("process-fixture: removing the cgroup of dead guardian {pid}");
            let opened = CString::new(parent.as_os_str().as_bytes())
                .ok()
                .and_then(|p| Cgroup::open(&p, name(pid, start).as_bytes()).ok());
            if let Some(cg) = opened {
                kill_and_remove(cg);
            }
        }
    }
}

fn parse_name(name: &OsStr) -> Option<(Pid, u64)> {
    let (pid, start) = name.to_str()?.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

#[cfg(not(target_os = "linux"))]
fn find() -> Result<PathBuf, String> {
    Err("cgroups are Linux only".into())
}

/// This process's cgroup v2 directory, and in it `process-fixture/`, made if need be.
#[cfg(target_os = "linux")]
fn find() -> Result<PathBuf, String> {
    if crate::force::forced("no-cgroup") {
        return Err("switched off by PROCESS_FIXTURE_FORCE=no-cgroup".into());
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup cannot be read ({e}): is /proc mounted?"))?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2 hierarchy (cgroup v1 only)")?
        .to_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo cannot be read ({e})"))?;
    let mount = mounts
        .lines()
        .find_map(cgroup2_mount)
        .ok_or("no cgroup2 filesystem is mounted")?;
    if mount.read_only {
        return Err(format!(
            "the cgroup2 filesystem at {} is mounted read-only",
            mount.point
        ));
    }
    let rel = own
        .strip_prefix(mount.root.trim_end_matches('/'))
        .ok_or_else(|| format!("this process's cgroup {own} is outside the mounted tree"))?;
    let dir = PathBuf::from(format!("{}{rel}", mount.point.trim_end_matches('/')));
    check_writable(&dir)
}

#[cfg(target_os = "linux")]
fn check_writable(own: &Path) -> Result<PathBuf, String> {
    // Moving the server into its cgroup needs write access to the common ancestor's
    // cgroup.procs (the delegation rule), and that ancestor is this process's cgroup.
    let procs = own.join("cgroup.procs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .map_err(|e| format!("{} is not writable ({e})", procs.display()))?;
    let parent = own.join(DIR_NAME);
    make_dir(&parent)?;
    if !parent.join("cgroup.kill").exists() {
        return Err("this kernel has no cgroup.kill (it needs Linux 5.14 or later)".into());
    }
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/self/ns/pid")
        .map_err(|e| format!("/proc/self/ns/pid cannot be read ({e})"))?
        .ino();
    let parent = parent.join(ns.to_string());
    make_dir(&parent)?;
    Ok(parent)
}

#[cfg(target_os = "linux")]
fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("{} cannot be made ({e})", dir.display())),
    }
}

/// A cgroup2 line of `/proc/self/mountinfo`: `id parent dev root point options … - cgroup2 …`.
#[cfg(target_os = "linux")]
struct Mount {
    root: String,
    point: String,
    read_only: bool,
}

#[cfg(target_os = "linux")]
fn cgroup2_mount(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    if right.split(' ').next()? != "cgroup2" {
        return None;
    }
    let fields: Vec<&str> = left.split(' ').collect();
    let unescape = |s: &str| s.replace("\\040", " ");
    Some(Mount {
        root: unescape(fields.get(3)?),
        point: unescape(fields.get(4)?),
        read_only: fields.get(5)?.split(',').any(|o| o == "ro"),
    })
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

    #[test]
    #[cfg(target_os = "linux")]
    fn a_cgroup2_mount_line_is_read() {
        let line =
            "35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid,relatime shared:9 - cgroup2 cgroup2 rw";
        let m = cgroup2_mount(line).expect("cgroup2");
        assert_eq!(
            (m.root.as_str(), m.point.as_str(), m.read_only),
            ("/", "/sys/fs/cgroup/unified", false)
        );
        let ro = "35 24 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw";
        assert!(cgroup2_mount(ro).expect("cgroup2").read_only);
        assert!(
            cgroup2_mount("36 24 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu").is_none()
        );
    }
}
