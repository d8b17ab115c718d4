//! When a fixture is done, its guardian is gone too: not running and not a zombie. After
//! `stop()` (B1 of the guardian work), and for a fixture in a `static` once the test process's
//! exit is seen (B2). Real processes, real signals; pids are compared with their start time, so
//! a recycled pid is never taken for the guardian.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use process_fixture::{ProcessFixture, Ready};
use support::Proc;

fn spawn_server() -> ProcessFixture {
    ProcessFixture::builder(support::server())
        .args(["--mode", "well-behaved", "--port", "{port}"])
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_secs(30))
        .spawn()
        .expect("spawn")
}

#[test]
fn stop_returns_once_the_guardian_is_gone() {
    const CYCLES: usize = 100;
    let mut left = Vec::new();
    for i in 0..CYCLES {
        let fx = spawn_server();
        let guardian =
            Proc::read(fx.guardian_pid()).expect("the guardian runs while its fixture does");
        fx.stop().expect("stop");
        if guardian.still_exists() {
            left.push((i, Proc::read(guardian.pid)));
        }
    }
    assert!(
        left.is_empty(),
        "{} of {CYCLES} stops returned while the guardian still existed: {left:?}",
        left.len()
    );
}

#[test]
fn a_static_fixture_and_its_guardian_are_gone_when_the_exit_is_seen() {
    let mut child = Command::new(support::bin("fixture-holder"))
        .arg("--server")
        .arg(support::server())
        .args(["--mode", "well-behaved", "--then", "exit-static"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting fixture-holder");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("reading the holder's report");
    let field = |name: &str| -> u32 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
    };
    let server = Proc::read(field("pid")).expect("the server runs");
    let guardian = Proc::read(field("guardian")).expect("the guardian runs");
    writeln!(child.stdin.take().unwrap(), "go").expect("go");
    let status = child.wait().expect("waiting for the holder");
    let (server_left, guardian_left) = (server.still_exists(), guardian.still_exists());
    assert!(status.success(), "holder: {status:?}");
    assert!(
        !server_left && !guardian_left,
        "after the holder's exit was seen: server still exists: {server_left} ({:?}), \
         guardian still exists: {guardian_left} ({:?})",
        Proc::read(server.pid),
        Proc::read(guardian.pid)
    );
}
