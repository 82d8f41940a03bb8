//! The pool's bookkeeping, apart from PostgreSQL: how many connections are open, the idle
//! ones, and who holds the rest. A connection lent out ([`Lent`]) comes back by
//! [`Lent::give_back`] or [`Lent::discard`]; one its caller drops instead (unwinding from a
//! panic, which `follow.rs` and `store::call` catch on purpose) is closed and no longer
//! counted, so a panic never keeps a slot no one holds.
//!
//! Writes may hold only some of the connections: each waits for the registry's write lock
//! while holding its connection, as long as another server's bulk write holds the lock, and
//! the reads (the read model's follower above all) must still find one.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::store::error::StoreError;

/// What a caller takes a connection for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Reads: short, never waiting for another server's transaction.
    Read,
    /// A write transaction, which first waits for the registry's write lock (`locks.rs`), for
    /// as long as another server's bulk write holds it.
    Write,
}

/// The limit a caller waited on in vain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortage {
    /// Every connection was lent out.
    Connections,
    /// The connections writes may hold were all lent out to writes.
    Writers,
}

/// Why [`Slots::take`] gave no connection.
#[derive(Debug)]
pub enum Refusal {
    /// None came free within the wait.
    Busy(Shortage),
    /// Opening a new one failed.
    Open(StoreError),
}

struct State<T> {
    idle: Vec<T>,
    /// Open now, idle or lent out.
    open: usize,
    /// Lent out to writes.
    writers: usize,
}

/// At most `max` connections of type `T`, of which writes hold at most `max_writers`.
pub struct Slots<T> {
    state: Mutex<State<T>>,
    freed: Condvar,
    max: usize,
    max_writers: usize,
}

impl<T> Slots<T> {
    pub fn new(max: usize, max_writers: usize) -> Self {
        Self {
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                writers: 0,
            }),
            freed: Condvar::new(),
            max,
            max_writers,
        }
    }

    /// The bookkeeping; it stays consistent across a panicking caller (no update spans a
    /// call that may panic), so a poisoned lock is recovered.
    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection that is still `usable`, a new one from `open` when fewer than `max`
    /// are open, else the first one given back within `wait`. A write also waits while
    /// `max_writers` are lent to writes.
    pub fn take(
        &self,
        purpose: Use,
        wait: Duration,
        usable: impl Fn(&T) -> bool,
        open: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<Lent<'_, T>, Refusal> {
        let deadline = Instant::now() + wait;
        let writer = purpose == Use::Write;
        let mut state = self.state();
        loop {
            let shortage = if writer && state.writers >= self.max_writers {
                Shortage::Writers
            } else if let Some(item) = state.idle.pop() {
                if !usable(&item) {
                    state.open = state.open.saturating_sub(1);
                    drop(state);
                    drop(item);
                    state = self.state();
                    continue;
                }
                state.writers += usize::from(writer);
                return Ok(Lent {
                    item,
                    claim: self.claim(writer),
                });
            } else if state.open < self.max {
                state.open += 1;
                state.writers += usize::from(writer);
                drop(state);
                // Counted from here: a failed (or panicking) open gives the slot back.
                let claim = self.claim(writer);
                let item = open().map_err(Refusal::Open)?;
                return Ok(Lent { item, claim });
            } else {
                Shortage::Connections
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(Refusal::Busy(shortage));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn claim(&self, writer: bool) -> Claim<'_, T> {
        Claim {
            slots: self,
            writer,
            settled: false,
        }
    }

    /// Every waiter checks again: a freed connection may let a reader in and not a writer.
    fn notify(&self) {
        self.freed.notify_all();
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let state = self.state();
        (state.open, state.idle.len(), state.writers)
    }
}

/// A lent connection's place in the count; given up when dropped unsettled.
struct Claim<'a, T> {
    slots: &'a Slots<T>,
    writer: bool,
    settled: bool,
}

impl<T> Claim<'_, T> {
    fn give_back(&mut self, item: T) {
        let mut state = self.slots.state();
        state.idle.push(item);
        state.writers = state.writers.saturating_sub(usize::from(self.writer));
        drop(state);
        self.settled = true;
        self.slots.notify();
    }

    fn discard(&mut self, item: T) {
        drop(item);
        let mut state = self.slots.state();
        let idle = std::mem::take(&mut state.idle);
        state.open = state.open.saturating_sub(1 + idle.len());
        state.writers = state.writers.saturating_sub(usize::from(self.writer));
        drop(state);
        drop(idle);
        self.settled = true;
        self.slots.notify();
    }
}

impl<T> Drop for Claim<'_, T> {
    /// A connection neither given back nor discarded (its opening failed, or its caller
    /// panicked): closed by now, it no longer counts.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut state = self.slots.state();
        state.open = state.open.saturating_sub(1);
        state.writers = state.writers.saturating_sub(usize::from(self.writer));
        drop(state);
        self.slots.notify();
    }
}

/// A connection lent out: give it back, discard it, or drop it (closed, no longer counted).
pub struct Lent<'a, T> {
    // Dropped first: the connection is closed before its slot is freed.
    item: T,
    claim: Claim<'a, T>,
}

