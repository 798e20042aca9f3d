//! A refusal waits for the task's writes in progress to be counted. The task counts what the socket took
//! after its write returns, and the client may have read it all by then: without the wait, a message
//! sent in that moment (the client's answer to the one it just received, say) would be refused as over
//! `max_backpressure` although nothing waits any more. Only a send that would be refused waits: it looks
//! again after each write the task counts, and refuses once the task is out of its writes (all written,
//! or the socket full). The task never holds the queue's lock during a write.

use std::sync::MutexGuard;

use super::{ConnHandle, OutState};

impl ConnHandle {
    /// Whether more than `max_backpressure` bytes wait, once the task's writes in progress are counted.
    #[inline]
    pub(super) fn still_over_limit(&self) -> bool {
        self.over_limit() && self.over_limit_once_counted()
    }

    #[cold]
    #[inline(never)]
    fn over_limit_once_counted(&self) -> bool {
        self.refusing(self.state(), |_| self.over_limit()).1
    }

    /// Whether `refuses` holds once the task's writes in progress are counted (waiting for each count
    /// while it holds), with the queue's state it was decided on.
    pub(super) fn refusing<'a>(
        &'a self,
        mut state: MutexGuard<'a, OutState>,
        refuses: impl Fn(&OutState) -> bool,
    ) -> (MutexGuard<'a, OutState>, bool) {
        loop {
            if !refuses(&state) {
                return (state, false);
            }
            if !state.task_in_write {
                return (state, true);
            }
            state.refusal_waiting = true;
            state = self.written.wait(state).expect("outbound queue poisoned");
        }
    }

    /// Task side: the task is out of its writes (the socket full, or an error).
    pub(in crate::net) fn write_stopped(&self) {
        let mut state = self.state();
        state.task_in_write = false;
        self.wake_refusals(&mut state);
    }

    /// After a write was counted or the task stopped writing: a waiting refusal looks again.
    pub(super) fn wake_refusals(&self, state: &mut OutState) {
        if std::mem::take(&mut state.refusal_waiting) {
            self.written.notify_all();
        }
    }
}
