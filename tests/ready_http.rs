//! The HTTP probe: `Ready::http` waits for a 2xx answer, not just an open port, and asks only
//! once the port listens; `Ready::http_status` takes the codes given. Its not-ready error names
//! the URL and the last status, a 4xx suggests the path or `Ready::http_status`, no request
//! outlives the readiness timeout, and a `#fragment` is never sent to the server.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use support::not_ready;
use support::ready_server::{get, late, local, server, spawn_late};

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use process_fixture::{Builder, Error, ProcessFixture, Ready};

/// The status code of `GET /health` right now.
fn http_status_now(port: u16) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status")
}

fn warmup(delay_ms: u64) -> Builder {
    let mut b = ProcessFixture::builder(support::server());
    b.args(["--mode", "http-warmup", "--port", "{port}", "--delay-ms"])
        .arg(delay_ms.to_string())
        .ready_timeout(Duration::from_secs(20));
    b
}

#[test]
fn http_probe_waits_for_a_2xx_answer_not_just_an_open_port() {
    // Negative control: the port accepts at once, so a TCP probe returns while the server
    // still answers 503.
    let early = warmup(400).ready(Ready::tcp()).spawn().expect("spawn");
    assert_eq!(http_status_now(early.port()), 503, "the warm-up is real");
    drop(early);
    let fx = warmup(400)
        .ready(Ready::http("/health"))
        .spawn()
        .expect("spawn");
    assert_eq!(http_status_now(fx.port()), 200);
}

#[test]
fn http_probe_not_ready_names_the_url_and_the_last_status() {
    let e = warmup(60_000)
        .ready(Ready::http("/health"))
        .ready_timeout(Duration::from_millis(300))
        .spawn()
        .expect_err("never 2xx within the timeout");
    match &e {
        Error::NotReady { diagnosis, .. } => {
            let awaited = &diagnosis.awaited;
            assert!(
                awaited.contains("GET http://127.0.0.1:") && awaited.ends_with("/health"),
                "{awaited}"
            );
            let last = diagnosis.last_error.as_deref().unwrap_or_default();
            assert!(last.starts_with("GET /health answered 503"), "{last}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
}

#[test]
fn http_is_asked_only_once_the_port_listens_and_takes_the_codes_given() {
    let fx = spawn_late(&late(
        &["--listen", "127.0.0.1:{port}", "--http-status", "401"],
        Ready::http_status("/health", [200, 401]),
    ));
    // One GET by the probe, none before the port listened: ours is the second connection.
    assert_eq!(get(local(fx.port())), "conn=2");
    let not_2xx = late(
        &["--listen", "127.0.0.1:{port}", "--http-status", "401"],
        Ready::http("/"),
    )
    .ready_timeout(Duration::from_millis(700))
    .spawn();
    match not_2xx {
        Err(Error::NotReady { diagnosis, .. }) => {
            let last = diagnosis.last_error.clone().unwrap_or_default();
            assert!(last.starts_with("GET / answered 401"), "{last}");
        }
        other => panic!("401 is not 2xx: {other:?}"),
    }
}

#[test]
fn an_http_request_never_outlives_the_readiness_timeout() {
    // The server accepts and never answers; each request may wait 20 s, the spawn only 1 s.
    let b = server(
        &["--listen", "127.0.0.1:{port}", "--http-silent"],
        Ready::http("/").request_timeout(Duration::from_secs(20)),
        1000,
    );
    let started = Instant::now();
    let (diagnosis, text) = not_ready(&b);
    let took = started.elapsed();
    // Not a speed test: 20 s is what an uncapped request takes, 1 s plus a stop what a capped one.
    assert!(
        took < Duration::from_secs(10),
        "gave up after {took:?}: {text}"
    );
    assert!(diagnosis.waited >= Duration::from_secs(1), "{text}");
}

#[test]
fn a_fragment_is_never_sent_to_the_server() {
    let fx = server(
        &["--listen", "127.0.0.1:{port}", "--log-requests"],
        Ready::http("/health?full=1#section"),
        10_000,
    )
    .spawn()
    .expect("ready");
    // The monitor reads the server's stderr on its own thread: the line may come after ready.
    fx.wait_for_output("^request=", support::SOON)
        .expect("the request was logged");
    let requests: Vec<String> = fx
        .stderr()
        .lines()
        .filter_map(|l| l.strip_prefix("request=").map(str::to_owned))
        .collect();
    assert!(!requests.is_empty(), "{}", fx.stderr());
    for line in &requests {
        assert_eq!(line, "GET /health?full=1 HTTP/1.1", "{requests:?}");
    }
}

#[test]
fn a_4xx_answer_suggests_the_path_or_http_status_also_in_progress_lines() {
    let b = server(
        &["--listen", "127.0.0.1:{port}", "--http-status", "404"],
        Ready::http("/healthz"),
        600,
    );
    let (diagnosis, text) = not_ready(&b);
    let last = diagnosis.last_error.as_deref().unwrap_or_default();
    // The last probe error is what the progress lines print, so they say it too.
    assert!(
        last.contains("answered 404") && last.contains("Ready::http_status"),
        "{text}"
    );
    let hint = diagnosis.hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains("is the path right?")
            && hint.contains("Ready::http_status(\"/healthz\", [404])"),
        "{text}"
    );
}
