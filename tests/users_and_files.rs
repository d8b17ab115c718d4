//! Servers configured by files, in a directory of their own, run as another user.
//!
//! - `Builder::file` writes a config file with `{port}`, `{port:NAME}` and `{dir}` filled in,
//!   into the fixture's own directory (`{dir}`, `ProcessFixture::dir()`), which is removed after
//!   the stop, and kept (named in the error) when `spawn` fails;
//! - `Builder::uid`/`gid`/`user` run the server as another user (root only here): its processes
//!   have that uid, its directory belongs to it, `user()` sets `HOME`/`USER`; an unknown user is
//!   `Error::User`;
//! - a file name that would leave the directory is refused.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use process_fixture::{Error, ProcessFixture, Ready};

fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

/// The real uid of a process (`Uid:` in /proc/PID/status).
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a Uid line")
}

#[test]
fn a_config_file_gets_the_ports_and_the_directory() {
    let fx = ProcessFixture::builder("sh")
        .file(
            "conf/app.conf",
            "listen 127.0.0.1:{port}\nadmin {port:admin}\nroot {dir}/www\n",
        )
        .args(["-c", "cat {dir}/conf/app.conf; exec sleep 60"])
        .ready(Ready::stdout("^root "))
        .spawn()
        .expect("spawn");
    let dir = fx.dir().expect("a directory").to_owned();
    let expected = format!(
        "listen 127.0.0.1:{}\nadmin {}\nroot {}/www\n",
        fx.port(),
        fx.named_port("admin"),
        dir.display()
    );
    assert_eq!(fx.stdout(), expected);
    assert_eq!(
        std::fs::read_to_string(dir.join("conf/app.conf")).unwrap(),
        expected
    );
    fx.stop().expect("stop");
    assert!(
        !dir.exists(),
        "the directory {} outlived the stop",
        dir.display()
    );
}

#[test]
fn a_failed_spawn_keeps_the_directory_and_names_it() {
    let e = ProcessFixture::builder("sh")
        .file("bad.conf", "nonsense\n")
        .args(["-c", "echo 'bad config in {dir}/bad.conf' >&2; exit 1"])
        .ready(Ready::stdout("never"))
        .spawn()
        .expect_err("it exits");
    let Error::ExitedBeforeReady { diagnosis, .. } = &e else {
        panic!("expected ExitedBeforeReady, got {e}");
    };
    let dir = diagnosis.dir.clone().expect("the kept directory");
    assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
    assert_eq!(
        std::fs::read_to_string(dir.join("bad.conf")).unwrap(),
        "nonsense\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_outside_the_directory_is_refused() {
    for name in ["../escape.conf", "/etc/escape.conf"] {
        let e = ProcessFixture::builder("true")
            .file(name, "x")
            .ready(Ready::none())
            .spawn()
            .expect_err(name);
        assert!(matches!(e, Error::File { .. }), "{name}: {e}");
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert!(
            cause.unwrap_or_default().contains("inside its directory"),
            "{e}"
        );
    }
}

#[test]
fn the_server_runs_as_the_uid_and_gid_given() {
    if !is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let fx = ProcessFixture::builder("sh")
        .args([
            "-c",
            "id -u; id -g; touch {dir}/mine; echo done; exec sleep 60",
        ])
        .uid(65534)
        .gid(65534)
        .ready(Ready::stdout("^done$"))
        .spawn()
        .expect("spawn as nobody");
    assert_eq!(fx.stdout(), "65534\n65534\ndone\n");
    assert_eq!(uid_of(fx.pid()), 65534);
    let dir = fx.dir().unwrap();
    assert_eq!(
        std::fs::metadata(dir).unwrap().uid(),
        65534,
        "the directory is the server's"
    );
    assert_eq!(std::fs::metadata(dir.join("mine")).unwrap().uid(), 65534);
}

#[test]
fn a_user_brings_uid_groups_home_and_name() {
    if !is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let fx = ProcessFixture::builder("sh")
        .args(["-c", "echo \"$(id -un) $HOME $USER\"; exec sleep 60"])
        .user("nobody")
        .ready(Ready::stdout("nobody"))
        .spawn()
        .expect("spawn as user nobody");
    let home = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|l| Some(l.strip_prefix("nobody:")?.split(':').nth(4)?.to_owned()))
        .expect("nobody's home");
    assert_eq!(fx.stdout().trim(), format!("nobody {home} nobody"));
    // The stop works as for any server: signals come from the (root) guardian.
    let report = fx.stop().expect("stop");
    assert!(!report.escalated, "{report:?}");
}

#[test]
fn an_unknown_user_is_a_typed_error() {
    let e = ProcessFixture::builder("true")
        .user("no-such-user-here")
        .ready(Ready::none())
        .spawn()
        .expect_err("unknown user");
    match &e {
        Error::User { user, reason, .. } => {
            assert_eq!(user, "no-such-user-here");
            assert_eq!(reason, "no such user");
        }
        other => panic!("expected Error::User, got {other}"),
    }
}

#[test]
fn switching_users_without_privileges_fails_at_exec_with_eperm() {
    if is_root() {
        // As root it works (above); as anybody else the child's setuid fails.
        return;
    }
    let e = ProcessFixture::builder("true")
        .uid(0)
        .ready(Ready::none())
        .ready_timeout(Duration::from_secs(10))
        .spawn()
        .expect_err("setuid(0) as a user");
    assert!(e.to_string().contains("switching user"), "{e}");
}
