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

/// The stack a `CLONE_VM` child runs on until it execs: 64 KiB, 16-byte aligned, in this
/// program's zero-initialised data. Never written by us, so only the pages a child touches
/// (from the top down) are ever faulted in, once per process. An array in the caller's frame
/// cost 16 page faults per spawn: the compiler's stack probes touch every page of a large
/// frame. Static rather than allocated: the guardian may not allocate.
#[cfg(target_os = "linux")]
#[repr(C, align(16))]
struct ChildStack(std::cell::UnsafeCell<[u8; ChildStack::BYTES]>);

// SAFETY: used only by the guardian's single thread, by one child at a time: the caller of
// `spawn_shared` and `clone3` is suspended (CLONE_VFORK) until its child has exec'd or exited.
#[cfg(target_os = "linux")]
unsafe impl Sync for ChildStack {}

#[cfg(target_os = "linux")]
static CHILD_STACK: ChildStack = ChildStack(std::cell::UnsafeCell::new([0; ChildStack::BYTES]));

#[cfg(target_os = "linux")]
impl ChildStack {
    const BYTES: usize = 64 << 10;

    fn base(&self) -> *mut u8 {
        self.0.get().cast()
    }

    /// One past its end, where the child's stack pointer starts.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the BYTES-byte array: in bounds of it.
        unsafe { self.base().add(Self::BYTES) }.cast()
    }
}

/// Where a `CLONE_VM` child starts, on [`CHILD_STACK`]: it runs the `&mut dyn FnMut() -> i32`
/// that `arg` points to and exits with what it returns, never returning itself.
#[cfg(target_os = "linux")]
extern "C" fn run_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the caller's `&mut dyn FnMut`, alive: the parent is suspended
    // (CLONE_VFORK) until this child has exec'd or exited.
    let child = unsafe { &mut *(arg as *mut &mut dyn FnMut() -> i32) };
    super::process::exit(child())
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
    let top = CHILD_STACK.top();
    let mut arg: &mut dyn FnMut() -> i32 = child;
    // SAFETY: `arg` lives in this frame, which stays put until the child has exec'd or exited
    // (CLONE_VFORK suspends us until then); the child runs `run_child` on CHILD_STACK only,
    // which nothing else uses meanwhile; the caller guarantees no signal handler and no other
    // thread (see above).
    let pid = unsafe {
        libc::clone(
            run_child,
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
/// (6–15 ms measured on a 2-core VM, for every spawn that follows a quiet moment). On x86-64 the
/// child shares our memory until it execs, on a stack of its own, as [`spawn_shared`] (`clone3`
/// has no libc wrapper that switches stacks, so the switch is the few instructions below);
/// elsewhere it gets a copy of our memory, as after `fork()`. We are suspended until the child
/// execs or exits (`CLONE_VFORK`). `Err` (ENOSYS, EINVAL, E2BIG: no `clone3` or no
/// `CLONE_INTO_CGROUP`, or a seccomp profile that refuses `clone3`): the caller starts it
/// another way.
///
/// # Safety
/// As [`spawn_shared`]: a single-threaded caller with no signal handler; `child` makes only
/// plain syscalls, and execs or exits.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn spawn_in_cgroup(
    cgroup: std::os::fd::RawFd,
    child: &mut dyn FnMut() -> i32,
) -> io::Result<Pid> {
    let Ok(cgroup) = u64::try_from(cgroup) else {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    };
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP | libc::CLONE_VFORK as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup,
        ..CloneArgs::default()
    };
    // SAFETY: passed on from the caller.
    let pid = unsafe { clone3(&mut args, child) };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        pid => Ok(pid as Pid),
    }
}

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
#[cfg(target_os = "linux")]
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

#[cfg(target_os = "linux")]
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(args)` with `CLONE_VM` added, the child on a stack of its own running `child` (by
/// [`run_child`]) and exiting with what it returns. Returns the child's pid, or -1 (errno set).
///
/// # Safety
/// As [`spawn_in_cgroup`]; `args` has `CLONE_VFORK` (this frame, which holds what the child
/// reads, must stay put until the child has exec'd or exited).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
unsafe fn clone3(args: &mut CloneArgs, child: &mut dyn FnMut() -> i32) -> i64 {
    args.flags |= libc::CLONE_VM as u64;
    args.stack = CHILD_STACK.base() as u64;
    args.stack_size = ChildStack::BYTES as u64;
    let mut arg: &mut dyn FnMut() -> i32 = child;
    let arg = (&mut arg as *mut &mut dyn FnMut() -> i32).cast::<libc::c_void>();
    let ret: i64;
    // SAFETY: the child starts at the instruction after `syscall` with its stack pointer at the
    // top of CHILD_STACK and our registers: it calls `run_child(arg)` from r12 and r13 (kept by
    // the kernel), which exits and never returns here (`ud2` if it did); the parent (rax = pid
    // or -errno) only falls through. `arg` and `child` live in this frame, which the parent
    // cannot leave before the child has exec'd or exited (CLONE_VFORK); CHILD_STACK is the
    // child's alone meanwhile. The caller guarantees no signal handler and no other thread.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") run_child as *const () as usize,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = -ret as i32 };
        return -1;
    }
    ret
}

/// `clone3(args)` with fork semantics: the child runs `child` on a copy of our memory.
///
/// # Safety
/// As [`spawn_in_cgroup`].
#[cfg(all(target_os = "linux", not(target_arch = "x86_64")))]
unsafe fn clone3(args: &mut CloneArgs, child: &mut dyn FnMut() -> i32) -> i64 {
    let size = std::mem::size_of::<CloneArgs>();
    // SAFETY: `args` is a live, initialised clone_args of the size given; no stack is given,
    // so the child continues here on a copy of our memory, as after fork().
    let pid = unsafe { libc::syscall(libc::SYS_clone3, args as *mut CloneArgs, size) };
    if pid == 0 {
        super::process::exit(child());
    }
    pid
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
