//! A condition variable that makes a system call only when a thread waits.
//!
//! std's `Condvar` makes every notify a futex call, waiter or not. Where a
//! signal is sent far more often than anyone waits (a restore releases its
//! queue's budget and drops a read-ahead plan for every file), [`Signal`]
//! counts its waiters and stays quiet without them.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, MutexGuard};

#[derive(Default)]
pub(crate) struct Signal {
    cv: Condvar,
    /// Threads in [`Signal::wait`].
    waiting: AtomicUsize,
}

impl Signal {
    /// Wait on `guard`'s mutex, as `Condvar::wait`. The waiter is counted
    /// while it holds the mutex, so a notify made after changing the state
    /// under that mutex (with it held or just after) sees it.
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.waiting.fetch_add(1, SeqCst);
        let guard = self.cv.wait(guard).unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_sub(1, SeqCst);
        guard
    }

    /// Wake every waiter, if there is any.
    pub(crate) fn notify_all(&self) {
        if self.waiting.load(SeqCst) > 0 {
            self.cv.notify_all();
        }
    }

    /// Wake one waiter, if there is any.
    pub(crate) fn notify_one(&self) {
        if self.waiting.load(SeqCst) > 0 {
            self.cv.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Producers and consumers passing 20,000 items one at a time through
    /// a slot: a lost wakeup leaves a thread waiting for good, which the
    /// test finds by its deadline.
    #[test]
    fn no_wakeup_is_lost() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let slot: Mutex<(Option<u32>, u32)> = Mutex::new((None, 0));
            let (filled, emptied) = (Signal::default(), Signal::default());
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for i in 0..10_000 {
                            let mut g = slot.lock().unwrap();
                            while g.0.is_some() {
                                g = emptied.wait(g);
                            }
                            g.0 = Some(i);
                            drop(g);
                            filled.notify_one();
                        }
                    });
                }
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..10_000 {
                            let mut g = slot.lock().unwrap();
                            while g.0.is_none() {
                                g = filled.wait(g);
                            }
                            g.0 = None;
                            g.1 += 1;
                            drop(g);
                            emptied.notify_one();
                        }
                    });
                }
            });
            let _ = done.send((slot.into_inner().unwrap(), filled.waiting.into_inner()));
        });
        let got = finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a wakeup was lost: threads still waiting after 30 s");
        assert_eq!(got, ((None, 20_000), 0));
    }
}
