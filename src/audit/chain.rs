//! The per-tenant hash chain (`tenant_guard.audit_hash_chain = on`) and its verification.
//!
//! Each chained audit row carries `chain_seq` (1, 2, ... per tenant), `chain_prev` (the previous
//! row's hash, 32 zero bytes for the first) and `chain_hash = sha256(chain_prev || seq as 8
//! big-endian bytes || digest)`, where the digest is `tenant_guard.audit_digest(...)` over the
//! row's content. The head of each chain lives in `tenant_guard.audit_chain_heads`; a writer
//! locks the head rows of its tenants (in key order) until it commits, so concurrent writers of
//! one tenant append one after the other and the chain never forks.

use super::statements::{AuditedTable, Op};
use super::trigger::{prepare, Parameters};
use crate::catalog;
use crate::error::{self, Result};
use pgrx::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const GENESIS: [u8; 32] = [0; 32];

fn link(prev: &[u8], seq: i64, digest: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(seq.to_be_bytes());
    hasher.update(digest);
    hasher.finalize().to_vec()
}

/// One row of the digest query: position in the statement, chain key, digest.
struct Pending {
    position: i64,
    key: String,
    digest: Vec<u8>,
}

unsafe fn bytes_of(datum: pg_sys::Datum) -> Vec<u8> {
    let varlena = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
    pgrx::varlena::varlena_to_byte_slice(varlena).to_vec()
}

/// Read the digest query's result (SPI_tuptable) into memory.
unsafe fn pending_rows() -> Vec<Pending> {
    let table = pg_sys::SPI_tuptable;
    let count = pg_sys::SPI_processed as usize;
    let mut rows = Vec::with_capacity(count);
    for i in 0..count {
        let tuple = *(*table).vals.add(i);
        let mut isnull = false;
        let position = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, 1, &mut isnull);
        let key = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, 2, &mut isnull);
        let key = String::from_datum(key, isnull).unwrap_or_default();
        let digest = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, 3, &mut isnull);
        rows.push(Pending {
            position: position.value() as i64,
            key,
            digest: bytes_of(digest),
        });
    }
    rows
}

/// Lock the head of each tenant chain this statement appends to, in key order (so that two
/// writers never wait on each other crosswise within one statement), and read it.
fn lock_heads(keys: impl Iterator<Item = String>) -> BTreeMap<String, (i64, Vec<u8>)> {
    let mut heads = BTreeMap::new();
    for key in keys {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.audit_chain_heads (tenant_id, last_seq, last_hash)
             VALUES ($1, 0, $2) ON CONFLICT (tenant_id) DO NOTHING",
            &[key.as_str().into(), GENESIS.to_vec().into()],
        )
        .unwrap_or_else(|e| error::raise(error::internal(e)));
        let head = catalog::select_row(
            "SELECT last_seq, last_hash FROM tenant_guard.audit_chain_heads
              WHERE tenant_id = $1 FOR UPDATE",
            &[key.as_str().into()],
            |row| {
                Ok((
                    row.get::<i64>(1)?.unwrap_or(0),
                    row.get::<Vec<u8>>(2)?.unwrap_or_default(),
                ))
            },
        )
        .unwrap_or((0, GENESIS.to_vec()));
        heads.insert(key, head);
    }
    heads
}

/// Prepare the two chained statements of a table and operation: the digests, then the insert.
pub fn prepare_statements(
    table: &AuditedTable,
    op: Op,
) -> (pg_sys::SPIPlanPtr, pg_sys::SPIPlanPtr) {
    let digests = prepare(&table.chain_digests(op), &[]);
    let arrays = [
        pg_sys::INT8ARRAYOID,
        pg_sys::INT8ARRAYOID,
        pg_sys::BYTEAARRAYOID,
        pg_sys::BYTEAARRAYOID,
    ];
    (digests, prepare(&table.chain_insert(op), &arrays))
}

