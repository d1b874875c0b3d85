//! The per-tenant hash chain and its verification against an anchor kept outside the database.
//!
//! Every audit row of a chained table (`enable_tenant_audit(..., hash_chain => true)`, the
//! default) carries `chain_seq` (1, 2, ... per tenant), `chain_prev` (the previous row's hash,
//! 32 zero bytes for the first) and `chain_hash = sha256(chain_prev || seq as 8 big-endian
//! bytes || digest)`, where `digest` covers the row's content (see [`digest`]). Every writer of
//! a chained table chains, whatever its session: chaining is a property of the table's audit
//! settings, not of a setting a session can change.
//!
//! The head of each chain lives in `tenant_guard.audit_chain_heads`; a writer locks the head
//! rows of its tenants (in key order) until it commits, so concurrent writers of one tenant
//! append one after the other and the chain never forks.
//!
//! What a chain proves: `verify_audit_chain(tenant)` finds any row altered, deleted, reordered
//! or inserted out of order *by someone who did not recompute the chain*. Whoever can write the
//! log (a superuser) can recompute it, or delete the newest rows with the head: against them,
//! the operator exports `audit_chain_head(tenant)` (seq, hash) to storage the database cannot
//! write, and `verify_audit_chain(tenant, anchored_seq, anchored_hash)` then detects any
//! rewrite or truncation of the chain up to that anchor. Rows written after the newest anchor
//! are only as safe as the database.

use super::plans;
use super::trigger::{AuditRow, Statement};
use crate::error::{self, Result};
use crate::privilege;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

const GENESIS: [u8; 32] = [0; 32];
/// Versions the digest's encoding.
const DIGEST_DOMAIN: &[u8] = b"tenant_guard audit row v1\0";

/// What a row's digest covers: every column of the log but `id` and the chain itself.
pub struct Fields<'a> {
    /// Microseconds since 2000-01-01 (PostgreSQL's timestamptz).
    pub occurred_at: i64,
    pub txid: u64,
    pub tenant: Option<&'a str>,
    pub user: Option<&'a str>,
    pub role: Option<&'a str>,
    pub trace: Option<&'a str>,
    pub db_role: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
    pub table_oid: u32,
    pub op: &'a str,
    /// The jsonb values as PostgreSQL prints them (their canonical text).
    pub pk: Option<&'a str>,
    pub old: Option<&'a str>,
    pub new: Option<&'a str>,
}

/// SHA-256 over a fixed encoding of the fields: the domain string, `occurred_at` and `txid` as
/// 8 big-endian bytes, then each text field as 0x00 (NULL) or 0x01, its length as 8 big-endian
/// bytes and its UTF-8 bytes, in the order of [`Fields`], with `table_oid` as 4 big-endian bytes
/// in its place. Unambiguous (every field is framed) and independent of session settings.
pub fn digest(fields: &Fields) -> [u8; 32] {
    fn text(hasher: &mut Sha256, value: Option<&str>) {
        match value {
            None => hasher.update([0u8]),
            Some(value) => {
                hasher.update([1u8]);
                hasher.update((value.len() as u64).to_be_bytes());
                hasher.update(value.as_bytes());
            }
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(DIGEST_DOMAIN);
    hasher.update(fields.occurred_at.to_be_bytes());
    hasher.update(fields.txid.to_be_bytes());
    for value in [fields.tenant, fields.user, fields.role, fields.trace] {
        text(&mut hasher, value);
    }
    for value in [fields.db_role, fields.schema, fields.table] {
        text(&mut hasher, Some(value));
    }
    hasher.update(fields.table_oid.to_be_bytes());
    text(&mut hasher, Some(fields.op));
    for value in [fields.pk, fields.old, fields.new] {
        text(&mut hasher, value);
    }
    hasher.finalize().into()
}

fn link(prev: &[u8], seq: i64, digest: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(seq.to_be_bytes());
    hasher.update(digest);
    hasher.finalize().into()
}

/// A row's place in its tenant's chain.
pub struct Link {
    pub seq: i64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
}

/// The chain key of a tenant ('' for rows without one).
pub fn key(tenant: Option<&str>) -> &str {
    tenant.unwrap_or("")
}

/// jsonb's canonical text (`jsonb_out`), in the current memory context.
unsafe fn jsonb_text(value: Option<pg_sys::Datum>) -> Option<String> {
    value.map(|datum| {
        let text = pgrx::direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(datum)])
            .expect("jsonb_out returns a string");
        std::ffi::CStr::from_ptr(text.cast_mut_ptr())
            .to_string_lossy()
            .into_owned()
    })
}

