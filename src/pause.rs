//! The test side of pause and resume: one numbered request to the guardian, which signals the
//! server's tree (the test process never signals the server), and a bounded wait for the answer
//! with the same number.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::{Error, PauseFailure};
use crate::guardian::{Frozen, Msg};
use crate::running::Running;
use crate::sys;

/// How long the guardian's answer may take: its own wait for every process to stop (1 s), and
/// slack for scheduling on a loaded machine.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Pauses (`pause`) or resumes the fixture's processes. A pause that could not stop every
/// process resumes them all again and fails: the server is never left half frozen.
pub(crate) fn set_paused(run: &Running, pause: bool) -> Result<(), Error> {
    let mut state = run.pause.lock().unwrap_or_else(|e| e.into_inner());
    let fail = |failure| Error::PauseFailed {
        program: run.program.clone(),
        resuming: !pause,
        failure,
    };
    state.seq = state.seq.wrapping_add(1);
    let answer = request(run, pause, state.seq).map_err(fail)?;
    state.paused = pause;
    if pause && answer.running > 0 {
        state.seq = state.seq.wrapping_add(1);
        let _ = request(run, false, state.seq);
        state.paused = false;
        return Err(fail(PauseFailure::NotAllStopped {
            running: answer.running,
        }));
    }
    Ok(())
}

/// With a cgroup, whether it is frozen (`cgroup.events`); else whether the last pause or
/// resume that succeeded was a pause.
pub(crate) fn is_paused(run: &Running) -> bool {
    if let Some(frozen) = run.cgroup.and_then(|named| named.frozen()) {
        return frozen;
    }
    run.pause.lock().unwrap_or_else(|e| e.into_inner()).paused
}

/// Sends PAUSE or RESUME number `seq` and waits for its answer.
fn request(run: &Running, pause: bool, seq: u32) -> Result<Frozen, PauseFailure> {
    let ctl = run.ctl.as_ref().ok_or(PauseFailure::Stopping)?;
    let mut msg = Msg::new(if pause { Msg::PAUSE } else { Msg::RESUME });
    msg.seq = seq;
    let no_answer = PauseFailure::NoAnswer {
        waited: ANSWER_WAIT,
    };
    // Never full in practice (one request at a time, 64 bytes); a broken socket is a dead guardian.
    if sys::write_once(ctl.as_raw_fd(), msg.as_bytes()) != Msg::SIZE as isize {
        return Err(no_answer);
    }
    let deadline = Deadline::after(ANSWER_WAIT);
    run.monitor
        .wait_for(deadline, |s| {
            let gone = s.guardian_closed || s.guardian_died.is_some() || s.stopped.is_some();
            match s.frozen {
                Some(f) if f.seq == seq => Some(Some(f)),
                _ if gone => Some(None),
                _ => None,
            }
        })
        .flatten()
        .ok_or(no_answer)
}
