//! Finding where fixtures' cgroups go: this process's cgroup (from `/proc/self/cgroup`) on the
//! mounted hierarchy (from `/proc/self/mountinfo`), and in it `process-fixture/<PID namespace>/`,
//! made if need be, once writability is checked. The v2 hierarchy for the cgroups themselves; on
//! a hybrid system the v1 memory hierarchy too, where the memory controller lives.

use std::path::{Path, PathBuf};

/// Which hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hierarchy {
    V2,
    MemoryV1,
}

/// The directory under a process's own cgroup that holds the fixtures' cgroups.
const DIR_NAME: &str = "process-fixture";

/// `<this process's cgroup>/process-fixture/<PID namespace>/` on hierarchy `h`, or why not.
pub(super) fn find(h: Hierarchy) -> Result<PathBuf, String> {
    if !cfg!(target_os = "linux") {
        return Err("cgroups are Linux only".into());
    }
    let cgroups = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup cannot be read ({e}): is /proc mounted?"))?;
    let own = cgroups
        .lines()
        .find_map(|line| own_path(line, h))
        .ok_or(match h {
            Hierarchy::V2 => "this process is in no cgroup v2 hierarchy (cgroup v1 only)",
            Hierarchy::MemoryV1 => "no v1 memory hierarchy",
        })?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo cannot be read ({e})"))?;
    let mount = mounts
        .lines()
        .find_map(|line| mount_of(line, h))
        .ok_or("no cgroup2 filesystem is mounted")?;
    if mount.read_only {
        return Err(format!(
            "the cgroup filesystem at {} is mounted read-only",
            mount.point
        ));
    }
    let rel = own
        .strip_prefix(mount.root.trim_end_matches('/'))
        .ok_or_else(|| format!("this process's cgroup {own} is outside the mounted tree"))?;
    let dir = PathBuf::from(format!("{}{rel}", mount.point.trim_end_matches('/')));
    prepare(&dir, h)
}

/// The path of a `/proc/self/cgroup` line (`id:controllers:path`) of hierarchy `h`.
fn own_path(line: &str, h: Hierarchy) -> Option<&str> {
    let mut fields = line.splitn(3, ':');
    let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
    let ours = match h {
        Hierarchy::V2 => id == "0" && controllers.is_empty(),
        Hierarchy::MemoryV1 => controllers.split(',').any(|c| c == "memory"),
    };
    ours.then_some(path)
}

fn prepare(own: &Path, h: Hierarchy) -> Result<PathBuf, String> {
    // Moving the server into its cgroup needs write access to the common ancestor's
    // cgroup.procs (the delegation rule), and that ancestor is this process's cgroup.
    let procs = own.join("cgroup.procs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .map_err(|e| format!("{} is not writable ({e})", procs.display()))?;
    let dir = own.join(DIR_NAME);
    make_dir(&dir)?;
    if h == Hierarchy::V2 && !dir.join("cgroup.kill").exists() {
        return Err("this kernel has no cgroup.kill (it needs Linux 5.14 or later)".into());
    }
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/self/ns/pid")
        .map_err(|e| format!("/proc/self/ns/pid cannot be read ({e})"))?
        .ino();
    let dir = dir.join(ns.to_string());
    make_dir(&dir)?;
    Ok(dir)
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("{} cannot be made ({e})", dir.display())),
    }
}

/// A cgroup line of `/proc/self/mountinfo`: `id parent dev root point options … - type source
/// super-options`.
struct Mount {
    root: String,
    point: String,
    read_only: bool,
}

fn mount_of(line: &str, h: Hierarchy) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let mut right = right.split(' ');
    let (fstype, super_options) = (right.next()?, right.nth(1)?);
    let ours = match h {
        Hierarchy::V2 => fstype == "cgroup2",
        Hierarchy::MemoryV1 => {
            fstype == "cgroup" && super_options.split(',').any(|o| o == "memory")
        }
    };
    if !ours {
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
    fn mount_lines_are_read() {
        let v2 =
            "35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid,relatime shared:9 - cgroup2 cgroup2 rw";
        let m = mount_of(v2, Hierarchy::V2).expect("cgroup2");
        assert_eq!(
            (m.root.as_str(), m.point.as_str(), m.read_only),
            ("/", "/sys/fs/cgroup/unified", false)
        );
        let ro = "35 24 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw";
        assert!(mount_of(ro, Hierarchy::V2).expect("cgroup2").read_only);
        let memory = "36 24 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        assert!(mount_of(memory, Hierarchy::V2).is_none());
        let m = mount_of(memory, Hierarchy::MemoryV1).expect("memory");
        assert_eq!(m.point, "/sys/fs/cgroup/memory");
        let cpu = "37 24 0:32 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert!(mount_of(cpu, Hierarchy::MemoryV1).is_none());
    }

    #[test]
    fn cgroup_lines_are_read() {
        assert_eq!(
            own_path("0::/user.slice", Hierarchy::V2),
            Some("/user.slice")
        );
        assert_eq!(own_path("4:memory:/a/b", Hierarchy::V2), None);
        assert_eq!(own_path("4:memory:/a/b", Hierarchy::MemoryV1), Some("/a/b"));
        assert_eq!(own_path("3:cpu,cpuacct:/", Hierarchy::MemoryV1), None);
    }
}
