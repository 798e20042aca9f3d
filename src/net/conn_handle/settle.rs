//! A refusal waits for the task's write in progress to be counted. The task counts what the socket took
//! after its write returns, and the client may have read it all by then: without the wait, a message
//! sent in that moment (the client's answer to the one it just received, say) would be refused as over
//! `max_backpressure` although nothing waits any more. Only a send that would be refused waits, and for
//! at most one non-blocking write: the task never holds the queue's lock during one.

use std::sync::MutexGuard;

use super::{ConnHandle, OutState};

impl ConnHandle {
    /// Whether more than `max_backpressure` bytes wait, once the task's write in progress is counted.
    #[inline]
    pub(super) fn still_over_limit(&self) -> bool {
        self.over_limit() && self.over_limit_once_counted()
    }

    #[cold]
    #[inline(never)]
    fn over_limit_once_counted(&self) -> bool {
        let _state = self.settled(self.state());
        self.over_limit()
    }

    /// The queue's state once no write of the task's is uncounted, while over the limit (under it, the
    /// count that is there already lets everything through).
    pub(super) fn settled<'a>(
        &'a self,
        mut state: MutexGuard<'a, OutState>,
    ) -> MutexGuard<'a, OutState> {
        while state.task_in_write && self.over_limit() {
            state.refusal_waiting = true;
            state = self.written.wait(state).expect("outbound queue poisoned");
        }
        state
    }

    /// Task side: the task is out of its writes (all written, the socket full, or an error).
    pub(in crate::net) fn write_stopped(&self) {
        self.leave_write(&mut self.state());
    }

    pub(super) fn leave_write(&self, state: &mut OutState) {
        state.task_in_write = false;
        if std::mem::take(&mut state.refusal_waiting) {
            self.written.notify_all();
        }
    }
}
