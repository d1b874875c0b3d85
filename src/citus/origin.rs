//! Where a carrier comes from: the coordinator backend that issued it, still in the transaction
//! it was issued for, and the very connection the worker serves.
//!
//! A carrier is text in the commands Citus sends. The role it was sent for can read it
//! (`pg_stat_activity` on a worker, `citus_stat_activity`) and claim its distributed transaction
//! on a worker connection of its own: `assign_distributed_transaction_id()` is open to every
//! role, and the connection can be direct or one of Citus's `run_command_on_*`. While the
//! transaction is open, or on a worker it never touched, the MAC and the transaction id cannot
//! tell such a replay from the real thing. So a worker adopts a carrier only when the
//! coordinator confirms both of these, over a connection of the worker's own (`libpq`):
//!
//! - the backend that issued it (pid and slot, signed in the carrier) is still in that
//!   transaction: it holds the carrier's random nonce in shared memory until the transaction
//!   ends, here;
//! - the worker's connection is one of that backend's: the TCP connection whose ends are the
//!   worker's peer and local addresses is a socket of that process (`sockets`, asking the
//!   coordinator's kernel). A session cannot make its own connection a socket of another backend.
//!
//! A connection that is not TCP, or that goes through a pooler or NAT between the nodes, is
//! never confirmed: it fails closed.

use crate::error::{self, Result};
use pgrx::lwlock::PgLwLock;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

/// Backends of the coordinator that can issue carriers at once (by backend id).
const SLOTS: usize = 8192;

/// What a carrier names as its origin (signed with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub pid: i32,
    pub slot: i32,
    pub nonce: [u8; 16],
}

