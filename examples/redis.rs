//! Redis from the ready-made fixture (`process_fixture::servers::Redis`: no persistence,
//! 127.0.0.1 only, ready when it logs that it accepts connections), then a `PING`.
//!
//! ```text
//! cargo run --example redis
//! ```
//!
//! Needs `redis-server` (Debian: `apt-get install redis-server`): the program named by
//! `REDIS_SERVER`, or `redis-server` on `PATH`. Without it, prints `skipped: …`, unless `CI` is
//! set: then that is an error. tests/real_servers.rs runs this as a test.

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use process_fixture::servers::Redis;

fn main() -> common::Result {
    run()
}

/// Starts redis-server, PINGs it, stops it and checks that nothing of it survived.
pub(crate) fn run() -> common::Result {
    // The ready-made builder: change anything on it before the spawn.
    let Some(mut builder) = common::installed(Redis::new().builder())? else {
        return Ok(());
    };
    builder.ready_timeout(Duration::from_secs(10));
    common::exercise("redis", &builder, |srv| {
        let reply = ping(srv.port())?;
        println!("redis: PING -> {reply:?}");
        assert_eq!(reply, "+PONG\r\n");
        Ok(())
    })
}

/// Sends `PING` (an inline command) and returns the reply line.
fn ping(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0; 7]; // "+PONG\r\n"
    stream.read_exact(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
