//! Tests of the `fixture-server` binary itself (plain `std::process`, not the
//! library). Every process started here is killed and reaped on the way out,
//! and every wait is bounded by a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fixture-server");
const TIMEOUT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A started server whose output arrives line by line on two channels; it is
/// SIGKILLed and reaped on drop unless it has already exited.
struct Server {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fixture-server");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        Server {
            child,
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// Polls until the process exits; panics after `TIMEOUT`.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit in time");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGKILLs a process that is not our child (e.g. a daemon) on drop, unless
/// it has been disarmed after it was seen to die.
struct KillOnDrop(Option<libc::pid_t>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn sigterm(pid: libc::pid_t) {
    // SAFETY: plain syscall.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill({pid})");
}

/// Forwards each line read from `reader`; the channel disconnects at EOF.
fn lines(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Returns the first line starting with `prefix`; panics at EOF or timeout.
fn expect_line(rx: &Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line starting with {prefix:?}: {e:?}"),
        }
    }
}

/// Waits until every writer of the stream behind `rx` has closed it.
fn expect_eof(rx: &Receiver<String>) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => panic!("stream still open"),
        }
    }
}

/// One HTTP GET against 127.0.0.1:`port`; returns the whole raw response.
fn http_get(port: u16) -> String {
    let addr = ([127, 0, 0, 1], port).into();
    let mut conn = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    conn.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send request");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("read response");
    response
}

fn assert_ok_from(response: &str, pid: libc::pid_t) {
    let body = format!("ok pid={pid}\n");
    let expected = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(response, expected);
}

#[test]
fn well_behaved_serves_and_exits_0_on_sigterm() {
    let port = free_port().to_string();
    let mut server = Server::start(&["--mode", "well-behaved", "--port", &port]);
    let pid = server.pid();
    expect_line(
        &server.stderr,
        &format!("fixture-server mode=well-behaved pid={pid}"),
    );
    let listening = expect_line(&server.stdout, "listening on ");
    assert_eq!(listening, format!("listening on 127.0.0.1:{port}"));

    assert_ok_from(&http_get(port.parse().unwrap()), pid);

    sigterm(pid);
    assert_eq!(server.wait().code(), Some(0));
    expect_line(&server.stderr, "shutting down");
}

#[test]
fn crash_before_bind_exits_with_exit_code() {
    for (extra, code) in [(&[][..], 3), (&["--exit-code", "42"][..], 42)] {
        let mut args = vec!["--mode", "crash-before-bind"];
        args.extend_from_slice(extra);
        let mut server = Server::start(&args);
        assert_eq!(server.wait().code(), Some(code));
        expect_line(&server.stdout, "starting");
        expect_line(&server.stderr, "fatal: simulated crash before bind");
    }
}

#[test]
fn bad_arguments_exit_2() {
    let cases: [&[&str]; 5] = [
        &[],
        &["--mode", "no-such-mode", "--port", "1"],
        &["--mode", "well-behaved"],
        &["--mode", "well-behaved", "--port", "1", "--bogus", "1"],
        &["--mode", "flood", "--port", "1", "--stream", "stdin"],
    ];
    for args in cases {
        let mut server = Server::start(args);
        assert_eq!(server.wait().code(), Some(2), "args: {args:?}");
    }
}

#[test]
fn daemonize_leader_exits_0_while_daemon_serves() {
    let port = free_port();
    let mut leader = Server::start(&["--mode", "daemonize", "--port", &port.to_string()]);
    assert_eq!(leader.wait().code(), Some(0));

    // The daemon inherited the leader's stderr pipe.
    let line = expect_line(&leader.stderr, "daemon pid=");
    let daemon: libc::pid_t = line["daemon pid=".len()..].parse().expect("daemon pid");
    let mut guard = KillOnDrop(Some(daemon));
    assert_ne!(daemon, leader.pid());

    assert_ok_from(&http_get(port), daemon);

    sigterm(daemon);
    // The daemon was the last holder of the pipe: EOF means it is gone.
    expect_eof(&leader.stderr);
    guard.0 = None;
}
