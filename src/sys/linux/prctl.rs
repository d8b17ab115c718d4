//! Process attributes set with `prctl`: subreaper, name, parent-death signal.

use std::ffi::CStr;

/// Makes the calling process a child subreaper: orphans of its descendants re-parent to it.
pub(crate) fn become_subreaper() -> bool {
    // SAFETY: this prctl option takes integers only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// Names the calling process (`comm`), so `ps` shows a guardian as such.
pub(crate) fn set_name(name: &CStr) {
    // SAFETY: `name` is NUL-terminated and borrowed for the call (the kernel copies it).
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

/// `PR_SET_PDEATHSIG` for the calling process. Only for the server's child of the guardian,
/// which is single-threaded: the signal follows the death of the parent *thread*, which there
/// is the whole guardian (set from a test thread, it would fire when that thread ends, while
/// the test process lives on).
pub(crate) fn set_parent_death_signal(sig: libc::c_int) -> bool {
    // SAFETY: this prctl option takes integers only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) == 0 }
}
