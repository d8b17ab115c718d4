//! TCP readiness: `Ready::tcp()` (also the default when no probe is given) and `Ready::tcp_addr`
//! return once the server listens, without ever connecting to it first (the server counts its
//! connections: the test's own is the first). Fixtures alive at once get distinct ports; a fixed
//! port that something holds, or that a stranger takes before the server binds, is refused with
//! `Error::PortInUse` naming the holder; a port captured from an output line becomes the
//! fixture's port, and named ports are reserved and substituted.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use support::fixture_server::{listening_line, server};
use support::ready_server::{get, late, local, ready_server, spawn_late, LATE_MS};
use support::SOON;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::process::{Command, Stdio};

use process_fixture::{Error, ProcessFixture, Ready};

#[test]
fn tcp_probe_waits_for_a_serving_port() {
    let fx = server("well-behaved", &[], Ready::tcp())
        .spawn()
        .expect("spawn");
    assert_eq!(fx.url(), format!("http://127.0.0.1:{}", fx.port()));
    let body = support::http_get(fx.port(), "/").expect("HTTP GET right after spawn");
    assert_eq!(body.trim(), format!("ok pid={}", fx.pid()));
    // `{port}` was substituted: the server bound the fixture's port.
    let line = listening_line(fx.port());
    assert!(
        support::wait_until(SOON, || fx.stdout().contains(&line)),
        "stdout {:?} lacks {line:?}",
        fx.stdout()
    );
}

#[test]
fn tcp_waits_for_the_listener_and_never_knocks() {
    let fx = spawn_late(&late(&["--listen", "127.0.0.1:{port}"], Ready::tcp()));
    assert_eq!(
        get(local(fx.port())),
        "conn=1",
        "a probe connected before the test did"
    );
}

#[test]
fn tcp_is_the_default() {
    let mut b = ProcessFixture::builder(ready_server());
    b.args(["--delay-ms", LATE_MS, "--listen", "127.0.0.1:{port}"]);
    let fx = spawn_late(&b);
    assert_eq!(get(local(fx.port())), "conn=1");
}

/// A port outside the picked range, free now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn tcp_addr_waits_for_another_address() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let port = free_port();
    let addr: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let fx = spawn_late(&late(
        &["--listen", &addr.to_string()],
        Ready::tcp_addr(addr),
    ));
    assert_eq!(get(addr), "conn=1");
    drop(fx);
}

#[test]
fn fixtures_alive_at_once_get_distinct_ports() {
    let fixtures: Vec<ProcessFixture> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    server("well-behaved", &[], Ready::tcp())
                        .spawn()
                        .expect("spawn")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports: Vec<u16> = fixtures.iter().map(ProcessFixture::port).collect();
    for fx in &fixtures {
        let body = support::http_get(fx.port(), "/").expect("HTTP GET");
        assert_eq!(body.trim(), format!("ok pid={}", fx.pid()));
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), fixtures.len(), "ports {ports:?}");
    for fx in fixtures {
        let port = fx.port();
        fx.stop().expect("stop");
        assert!(support::port_is_free(port), "port {port} still bound");
    }
}

/// Listens on a port below both the kernel's ephemeral range (from 32768) and the range the
/// crate picks from (20000 to 32000), so that once we let it go no other socket is handed it
/// before the fixture binds it.
fn listen_outside_shared_ranges() -> (TcpListener, u16) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    (0..1000)
        .find_map(|i: u32| {
            let port = 10_000 + (seed.wrapping_add(i.wrapping_mul(7919)) % 10_000) as u16;
            let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).ok()?;
            Some((listener, port))
        })
        .expect("a free port in 10000..20000")
}

#[test]
fn a_held_fixed_port_is_refused_and_a_free_one_is_used() {
    let (listener, port) = listen_outside_shared_ranges();
    match server("well-behaved", &[], Ready::tcp()).port(port).spawn() {
        Err(Error::PortInUse {
            port: p, holder, ..
        }) => {
            assert_eq!(p, port);
            assert_eq!(holder.map(|h| h.pid), Some(std::process::id()));
        }
        other => panic!("expected PortInUse, got {other:?}"),
    }
    drop(listener);
    // Another test's guardian, forked from this process while the listener was open, holds a
    // copy of it until it closes its inherited fds: the port may stay bound for an instant after
    // our drop. Polled, so only a port that stays taken fails the test.
    let mut b = server("well-behaved", &[], Ready::tcp());
    b.port(port);
    let mut spawned = None;
    let mut last = None;
    support::wait_until(SOON, || match b.spawn() {
        Ok(fx) => {
            spawned = Some(fx);
            true
        }
        Err(e @ Error::PortInUse { .. }) => {
            last = Some(e);
            false
        }
        Err(e) => panic!("spawn on a fixed free port: {e}"),
    });
    let fx = spawned.unwrap_or_else(|| panic!("port {port} stayed in use: {last:?}"));
    assert_eq!(fx.port(), port);
    assert!(
        support::wait_until(SOON, || fx.stdout().contains(&listening_line(port))),
        "stdout {:?}",
        fx.stdout()
    );
    support::http_get(port, "/").expect("HTTP GET on the fixed port");
    drop(fx);
    assert!(support::port_is_free(port), "port {port} still bound");
}