fn row_digest(statement: &Statement, row: &AuditRow) -> [u8; 32] {
    let (pk, old, new) = unsafe { (jsonb_text(row.pk), jsonb_text(row.old), jsonb_text(row.new)) };
    digest(&Fields {
        occurred_at: statement.occurred_at,
        txid: statement.txid,
        tenant: row.tenant.as_deref(),
        user: statement.user.as_deref(),
        role: statement.role.as_deref(),
        trace: statement.trace.as_deref(),
        db_role: &statement.db_role,
        schema: &statement.schema,
        table: &statement.table,
        table_oid: statement.table_oid.to_u32(),
        op: statement.op.as_str(),
        pk: pk.as_deref(),
        old: old.as_deref(),
        new: new.as_deref(),
    })
}

const LOCK_HEAD: &str = "SELECT last_seq, last_hash FROM tenant_guard.audit_chain_heads \
     WHERE tenant_id OPERATOR(pg_catalog.=) $1 FOR UPDATE";
const CREATE_HEAD: &str =
    "INSERT INTO tenant_guard.audit_chain_heads (tenant_id, last_seq, last_hash) \
     VALUES ($1, 0, $2) ON CONFLICT (tenant_id) DO NOTHING";
const ADVANCE_HEAD: &str =
    "UPDATE tenant_guard.audit_chain_heads SET last_seq = $2, last_hash = $3 \
     WHERE tenant_id OPERATOR(pg_catalog.=) $1";

/// The (last seq, last hash) the lock statement returned, if any.
unsafe fn read_head() -> Option<(i64, [u8; 32])> {
    if pg_sys::SPI_processed == 0 {
        return None;
    }
    let table = pg_sys::SPI_tuptable;
    let tuple = *(*table).vals;
    let (mut seq_null, mut hash_null) = (false, false);
    let seq = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, 1, &mut seq_null);
    let hash = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, 2, &mut hash_null);
    let hash = Vec::<u8>::from_datum(hash, hash_null)?;
    Some((i64::from_datum(seq, seq_null)?, hash.try_into().ok()?))
}

/// Lock the head of a tenant's chain until the transaction ends, creating it at the genesis
/// if the tenant has none; returns (last seq, last hash).
unsafe fn lock_head(key: &str) -> (i64, [u8; 32]) {
    let text = pg_sys::TEXTOID;
    let lock = plans::plan(LOCK_HEAD, &[text]);
    plans::execute(lock, &[key.into_datum()]);
    let head = read_head().or_else(|| {
        let create = plans::plan(CREATE_HEAD, &[text, pg_sys::BYTEAOID]);
        plans::execute(create, &[key.into_datum(), GENESIS.to_vec().into_datum()]);
        plans::execute(lock, &[key.into_datum()]);
        read_head()
    });
    head.unwrap_or_else(|| {
        error::raise(error::internal(format!(
            "the head of the audit chain of tenant '{key}' is missing or malformed"
        )))
    })
}

/// One statement's place in its tenants' chains: the heads it locked and how far it took them.
pub struct Chain {
    /// Key -> (last seq, last hash, the seq it was locked at).
    heads: BTreeMap<String, (i64, [u8; 32], i64)>,
}

impl Chain {
    /// Lock the heads of `keys` (in key order, so that two writers never wait on each other
    /// crosswise) until the transaction ends. Runs as the extension owner inside the writer's
    /// SPI connection, before the statement's first row is linked.
    pub unsafe fn lock(keys: &BTreeSet<String>) -> Chain {
        let heads = keys
            .iter()
            .map(|key| {
                let (seq, hash) = lock_head(key);
                (key.clone(), (seq, hash, seq))
            })
            .collect();
        Chain { heads }
    }

