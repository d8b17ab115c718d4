//! seccomp user notification: an event at every `listen()` of the server's processes, so that
//! readiness of a port is known when it happens instead of by polling.

use std::os::fd::RawFd;

use crate::sys::{ListenCall, Pid};

#[cfg(target_arch = "x86_64")]
const NATIVE_AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// Whether this build can watch listen() calls (an architecture whose filter we wrote).
pub(crate) const LISTEN_EVENTS: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Installs, in the calling process (the server's child, before exec), a seccomp filter that
/// turns every native-ABI `listen()` into a user notification, and returns the listener fd.
/// Without CAP_SYS_ADMIN the kernel requires no_new_privs: `no_new_privs` says whether to set it.
/// Async-signal-safe: the program is a constant on the stack.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn install_listen_filter(no_new_privs: bool) -> Option<RawFd> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const OFF_NR: u32 = 0; // offsetof(struct seccomp_data, nr)
    const OFF_ARCH: u32 = 4; // offsetof(struct seccomp_data, arch)
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let program = [
        ins(LD_W_ABS, 0, 0, OFF_ARCH),
        ins(JEQ_K, 1, 0, NATIVE_AUDIT_ARCH),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ins(LD_W_ABS, 0, 0, OFF_NR),
        ins(JEQ_K, 0, 1, libc::SYS_listen as u32),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_USER_NOTIF),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: this prctl option takes integers only.
    if no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return None;
    }
    // SAFETY: `prog` points to `program`, both locals alive for the call (the kernel copies
    // the filter); the new listener fd is returned to the caller to own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    (fd >= 0).then_some(fd as RawFd)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn install_listen_filter(_no_new_privs: bool) -> Option<RawFd> {
    None
}

/// Whether the calling process may install a seccomp filter without no_new_privs
/// (CAP_SYS_ADMIN in its user namespace; checked as "effective uid 0", which has it unless a
/// capability-dropping sandbox took it away, in which case the install fails and readiness
/// falls back to polling).
pub(crate) fn privileged() -> bool {
    crate::sys::user::effective_uid() == 0
}

/// Takes the next notification from a listener fd (`None`: none pending, or its caller died).
pub(crate) fn receive_listen_call(notify_fd: RawFd) -> Option<ListenCall> {
    // SAFETY: seccomp_notif is plain old data: all zeros is valid (and what the kernel wants).
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: this ioctl writes one seccomp_notif into `req`, a live local.
    let ret = unsafe { libc::ioctl(notify_fd, libc::SECCOMP_IOCTL_NOTIF_RECV as _, &mut req) };
    (ret == 0).then(|| ListenCall {
        id: req.id,
        tid: req.pid as Pid,
        fd: req.data.args[0] as RawFd,
    })
}

/// Is the notification still pending (its caller still in the syscall)? Checked after copying
/// its fd, so that the copy is known to be the socket it passed.
pub(crate) fn listen_call_valid(notify_fd: RawFd, id: u64) -> bool {
    // SAFETY: this ioctl reads one u64 from `id`, borrowed for the call.
    unsafe { libc::ioctl(notify_fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _, &id) == 0 }
}

/// Lets the `listen()` go ahead as if nothing had intercepted it.
pub(crate) fn continue_listen_call(notify_fd: RawFd, id: u64) {
    // SAFETY: seccomp_notif_resp is plain old data: all zeros is valid.
    let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    resp.id = id;
    resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
    // SAFETY: this ioctl reads one seccomp_notif_resp from `resp`, a live local.
    unsafe { libc::ioctl(notify_fd, libc::SECCOMP_IOCTL_NOTIF_SEND as _, &mut resp) };
}
