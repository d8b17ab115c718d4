//! Starting processes: `fork`, a child sharing our memory until it execs, `execve`.

use std::ffi::CStr;
use std::io;

use super::{cvt, Pid};

/// `fork()`.
///
/// # Safety
/// The child of a multithreaded process may only make async-signal-safe calls until it execs
/// or exits.
pub(crate) unsafe fn fork() -> io::Result<Pid> {
    // SAFETY: the caller guarantees what the child does (see above).
    cvt(unsafe { libc::fork() })
}

/// Starts a process that shares our memory until it execs or exits (`clone(CLONE_VM |
/// CLONE_VFORK)` on a stack of its own, as `posix_spawn` does): no page table is copied and none
/// torn down, and we are suspended until then. For the guardian's server child, whose work before
/// `execve` is plain syscalls. `child` must exec or `_exit`, never return.
///
/// # Safety
/// Single-threaded caller with no signal handler installed (a handler running in the child would
/// run on shared memory); `child` touches no memory of ours but through the plain syscalls it
/// makes.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn spawn_shared(child: &mut dyn FnMut() -> i32) -> io::Result<Pid> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&mut dyn FnMut` below, alive: the parent is suspended.
        let child = unsafe { &mut *(arg as *mut &mut dyn FnMut() -> i32) };
        let code = child();
        super::process::exit(code)
    }
    // 64 KiB, 16-byte aligned at its top; left uninitialised, so that only the pages the
    // child touches (from the top down) are ever dirtied.
    let mut stack = std::mem::MaybeUninit::<[u64; 8192]>::uninit();
    // SAFETY: one past the end of the 8192-u64 array `stack`: in bounds of the same allocation.
    let top = unsafe { stack.as_mut_ptr().cast::<u64>().add(8192) }.cast::<libc::c_void>();
    let mut arg: &mut dyn FnMut() -> i32 = child;
    // SAFETY: `stack` and `arg` live in this frame, which stays put until the child has
    // exec'd or exited (CLONE_VFORK suspends us until then); the child runs `trampoline` on
    // `stack` only; the caller guarantees no signal handler and no other thread (see above).
    let pid = unsafe {
        libc::clone(
            trampoline,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut arg as *mut &mut dyn FnMut() -> i32).cast(),
        )
    };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// macOS: a plain `fork()`; the child runs `child` and exits with what it returns.
///
/// # Safety
/// As `fork()`: the child makes only async-signal-safe calls.
#[cfg(target_os = "macos")]
pub(crate) unsafe fn spawn_shared(child: &mut dyn FnMut() -> i32) -> io::Result<Pid> {
    // SAFETY: the caller guarantees that `child` makes only async-signal-safe calls.
    match unsafe { fork() }? {
        0 => super::process::exit(child()),
        pid => Ok(pid),
    }
}

/// `execve(path, argv, envp)`; returns only when it failed.
///
/// # Safety
/// `argv` and `envp` point to NULL-terminated arrays of pointers to NUL-terminated strings,
/// all valid until the call returns.
pub(crate) unsafe fn execve(
    path: &CStr,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) {
    // SAFETY: `path` is NUL-terminated; the caller vouches for `argv` and `envp`.
    unsafe { libc::execve(path.as_ptr(), argv, envp) };
}
