//! A bounded work queue whose jobs make more jobs: directories yield their
//! subdirectories and files. It is done when it is empty and no job is
//! running. When it is full, the submitter runs the job itself, which bounds
//! memory and open directory descriptors without a deadlock.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

pub(super) struct Queue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    limit: usize,
}

struct State<T> {
    jobs: VecDeque<T>,
    /// Jobs queued or running.
    open: usize,
}

impl<T> Queue<T> {
    pub fn new(limit: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                open: 0,
            }),
            ready: Condvar::new(),
            limit: limit.max(1),
        }
    }

    /// Queue `job`, or hand it back when the queue is full.
    pub fn offer(&self, job: T) -> Option<T> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.jobs.len() >= self.limit {
            return Some(job);
        }
        s.jobs.push_back(job);
        s.open += 1;
        self.ready.notify_one();
        None
    }

    /// The next job; `None` once every job has finished and none is queued.
    /// Call [`Queue::finished`] after running it.
    pub fn next(&self) -> Option<T> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = s.jobs.pop_front() {
                return Some(job);
            }
            if s.open == 0 {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A producer outside the workers (a walk handing out jobs): the queue
    /// is not done while the returned guard lives.
    pub fn hold(&self) -> Hold<'_, T> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).open += 1;
        Hold(self)
    }

    /// A job taken with [`Queue::next`] is done (and has queued what it made).
    pub fn finished(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.open -= 1;
        if s.open == 0 {
            self.ready.notify_all();
        }
    }
}

/// See [`Queue::hold`].
pub(super) struct Hold<'q, T>(&'q Queue<T>);

impl<T> Drop for Hold<'_, T> {
    fn drop(&mut self) {
        self.0.finished();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    /// A job `n` makes jobs `n-1` and `n-2` (a Fibonacci tree): every job runs
    /// once, whether queued or run by its submitter, and the workers end.
    #[test]
    fn jobs_that_make_jobs_all_run_and_the_workers_end() {
        fn run(n: u64, q: &Queue<u64>, count: &AtomicU64) {
            count.fetch_add(1, Relaxed);
            if n < 2 {
                return;
            }
            for m in [n - 1, n - 2] {
                if let Some(m) = q.offer(m) {
                    run(m, q, count);
                }
            }
        }
        for limit in [1, 3, 1000] {
            let q = Queue::new(limit);
            let count = AtomicU64::new(0);
            assert!(q.offer(15).is_none());
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        while let Some(n) = q.next() {
                            run(n, &q, &count);
                            q.finished();
                        }
                    });
                }
            });
            // Nodes of the call tree of fib-like recursion from 15 (n=0,1 are leaves).
            fn nodes(n: u64) -> u64 {
                if n < 2 {
                    1
                } else {
                    1 + nodes(n - 1) + nodes(n - 2)
                }
            }
            assert_eq!(count.load(Relaxed), nodes(15), "limit {limit}");
        }
    }
}
