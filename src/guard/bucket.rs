//! Token buckets on injected time: a capacity that refills at a steady rate. The guard keeps
//! one per source for requests, one for failed authentications and one for requests it had
//! to drop. Pure arithmetic; the caller passes the `Instant`.

use std::time::Instant;

/// How a bucket fills: at most `capacity` tokens, `per_sec` tokens added each second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub capacity: f64,
    pub per_sec: f64,
}

impl Rate {
    /// `count` events per `secs` seconds, all of them allowed at once.
    pub fn per_window(count: u32, secs: u64) -> Rate {
        Rate {
            capacity: f64::from(count.max(1)),
            per_sec: f64::from(count.max(1)) / secs.max(1) as f64,
        }
    }

    /// How long an emptied bucket takes to fill again.
    pub fn refill_secs(&self) -> f64 {
        self.capacity / self.per_sec.max(f64::MIN_POSITIVE)
    }
}

/// One bucket; it starts full.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn full(rate: Rate, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: rate.capacity,
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        // An `Instant` earlier than the last one (it cannot happen with a monotonic clock)
        // adds nothing rather than panicking.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.capacity);
        self.last = now;
    }

    /// Takes one token; false when the bucket is empty (the event is over the rate).
    pub fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes one token and tells whether that emptied the bucket (the `capacity`-th event
    /// within one window).
    pub fn take_exhausts(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens = (self.tokens - 1.0).max(0.0);
        self.tokens < 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let rate = Rate {
            capacity: 5.0,
            per_sec: 2.0,
        };
        let mut b = TokenBucket::full(rate, t0);
        for _ in 0..5 {
            assert!(b.take(rate, t0));
        }
        assert!(!b.take(rate, t0));
        // Half a second gives one token back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take(rate, t1));
        assert!(!b.take(rate, t1));
        // A long pause refills to the capacity, not beyond.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(b.take(rate, t2));
        }
        assert!(!b.take(rate, t2));
    }

    #[test]
    fn window_counts_to_exhaustion() {
        let t0 = Instant::now();
        let rate = Rate::per_window(10, 60);
        let mut b = TokenBucket::full(rate, t0);
        for i in 1..10 {
            assert!(!b.take_exhausts(rate, t0), "failure {i} must not exhaust");
        }
        assert!(
            b.take_exhausts(rate, t0),
            "the 10th failure in a minute exhausts"
        );
        // Nine failures a minute, spread out, never do.
        let mut b = TokenBucket::full(rate, t0);
        for i in 0..100u64 {
            let t = t0 + Duration::from_millis(i * 60_000 / 9);
            assert!(!b.take_exhausts(rate, t), "slow failure {i}");
        }
        assert_eq!(rate.refill_secs(), 60.0);
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let rate = Rate::per_window(1, 1);
        let mut b = TokenBucket::full(rate, t0);
        assert!(b.take(rate, t0));
        assert!(!b.take(rate, t0 - Duration::from_secs(5)));
    }
}
