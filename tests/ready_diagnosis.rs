//! What a readiness error says: the command line as the server received it (placeholders filled
//! in, shell-quoted), how long it waited, the processes alive and the output; and a hint for what
//! is probably wrong, each against `ready-server` misbehaving in one way: `{port}` missing from
//! the command line, listening on another port or on `[::1]` only, a listening port but no
//! matching line, the pattern seen on the other stream, a fixed port held by this test process.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use support::not_ready;
use support::ready_server::{late, server};

use std::net::TcpListener;
use std::time::Duration;

use process_fixture::{Error, Ready};

#[test]
fn never_ready_names_program_args_wait_processes_and_output() {
    let e = late(&["--delay-ms", "100000"], Ready::tcp())
        .ready_timeout(Duration::from_millis(400))
        .spawn()
        .expect_err("never ready");
    let text = e.to_string();
    let Error::NotReady { diagnosis, .. } = &e else {
        panic!("expected NotReady, got {text}");
    };
    assert!(
        diagnosis
            .command
            .contains("ready-server --delay-ms 150 --delay-ms 100000"),
        "{text}"
    );
    assert!(diagnosis.waited >= Duration::from_millis(400), "{text}");
    assert!(diagnosis.last_error.is_some(), "{text}");
    assert_eq!(diagnosis.alive.len(), 1, "the leader was alive: {text}");
    assert!(
        text.contains("--- stdout (last lines):\nstarting"),
        "{text}"
    );
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
fn a_missing_port_placeholder_is_hinted() {
    // The server is never told {port}: the wait on it can only time out, and the error says why.
    let e = late(&["--listen-any-port"], Ready::tcp())
        .ready_timeout(Duration::from_millis(500))
        .spawn()
        .expect_err("it listens on a port of its own");
    let text = e.to_string();
    assert!(text.contains("hint:"), "{text}");
    assert!(text.contains("{port}"), "{text}");
}

#[test]
fn listening_on_another_port_than_port_is_pointed_out() {
    let e = late(&["--listen", "127.0.0.1:{port:other}"], Ready::tcp())
        .ready_timeout(Duration::from_millis(600))
        .spawn()
        .expect_err("it never listens on {port}");
    let text = e.to_string();
    match &e {
        Error::NotReady { diagnosis, .. } => {
            assert_eq!(diagnosis.listening.len(), 1, "{text}");
            let hint = diagnosis.hint.as_deref().unwrap_or_default();
            assert!(hint.contains("`{port}` missing"), "{text}");
            assert!(hint.contains(&diagnosis.listening[0].to_string()), "{text}");
        }
        other => panic!("expected NotReady, got {other}"),
    }
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
    let mut b = server(
        &["--listen", "0.0.0.0:{port}"],
        Ready::tcp_addr(target),
        600,
    );
    b.port(port);
    let (diagnosis, text) = not_ready(&b);
    let hint = diagnosis.hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains(&format!("0.0.0.0:{port} only")) && hint.contains("[::1]"),
        "{text}"
    );
}