    /// Link `row` to its tenant's chain (whose head `lock` locked).
    pub fn link(&mut self, statement: &Statement, row: &AuditRow) -> Link {
        let digest = row_digest(statement, row);
        let Some((last_seq, last_hash, _)) = self.heads.get_mut(key(row.tenant.as_deref())) else {
            error::raise(error::internal(
                "an audit row's tenant was not among the chains the statement locked",
            ))
        };
        let seq = *last_seq + 1;
        let hash = link(last_hash, seq, &digest);
        let prev = std::mem::replace(last_hash, hash);
        *last_seq = seq;
        Link { seq, prev, hash }
    }

    /// Move the heads the statement linked rows to. As the extension owner, in the SPI
    /// connection `lock` ran in.
    pub unsafe fn advance(&self) {
        let advance = plans::plan(
            ADVANCE_HEAD,
            &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::BYTEAOID],
        );
        for (key, (last_seq, last_hash, locked_at)) in &self.heads {
            if last_seq != locked_at {
                plans::execute(
                    advance,
                    &[
                        key.as_str().into_datum(),
                        last_seq.into_datum(),
                        last_hash.to_vec().into_datum(),
                    ],
                );
            }
        }
    }
}

/// The first broken link of a chain: the audit row (if one is to blame), its position, what is
/// wrong.
type BrokenLink = (Option<i64>, Option<i64>, String);

/// An anchor: a (seq, hash) pair exported from `audit_chain_head` earlier.
struct Anchor {
    seq: i64,
    hash: Vec<u8>,
}

fn anchor(seq: Option<i64>, hash: Option<Vec<u8>>) -> Result<Option<Anchor>> {
    match (seq, hash) {
        (None, None) => Ok(None),
        (Some(seq), Some(hash)) if seq >= 1 && hash.len() == 32 => Ok(Some(Anchor { seq, hash })),
        (Some(_), Some(_)) => Err(error::malformed(
            "tenant_guard: an anchor is a chain_seq of at least 1 and a 32-byte chain_hash",
            "Pass the chain_seq and chain_hash that tenant_guard.audit_chain_head() returned.",
        )),
        _ => Err(error::malformed(
            "tenant_guard: anchored_seq and anchored_hash go together",
            "Pass both (from tenant_guard.audit_chain_head()), or neither.",
        )),
    }
}

/// Verify a tenant's audit chain (NULL: the rows without a tenant), optionally against an
/// anchor exported earlier with `audit_chain_head`. Returns the first broken link, or no row
/// when the chain is intact (and reaches the anchor, which it matches).
// pgrx needs the name!() columns spelled out in the signature.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn verify_audit_chain(
    tenant_id: Option<&str>,
    anchored_seq: default!(Option<i64>, "NULL"),
    anchored_hash: default!(Option<Vec<u8>>, "NULL"),
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
    let anchor = anchor(anchored_seq, anchored_hash)?;
    let broken = privilege::as_extension_owner(|| first_broken_link(tenant_id, anchor.as_ref()))?;
    Ok(TableIterator::new(broken))
}

/// The head of a tenant's chain (NULL: the rows without a tenant), to be kept outside the
/// database as an anchor for `verify_audit_chain`. No row when the tenant has no chain.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn audit_chain_head(
    tenant_id: Option<&str>,
) -> TableIterator<'static, (name!(chain_seq, i64), name!(chain_hash, Vec<u8>))> {
    let head = privilege::as_extension_owner(|| {
        crate::catalog::select_row(
            "SELECT last_seq, last_hash FROM tenant_guard.audit_chain_heads
              WHERE tenant_id OPERATOR(pg_catalog.=) $1 AND last_seq OPERATOR(pg_catalog.>) 0",
            &[key(tenant_id).into()],
            |row| Ok((row.get::<i64>(1)?, row.get::<Vec<u8>>(2)?)),
        )
    });
    TableIterator::new(head.and_then(|(seq, hash)| Some((seq?, hash?))))
}

/// A chained audit row as verification reads it.
struct ChainedRow {
    id: i64,
    seq: i64,
    prev: Option<Vec<u8>>,
    hash: Option<Vec<u8>>,
    digest: [u8; 32],
}