impl Origin {
    pub fn nonce_hex(&self) -> String {
        self.nonce.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn nonce_from_hex(hex: &str) -> Option<[u8; 16]> {
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut nonce = [0u8; 16];
        for (i, byte) in nonce.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(nonce)
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Issuer {
    pid: i32,
    nonce: [u8; 16],
}

#[derive(Clone, Copy)]
pub struct Issuers {
    slots: [Issuer; SLOTS],
}

impl Default for Issuers {
    fn default() -> Self {
        Issuers {
            slots: [Issuer::default(); SLOTS],
        }
    }
}

unsafe impl PGRXSharedMemory for Issuers {}

static ISSUERS: PgLwLock<Issuers> = unsafe { PgLwLock::new(c"tenant_guard_carrier_issuers") };
static READY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The origin this backend put into its carriers in the current transaction.
    static ISSUED: Cell<Option<Origin>> = const { Cell::new(None) };
}

/// From `_PG_init`, while `shared_preload_libraries` loads the library.
pub fn init() {
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(ISSUERS);
        READY.store(true, Ordering::Release);
    }
}

/// Coordinator side: this transaction's origin, published in shared memory until it ends.
pub fn of_this_transaction() -> Result<Origin> {
    if let Some(origin) = ISSUED.get() {
        return Ok(origin);
    }
    if !READY.load(Ordering::Acquire) {
        return Err(error::invalid_state(
            "tenant_guard: the coordinator cannot vouch for its carriers",
            "Add tenant_guard to shared_preload_libraries on every node of the Citus cluster \
             and restart.",
        ));
    }
    let slot = unsafe { pg_sys::MyBackendId };
    if slot < 1 || slot as usize > SLOTS {
        return Err(error::invalid_state(
            format!("tenant_guard: backend {slot} is beyond the {SLOTS} that can issue carriers"),
            "Lower max_connections on the coordinator, or put a connection pooler in front of it.",
        ));
    }
    let mut nonce = [0u8; 16];
    if !unsafe { pg_sys::pg_strong_random(nonce.as_mut_ptr().cast(), nonce.len()) } {
        return Err(error::internal(
            "tenant_guard: no random bytes for a carrier",
        ));
    }
    let origin = Origin {
        pid: unsafe { pg_sys::MyProcPid },
        slot,
        nonce,
    };
    ISSUERS.exclusive().slots[slot as usize - 1] = Issuer {
        pid: origin.pid,
        nonce,
    };
    ISSUED.set(Some(origin));
    Ok(origin)
}

/// At the end of every transaction: this backend's carriers are no longer confirmed.
pub fn end_of_transaction() {
    if let Some(origin) = ISSUED.take() {
        let mut issuers = ISSUERS.exclusive();
        let slot = &mut issuers.slots[origin.slot as usize - 1];
        if slot.pid == origin.pid {
            *slot = Issuer::default();
        }
    }
}

/// Coordinator side, asked by a worker (see the module): whether the backend `pid` in `slot`
/// is still in the transaction that issued `nonce`, and owns the TCP connection from
/// `coordinator_address`:`coordinator_port` to `worker_address`:`worker_port`. Only ever
/// answers: any role may ask (a worker asks as the role its connection runs as), and the
/// answer says nothing a carrier's holder does not know.
#[pg_extern(volatile, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
pub fn confirm_carrier_origin(
    pid: i32,
    slot: i32,
    nonce: &str,
    coordinator_address: &str,
    coordinator_port: i32,
    worker_address: &str,
    worker_port: i32,
) -> bool {
    let Some(nonce) = Origin::nonce_from_hex(nonce) else {
        return false;
    };
    if !READY.load(Ordering::Acquire) || slot < 1 || slot as usize > SLOTS || pid <= 0 {
        return false;
    }
    let issuer = ISSUERS.share().slots[slot as usize - 1];
    if issuer != (Issuer { pid, nonce }) {
        return false;
    }
    // A slot left behind (a backend that died mid-transaction) never vouches for a later
    // process that got the same pid: the backend must be alive, in that slot.
    let proc = unsafe { pg_sys::BackendPidGetProc(pid) };
    if proc.is_null() || unsafe { (*proc).backendId } != slot {
        return false;
    }
    let (Some(local), Some(remote)) = (
        socket_address(coordinator_address, coordinator_port),
        socket_address(worker_address, worker_port),
    ) else {
        return false;
    };
    // The worker's end is the address this question comes from: the two ends it reports are
    // then those of a connection between this machine and that one (a loopback or private
    // address seen on another machine does not name a socket of this kernel).
    match this_connection() {
        Some((asker, _)) if asker.ip() == remote.ip() => {}
        _ => return false,
    }
    super::sockets::owns_connection(pid, local, remote)
}

/// A TCP connection's ends: (the peer's, this backend's).
type Ends = (SocketAddr, SocketAddr);

thread_local! {
    /// This backend's client connection, once read (None inside: not TCP).
    static CONNECTION: std::cell::Cell<Option<Option<Ends>>> = const { std::cell::Cell::new(None) };
}

/// This backend's TCP connection as the kernel sees it (None: not TCP).
fn this_connection() -> Option<Ends> {
    if let Some(ends) = CONNECTION.get() {
        return ends;
    }
    let ends = Spi::connect(|client| {
        let row = client
            .select(
                "SELECT pg_catalog.host(pg_catalog.inet_client_addr()), \
                        pg_catalog.inet_client_port(), \
                        pg_catalog.host(pg_catalog.inet_server_addr()), \
                        pg_catalog.inet_server_port()",
                Some(1),
                &[],
            )
            .ok()?
            .first();
        Some((
            socket_address(&row.get::<String>(1).ok()??, row.get::<i32>(2).ok()??)?,
            socket_address(&row.get::<String>(3).ok()??, row.get::<i32>(4).ok()??)?,
        ))
    });
    CONNECTION.set(Some(ends));
    ends
}

/// Worker side: whether the coordinator confirms `origin` for the connection this backend
/// serves (see the module); or why it could not be asked.
pub fn confirmed_by_coordinator(origin: &Origin) -> std::result::Result<bool, String> {
    let (coordinator, worker) = this_connection().ok_or("this is not a TCP connection")?;
    let question = format!(
        "SELECT tenant_guard.confirm_carrier_origin({}, {}, '{}', '{}', {}, '{}', {})",
        origin.pid,
        origin.slot,
        origin.nonce_hex(),
        coordinator.ip(),
        coordinator.port(),
        worker.ip(),
        worker.port(),
    );
    let question = std::ffi::CString::new(question).expect("no NUL byte");
    Ok(super::libpq::ask_coordinator(&question)?.as_deref() == Some("t"))
}

fn socket_address(address: &str, port: i32) -> Option<SocketAddr> {
    let address: IpAddr = address.parse().ok()?;
    Some(SocketAddr::new(
        canonical(address),
        u16::try_from(port).ok()?,
    ))
}

/// IPv4 addresses seen through an IPv6 socket are IPv4.
pub(super) fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn nonce_hex_round_trip() {
        let origin = Origin {
            pid: 1,
            slot: 1,
            nonce: *b"0123456789abcdef",
        };
        assert_eq!(
            Origin::nonce_from_hex(&origin.nonce_hex()),
            Some(origin.nonce)
        );
        for bad in [
            "",
            "00",
            &"g".repeat(32),
            &"0".repeat(33),
            "é".repeat(16).as_str(),
        ] {
            assert_eq!(Origin::nonce_from_hex(bad), None, "{bad}");
        }
    }
}
