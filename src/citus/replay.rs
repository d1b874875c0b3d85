//! Replays of a carrier on a worker: the distributed transactions whose carrier this node
//! adopted and whose local part has ended (committed, prepared or aborted).
//!
//! Citus lets any role call `assign_distributed_transaction_id()`, so a role that connects to
//! a worker directly and read a carrier in `pg_stat_activity` could claim its transaction. The
//! local part of a distributed transaction ends only when the coordinator finishes it, after
//! which no further connection of it arrives; so a carrier of an ended transaction is a
//! replay. The node remembers the last `ENDED` such transactions in shared memory (needs
//! `shared_preload_libraries`); older ones are covered by `tenant_guard.carrier_max_age`
//! (a carrier is refused once older than that anyway).

use super::ffi::DistributedTransactionId;
use pgrx::lwlock::PgLwLock;
use pgrx::{pg_guard, pg_shmem_init, pg_sys, PGRXSharedMemory};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many ended transactions a node remembers (16 bytes each).
const ENDED: usize = 16384;

#[derive(Clone, Copy)]
pub struct Ended {
    /// (transaction number, timestamp, initiator), a ring; zero numbers are empty.
    entries: [(u64, i64, i32); ENDED],
    next: usize,
}

impl Default for Ended {
    fn default() -> Self {
        Ended {
            entries: [(0, 0, 0); ENDED],
            next: 0,
        }
    }
}

unsafe impl PGRXSharedMemory for Ended {}

static ENDED_TRANSACTIONS: PgLwLock<Ended> =
    unsafe { PgLwLock::new(c"tenant_guard_ended_transactions") };
static READY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The distributed transaction whose carrier this backend adopted, until its local part ends.
    static ADOPTED: Cell<Option<(u64, i64, i32)>> = const { Cell::new(None) };
}

/// From `_PG_init`, while `shared_preload_libraries` loads the library.
pub fn init() {
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(ENDED_TRANSACTIONS);
        READY.store(true, Ordering::Release);
    }
}

fn key(id: &DistributedTransactionId) -> (u64, i64, i32) {
    (
        id.transaction_number,
        id.timestamp,
        id.initiator_node_identifier,
    )
}

/// Whether a carrier of `id` may be adopted: not when its transaction has ended on this node
/// (nor when this node cannot tell: the library is not preloaded).
pub fn admit(id: &DistributedTransactionId) -> bool {
    if !READY.load(Ordering::Acquire) {
        return false;
    }
    let key = key(id);
    let ended = ENDED_TRANSACTIONS.share().entries.contains(&key);
    if !ended {
        ADOPTED.set(Some(key));
    }
    !ended
}

/// At the end of the backend's transaction: the adopted transaction has ended here.
pub fn end_of_transaction() {
    if let Some(key) = ADOPTED.take() {
        let mut ended = ENDED_TRANSACTIONS.exclusive();
        let next = ended.next;
        ended.entries[next] = key;
        ended.next = (next + 1) % ENDED;
    }
}
