//! `after`: run something after a delay.

use std::time::Duration;

/// Cancels a pending `after` when dropped; [`TimerGuard::keep`] lets it run.
#[must_use = "dropping a TimerGuard cancels the timer; call .keep() to let it run"]
pub struct TimerGuard {
    abort: Option<tokio::task::AbortHandle>,
}

impl TimerGuard {
    /// Lets the timer run to completion without a guard.
    pub fn keep(mut self) {
        self.abort = None;
    }

    /// Cancels the timer now (same as dropping the guard).
    pub fn cancel(self) {}
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        if let Some(a) = self.abort.take() {
            a.abort();
        }
    }
}

pub(crate) fn after(delay: Duration, f: impl FnOnce() + Send + 'static) -> TimerGuard {
    let task = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        f();
    });
    TimerGuard {
        abort: Some(task.abort_handle()),
    }
}
