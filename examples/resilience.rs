//! Resilience tests against gunicorn with 4 workers: restart it while a client keeps sending
//! requests (socket activation: the listening socket stays the fixture's, so no request is
//! refused), and pause it to see a client time out, then get its answer after the resume.
//!
//! ```sh
//! cargo run --example resilience
//! ```
//! Needs gunicorn: the program named by `GUNICORN`, or `gunicorn` on `PATH`. Without it, prints
//! `skipped: gunicorn not found; set GUNICORN=/path/to/gunicorn`, unless `CI` is set.

#[path = "common/mod.rs"]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use process_fixture::{ProcessFixture, Ready};

fn main() -> common::Result {
    run()
}

/// One request, with a read timeout: the answer's body, or the error.
fn get(port: u16, timeout: Duration) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(timeout))?;
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(text.clone(), |(_, b)| b.to_owned()))
}

pub(crate) fn run() -> common::Result {
    let Some(gunicorn) = common::gunicorn()? else {
        return Ok(());
    };
    let mut srv = ProcessFixture::builder(gunicorn)
        .file("app.py", common::WSGI_APP)
        // gunicorn takes the fixture's socket from LISTEN_FDS (fd 3) by itself.
        .args(["--chdir", "{dir}", "--workers", "4", "app:app"])
        .socket_activation()
        .ready(Ready::http("/"))
        .ready_timeout(Duration::from_secs(20))
        .spawn()?;
    let port = srv.port();

    // Restarts under load: the client is never refused.
    let done = AtomicBool::new(false);
    let (served, refused, cut) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    std::thread::scope(|s| -> common::Result {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                match get(port, Duration::from_secs(10)) {
                    Ok(body) if body.starts_with("hello") => &served,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => &refused,
                    _ => &cut, // accepted by a worker that the restart stopped
                }
                .fetch_add(1, Ordering::Relaxed);
            }
        });
        let result =
            (0..3).try_for_each(|_| srv.restart().map(|report| println!("restarted: {report}")));
        done.store(true, Ordering::Relaxed);
        Ok(result?)
    })?;
    let (served, refused, cut) = (served.into_inner(), refused.into_inner(), cut.into_inner());
    println!(
        "resilience: during 3 restarts {served} requests served, {refused} refused, {cut} cut off"
    );
    assert_eq!(refused, 0, "a request was refused during a restart");
    assert!(served > 0);

    // A paused server answers nothing: the client times out; resumed, it answers.
    srv.pause()?;
    match get(port, Duration::from_millis(300)) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            println!("resilience: paused, the client timed out as it should")
        }
        other => return Err(format!("answered while paused: {other:?}").into()),
    }
    srv.resume()?;
    let body = get(port, Duration::from_secs(10))?;
    println!("resilience: resumed, GET -> {body:?}");
    assert!(body.starts_with("hello"));

    let (pgid, port) = (srv.pgid(), srv.port());
    let report = srv.stop()?;
    println!("resilience: {report}");
    common::support::assert_nothing_left(pgid, &[], port);
    Ok(())
}
