//! The `process-fixture` binary run as a user would: real servers (`fixture-server` of the
//! workspace's fixtures-bin), real signals, the exit statuses, and what is left afterwards.
#![cfg(target_os = "linux")] // reads /proc

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_process-fixture");

/// A binary of fixtures-bin, next to this one's target directory (built with the workspace).
fn helper(name: &str) -> String {
    let dir = PathBuf::from(CLI).parent().unwrap().to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "fixtures-bin", "--bins"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    path.display().to_string()
}

fn server(mode: &str) -> String {
    format!("{} --mode {mode} --port {{port}}", helper("fixture-server"))
}

fn cli(args: &[&str]) -> Output {
    Command::new(CLI)
        .args(args)
        .output()
        .expect("running the CLI")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `pid` is a live process (a zombie is not).
fn live(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .map(|(_, rest)| rest.starts_with(['Z', 'X']))
        })
        .is_some_and(|dead| !dead)
}

fn within(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::yield_now();
    }
    f()
}

/// The value of `name=` in a line the CLI or the test command printed.
fn field(line: &str, name: &str) -> String {
    let value = line.split(&format!("{name}=")).nth(1);
    let value = value.and_then(|v| v.split_whitespace().next());
    value
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        .to_owned()
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_exit_status_is_the_test_commands_and_it_gets_port_and_url() {
    let out = cli(&[
        "run",
        "--server",
        &server("well-behaved"),
        "--ready",
        "http:/",
        "--",
        "sh",
        "-c",
        "echo port=$PORT url=$URL; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let port: u16 = field(&said, "port").parse().unwrap();
    assert!(
        said.contains(&format!("url=http://127.0.0.1:{port}")),
        "{said}"
    );
    assert!(port_free(port), "the server is stopped");
}

#[test]
fn two_named_servers_get_their_own_variables() {
    let out = cli(&[
        "run",
        "--server",
        &format!("api={}", server("well-behaved")),
        "--server",
        &format!("db={}", server("ready-line")),
        "--ready",
        "api=http:/",
        "--ready",
        "db=stdout:^READY",
        "--",
        "sh",
        "-c",
        "echo $API_PORT $DB_PORT $DB_URL",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let words: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{said}");
    assert_ne!(words[0], words[1]);
    assert_eq!(words[2], format!("http://127.0.0.1:{}", words[1]));
}

#[test]
fn a_server_never_ready_exits_125_with_the_diagnosis() {
    let out = cli(&[
        "run",
        "--server",
        &server("never-binds"),
        "--timeout",
        "500ms",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("was not ready after"), "{err}");
    assert!(
        err.contains("starting, will never bind"),
        "the output tail: {err}"
    );
}

#[test]
fn bad_probes_and_bad_commands_are_usage_errors() {
    for args in [
        vec!["run", "--server", "true", "--ready", "htp:/", "--", "true"],
        vec!["run", "--server", "'unclosed", "--", "true"],
        vec!["run", "--server", "true", "--port", "x", "--", "true"],
        vec!["run", "--", "true"],       // no server
        vec!["run", "--server", "true"], // no command
        vec![
            "run", "--server", "a=true", "--server", "a=true", "--", "true",
        ],
    ] {
        let out = cli(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).is_empty());
    }
}

#[test]
fn a_server_that_exits_meanwhile_is_a_warning_or_with_the_flag_a_failure() {
    let crashes = format!(
        "{} --delay-ms 100 --exit-code 3",
        server("exit-after-ready")
    );
    let wait = ["--", "sh", "-c", "sleep 1"];
    let args = |flag: Option<&str>| {
        let mut a = vec![
            "run",
            "--server",
            crashes.as_str(),
            "--ready",
            "stdout:listening",
        ];
        a.extend(flag);
        a.extend(wait);
        cli(&a)
    };
    let warned = args(None);
    assert_eq!(warned.status.code(), Some(0));
    assert!(text(&warned.stderr).contains("exited while the test command ran"));
    let failed = args(Some("--fail-on-server-exit"));
    assert_eq!(failed.status.code(), Some(124), "{}", text(&failed.stderr));
}

/// Starts `run` with a forking server and a test command that prints its pid and waits; gives
/// the CLI, the server's port and the test command's pid once it runs.
fn running() -> (Child, u16, u32) {
    let mut child = Command::new(CLI)
        .args([
            "run",
            "--server",
            &format!("{} --workers 3", server("forking-master")),
        ])
        .args(["--ready", "stdout:master ready", "--"])
        .args(["sh", "-c", "echo test pid=$$ port=$PORT; exec sleep 600"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (
        child,
        field(&line, "port").parse().unwrap(),
        field(&line, "pid").parse().unwrap(),
    )
}

#[test]
fn sigterm_and_sigint_stop_everything_and_exit_128_plus_the_signal() {
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let (mut child, port, test_pid) = running();
        // SAFETY: kill takes no pointer; the pid is our unreaped child's.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code));
        assert!(!live(test_pid), "the test command is stopped");
        assert!(port_free(port), "the server and its workers are stopped");
    }
}

#[test]
fn sigkill_of_the_cli_leaves_nothing() {
    let (mut child, port, test_pid) = running();
    child.kill().unwrap(); // SIGKILL: no code of the CLI runs; the guardians stop both
    child.wait().unwrap();
    assert!(
        within(Duration::from_secs(10), || !live(test_pid)
            && port_free(port)),
        "left: test command alive {}, port {port} taken {}",
        live(test_pid),
        !port_free(port)
    );
}

#[test]
fn up_prints_where_and_stops_on_sigterm() {
    let mut child = Command::new(CLI)
        .args(["up", "--server", &format!("web={}", server("well-behaved"))])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap()); // kept open: the CLI prints on
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("web: port="), "{line}");
    let port: u16 = field(&line, "port").parse().unwrap();
    assert!(!port_free(port));
    // SAFETY: kill takes no pointer; the pid is our unreaped child's.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(port_free(port));
}

#[test]
fn echo_prints_each_server_line_on_stderr_with_its_name() {
    let out = cli(&[
        "run",
        "--echo",
        "--server",
        &format!("api={}", server("well-behaved")),
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("[api] listening on 127.0.0.1:"), "{err}");
    assert!(
        !text(&out.stdout).contains("listening"),
        "stdout is the test command's"
    );
}
