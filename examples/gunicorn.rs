//! gunicorn under a fixture: a pre-fork WSGI server (an arbiter and 4 workers) serving an app
//! the fixture writes into its own directory, ready when gunicorn says so over sd_notify.
//!
//! ```text
//! cargo run --example gunicorn
//! ```
//!
//! Needs gunicorn: the program named by `GUNICORN`, or `gunicorn` on `PATH`
//! (`python3 -m venv venv && venv/bin/pip install gunicorn && GUNICORN=venv/bin/gunicorn`).
//! Without it, prints `skipped: gunicorn not found; set GUNICORN=/path/to/gunicorn`, unless `CI`
//! is set: then that is an error. tests/real_servers.rs runs this as a test.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use process_fixture::{ProcessFixture, Ready};

const WORKERS: usize = 4;

fn main() -> common::Result {
    run()
}

/// Starts gunicorn, GETs a page from one of its workers, stops it and checks that nothing of it
/// survived.
pub(crate) fn run() -> common::Result {
    let Some(gunicorn) = common::gunicorn()? else {
        return Ok(());
    };
    let mut builder = ProcessFixture::builder(gunicorn);
    builder
        .file("app.py", common::WSGI_APP)
        .args(["--bind", "127.0.0.1:{port}", "--chdir", "{dir}"])
        .args(["--workers", &WORKERS.to_string(), "app:app"])
        // gunicorn sends READY=1 to NOTIFY_SOCKET once its arbiter listens; the fixture gives it
        // a private one.
        .ready(Ready::sd_notify())
        .ready_timeout(Duration::from_secs(20));
    common::exercise("gunicorn", &builder, |srv| {
        // READY=1 comes before the workers are forked: wait until the 4 have booted.
        common::wait_for_lines(srv, "Booting worker with pid", WORKERS)?;
        let workers = common::descendants(srv);
        println!("gunicorn: arbiter {} and workers {workers:?}", srv.pid());
        assert_eq!(workers.len(), WORKERS, "gunicorn workers");
        let body = common::support::http_get(srv.port(), "/")?;
        println!("gunicorn: GET {}/ -> {body:?}", srv.url());
        let worker = body
            .trim_end()
            .rsplit_once(' ')
            .and_then(|(_, pid)| pid.parse().ok());
        assert!(
            worker.is_some_and(|pid| workers.contains(&pid)),
            "not served by one of the workers"
        );
        Ok(())
    })
}
