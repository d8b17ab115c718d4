//! Starts a real HTTP server through process-fixture, makes a request, and prints the StopReport.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! So that it runs on any machine, the server is this same program started again with
//! `serve <port>`: a separate process, in its own process group, owned by a guardian, exactly as
//! your own server binary would be (`env!("CARGO_BIN_EXE_my-server")` in your tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use process_fixture::{ProcessFixture, Ready};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve(&args[2]);
    }

    let started = Instant::now();
    let srv = ProcessFixture::builder(std::env::current_exe()?)
        .args(["serve", "{port}"]) // {port}: the free port picked for this fixture
        .env("GREETING", "hello from a fixture on port {port}")
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_secs(10))
        .spawn()?;
    println!(
        "server pid {} (process group {}) ready at {} after {:?}",
        srv.pid(),
        srv.pgid(),
        srv.url(),
        started.elapsed()
    );

    let body = get(srv.port(), "/health")?;
    println!("GET {}/health -> {body:?}", srv.url());
    println!("server stderr so far: {:?}", srv.stderr().trim_end());

    let report = srv.stop()?; // dropping `srv` runs the same stop sequence
    println!("{report}");
    Ok(())
}

/// A minimal HTTP GET over a plain TCP connection.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string())
}

/// The server side: answers every request with `$GREETING`. It exits on SIGTERM by the default
/// disposition, as many real servers do.
fn serve(port: &str) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))?;
    eprintln!("listening on 127.0.0.1:{port}");
    let greeting = std::env::var("GREETING").unwrap_or_default();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        // Read the request head up to its blank line before answering.
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
            line.clear();
        }
        let body = format!("{greeting}\n");
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(())
}
