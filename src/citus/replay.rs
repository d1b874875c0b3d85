//! Replays of a carrier on a worker: the distributed transactions whose carrier this node
//! adopted and whose local part has ended (committed, prepared or aborted).
//!
//! Citus lets any role call `assign_distributed_transaction_id()`, so a role that connects to
//! a worker directly and read a carrier in `pg_stat_activity` could claim its transaction. The
//! local part of a distributed transaction ends only when the coordinator finishes it, after
//! which no further connection of it arrives; so a carrier of an ended transaction is a
//! replay. The node remembers the last `ENDED` such transactions in shared memory (needs
//! `shared_preload_libraries`), each with the time it ended. When the ring overwrites an entry
//! it keeps that time as a watermark: a carrier issued before it may belong to a transaction
//! the node no longer remembers, and is refused.

use super::ffi::DistributedTransactionId;
use pgrx::lwlock::PgLwLock;
use pgrx::{pg_guard, pg_shmem_init, pg_sys, PGRXSharedMemory};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many ended transactions a node remembers (32 bytes each).
const ENDED: usize = 16384;

type Key = (u64, i64, i32);

#[derive(Clone, Copy)]
pub struct Ended {
    /// (transaction number, timestamp, initiator), a ring; zero numbers are empty.
    entries: [Key; ENDED],
    /// When each entry's transaction ended here (unix seconds).
    ended_at: [i64; ENDED],
    next: usize,
    /// The latest end time the ring has forgotten (unix seconds).
    forgotten_up_to: i64,
}

impl Default for Ended {
    fn default() -> Self {
        Ended {
            entries: [(0, 0, 0); ENDED],
            ended_at: [0; ENDED],
            next: 0,
            forgotten_up_to: 0,
        }
    }
}

unsafe impl PGRXSharedMemory for Ended {}

static ENDED_TRANSACTIONS: PgLwLock<Ended> =
    unsafe { PgLwLock::new(c"tenant_guard_ended_transactions") };
static READY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The distributed transaction whose carrier this backend adopted, until its local part ends.
    static ADOPTED: Cell<Option<Key>> = const { Cell::new(None) };
}

/// From `_PG_init`, while `shared_preload_libraries` loads the library.
pub fn init() {
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(ENDED_TRANSACTIONS);
        READY.store(true, Ordering::Release);
    }
}

fn key(id: &DistributedTransactionId) -> Key {
    (
        id.transaction_number,
        id.timestamp,
        id.initiator_node_identifier,
    )
}

/// Whether a carrier of `id` issued at `issued_at` must be refused as a replay: its
/// transaction has ended on this node, or may have and was forgotten (or this node cannot
/// tell: the library is not preloaded).
pub fn ended(id: &DistributedTransactionId, issued_at: i64) -> bool {
    if !READY.load(Ordering::Acquire) {
        return true;
    }
    let key = key(id);
    let ended = ENDED_TRANSACTIONS.share();
    issued_at <= ended.forgotten_up_to || ended.entries.contains(&key)
}

/// A carrier of `id` was adopted: its transaction ends here with this backend's.
pub fn adopted(id: &DistributedTransactionId) {
    ADOPTED.set(Some(key(id)));
}

/// At the end of the backend's transaction (`now`, unix seconds): the adopted transaction has
/// ended here.
pub fn end_of_transaction(now: i64) {
    if let Some(key) = ADOPTED.take() {
        let mut ended = ENDED_TRANSACTIONS.exclusive();
        let next = ended.next;
        if ended.entries[next].0 != 0 {
            ended.forgotten_up_to = ended.forgotten_up_to.max(ended.ended_at[next]);
        }
        ended.entries[next] = key;
        ended.ended_at[next] = now;
        ended.next = (next + 1) % ENDED;
    }
}
