//! SIGINT and SIGTERM as messages: blocked in every thread, taken by one with `sigwait`, so that
//! no handler runs and nothing of the library is interrupted.

use std::sync::mpsc::{channel, Receiver};

/// The signals the CLI answers.
const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Blocks SIGINT and SIGTERM, and starts the thread that reports them. Call first in `main`,
/// before any other thread exists (threads inherit the mask; children get an empty one: std and
/// the library reset it before exec).
pub(crate) fn listen() -> Receiver<libc::c_int> {
    // SAFETY: sigset_t is plain old data; sigemptyset/sigaddset initialise it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live local; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let (tx, rx) = channel();
    std::thread::spawn(move || loop {
        let mut sig = 0;
        // SAFETY: `set` is initialised above and moved here; `sig` is a live local.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 && tx.send(sig).is_err() {
            return;
        }
    });
    rx
}
