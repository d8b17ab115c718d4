//! The examples against real servers nobody here wrote (nginx, Redis, gunicorn, PostgreSQL), and
//! the recipe for one's own binary, each run as a test: the same code as
//! `cargo run --example <name>`, included from examples/. Each starts its server, talks to it,
//! prints its StopReport and figures (start-to-ready, stop time, processes ended) and checks
//! that nothing of the server survived. To see the figures:
//!
//! ```text
//! cargo test --test real_servers -- --nocapture --test-threads=1
//! ```
//!
//! Each server is the one an environment variable names, or else the one found on `PATH` (and
//! where its packages put it):
//!
//! | test | variable |
//! |---|---|
//! | nginx | `NGINX=/path/to/nginx` |
//! | redis | `REDIS_SERVER=/path/to/redis-server` |
//! | gunicorn | `GUNICORN=/path/to/gunicorn` |
//! | postgres | `POSTGRES_BIN=/path/to/postgresql/bin` (the directory with `initdb`, `postgres`, `psql`) |
//!
//! A server that is not found passes, and says so in the normal `cargo test` output (written to
//! stderr past libtest's capture): `skipped: gunicorn not found; set GUNICORN=/path/to/gunicorn`.
//! With `CI` set (`.ci/run` installs them all) a missing server fails its test instead.

// The examples' checks read /proc: Linux only.
#![cfg(target_os = "linux")]
// Each example includes examples/common/mod.rs (and, through it, tests/support/mod.rs) for
// itself, so here they are compiled once per example: a little compile time, no shared state.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)] // its main() is the example's
#[path = "../examples/nginx.rs"]
mod nginx;

#[allow(dead_code)]
#[path = "../examples/redis.rs"]
mod redis;

#[allow(dead_code)]
#[path = "../examples/gunicorn.rs"]
mod gunicorn;

#[allow(dead_code)]
#[path = "../examples/postgres.rs"]
mod postgres;

#[allow(dead_code)]
#[path = "../examples/own_binary.rs"]
mod own_binary;

#[allow(dead_code)]
#[path = "../examples/resilience.rs"]
mod resilience;

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

#[test]
fn nginx_with_4_workers_serves_a_page() -> Result {
    nginx::run()
}

#[test]
fn redis_answers_ping() -> Result {
    redis::run()
}

#[test]
fn gunicorn_with_4_workers_serves_a_wsgi_app() -> Result {
    gunicorn::run()
}

#[test]
fn postgres_answers_select_1() -> Result {
    postgres::run()
}

#[test]
fn own_binary_recipe() -> Result {
    own_binary::run()
}

#[test]
fn gunicorn_restarts_without_refusing_and_pauses() -> Result {
    resilience::run()
}
