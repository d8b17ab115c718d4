//! The fixture's own directory (`{dir}`): made before the spawn, filled with the files of
//! `Builder::file`, given to the server's user, and removed once the server is gone (by the
//! guardian, which outlives the server, whatever becomes of the test process).
//!
//! The directory of a failed spawn is kept for a look (its path is in the error). Kept
//! directories are bounded: each spawn removes those of test processes that are gone and that
//! are older than [`KEPT_FOR`].

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::error::Error;
use crate::placeholders::Values;
use crate::sys;

/// The start of every fixture directory's name; the test process's pid follows.
const PREFIX: &str = "process-fixture-";
/// How long the directory of a failed spawn stays once its test process is gone.
pub(crate) const KEPT_FOR: Duration = Duration::from_secs(60 * 60);

/// The fixture's temporary directory, named after this test process.
pub(crate) fn make(program: &str, base: Option<&Path>) -> Result<tempfile::TempDir, Error> {
    let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir_in(&base)
        .map_err(|source| Error::File {
            program: program.to_owned(),
            path: base,
            source,
        })
}

/// Copies the trees of `Builder::copy_dir` into `dir`.
pub(crate) fn copy_trees(cfg: &Config, dir: &Path) -> Result<(), Error> {
    for (from, to) in &cfg.copies {
        let dest = inside(dir, to).map_err(|source| Error::File {
            program: cfg.program_name(),
            path: to.clone(),
            source,
        })?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::File {
                program: cfg.program_name(),
                path: parent.to_owned(),
                source,
            })?;
        }
        copy_tree(from, &dest).map_err(|(path, source)| Error::File {
            program: cfg.program_name(),
            path,
            source,
        })?;
    }
    Ok(())
}

/// `dir/name`, if `name` stays inside `dir` (no absolute path, no `..`).
fn inside(dir: &Path, name: &Path) -> std::io::Result<PathBuf> {
    if name.is_absolute() || name.components().any(|c| c.as_os_str() == "..") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a fixture's file must stay inside its directory (no absolute path, no ..)",
        ));
    }
    Ok(dir.join(name))
}

/// Copies `from` to `to` (which must not exist): directories, files and symlinks (not
/// followed), with permission bits. The path that failed, and why.
fn copy_tree(from: &Path, to: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut stack = vec![(from.to_owned(), to.to_owned())];
    while let Some((src, dest)) = stack.pop() {
        let at = |e| (src.clone(), e);
        let meta = std::fs::symlink_metadata(&src).map_err(at)?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).map_err(at)?, &dest).map_err(at)?;
        } else if meta.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dest)
                .map_err(at)?;
            for entry in std::fs::read_dir(&src).map_err(at)? {
                let name = entry.map_err(at)?.file_name();
                stack.push((src.join(&name), dest.join(&name)));
            }
            std::fs::set_permissions(&dest, PermissionsExt::from_mode(mode)).map_err(at)?;
        } else {
            std::fs::copy(&src, &dest).map_err(at)?; // copies the permission bits too
        }
    }
    Ok(())
}

/// Writes the files of `Builder::file` into `dir`, placeholders filled in.
pub(crate) fn write_files(cfg: &Config, dir: &Path, values: &Values) -> Result<(), Error> {
    for (name, body) in &cfg.files {
        let name = PathBuf::from(OsString::from_vec(
            values.substitute(name.as_os_str().as_bytes()),
        ));
        let path = dir.join(&name);
        let fail = |source| Error::File {
            program: cfg.program_name(),
            path: path.clone(),
            source,
        };
        inside(dir, &name).map_err(fail)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&path, values.substitute(body)).map_err(fail)?;
    }
    Ok(())
}
/// Gives the directory (and what was written into it) to the server's user.
pub(crate) fn give(dir: &Path, owner: Option<(u32, u32)>, program: &str) -> Result<(), Error> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    let mut paths = vec![dir.to_owned()];
    while let Some(path) = paths.pop() {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|source| Error::File {
            program: program.to_owned(),
            path: path.clone(),
            source,
        })?;
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                paths.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Removes kept directories of test processes that are gone, older than [`KEPT_FOR`]. Best
/// effort: what cannot be read or removed stays.
pub(crate) fn sweep_kept() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(name.as_bytes()) else {
            continue;
        };
        let gone = pid != sys::getpid() && sys::proc_stat(pid).is_none();
        let old = entry
            .metadata()
            .ok()
            .filter(|m| m.is_dir())
            .and_then(|m| m.modified().ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > KEPT_FOR);
        if gone && old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in `process-fixture-<pid>-<random>`.
fn owner_pid(name: &[u8]) -> Option<sys::Pid> {
    let rest = name.strip_prefix(PREFIX.as_bytes())?;
    let end = rest.iter().position(|&b| b == b'-')?;
    sys::parse_pid(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_directories_name_their_test_process() {
        assert_eq!(owner_pid(b"process-fixture-123-abc"), Some(123));
        assert_eq!(owner_pid(b"process-fixture-abc"), None);
        assert_eq!(owner_pid(b"other-123-abc"), None);
    }
}
