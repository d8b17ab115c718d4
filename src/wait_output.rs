//! [`ProcessFixture::wait_for_output`](crate::ProcessFixture::wait_for_output): a later line of
//! the server's output, searched from where the previous search stopped.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use regex::Regex;

use crate::deadline::Deadline;
use crate::error::Error;
use crate::output::View;
use crate::running::tail_of;
use crate::sys;
use crate::teardown::ERROR_TAIL_LINES;

/// One `wait_for_output`: the first matching line after the cursor, on either stream.
pub(crate) struct OutputSearch {
    pub(crate) view: View,
    pub(crate) cursor: Arc<Mutex<(u64, u64)>>,
    pub(crate) regex: Regex,
    pub(crate) program: String,
    pub(crate) started: Instant,
    pub(crate) deadline: Deadline,
}

impl OutputSearch {
    pub(crate) fn run(self) -> Result<String, Error> {
        self.view.with_mut(|s| s.output_waiters += 1);
        let outcome = self.find();
        self.view.with_mut(|s| s.output_waiters -= 1);
        let output = Box::new(self.view.with_mut(|s| tail_of(s, ERROR_TAIL_LINES)));
        let program = self.program.clone();
        outcome.map_err(|status| match status {
            Some(status) => Error::Exited {
                program,
                status: ExitStatus::from_raw(status),
                output,
            },
            None => Error::OutputTimeout {
                program,
                pattern: self.regex.as_str().to_owned(),
                waited: self.started.elapsed(),
                output,
            },
        })
    }

    /// `Err(Some(status))`: the server died; `Err(None)`: the deadline passed.
    fn find(&self) -> Result<String, Option<sys::WaitStatus>> {
        loop {
            let since = self.view.events();
            let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
            let (found, dead) = self.view.with_mut(|s| {
                let out = s
                    .stdout
                    .find_line(cursor.0, &self.regex)
                    .map(|(l, at)| (l, at, 0));
                let err = || {
                    s.stderr
                        .find_line(cursor.1, &self.regex)
                        .map(|(l, at)| (l, at, 1))
                };
                (out.or_else(err), s.dead())
            });
            if let Some((line, at, stream)) = found {
                if stream == 0 {
                    cursor.0 = at;
                } else {
                    cursor.1 = at;
                }
                return Ok(line);
            }
            drop(cursor);
            if let Some(status) = dead {
                return Err(Some(status));
            }
            if self.deadline.passed() {
                return Err(None);
            }
            self.view.wait_event(since, self.deadline.remaining());
        }
    }
}
