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

/// Starts a process inside the cgroup whose directory is open as `cgroup` (`clone3` with
/// `CLONE_INTO_CGROUP`): it is in there from its first instruction and no process is moved, so
/// the kernel's cgroup migration lock is never taken for writing. That lock is what makes a
/// join by `cgroup.procs` slow after a pause: its first writer waits out an RCU grace period
/// (6–15 ms measured on a 2-core VM, for every spawn that follows a quiet moment). Fork
/// semantics: the child runs `child` on a copy of our memory, so this is for a small caller
/// (a guardian forked by the zygote). We are suspended until the child execs or exits
/// (`CLONE_VFORK`). `Err` (ENOSYS, EINVAL, E2BIG: no `clone3` or no `CLONE_INTO_CGROUP`, or a
/// seccomp profile that refuses `clone3`): the caller starts it another way.
///
/// # Safety
/// As `fork()`: a single-threaded caller, or a child that makes only async-signal-safe calls.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn spawn_in_cgroup(
    cgroup: std::os::fd::RawFd,
    child: &mut dyn FnMut() -> i32,
) -> io::Result<Pid> {
    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let Ok(cgroup) = u64::try_from(cgroup) else {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    };
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP | libc::CLONE_VFORK as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup,
        ..CloneArgs::default()
    };
    let size = std::mem::size_of::<CloneArgs>();
    // SAFETY: `args` is a live, initialised clone_args of the size given; no stack is given,
    // so the child continues here on a copy of our memory, as after fork().
    let pid = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, size) };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => super::process::exit(child()),
        pid => Ok(pid as Pid),
    }
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

/// macOS: no cgroups, so never called.
///
/// # Safety
/// None needed: it starts nothing.
#[cfg(target_os = "macos")]
pub(crate) unsafe fn spawn_in_cgroup(
    _cgroup: std::os::fd::RawFd,
    _child: &mut dyn FnMut() -> i32,
) -> io::Result<Pid> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
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
