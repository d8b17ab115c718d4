//! The directory of a failed spawn is kept for a look, and kept directories are bounded: the
//! first spawn of a later test process removes those of test processes that are gone, once they
//! are older than an hour.

use std::process::Command;
use std::time::{Duration, SystemTime};

use process_fixture::{Error, ProcessFixture, Ready};

const CHILD: &str = "PF_KEPT_DIRS_CHILD";

/// A pid that belonged to a process that is gone now.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

fn make(dir: &std::path::Path, age: Duration) {
    std::fs::create_dir(dir).unwrap();
    std::fs::write(dir.join("data"), "x").unwrap();
    let when = SystemTime::now() - age;
    std::fs::File::open(dir)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn the_directory_of_a_failed_spawn_is_kept_and_named() {
    let e = ProcessFixture::builder("sh")
        .args(["-c", "echo x > {dir}/evidence; exit 3"])
        .ready(Ready::tcp())
        .spawn()
        .expect_err("it exits");
    let Error::ExitedBeforeReady { diagnosis, .. } = &e else {
        panic!("{e}")
    };
    let dir = diagnosis.dir.clone().expect("the directory is kept");
    assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
    assert!(dir.join("evidence").exists(), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn kept_directories_of_gone_test_processes_are_swept() {
    if std::env::var_os(CHILD).is_some() {
        // The later test process: its first spawn sweeps.
        let fx = ProcessFixture::builder("sleep")
            .arg("60")
            .ready(Ready::none())
            .spawn();
        drop(fx.expect("spawn"));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (gone, me) = (dead_pid(), std::process::id());
    let old = tmp.path().join(format!("process-fixture-{gone}-old"));
    let recent = tmp.path().join(format!("process-fixture-{gone}-recent"));
    let alive = tmp.path().join(format!("process-fixture-{me}-alive"));
    let other = tmp.path().join("someone-else-123-x");
    make(&old, Duration::from_secs(2 * 3600));
    make(&recent, Duration::from_secs(60));
    make(&alive, Duration::from_secs(2 * 3600));
    make(&other, Duration::from_secs(2 * 3600));
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "kept_directories_of_gone_test_processes_are_swept",
            "--exact",
        ])
        .env(CHILD, "1")
        .env("TMPDIR", tmp.path())
        .output()
        .expect("the later test process");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !old.exists(),
        "an old directory of a gone test process is swept"
    );
    assert!(recent.exists(), "a recent one stays");
    assert!(alive.exists(), "one of a live test process stays");
    assert!(other.exists(), "what is not ours is never touched");
}