fn read_row(row: &pgrx::spi::SpiHeapTupleData) -> pgrx::spi::SpiResult<ChainedRow> {
    let text = |i| row.get::<String>(i);
    let occurred_at = row
        .get::<TimestampWithTimeZone>(5)?
        .map(|t| t.into_inner())
        .unwrap_or_default();
    let txid = text(6)?
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or_default();
    let (tenant, user, role, trace) = (text(7)?, text(8)?, text(9)?, text(10)?);
    let (db_role, schema, table) = (text(11)?, text(12)?, text(13)?);
    let table_oid = row
        .get::<pg_sys::Oid>(14)?
        .map(|o| o.to_u32())
        .unwrap_or_default();
    let (op, pk, old, new) = (text(15)?, text(16)?, text(17)?, text(18)?);
    Ok(ChainedRow {
        id: row.get::<i64>(1)?.unwrap_or_default(),
        seq: row.get::<i64>(2)?.unwrap_or_default(),
        prev: row.get::<Vec<u8>>(3)?,
        hash: row.get::<Vec<u8>>(4)?,
        digest: digest(&Fields {
            occurred_at,
            txid,
            tenant: tenant.as_deref(),
            user: user.as_deref(),
            role: role.as_deref(),
            trace: trace.as_deref(),
            db_role: db_role.as_deref().unwrap_or_default(),
            schema: schema.as_deref().unwrap_or_default(),
            table: table.as_deref().unwrap_or_default(),
            table_oid,
            op: op.as_deref().unwrap_or_default(),
            pk: pk.as_deref(),
            old: old.as_deref(),
            new: new.as_deref(),
        }),
    })
}

/// Walks the chain in order, with a cursor (a tenant's log may be large).
struct Walk<'a> {
    expected: i64,
    prev: Vec<u8>,
    anchor: Option<&'a Anchor>,
}

impl Walk<'_> {
    /// What is wrong with the next row, if anything.
    fn check(&mut self, row: ChainedRow) -> Option<String> {
        let ChainedRow {
            seq,
            prev,
            hash,
            digest,
            ..
        } = row;
        let expected = self.expected;
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
        } else if prev.as_deref() != Some(self.prev.as_slice()) {
            Some(
                "it does not link to the previous row: rows were reordered or replaced".to_string(),
            )
        } else if hash.as_deref() != Some(link(&self.prev, seq, &digest).as_slice()) {
            Some("its content does not match its hash: the row was altered".to_string())
        } else if self
            .anchor
            .is_some_and(|a| a.seq == seq && Some(&a.hash) != hash.as_ref())
        {
            Some(format!(
                "row {seq} does not match the anchored hash: the chain up to it was rewritten"
            ))
        } else {
            None
        };
        if problem.is_none() {
            self.prev = hash.unwrap_or_default();
            self.expected += 1;
        }
        problem
    }
}

