//! What a readiness wait may look at: the fixture's output monitor, its processes, its port and
//! paths. Only a custom probe gets the fixture itself.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fixture::ProcessFixture;
use crate::inspect::Tree;
use crate::output::Monitor;
use crate::placeholders::Values;

/// The narrow view of a fixture being spawned that the probes need.
pub(crate) struct Context<'a> {
    pub(crate) program: &'a str,
    pub(crate) monitor: &'a Monitor,
    pub(crate) tree: Tree,
    /// The port reserved before the spawn (not a captured one).
    pub(crate) reserved_port: u16,
    pub(crate) values: &'a Values,
    /// The server's working directory, for relative probe paths.
    pub(crate) cwd: Option<&'a Path>,
    /// What the files of `Ready::file` probes were before the server started.
    pub(crate) files_before: &'a [FileBefore],
    pub(crate) timeout: Duration,
    /// For `Ready::custom` only.
    pub(crate) fixture: &'a ProcessFixture,
}

impl Context<'_> {
    /// The fixture's port: a captured one once the server printed it, else the reserved one.
    pub(crate) fn port(&self) -> u16 {
        self.monitor
            .with(|s| s.captured.get("").copied())
            .unwrap_or(self.reserved_port)
    }

    /// A probe's path: placeholders filled in, relative to the server's working directory.
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        resolve(self.values, self.cwd, path)
    }

    /// Whether the file at `path` was written since the server started: it exists, and it is
    /// not the file that was there before (another inode, or modified since).
    pub(crate) fn fresh_file(&self, path: &Path) -> bool {
        let path = self.resolve(path);
        let Some(now) = FileBefore::identity(&path) else {
            return false;
        };
        let before = self.files_before.iter().find(|f| f.path == path);
        before.and_then(|f| f.identity) != Some(now)
    }
}

/// A probe's path: placeholders filled in, relative to `cwd`.
pub(crate) fn resolve(values: &Values, cwd: Option<&Path>, path: &Path) -> PathBuf {
    let filled = values.substitute(path.as_os_str().as_bytes());
    let path = PathBuf::from(std::ffi::OsString::from_vec(filled));
    match cwd {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path,
    }
}

/// A file that a `Ready::file` probe waits for, as it was before the spawn: a stale file (the
/// pid file of an earlier run) must not be taken for readiness.
#[derive(Clone, Debug)]
pub(crate) struct FileBefore {
    path: PathBuf,
    identity: Option<(u64, u64, i64, i64)>,
}

impl FileBefore {
    pub(crate) fn look(path: PathBuf) -> FileBefore {
        let identity = FileBefore::identity(&path);
        FileBefore { path, identity }
    }

    /// Device, inode, and modification time: a rewrite or a replacement changes one of them.
    fn identity(path: &Path) -> Option<(u64, u64, i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))
    }
}
