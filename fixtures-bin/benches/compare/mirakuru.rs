//! mirakuru, from Python: a venv the bench makes (or `PF_MIRAKURU_PYTHON`, a Python that has
//! it), and `fixtures-bin/compare/mirakuru_driver.py`, which prints one figure per line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/compare/mirakuru_driver.py");

/// A Python with mirakuru, or why there is none.
pub fn python() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("PF_MIRAKURU_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    let has_it = Command::new(&python)
        .args(["-c", "import mirakuru, gunicorn"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_it {
        run(Command::new(&python).args(["-m", "pip", "install", "-q", "mirakuru", "gunicorn"]))?;
    }
    Ok(python)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What the driver printed: `key=value` lines.
pub struct Figures(String);

impl Figures {
    /// The values of every `key=` line.
    pub fn values(&self, key: &str) -> Vec<u64> {
        let prefix = format!("{key}=");
        self.0
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .collect()
    }

    pub fn durations(&self, key: &str) -> Vec<Duration> {
        self.values(key)
            .into_iter()
            .map(Duration::from_nanos)
            .collect()
    }
}

/// Runs the driver in `mode`.
pub fn drive(python: &Path, mode: &str, args: &[String]) -> Figures {
    let out = Command::new(python)
        .arg(DRIVER)
        .arg(mode)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("running the mirakuru driver");
    assert!(out.status.success(), "mirakuru driver: {:?}", out.status);
    Figures(String::from_utf8_lossy(&out.stdout).into_owned())
}