/// Write one statement's audit rows with their chain links. Runs inside the trigger's SPI
/// connection (transition tables registered), as the extension owner. Returns SPI's status.
pub fn write(
    (digests, insert): (pg_sys::SPIPlanPtr, pg_sys::SPIPlanPtr),
    parameters: &mut Parameters,
) -> i32 {
    let status = parameters.execute(digests);
    if status < 0 {
        return status;
    }
    let rows = unsafe { pending_rows() };
    if rows.is_empty() {
        return status;
    }
    let mut heads = lock_heads(
        rows.iter()
            .map(|r| r.key.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter(),
    );

    let (mut positions, mut seqs, mut prevs, mut hashes) = (vec![], vec![], vec![], vec![]);
    for row in &rows {
        let (last_seq, last_hash) = heads.get_mut(&row.key).expect("locked above");
        let seq = *last_seq + 1;
        let hash = link(last_hash, seq, &row.digest);
        positions.push(row.position);
        seqs.push(seq);
        prevs.push(std::mem::replace(last_hash, hash.clone()));
        hashes.push(hash);
        *last_seq = seq;
    }
    parameters.push(positions.into_datum());
    parameters.push(seqs.into_datum());
    parameters.push(prevs.into_datum());
    parameters.push(hashes.into_datum());
    let status = parameters.execute(insert);

    for (key, (last_seq, last_hash)) in heads {
        Spi::run_with_args(
            "UPDATE tenant_guard.audit_chain_heads SET last_seq = $2, last_hash = $3 WHERE tenant_id = $1",
            &[key.as_str().into(), last_seq.into(), last_hash.into()],
        )
        .unwrap_or_else(|e| error::raise(error::internal(e)));
    }
    status
}

/// The first broken link of a chain: the audit row (if one is to blame), its position, what is
/// wrong.
type BrokenLink = (Option<i64>, Option<i64>, String);

/// A chained audit row as verification reads it.
struct ChainedRow {
    id: i64,
    seq: i64,
    prev: Vec<u8>,
    hash: Vec<u8>,
    digest: Vec<u8>,
}

/// Verify a tenant's audit chain (NULL: the rows without a tenant). Returns the first broken
/// link, or no row when the chain is intact.
// pgrx needs the name!() columns spelled out in the signature.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn verify_audit_chain(
    tenant_id: Option<&str>,
) -> Result<
    TableIterator<
        'static,
        (
            name!(audit_id, Option<i64>),
            name!(chain_seq, Option<i64>),
            name!(problem, String),
        ),
    >,
> {
    let key = tenant_id.unwrap_or("").to_string();
    let broken = catalog::as_extension_owner(|| first_broken_link(&key))?;
    Ok(TableIterator::new(broken))
}

fn first_broken_link(key: &str) -> Result<Option<BrokenLink>> {
    let rows: Vec<ChainedRow> = Spi::connect(|client| {
        client
            .select(
                "SELECT id, chain_seq, chain_prev, chain_hash,
                        tenant_guard.audit_digest(occurred_at, txid, tenant_id, user_id, tenant_role,
                                                  trace_id, db_role, schema_name, table_name,
                                                  table_oid, op, pk, old_row, new_row)
                   FROM tenant_guard.audit_log
                  WHERE COALESCE(tenant_id, '') = $1 AND chain_seq IS NOT NULL
                  ORDER BY chain_seq, id",
                None,
                &[key.into()],
            )?
            .map(|row| {
                Ok(ChainedRow {
                    id: row.get::<i64>(1)?.unwrap_or(0),
                    seq: row.get::<i64>(2)?.unwrap_or(0),
                    prev: row.get::<Vec<u8>>(3)?.unwrap_or_default(),
                    hash: row.get::<Vec<u8>>(4)?.unwrap_or_default(),
                    digest: row.get::<Vec<u8>>(5)?.unwrap_or_default(),
                })
            })
            .collect::<pgrx::spi::SpiResult<Vec<_>>>()
    })
    .map_err(error::internal)?;

    let mut expected = 1i64;
    let mut prev = GENESIS.to_vec();
    for ChainedRow {
        id,
        seq,
        prev: chain_prev,
        hash: chain_hash,
        digest,
    } in rows
    {
        let problem = if seq < expected {
            Some(format!(
                "sequence number {seq} repeats or goes back: a row was inserted out of order"
            ))
        } else if seq == expected + 1 {
            Some(format!("row {expected} of the chain is missing: deleted"))
        } else if seq > expected {
            Some(format!(
                "rows {expected} to {} of the chain are missing: deleted",
                seq - 1
            ))
        } else if chain_prev != prev {
            Some(
                "it does not link to the previous row: rows were reordered or replaced".to_string(),
            )
        } else if link(&prev, seq, &digest) != chain_hash {
            Some("its content does not match its hash: the row was altered".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Ok(Some((Some(id), Some(seq), problem)));
        }
        prev = chain_hash;
        expected += 1;
    }
    let head = catalog::select_row(
        "SELECT last_seq, last_hash FROM tenant_guard.audit_chain_heads WHERE tenant_id = $1",
        &[key.into()],
        |row| {
            Ok((
                row.get::<i64>(1)?.unwrap_or(0),
                row.get::<Vec<u8>>(2)?.unwrap_or_default(),
            ))
        },
    );
    match head {
        Some((last_seq, last_hash)) if last_seq != expected - 1 || last_hash != prev => Ok(Some((
            None,
            Some(expected),
            format!(
                "the chain ends at {} but its head is at {last_seq}: rows at the end were deleted",
                expected - 1
            ),
        ))),
        _ => Ok(None),
    }
}
