//! Retries of remote requests: bounded, with jittered exponential backoff,
//! and cut short by SIGINT or SIGTERM.
//!
//! A remote backend runs each request through [`run`] and says which
//! failures are worth another try: a connection refused or reset, a
//! timeout, a 5xx answer, `503 SlowDown`, `429`. A missing object, a refused
//! credential or a damaged answer is final at once. After
//! [`Policy::attempts`] tries the last error is the request's, and the
//! caller fails naming the object.
//!
//! The wait before try `n` (from 1) is `min(cap, base·2ⁿ⁻¹)`, half of it
//! fixed and half random ("equal jitter"): hosts that failed together do
//! not come back together. With the defaults (8 tries, base 250 ms, cap
//! 8 s) a request gives up after about 25 s of waiting. `REWIND_RETRIES`
//! sets how many times a request is tried again (0: never).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Requests tried again, in this process (for the request counts).
static RETRIED: AtomicU64 = AtomicU64::new(0);

/// How many requests were tried again so far.
pub fn retried() -> u64 {
    RETRIED.load(Ordering::Relaxed)
}

/// How often, and how patiently, a request is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Tries in all (at least 1).
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 8,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(8),
        }
    }
}

impl Policy {
    /// The default, with `REWIND_RETRIES` (retries after the first try).
    pub fn from_env() -> Policy {
        let mut p = Policy::default();
        if let Some(n) = std::env::var("REWIND_RETRIES")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            p.attempts = n.saturating_add(1).min(100);
        }
        p
    }

    /// The wait before retry `n` (1 for the first retry), before jitter.
    fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry `n`: half fixed, half random.
    pub fn delay(&self, n: u32) -> Duration {
        let c = self.ceiling(n);
        let half = c / 2;
        let spread = c.saturating_sub(half).as_nanos() as u64;
        half + Duration::from_nanos(if spread == 0 { 0 } else { random() % spread })
    }
}

/// How a try ended.
pub enum Outcome<T, E> {
    Done(T),
    /// Worth another try.
    Transient(E),
    /// Final.
    Failed(E),
}

/// Try `op` until it is done, fails for good, the tries run out, or the
/// process is asked to stop (the error of the last try is returned then).
/// Returns the result and how many tries it took.
pub fn run<T, E>(policy: &Policy, mut op: impl FnMut() -> Outcome<T, E>) -> (Result<T, E>, u32) {
    let mut tries = 0;
    loop {
        tries += 1;
        match op() {
            Outcome::Done(v) => return (Ok(v), tries),
            Outcome::Failed(e) => return (Err(e), tries),
            Outcome::Transient(e) => {
                if tries >= policy.attempts.max(1) || !pause(policy.delay(tries)) {
                    return (Err(e), tries);
                }
                RETRIED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Sleep `d`, in short steps; false when a stop was requested meanwhile.
fn pause(d: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() {
        if crate::interrupt::requested() {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !crate::interrupt::requested()
}

/// A random number for jitter (not for secrets).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(attempts: u32) -> Policy {
        Policy {
            attempts,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(4),
        }
    }

    #[test]
    fn transient_failures_are_tried_again_until_the_tries_run_out() {
        let mut n = 0;
        let (r, tries) = run(&quick(5), || {
            n += 1;
            if n < 3 {
                Outcome::Transient("reset")
            } else {
                Outcome::Done(n)
            }
        });
        assert_eq!((r, tries), (Ok(3), 3));
        let (r, tries) = run(&quick(4), || Outcome::<(), _>::Transient("503"));
        assert_eq!((r, tries), (Err("503"), 4));
        let (r, tries) = run(&quick(4), || Outcome::<(), _>::Failed("404"));
        assert_eq!((r, tries), (Err("404"), 1));
        let (r, tries) = run(&quick(0), || Outcome::<(), _>::Transient("x"));
        assert_eq!((r, tries), (Err("x"), 1));
    }

    #[test]
    fn delays_grow_to_the_cap_with_jitter_in_the_upper_half() {
        let p = Policy::default();
        for n in 1..12 {
            let c = p.ceiling(n);
            assert_eq!(c, (p.base * (1 << (n - 1))).min(p.cap), "{n}");
            for _ in 0..20 {
                let d = p.delay(n);
                assert!(d >= c / 2 && d <= c, "{n}: {d:?} vs {c:?}");
            }
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.delay(6)).collect();
        assert!(spread.len() > 10, "jitter varies");
        assert_eq!(p.ceiling(200), p.cap, "no overflow");
    }
}
