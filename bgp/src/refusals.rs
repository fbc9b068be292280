//! How often the listener says that it refused a connection from an address that is not a
//! configured peer: a misconfigured router retrying every second, or a scanner hammering
//! port 179, must not flood the log. Sans-IO (no tokio, no clock: the caller passes the
//! time); the speaker task logs what it is told and wakes up at [`Refusals::deadline`].
//!
//! Per window of [`WINDOW`]: the first refusal of each address is logged, for at most
//! [`LOGGED_PER_WINDOW`] addresses; every other refusal is only counted, and when the
//! window ends one summary line gives the count and the number of addresses.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a window lasts: an address is logged at most once per window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses logged one by one per window; the rest go into the summary.
pub const LOGGED_PER_WINDOW: usize = 8;
/// Distinct addresses remembered per window (a scanner with many sources costs no more
/// memory than this; beyond it the summary's address count is a lower bound).
const REMEMBERED: usize = 4096;

/// Refusals not logged one by one during a window: what the summary line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Connections refused without a line of their own.
    pub refused: u64,
    /// Distinct addresses refused in the window, logged ones included (at least).
    pub addresses: usize,
}

/// The rate limit's state.
#[derive(Debug, Default)]
pub struct Refusals {
    /// When the current window ends; `None` when no window is open.
    window_end: Option<Instant>,
    /// Addresses seen in this window (each logged once, or over the per-window limit).
    seen: HashSet<IpAddr>,
    /// How many of `seen` were logged.
    logged: usize,
    /// Refusals in this window without a line of their own.
    quiet: u64,
}

impl Refusals {
    /// A connection from `addr` was refused at `now`: whether to log it. The caller must
    /// have called [`Refusals::end_window`] once [`Refusals::deadline`] passed.
    pub fn refused(&mut self, addr: IpAddr, now: Instant) -> bool {
        self.window_end.get_or_insert(now + WINDOW);
        if self.seen.contains(&addr) {
            self.quiet += 1;
            return false;
        }
        if self.seen.len() < REMEMBERED {
            self.seen.insert(addr);
        }
        if self.logged < LOGGED_PER_WINDOW {
            self.logged += 1;
            return true;
        }
        self.quiet += 1;
        false
    }

    /// When [`Refusals::end_window`] is due, if a window is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.window_end
    }

    /// Closes the window if it is over at `now`, returning what to sum up (nothing when
    /// every refusal had its own line).
    pub fn end_window(&mut self, now: Instant) -> Option<Summary> {
        if self.window_end.is_none_or(|end| now < end) {
            return None;
        }
        let summary = Summary {
            refused: self.quiet,
            addresses: self.seen.len(),
        };
        *self = Refusals::default();
        (summary.refused > 0).then_some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, i])
    }

    #[test]
    fn one_address_hammering_gets_one_line_and_a_summary_per_window() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        let lines = (0..10_000)
            .filter(|i| r.refused(ip(1), t0 + Duration::from_millis(*i)))
            .count();
        assert_eq!(lines, 1);
        assert_eq!(r.deadline(), Some(t0 + WINDOW));
        assert_eq!(r.end_window(t0 + WINDOW - Duration::from_millis(1)), None);
        assert_eq!(
            r.end_window(t0 + WINDOW),
            Some(Summary {
                refused: 9_999,
                addresses: 1
            })
        );
        assert_eq!(r.deadline(), None);
        // The next window logs the address again.
        assert!(r.refused(ip(1), t0 + WINDOW * 2));
    }

    #[test]
    fn many_addresses_are_logged_up_to_the_limit() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        let lines = (1..=100).filter(|i| r.refused(ip(*i), t0)).count();
        assert_eq!(lines, LOGGED_PER_WINDOW);
        let s = r.end_window(t0 + WINDOW).unwrap();
        assert_eq!(s.refused, 100 - LOGGED_PER_WINDOW as u64);
        assert_eq!(s.addresses, 100);
    }

    #[test]
    fn a_quiet_window_has_no_summary() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        assert!(r.refused(ip(1), t0));
        assert!(r.refused(ip(2), t0));
        assert_eq!(r.end_window(t0 + WINDOW), None);
        assert_eq!(r.deadline(), None);
    }
}
