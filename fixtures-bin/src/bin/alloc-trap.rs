//! `alloc-trap`: runs fixtures in a process whose allocator kills any *forked child* that
//! allocates (docs/design.md, R8.2). A guardian forked from this process without exec (the fallback,
//! `PROCESS_FIXTURE_FORCE=no-zygote`) may make async-signal-safe calls only, so it must never
//! allocate (another thread may have held the allocator's lock at the fork). If it did, the
//! guardian would `_exit(86)` and the fixture would fail. With the zygote (the default), nothing
//! is forked from this process: the zygote is this executable exec'd afresh, where `main`, and so
//! the trap's owner, never ran.
//!
//! ```text
//! alloc-trap --server PATH
//! ```
//! First a self-check: a forked child that allocates must exit 86 (so the trap works). Then fixtures
//! of `well-behaved`, `forking-master`, `setsid-escapee` and `ignore-term` are spawned and stopped,
//! covering the guardian's spawn, idle watch, escapee sweep and escalation. Prints `ok` and exits 0.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use process_fixture::{ProcessFixture, Ready};

/// The pid allowed to allocate: this process, recorded first thing in `main`.
static OWNER: AtomicI32 = AtomicI32::new(0);

struct Trap;

fn check() {
    let owner = OWNER.load(Ordering::Relaxed);
    // SAFETY: getpid, write and _exit are async-signal-safe syscalls.
    unsafe {
        if owner != 0 && libc::getpid() != owner {
            let msg = b"alloc-trap: allocation in a forked child\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(86);
        }
    }
}

// SAFETY: forwards to the system allocator after the check.
unsafe impl GlobalAlloc for Trap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check();
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        check();
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Trap = Trap;

/// A forked child that allocates must die with 86, or this binary proves nothing.
fn self_check() {
    // SAFETY: the child only allocates (trapped) or exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let v: Vec<u8> = Vec::with_capacity(64);
        std::hint::black_box(v);
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child by pid.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 86,
        "the allocation trap did not fire in a forked child (status {status:#x})"
    );
}

/// Waits until the escapee has called `setsid` (the server prints its pid right after `fork`),
/// so that the stop really has an escapee to sweep.
fn wait_for_escape(fx: &ProcessFixture) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let escaped = || {
        let pid: u32 = fx
            .stdout()
            .lines()
            .find_map(|l| l.strip_prefix("escapee pid=")?.trim().parse().ok())?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let pgrp: u32 = stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()?;
        (pgrp != fx.pgid()).then_some(())
    };
    while escaped().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the escapee never called setsid"
        );
        std::thread::yield_now();
    }
}

fn main() {
    // SAFETY: getpid has no preconditions.
    OWNER.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    let args: Vec<String> = std::env::args().collect();
    let server = match args.as_slice() {
        [_, flag, path] if flag == "--server" => path.clone(),
        _ => {
            eprintln!("usage: alloc-trap --server PATH");
            std::process::exit(2);
        }
    };
    self_check();
    for mode in [
        "well-behaved",
        "forking-master",
        "setsid-escapee",
        "ignore-term",
    ] {
        let fx = ProcessFixture::builder(&server)
            .args(["--mode", mode, "--port", "{port}", "--workers", "2"])
            .ready(Ready::tcp())
            .ready_timeout(Duration::from_secs(20))
            .grace_period(Duration::from_millis(100))
            .temp_dir() // the guardian removes it: that too must not allocate
            .spawn()
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let dir = fx.dir().map(std::path::Path::to_path_buf);
        if mode == "setsid-escapee" {
            wait_for_escape(&fx);
        }
        let report = fx.stop().unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(
            dir.is_some_and(|d| !d.exists()),
            "{mode}: the directory is left"
        );
        println!("{mode}: {report} (guardian: {:?})", report.guardian);
    }
    println!("ok");
}
