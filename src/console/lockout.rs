//! The lock-out rule: [`MAX_FAILURES`] wrong passwords within [`WINDOW_SECS`] lock the account
//! for [`LOCK_SECS`]; a right password (while not locked) clears the count. Times are Unix
//! seconds, passed in; the counters live in the operator's row.

/// Wrong passwords that lock the account.
pub const MAX_FAILURES: u32 = 5;
/// The window the wrong passwords must fall in.
pub const WINDOW_SECS: i64 = 15 * 60;
/// How long a locked account stays locked.
pub const LOCK_SECS: i64 = 15 * 60;

/// An account's failed-login state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Wrong passwords in the current window.
    pub failures: u32,
    /// When the first of them was (Unix seconds).
    pub window_start: Option<i64>,
    /// Locked until then (Unix seconds).
    pub locked_until: Option<i64>,
}

impl Attempts {
    /// Is the account locked at `now`?
    pub fn is_locked(&self, now: i64) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    /// The state after a wrong password at `now`. A failure while locked does not extend
    /// the lock (a hostile client cannot keep an operator out forever by itself alone; it
    /// can, by trying again every 15 minutes, which the log shows).
    pub fn after_failure(self, now: i64) -> Attempts {
        if self.is_locked(now) {
            return self;
        }
        let in_window = self.window_start.is_some_and(|s| now - s < WINDOW_SECS);
        let (failures, window_start) = if in_window {
            (self.failures + 1, self.window_start)
        } else {
            (1, Some(now))
        };
        if failures >= MAX_FAILURES {
            Attempts {
                failures: 0,
                window_start: None,
                locked_until: Some(now + LOCK_SECS),
            }
        } else {
            Attempts {
                failures,
                window_start,
                locked_until: None,
            }
        }
    }

    /// The state after a right password.
    pub fn after_success() -> Attempts {
        Attempts::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_within_the_window_lock() {
        let mut a = Attempts::default();
        for i in 0..4 {
            a = a.after_failure(1000 + i * 60);
            assert!(!a.is_locked(1000 + i * 60));
        }
        assert_eq!(a.failures, 4);
        a = a.after_failure(1000 + 4 * 60);
        assert!(a.is_locked(1000 + 4 * 60));
        assert!(a.is_locked(1000 + 4 * 60 + LOCK_SECS - 1));
        assert!(!a.is_locked(1000 + 4 * 60 + LOCK_SECS));
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let mut a = Attempts::default();
        for i in 0..4 {
            a = a.after_failure(i * 60);
        }
        // The fifth comes after the window of the first: counting starts again.
        a = a.after_failure(WINDOW_SECS + 1);
        assert!(!a.is_locked(WINDOW_SECS + 1));
        assert_eq!(a.failures, 1);
    }

    #[test]
    fn failures_while_locked_do_not_extend_the_lock() {
        let mut a = Attempts::default();
        for _ in 0..5 {
            a = a.after_failure(0);
        }
        let until = a.locked_until;
        a = a.after_failure(100);
        assert_eq!(a.locked_until, until);
        assert!(!a.is_locked(LOCK_SECS));
        // After the lock, a new window.
        a = a.after_failure(LOCK_SECS);
        assert_eq!(a.failures, 1);
        assert!(!a.is_locked(LOCK_SECS));
    }

    #[test]
    fn success_clears() {
        let a = Attempts::default().after_failure(0).after_failure(1);
        assert_eq!(a.failures, 2);
        assert_eq!(Attempts::after_success(), Attempts::default());
    }
}
