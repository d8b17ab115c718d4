//! `activated-server`: a server started by socket activation, built on the `listenfd` crate
//! (which checks `LISTEN_PID` against its own pid, as systemd's protocol says). For
//! process-fixture's socket activation tests.
//!
//! ```text
//! activated-server [--accept-after-ms N]
//! ```
//! It takes every socket passed to it (`LISTEN_FDS`), prints on stderr
//! `names=<LISTEN_FDNAMES> fds=<its open fds, sorted, comma-separated>` (Linux; the fd of the
//! listing itself left out), then `ready` on stdout. After `--accept-after-ms` (default 0) it
//! answers every connection on socket `i` with `HTTP/1.1 200 OK` and the body
//! `activated pid=<pid> socket=<i>`. Without any socket it exits 3. It dies on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

fn main() {
    let mut accept_after = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--accept-after-ms", Some(ms)) => accept_after = Duration::from_millis(ms),
            _ => {
                eprintln!("usage: activated-server [--accept-after-ms N]");
                std::process::exit(2)
            }
        }
    }
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    let listeners: Vec<TcpListener> = (0..fds.len())
        .filter_map(|i| fds.take_tcp_listener(i).ok().flatten())
        .collect();
    if listeners.is_empty() {
        eprintln!("activated-server: no socket was passed (LISTEN_FDS, LISTEN_PID)");
        std::process::exit(3)
    }
    eprintln!("names={names} fds={}", open_fds());
    println!("ready");
    std::thread::sleep(accept_after); // a slow start: clients wait in the backlog meanwhile
    let pid = std::process::id();
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| std::thread::spawn(move || serve(l, pid, i)))
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn serve(listener: TcpListener, pid: u32, socket: usize) {
    for mut conn in listener.incoming().flatten() {
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        let body = format!("activated pid={pid} socket={socket}");
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

/// This process's open fds, sorted, comma-separated, without the one reading the list.
fn open_fds() -> String {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return "unknown".into();
    };
    let mut fds: Vec<u32> = dir
        .flatten()
        .filter(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            !target.to_string_lossy().ends_with("/fd")
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}
