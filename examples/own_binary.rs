//! The recipe for your own server: the binary your package builds, under a fixture.
//!
//! ```text
//! cargo run --example own_binary
//! ```
//!
//! In your package's integration tests (`tests/*.rs`), Cargo gives the path of each binary of
//! the package, built before the tests run:
//!
//! ```text
//! use process_fixture::{ProcessFixture, Ready};
//!
//! #[test]
//! fn answers_health() -> Result<(), Box<dyn std::error::Error>> {
//!     let srv = ProcessFixture::builder(env!("CARGO_BIN_EXE_my-server"))
//!         .args(["--listen", "127.0.0.1:{port}"])
//!         .ready(Ready::http("/health"))
//!         .spawn()?;
//!     // ... requests to srv.url() ...
//!     println!("{}", srv.stop()?);
//!     Ok(())
//! }
//! ```
//!
//! `CARGO_BIN_EXE_<name>` exists only while Cargo compiles the integration tests and benchmarks
//! of the package that owns the binary: not in examples, nor in another package. The server
//! here, `fixture-server`, belongs to another package of this workspace (`fixtures-bin`), so
//! this example finds it where Cargo puts it, `target/<profile>/fixture-server`, and builds it
//! first if needed. Its `forking-master` mode forks 2 workers, and on SIGTERM its master exits
//! leaving them behind, as a careless server would: the stop ends them too.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use process_fixture::{ProcessFixture, Ready};

fn main() -> common::Result {
    run()
}

/// Starts `fixture-server` with 2 workers, GETs a page, stops it and checks that nothing of it
/// survived.
pub(crate) fn run() -> common::Result {
    // In your own tests: ProcessFixture::builder(env!("CARGO_BIN_EXE_my-server")).
    let mut builder = ProcessFixture::builder(common::support::bin("fixture-server"));
    builder
        .args([
            "--mode",
            "forking-master",
            "--workers",
            "2",
            "--port",
            "{port}",
        ])
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_secs(10));
    common::exercise("fixture-server", &builder, |srv| {
        let body = common::support::http_get(srv.port(), "/")?;
        println!("fixture-server: GET {}/ -> {body:?}", srv.url());
        assert!(body.starts_with("ok pid="), "unexpected answer {body:?}");
        Ok(())
    })
}
