//! Socket activation (`Builder::socket_activation`): the fixture listens itself and passes the
//! sockets to the server as fds 3, 4, … with `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`,
//! and nothing else of its own; `{fd}` names them. Served by a Rust server on the `listenfd`
//! crate, a Python server on `socket.fromfd`, and gunicorn (`fd://`). A client that connects
//! before the server accepts waits in the backlog, and a client hammering the server through
//! ten restarts is never refused.
#![cfg(target_os = "linux")] // the helpers read /proc

#[path = "../examples/common/mod.rs"]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::support::{self, SOON};
use process_fixture::{Builder, ProcessFixture, Ready};

fn activated(extra: &[&str]) -> Builder {
    let mut b = ProcessFixture::builder(support::bin("activated-server"));
    b.args(extra)
        .env("ADMIN_PORT", "{port:admin}") // a named port: a second socket
        .socket_activation()
        .ready(Ready::stdout("^ready$"))
        .ready_timeout(Duration::from_secs(30));
    b
}

/// One GET on `port`: the body, or the error.
fn get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(SOON))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(text))
}

#[test]
fn the_server_gets_its_sockets_as_fds_3_and_up_and_nothing_else() {
    let fx = activated(&[]).spawn().expect("spawn");
    let (port, admin) = (fx.port(), fx.named_port("admin"));
    let pid = fx.pid();
    assert_eq!(get(port).unwrap(), format!("activated pid={pid} socket=0"));
    assert_eq!(get(admin).unwrap(), format!("activated pid={pid} socket=1"));
    let line = fx
        .wait_for_output("^names=", SOON)
        .expect("the server's report");
    assert_eq!(line, "names=port:admin fds=0,1,2,3,4", "{}", fx.stderr());
}

#[test]
fn placeholders_name_the_fds() {
    let fx = ProcessFixture::builder("sh")
        .args(["-c", "echo fd={fd} admin={fd:admin}; exec sleep 60"])
        .socket_activation()
        .ready(Ready::stdout("^fd="))
        .spawn()
        .expect("spawn");
    assert_eq!(fx.stdout(), "fd=3 admin=4\n");
    assert_ne!(fx.named_port("admin"), fx.port());
}

#[test]
fn a_client_that_connects_before_the_server_accepts_waits_in_the_backlog() {
    let fx = activated(&["--accept-after-ms", "300"])
        .ready(Ready::tcp()) // holds at once: the socket listens from the start
        .spawn()
        .expect("spawn");
    let body = get(fx.port()).expect("served once the server accepts, not refused");
    assert!(body.starts_with("activated pid="), "{body}");
}

#[test]
fn a_client_hammering_through_ten_restarts_is_never_refused() {
    let mut fx = activated(&[]).spawn().expect("spawn");
    let port = fx.port();
    let done = AtomicBool::new(false);
    let (served, refused, failed) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let mut pids = vec![fx.pid()];
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                match get(port) {
                    Ok(body) if body.starts_with("activated") => &served,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => &refused,
                    _ => &failed, // accepted by a server stopped before it answered
                }
                .fetch_add(1, Ordering::Relaxed);
            }
        });
        for _ in 0..10 {
            fx.restart().expect("restart");
            pids.push(fx.pid());
        }
        done.store(true, Ordering::Relaxed);
    });
    let (served, refused, failed) = (
        served.into_inner(),
        refused.into_inner(),
        failed.into_inner(),
    );
    println!("served {served}, refused {refused}, cut off by a stop {failed}");
    assert_eq!(refused, 0, "refused connections during restarts");
    assert!(served > 0);
    pids.dedup();
    assert_eq!(pids.len(), 11, "a new server each time: {pids:?}");
}

#[test]
fn a_python_server_on_socket_fromfd_is_served() {
    let found = common::locate("python3", "PYTHON3", "/path/to/python3", || {
        common::find_program("python3", &[])
    });
    let Some(python) = found.expect("python3") else {
        return;
    };
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures-bin/py/activated_server.py");
    let mut fx = ProcessFixture::builder(python)
        .arg(script)
        .socket_activation()
        .ready(Ready::http("/"))
        .spawn()
        .expect("spawn");
    assert_eq!(get(fx.port()).unwrap(), format!("python pid={}", fx.pid()));
    fx.restart().expect("restart");
    assert_eq!(get(fx.port()).unwrap(), format!("python pid={}", fx.pid()));
}

fn assert_gunicorn_serves(port: u16) {
    let body = get(port).expect("GET");
    assert!(body.starts_with("hello from gunicorn worker "), "{body}");
}

#[test]
fn gunicorn_binds_fd_and_is_served() {
    let Some(gunicorn) = common::gunicorn().expect("gunicorn") else {
        return;
    };
    let mut fx = ProcessFixture::builder(gunicorn)
        .file("app.py", common::WSGI_APP)
        .args([
            "--chdir",
            "{dir}",
            "--bind",
            "fd://{fd}",
            "--workers",
            "4",
            "app:app",
        ])
        // gunicorn also takes LISTEN_FDS's sockets by itself: told both, it would take fd 3
        // twice. `fd://{fd}` is the way under test here.
        .env_remove("LISTEN_FDS")
        .socket_activation()
        .ready(Ready::http("/"))
        .spawn()
        .expect("spawn");
    assert_gunicorn_serves(fx.port());
    assert!(
        support::wait_until(SOON, || fx.processes().len() == 5),
        "an arbiter and 4 workers"
    );
    let report = fx.restart().expect("restart");
    assert_eq!(report.processes_at_stop, Some(5), "{report}");
    assert_gunicorn_serves(fx.port());
    let report = fx.stop().expect("stop");
    assert!(!report.escalated, "{report}");
}

#[test]
fn gunicorn_takes_listen_fds_by_itself() {
    let Some(gunicorn) = common::gunicorn().expect("gunicorn") else {
        return;
    };
    let fx = ProcessFixture::builder(gunicorn)
        .file("app.py", common::WSGI_APP)
        .args(["--chdir", "{dir}", "--workers", "2", "app:app"])
        .socket_activation()
        .ready(Ready::http("/"))
        .spawn()
        .expect("spawn");
    assert_gunicorn_serves(fx.port());
}
