//! Finding a server's binaries: an environment variable, `PATH`, then where packages put them.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// `name` from `$var` (a path to the binary), else on `PATH`, else in `dirs`.
pub(super) fn program(
    name: &str,
    var: &str,
    dirs: &[&str],
    install: &str,
) -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(not_installed(
                name,
                &format!("{var}={} is not a file", path.display()),
            )),
        };
    }
    on_path(name)
        .or_else(|| {
            dirs.iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            let hint = format!(
                "not on PATH nor in {dirs:?}; install {install}, or set {var}=/path/to/{name}"
            );
            not_installed(name, &hint)
        })
}

/// `name` in a directory of `PATH`.
pub(super) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub(super) fn not_installed(name: &str, hint: &str) -> Error {
    Error::NotInstalled {
        program: name.to_owned(),
        hint: hint.to_owned(),
    }
}

/// Whether the test process runs as root (servers that refuse root then run as another user).
pub(super) fn running_as_root() -> bool {
    crate::sys::effective_uid() == 0
}
