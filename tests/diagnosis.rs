//! Readiness that tells the truth (a probe never overruns the wait, never sends what it should
//! not, never takes a stale file for a fresh one) and errors that say what ran and what is
//! probably wrong: each hint against `ready-server` (fixtures-bin) misbehaving in one way.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use process_fixture::{Builder, Diagnosis, Error, ProcessFixture, Ready};

/// `ready-server <args>` waiting for `ready`, with a short readiness timeout.
fn server(args: &[&str], ready: Ready, timeout_ms: u64) -> Builder {
    let mut b = ProcessFixture::builder(support::bin("ready-server"));
    b.args(args)
        .ready(ready)
        .ready_timeout(Duration::from_millis(timeout_ms));
    b
}

/// The diagnosis of a spawn that must time out.
fn not_ready(b: &Builder) -> (Box<Diagnosis>, String) {
    match b.spawn() {
        Err(e @ Error::NotReady { .. }) => {
            let text = e.to_string();
            let Error::NotReady { diagnosis, .. } = e else {
                unreachable!()
            };
            (diagnosis, text)
        }
        other => panic!("expected NotReady, got {other:?}"),
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
fn an_empty_file_probe_is_an_invalid_probe() {
    for ready in [Ready::file(""), Ready::unix_socket("")] {
        let what = format!("{ready:?}");
        match ProcessFixture::builder("sleep")
            .arg("60")
            .ready(ready)
            .spawn()
        {
            Err(Error::InvalidProbe { reason, .. }) => {
                assert!(reason.contains("empty"), "{reason}")
            }
            other => panic!("{what}: expected InvalidProbe, got {other:?}"),
        }
    }
}

#[test]
fn a_file_from_before_the_start_is_not_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("server.pid");
    std::fs::write(&pid_file, "12345\n").unwrap(); // an earlier run's leftover
    let path = pid_file.to_str().unwrap();
    // The server never writes it: the stale file must not make it ready.
    let (diagnosis, text) = not_ready(&server(&[], Ready::file(path), 500));
    assert!(diagnosis.awaited.contains("server.pid"), "{text}");
    // The server writes it (after its delay): ready, even though it existed before.
    let started = Instant::now();
    let fx = server(
        &["--delay-ms", "150", "--file", path],
        Ready::file(path),
        10_000,
    )
    .spawn()
    .expect("ready once rewritten");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "ready\n");
    drop(fx);
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

#[test]
fn a_listening_port_without_the_awaited_line_is_pointed_out() {
    let b = server(
        &["--listen", "127.0.0.1:{port}", "--say", "server started"],
        Ready::stdout("^listening"),
        600,
    );
    let (diagnosis, text) = not_ready(&b);
    let hint = diagnosis.hint.as_deref().unwrap_or_default();
    assert!(hint.contains("listens, but no line matched"), "{text}");
}

#[test]
fn a_pattern_seen_on_the_other_stream_is_pointed_out() {
    let b = server(
        &["--say", "ready to serve", "--stream", "stderr"],
        Ready::stdout("^ready"),
        600,
    );
    let (diagnosis, text) = not_ready(&b);
    let hint = diagnosis.hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains("matched a line of stderr") && hint.contains("Ready::stderr"),
        "{text}"
    );
}

#[test]
fn listening_on_ipv6_loopback_only_is_pointed_out() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let b = server(&["--listen", "[::1]:{port}"], Ready::tcp(), 600);
    let (diagnosis, text) = not_ready(&b);
    let hint = diagnosis.hint.as_deref().unwrap_or_default();
    assert!(hint.contains("[::1]:") && hint.contains("only"), "{text}");
}

#[test]
fn a_fixed_port_held_by_this_test_process_says_so() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = server(&[], Ready::none(), 600)
        .port(port)
        .spawn()
        .expect_err("the port is held");
    let text = e.to_string();
    assert!(matches!(e, Error::PortInUse { .. }), "{text}");
    assert!(text.contains("this test process"), "{text}");
    assert!(!text.contains("another fixture"), "{text}");
}

#[test]
fn the_command_line_shows_what_the_server_received_quoted() {
    let b = server(
        &["--say", "{port}", "--say", "", "--say", "two words"],
        Ready::stdout("^never$"),
        300,
    );
    let (diagnosis, text) = not_ready(&b);
    let command = &diagnosis.command;
    assert!(
        !command.contains("{port}"),
        "placeholders are filled in: {text}"
    );
    assert!(
        command.contains(" --say \"\" "),
        "an empty argument is shown: {text}"
    );
    assert!(command.ends_with("--say 'two words'"), "{text}");
}

#[test]
fn processes_lists_the_tree_and_the_report_counts_it() {
    let fx = ProcessFixture::builder(support::server())
        .args([
            "--mode",
            "forking-master",
            "--workers",
            "4",
            "--port",
            "{port}",
        ])
        .spawn()
        .expect("spawn");
    let leader = fx.pid();
    let workers = || fx.processes().iter().filter(|p| p.parent == leader).count();
    // The master may say it is ready before its last fork.
    assert!(support::wait_until(Duration::from_secs(10), || workers() == 4));
    let tree = fx.processes();
    assert_eq!(tree.first().map(|p| p.pid), Some(leader), "{tree:?}");
    let workers: Vec<_> = tree.iter().filter(|p| p.parent == leader).collect();
    assert_eq!(workers.len(), 4, "{tree:?}");
    assert!(tree.iter().all(|p| !p.command.is_empty()), "{tree:?}");
    drop(fx);
}

#[test]
fn listening_on_all_ipv4_addresses_when_ipv6_loopback_is_awaited_is_pointed_out() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let target = format!("[::1]:{port}").parse().unwrap();
    let b = server(
        &["--listen", "0.0.0.0:{port}"],
        Ready::tcp_addr(target),
        600,
    );
    let mut b = b;
    b.port(port);
    let (diagnosis, text) = not_ready(&b);
    let hint = diagnosis.hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains(&format!("0.0.0.0:{port} only")) && hint.contains("[::1]"),
        "{text}"
    );
}