impl<T> Lent<'_, T> {
    /// Returns a healthy connection for the next caller.
    pub fn give_back(self) {
        let Lent { item, mut claim } = self;
        claim.give_back(item);
    }

    /// Closes a broken connection, and every idle one with it: when one connection broke the
    /// server most likely restarted, and the others are just as dead.
    pub fn discard(self) {
        let Lent { item, mut claim } = self;
        claim.discard(item);
    }
}

impl<T> Deref for Lent<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T> DerefMut for Lent<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.item
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;

    const MAX: usize = 3;
    const SHORT: Duration = Duration::from_millis(50);

    fn take(slots: &Slots<u32>, purpose: Use) -> Result<Lent<'_, u32>, Refusal> {
        slots.take(purpose, SHORT, |_| true, || Ok(7))
    }

    #[test]
    fn a_caller_that_panics_holding_a_connection_frees_its_slot() {
        let slots = Slots::new(MAX, MAX - 1);
        for purpose in [Use::Read, Use::Write] {
            for _ in 0..=MAX {
                let panicked = catch_unwind(AssertUnwindSafe(|| {
                    let _conn = take(&slots, purpose).unwrap();
                    panic!("a caller bug mid-transaction")
                }));
                assert!(panicked.is_err());
            }
        }
        assert_eq!(slots.counts(), (0, 0, 0));
        let started = Instant::now();
        let held: Vec<_> = (0..MAX).map(|_| take(&slots, Use::Read).unwrap()).collect();
        assert!(started.elapsed() < SHORT, "{:?}", started.elapsed());
        assert!(matches!(
            take(&slots, Use::Read),
            Err(Refusal::Busy(Shortage::Connections))
        ));
        drop(held);
        assert_eq!(slots.counts(), (0, 0, 0));
    }

    #[test]
    fn given_back_connections_are_reused_and_discarded_ones_close_the_idle() {
        let slots = Slots::new(MAX, MAX - 1);
        let opened = std::cell::Cell::new(0);
        let open = || {
            opened.set(opened.get() + 1);
            Ok(opened.get())
        };
        let first = slots.take(Use::Read, SHORT, |_| true, open).unwrap();
        let second = slots.take(Use::Write, SHORT, |_| true, open).unwrap();
        assert_eq!(slots.counts(), (2, 0, 1));
        first.give_back();
        second.give_back();
        assert_eq!(slots.counts(), (2, 2, 0));
        let again = slots.take(Use::Write, SHORT, |_| true, open).unwrap();
        assert_eq!(opened.get(), 2, "an idle connection is reused");
        assert_eq!(slots.counts(), (2, 1, 1));
        again.discard();
        assert_eq!(slots.counts(), (0, 0, 0));
        // An idle connection found closed is not lent.
        slots
            .take(Use::Read, SHORT, |_| true, open)
            .unwrap()
            .give_back();
        let fresh = slots.take(Use::Read, SHORT, |_| false, open).unwrap();
        assert_eq!(*fresh, 4);
        assert_eq!(slots.counts(), (1, 0, 0));
    }

    #[test]
    fn a_failed_open_frees_its_slot() {
        let slots: Slots<u32> = Slots::new(1, 1);
        for _ in 0..2 {
            let refused = slots.take(
                Use::Read,
                SHORT,
                |_| true,
                || Err(StoreError::Backend("down".to_owned())),
            );
            assert!(matches!(refused, Err(Refusal::Open(_))));
        }
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            let _ = slots.take(Use::Read, SHORT, |_| true, || panic!("connect bug"));
        }));
        assert!(panicked.is_err());
        assert_eq!(slots.counts(), (0, 0, 0));
        assert!(take(&slots, Use::Read).is_ok());
    }

    #[test]
    fn writes_waiting_for_the_lock_leave_a_connection_to_reads() {
        let slots = Slots::new(MAX, MAX - 1);
        let writes: Vec<_> = (0..MAX - 1)
            .map(|_| take(&slots, Use::Write).unwrap())
            .collect();
        let started = Instant::now();
        assert!(matches!(
            take(&slots, Use::Write),
            Err(Refusal::Busy(Shortage::Writers))
        ));
        assert!(started.elapsed() >= SHORT);
        let read = take(&slots, Use::Read).unwrap();
        assert!(matches!(
            take(&slots, Use::Read),
            Err(Refusal::Busy(Shortage::Connections))
        ));
        read.give_back();
        // A write given back lets the next one in, on the idle connection.
        let mut writes = writes.into_iter();
        writes.next().unwrap().give_back();
        let next = take(&slots, Use::Write).unwrap();
        assert_eq!(slots.counts(), (MAX, 1, MAX - 1));
        drop((next, writes));
        assert_eq!(slots.counts(), (1, 1, 0));
    }

    #[test]
    fn a_waiting_writer_gets_the_slot_a_write_gives_back() {
        let slots = Slots::new(MAX, 1);
        let write = take(&slots, Use::Write).unwrap();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                slots
                    .take(Use::Write, Duration::from_secs(5), |_| true, || Ok(8))
                    .map(|lent| *lent)
            });
            std::thread::sleep(SHORT);
            write.give_back();
            assert_eq!(waiter.join().unwrap().unwrap(), 7);
        });
    }
}
