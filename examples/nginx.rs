//! nginx from the ready-made fixture (`process_fixture::servers::Nginx`): a master and 4
//! workers serving a page the fixture writes into its own directory, ready once it serves it.
//!
//! ```text
//! cargo run --example nginx
//! ```
//!
//! Needs nginx ≥ 1.19.5 (for `-e stderr`; Debian: `apt-get install nginx-light`): the program
//! named by `NGINX`, or `nginx` on `PATH`, `/usr/sbin` or `/usr/local/sbin`. Without it, prints
//! `skipped: …`, unless `CI` is set: then that is an error. tests/real_servers.rs runs this as a
//! test.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use process_fixture::servers::Nginx;

const PAGE: &str = "hello from nginx\n";
const WORKERS: usize = 4;

fn main() -> common::Result {
    run()
}

/// Starts nginx, GETs its page, stops it and checks that nothing of it survived.
pub(crate) fn run() -> common::Result {
    // The server block's body is ours; the fixture writes the rest of nginx.conf (foreground,
    // logs to stderr, pid file and temporary paths in {dir}, listen on 127.0.0.1:{port}).
    let nginx = Nginx::with_config("location / { root {dir}/www; }").workers(WORKERS);
    let Some(mut builder) = common::installed(nginx.builder())? else {
        return Ok(());
    };
    // As root, the master switches its workers to `nobody`: the fixture's directory is
    // world-readable (0755 under the usual umask), so they can serve the page.
    builder
        .file("www/index.html", PAGE)
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
