//! Fallbacks forced for tests: kernel features are probed at run time, and each fallback can be
//! forced with `PROCESS_FIXTURE_FORCE` so that the suite runs it too.

/// Whether `PROCESS_FIXTURE_FORCE` (comma-separated) names this fallback (`no-pidfd`,
/// `no-zygote`, `no-seccomp`, `no-cgroup`, `no-port-watch`).
pub(crate) fn forced(fallback: &str) -> bool {
    std::env::var("PROCESS_FIXTURE_FORCE").is_ok_and(|v| v.split(',').any(|f| f.trim() == fallback))
}
