//! What the helper servers and the benches share: the clock their time stamps are on.

/// CLOCK_MONOTONIC in nanoseconds: the clock a helper server stamps a moment with (`bound_ns=`,
/// `listen_ns=`, `ready_ns=` on stderr) and a bench compares it with, across processes.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec.unsigned_abs() * 1_000_000_000 + ts.tv_nsec.unsigned_abs()
}
