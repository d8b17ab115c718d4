//! What the helper servers and the benches share: the clock their time stamps are on, how a
//! bench writes a distribution, and how it reads CPU time.

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

/// "median / p90 / max" of `samples`, in ms (sorts them).
pub fn summary(samples: &mut [std::time::Duration]) -> String {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:.3} ms, p90 {:.3} ms, max {:.3} ms (n={})",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0)),
        samples.len()
    )
}

/// How many rounds a bench runs: `PF_BENCH_N`, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("PF_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of `getrusage(who)` (`libc::RUSAGE_SELF`: this process, every thread;
/// `libc::RUSAGE_CHILDREN`: the children it reaped, and what they reaped).
pub fn rusage_cpu(who: libc::c_int) -> std::time::Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage fills the local.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