#[test]
fn a_stranger_listening_on_the_port_is_named_not_taken_for_ready() {
    a_stranger_is_named(None);
}

/// A leftover server that binds late: free at our pre-spawn check, taken before ours binds.
/// `listen_events`: the mode forced, or the default.
fn a_stranger_is_named(listen_events: Option<bool>) {
    let port = free_port();
    let mut stranger = Command::new(ready_server())
        .args(["--delay-ms", "50", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the stranger");
    let mut b = late(
        &["--delay-ms", "2000", "--listen", "127.0.0.1:{port}"],
        Ready::tcp(),
    );
    b.port(port);
    if let Some(on) = listen_events {
        b.listen_events(on);
    }
    let result = b.spawn();
    let _ = stranger.kill();
    let _ = stranger.wait();
    match result {
        Err(Error::PortInUse {
            port: p, holder, ..
        }) => {
            assert_eq!(p, port);
            let holder = holder.expect("the stranger is named");
            assert_eq!(holder.pid, stranger.id());
            assert!(holder.command.contains("ready-server"), "{holder:?}");
        }
        other => panic!("expected PortInUse naming the stranger, got {other:?}"),
    }
}

// Without listen() events (an unprivileged test's default), the guardian looks for the port
// itself and reports the listener once a process of the fixture holds it.

#[test]
fn without_listen_events_the_port_is_found_and_never_knocked() {
    let mut b = late(&["--listen", "127.0.0.1:{port}"], Ready::tcp());
    b.listen_events(false);
    let fx = spawn_late(&b);
    assert_eq!(get(local(fx.port())), "conn=1", "a probe connected first");
    let mut b = late(&["--listen", "127.0.0.1:{port}"], Ready::http("/"));
    b.listen_events(false);
    let fx = spawn_late(&b);
    assert_eq!(
        get(local(fx.port())),
        "conn=2",
        "only the HTTP probe's request came first"
    );
}

#[test]
fn without_listen_events_a_stranger_on_the_port_is_named_not_taken_for_ready() {
    a_stranger_is_named(Some(false));
}

#[test]
fn without_listen_events_a_daemons_listener_is_found() {
    // The leader forks a daemon (a session of its own) and exits; the daemon listens.
    let fx = server("daemonize", &[], Ready::tcp())
        .listen_events(false)
        .spawn()
        .expect("spawn");
    let body = support::http_get(fx.port(), "/").expect("GET from the daemon");
    assert!(body.starts_with("ok pid="), "{body}");
    assert_ne!(
        body.trim(),
        format!("ok pid={}", fx.pid()),
        "the daemon answers"
    );
}

#[test]
fn a_port_captured_from_a_line_becomes_the_fixtures_port() {
    // The server binds port 0 and prints the port it got: no pick-then-bind race at all.
    let fx = late(
        &["--listen-any-port"],
        Ready::all([
            Ready::stdout(r"^listening on 127\.0\.0\.1:(?P<port>\d+)$"),
            Ready::tcp(),
        ]),
    )
    .spawn()
    .expect("spawn");
    let printed: u16 = fx
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("listening on 127.0.0.1:")?.parse().ok())
        .expect("the printed port");
    assert_eq!(fx.port(), printed);
    assert_eq!(fx.url(), format!("http://127.0.0.1:{printed}"));
    assert_eq!(get(local(fx.port())), "conn=1");
}

#[test]
fn named_ports_are_reserved_and_substituted() {
    // ready-server listens in the order given: the admin port first, so that `{port}`
    // listening (what Ready::tcp() waits for) means the admin port listens too.
    let fx = spawn_late(&late(
        &[
            "--listen",
            "127.0.0.1:{port:admin}",
            "--listen",
            "127.0.0.1:{port}",
        ],
        Ready::tcp(),
    ));
    let admin = fx.named_port("admin");
    assert_ne!(admin, fx.port());
    assert_eq!(get(local(admin)), "conn=1");
    assert_eq!(get(local(fx.port())), "conn=2");
}

#[test]
#[should_panic(expected = "no port named \"nope\"")]
fn an_unknown_named_port_is_a_clear_panic() {
    let fx = late(&[], Ready::none()).spawn().expect("spawn");
    let _ = fx.named_port("nope");
}
