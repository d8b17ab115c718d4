//! nginx under a fixture: a master and 4 workers, configured by a file the fixture writes into
//! its own directory, ready once it serves a page.
//!
//! ```text
//! cargo run --example nginx
//! ```
//!
//! Needs nginx ≥ 1.19.5 (for `-e stderr`; Debian: `apt-get install nginx-light`): the program
//! named by `NGINX`, or `nginx` on `PATH`, `/usr/sbin` or `/usr/local/sbin`. Without it, prints
//! `skipped: nginx not found; set NGINX=/path/to/nginx`, unless `CI` is set: then that is an
//! error.
//! tests/real_servers.rs runs this as a test.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use process_fixture::{ProcessFixture, Ready};

/// The configuration. Everything nginx writes goes into the fixture's directory (`{dir}`), and
/// it listens on the fixture's port (`{port}`): nothing is shared with a system nginx.
const CONFIG: &str = "
daemon off;                 # stay in the foreground, a child of the fixture's guardian
master_process on;
worker_processes 4;
pid {dir}/nginx.pid;
error_log stderr notice;    # notice: one line per worker started, waited for below
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {
        listen 127.0.0.1:{port};
        root {dir}/www;
    }
}
";

const PAGE: &str = "hello from nginx\n";
const WORKERS: usize = 4; // worker_processes in CONFIG

fn main() -> common::Result {
    run()
}

/// Starts nginx, GETs its page, stops it and checks that nothing of it survived.
pub(crate) fn run() -> common::Result {
    let found = common::locate("nginx", "NGINX", "/path/to/nginx", || {
        common::find_program("nginx", &["/usr/sbin", "/usr/local/sbin"])
    })?;
    let Some(nginx) = found else {
        return Ok(());
    };
    let mut builder = ProcessFixture::builder(nginx);
    // As root, the master switches its workers to `nobody`: the fixture's directory is
    // world-readable (0755 under the usual umask), so they can serve the page.
    builder
        .file("nginx.conf", CONFIG)
        .file("www/index.html", PAGE)
        // -e: the error log before the configuration is read (the default is a system file).
        .args(["-p", "{dir}", "-c", "{dir}/nginx.conf", "-e", "stderr"])
        .ready(Ready::http("/"))
        .ready_timeout(Duration::from_secs(10));
    common::exercise("nginx", &builder, |srv| {
        // One line per worker; the pid keeps out the master's "start worker processes" line,
        // which would otherwise count as one of them.
        common::wait_for_lines(srv, r"start worker process [0-9]+$", WORKERS)?;
        let workers = common::descendants(srv);
        println!("nginx: master {} and workers {workers:?}", srv.pid());
        assert_eq!(workers.len(), WORKERS, "nginx workers");
        let body = common::support::http_get(srv.port(), "/")?;
        println!("nginx: GET {}/ -> {body:?}", srv.url());
        assert_eq!(body, PAGE);
        Ok(())
    })
}
