//! The lock of a connection's outbox: taken with one atomic read-modify-write and released
//! with a plain store.
//!
//! A message sent to a remote port is encoded into its connection's outbox with this lock
//! held, so the lock is taken and released once per message. The usual kind of lock
//! (`parking_lot`'s) needs an atomic read-modify-write to release it too, to learn whether a
//! thread sleeps on it, and each such instruction waits until every store before it has
//! left the processor's store buffer. Taken after a message was built and released after it
//! was encoded, those two instructions were 88% of `ConnTx::encode`'s samples in R1's sender
//! (`perf annotate`), about a tenth of both processes' CPU time.
//!
//! Nothing sleeps on this lock, so its release is a plain store. It is held briefly: by the
//! writer to swap buffers, by a sender while one message is encoded (large strings are
//! moved, not copied). A thread that finds it taken spins a little, then yields its time
//! slice (the holder may have been preempted), then sleeps a little between tries (a long
//! message is being encoded): a waiter never burns a core for long.

use std::time::Duration;

/// Tries spent spinning, then yielding, before a waiter sleeps between tries.
const SPINS: u32 = 64;
const YIELDS: u32 = 64;
/// A waiter's sleep between tries once it has spun and yielded.
const NAP: Duration = Duration::from_micros(50);

/// A lock around `T` (see the module docs).
pub(crate) struct OutboxLock<T>(spin::mutex::SpinMutex<T>);

/// Access to what an [`OutboxLock`] guards, until dropped.
pub(crate) type OutboxGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T>;

impl<T> OutboxLock<T> {
    pub(crate) fn new(value: T) -> OutboxLock<T> {
        OutboxLock(spin::mutex::SpinMutex::new(value))
    }

    /// Takes the lock, waiting as the module docs say when it is taken.
    #[inline]
    pub(crate) fn lock(&self) -> OutboxGuard<'_, T> {
        match self.0.try_lock() {
            Some(guard) => guard,
            None => self.lock_contended(),
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) -> OutboxGuard<'_, T> {
        let mut tries = 0u32;
        loop {
            if !self.0.is_locked() {
                if let Some(guard) = self.0.try_lock() {
                    return guard;
                }
            }
            tries = tries.saturating_add(1);
            if tries < SPINS {
                std::hint::spin_loop();
            } else if tries < SPINS + YIELDS {
                std::thread::yield_now();
            } else {
                std::thread::sleep(NAP);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Four threads add to one counter under the lock, a read and a write apart (no atomic
    /// addition): none of the additions is lost.
    #[test]
    fn excludes() {
        let lock = Arc::new(OutboxLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        let mut g = lock.lock();
                        let v = *g;
                        std::hint::black_box(&mut *g);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 200_000);
    }

    /// A waiter gets the lock after a long hold (through all three ways of waiting).
    #[test]
    fn a_waiter_gets_the_lock_after_a_long_hold() {
        let lock = Arc::new(OutboxLock::new(Vec::new()));
        let held = lock.lock();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || lock.lock().push("waiter"))
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        waiter.join().unwrap();
        assert_eq!(*lock.lock(), ["waiter"]);
    }
}
