//! Jittered exponential backoff for reconnects (RFC 4271 §8.1.1 ConnectRetryTimer, with the
//! damping of §8.1.1 "DampPeerOscillations" done as exponential growth). Pure: the jitter
//! comes from a small seeded PRNG so tests are deterministic.

use std::time::Duration;

/// Delay sequence `min, 2·min, 4·min, … ≤ max`, each scaled by a random factor in [0.75, 1].
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff starting at `min`, capped at `max`, with jitter seeded by `seed`.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// The next delay; grows until `max`.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.min.saturating_mul(1u32 << self.attempt.min(20));
        let base = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng % 1000) as f64 / 1000.0; // [0, 1)
        base.mul_f64(0.75 + 0.25 * frac)
    }

    /// Back to `min` after a session proved stable.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 42);
        let d: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        for (i, x) in d.iter().enumerate() {
            let base = Duration::from_secs((1u64 << i).min(60));
            assert!(
                *x <= base && *x >= base.mul_f64(0.75),
                "{i}: {x:?} vs {base:?}"
            );
        }
        assert!(d[9] >= Duration::from_secs(45));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn different_seeds_spread_reconnects() {
        let a = Backoff::new(Duration::from_secs(8), Duration::from_secs(60), 1).next_delay();
        let b = Backoff::new(Duration::from_secs(8), Duration::from_secs(60), 99).next_delay();
        assert_ne!(a, b);
    }
}
