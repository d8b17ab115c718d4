//! Terminals and job control, in a real pseudo-terminal (util-linux `script`) with an interactive
//! bash that has job control on (`set -m`), as a developer's shell does:
//! - R5.1 (docs/design.md): `holder 2>&1 | tee log` puts the holder and `tee` in one job. Using a fixture must not
//!   signal that job: `PIPESTATUS` is `0 0` and the log has every line. The negative control
//!   re-enacts the vLLM bug (`setpgid` in the parent, then SIGTERM to "its own" group) and must
//!   show `tee` killed (143): that proves the check can fail.
//! - R5.3: Ctrl-C (`\x03` typed into the terminal) kills the job; the server, in its own group,
//!   gets nothing from the terminal, and the guardian removes it within 1 s.
#![cfg(target_os = "linux")] // reads /proc; `script` here is util-linux's

mod support;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EVENTUALLY: Duration = Duration::from_secs(20);

/// An interactive bash in a pseudo-terminal, running `command` with job control on.
struct Terminal {
    child: Child,
    keyboard: ChildStdin,
    screen: Arc<Mutex<String>>,
}

impl Terminal {
    fn run(command: &str) -> Terminal {
        let mut child = Command::new("script")
            .args([
                "-qec",
                r#"bash --norc --noprofile -i -c "$PF_COMMAND""#,
                "/dev/null",
            ])
            .env("PF_COMMAND", format!("set -m; {command}"))
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("util-linux `script` is needed for the terminal tests");
        let keyboard = child.stdin.take().unwrap();
        let mut output = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = output.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Terminal {
            child,
            keyboard,
            screen,
        }
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until the screen shows `text`; returns the screen.
    fn expect(&self, text: &str) -> String {
        let shown = support::wait_until(EVENTUALLY, || self.screen().contains(text));
        assert!(
            shown,
            "the terminal never showed {text:?}:\n{}",
            self.screen()
        );
        self.screen()
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.keyboard.write_all(keys).unwrap();
        self.keyboard.flush().unwrap();
    }

    /// Waits for the shell to exit (its command has printed its last line by now).
    fn finish(self) {
        let Terminal {
            mut child,
            keyboard,
            screen,
        } = self;
        drop(keyboard);
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "script/bash failed: {status}\n{}",
            screen.lock().unwrap()
        );
    }
}

/// `pid=… pgid=… port=…` from the holder's first line.
fn holder_line(screen: &str) -> (u32, u16) {
    let line = screen
        .lines()
        .find(|l| l.contains("pgid="))
        .expect("holder line");
    let field = |key: &str| -> String {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split_whitespace().next().unwrap().to_string()
    };
    (
        field("pgid=").parse().unwrap(),
        field("port=").parse().unwrap(),
    )
}

fn holder_command(then: &str, log: &std::path::Path) -> String {
    format!(
        "'{}' --server '{}' --mode forking-master --then {then} 2>&1 | tee '{}'; echo \"PIPESTATUS=${{PIPESTATUS[*]}}\"",
        support::bin("fixture-holder").display(),
        support::server().display(),
        log.display()
    )
}

fn temp_log(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pf-terminal-{name}-{}.log", std::process::id()))
}

#[test]
fn a_tee_pipeline_under_job_control_is_never_signalled() {
    let log = temp_log("tee");
    let term = Terminal::run(&holder_command("drop", &log));
    let screen = term.expect("PIPESTATUS=");
    term.finish();
    assert!(
        screen.contains("PIPESTATUS=0 0"),
        "holder or tee was hurt:\n{screen}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        logged.contains("pgid=") && logged.contains("dropped"),
        "log lost lines: {logged:?}"
    );
    let (pgid, port) = holder_line(&logged);
    support::assert_nothing_left(pgid, &[], port);
}

#[test]
fn negative_control_signalling_your_own_group_kills_tee() {
    // The check above must be able to fail: this holder does what the crate never does.
    let log = temp_log("vllm");
    let term = Terminal::run(&holder_command("kill-own-group", &log));
    let screen = term.expect("PIPESTATUS=");
    term.finish();
    let _ = std::fs::remove_file(&log);
    let statuses = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("PIPESTATUS="))
        .unwrap();
    assert_eq!(
        statuses.split_whitespace().nth(1),
        Some("143"),
        "tee should die of SIGTERM:\n{screen}"
    );
}

/// The foreground process group of `pid`'s controlling terminal (`tpgid`, /proc field 8).
fn terminal_foreground_group(pid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[5].parse().unwrap()
}

#[test]
fn ctrl_c_in_the_terminal_leaves_no_server_behind() {
    let log = temp_log("ctrl-c");
    let mut term = Terminal::run(&holder_command("wait", &log));
    let (pgid, port) = holder_line(&term.expect("pgid="));
    let running = support::live_members(pgid);
    assert!(!running.is_empty(), "the server runs");
    // The job (holder and tee) is in the foreground; the server is not in it, so the terminal's
    // SIGINT cannot reach it: only the guardian can stop it.
    let foreground = terminal_foreground_group(pgid);
    assert!(foreground > 0, "the server has a controlling terminal");
    assert_ne!(
        foreground,
        i64::from(pgid),
        "the server must not be in the foreground job"
    );
    term.type_keys(b"\x03");
    let gone = support::wait_until(Duration::from_secs(1), || {
        support::live_members(pgid).is_empty() && support::port_is_free(port)
    });
    // bash abandons the rest of its command line after a Ctrl-C and exits: no status to check.
    let Terminal {
        mut child,
        keyboard,
        ..
    } = term;
    drop(keyboard);
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    assert!(
        gone,
        "server left 1 s after Ctrl-C: {:?}",
        support::live_members(pgid)
    );
    assert!(running.iter().all(|p| !p.still_live()));
}