fn first_broken_link(tenant: Option<&str>, anchor: Option<&Anchor>) -> Result<Option<BrokenLink>> {
    let filter = if tenant.is_some() {
        "l.tenant_id OPERATOR(pg_catalog.=) $1"
    } else {
        "l.tenant_id IS NULL AND $1::pg_catalog.text IS NULL"
    };
    // The head first: the rows are read later, in a snapshot that holds every row up to it
    // (rows of writers that commit meanwhile lie beyond it and are left for the next check).
    let head = crate::catalog::select_row(
        "SELECT last_seq, last_hash FROM tenant_guard.audit_chain_heads
          WHERE tenant_id OPERATOR(pg_catalog.=) $1",
        &[key(tenant).into()],
        |row| {
            Ok((
                row.get::<i64>(1)?.unwrap_or(0),
                row.get::<Vec<u8>>(2)?.unwrap_or_default(),
            ))
        },
    );
    let sql = format!(
        "SELECT id, chain_seq, chain_prev, chain_hash, occurred_at, txid::pg_catalog.text,
                tenant_id, user_id, tenant_role, trace_id, db_role::pg_catalog.text,
                schema_name::pg_catalog.text, table_name::pg_catalog.text, table_oid, op,
                pk::pg_catalog.text, old_row::pg_catalog.text, new_row::pg_catalog.text
           FROM tenant_guard.audit_log l
          WHERE {filter} AND chain_seq IS NOT NULL
            AND ($2::pg_catalog.int8 IS NULL OR chain_seq OPERATOR(pg_catalog.<=) $2)
          ORDER BY chain_seq, id"
    );
    let mut walk = Walk {
        expected: 1,
        prev: GENESIS.to_vec(),
        anchor,
    };
    let up_to = head.as_ref().map(|(seq, _)| *seq);
    let broken = Spi::connect(|client| {
        let mut cursor = client.open_cursor(&sql, &[tenant.into(), up_to.into()]);
        loop {
            let batch = cursor.fetch(1000)?;
            if batch.is_empty() {
                return Ok::<_, pgrx::spi::SpiError>(None);
            }
            for row in batch {
                let row = read_row(&row)?;
                let (id, seq) = (row.id, row.seq);
                if let Some(problem) = walk.check(row) {
                    return Ok(Some((Some(id), Some(seq), problem)));
                }
            }
        }
    })
    .map_err(error::internal)?;
    if broken.is_some() {
        return Ok(broken);
    }
    let last = walk.expected - 1;
    if let Some(anchor) = anchor.filter(|a| a.seq > last) {
        return Ok(Some((
            None,
            Some(last + 1),
            format!(
                "the chain ends at {last}, before the anchored row {}: rows at the end were deleted",
                anchor.seq
            ),
        )));
    }
    match head {
        Some((last_seq, last_hash)) if last_seq != last || last_hash != walk.prev => {
            return Ok(Some((
                None,
                Some(last + 1),
                format!(
                    "the chain ends at {last} but its head is at {last_seq}: rows at the end were deleted"
                ),
            )))
        }
        None if last > 0 => {
            return Ok(Some((
                None,
                Some(last),
                "the chain has rows but no head: its head was deleted".to_string(),
            )))
        }
        _ => {}
    }
    // A row outside the chain of a table that chains its audit rows was not written by
    // tenant_guard (rows written before the table began to chain are left alone).
    let unchained = crate::catalog::select_value::<i64>(
        &format!(
            "SELECT l.id FROM tenant_guard.audit_log l
              WHERE {filter} AND l.chain_seq IS NULL
                AND EXISTS (SELECT 1 FROM tenant_guard.audit_config c
                              JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) c.relid::pg_catalog.oid
                              JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) r.relnamespace
                             WHERE c.hash_chain
                               AND n.nspname OPERATOR(pg_catalog.=) l.schema_name
                               AND r.relname OPERATOR(pg_catalog.=) l.table_name
                               AND l.occurred_at OPERATOR(pg_catalog.>=) c.enabled_at)
              ORDER BY l.id LIMIT 1"
        ),
        &[tenant.into()],
    );
    Ok(unchained.map(|id| {
        (
            Some(id),
            None,
            "it has no place in the chain, but its table chains its audit rows: it was not \
             written by tenant_guard"
                .to_string(),
        )
    }))
}

#[cfg(test)]
mod unit_tests {
    use super::{digest, link, Fields, GENESIS};

    fn fields<'a>(
        tenant: Option<&'a str>,
        user: Option<&'a str>,
        pk: Option<&'a str>,
    ) -> Fields<'a> {
        Fields {
            occurred_at: 1,
            txid: 2,
            tenant,
            user,
            role: None,
            trace: None,
            db_role: "app",
            schema: "s",
            table: "t",
            table_oid: 3,
            op: "INSERT",
            pk,
            old: None,
            new: None,
        }
    }

    #[test]
    fn the_digest_is_deterministic() {
        let row = fields(Some("acme"), Some("alice"), Some(r#"{"id": 1}"#));
        assert_eq!(digest(&row), digest(&row));
        assert_eq!(
            link(&GENESIS, 1, &digest(&row)),
            link(&GENESIS, 1, &digest(&row))
        );
    }

    #[test]
    fn every_field_is_framed() {
        // Moving bytes from one field to the next, or NULL to empty, changes the digest.
        let cases = [
            fields(Some("ab"), Some("c"), None),
            fields(Some("a"), Some("bc"), None),
            fields(Some(""), Some("abc"), None),
            fields(None, Some("abc"), None),
            fields(Some("abc"), None, None),
            fields(Some("abc"), Some(""), None),
            fields(Some("abc"), None, Some("")),
        ];
        let digests: Vec<[u8; 32]> = cases.iter().map(digest).collect();
        for (i, a) in digests.iter().enumerate() {
            for b in &digests[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn the_link_covers_position_and_predecessor() {
        let d = digest(&fields(Some("acme"), None, None));
        let first = link(&GENESIS, 1, &d);
        assert_ne!(first, link(&GENESIS, 2, &d));
        assert_ne!(link(&first, 2, &d), link(&GENESIS, 2, &d));
    }
}
