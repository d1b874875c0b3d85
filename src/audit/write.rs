//! Writing one statement's finished audit rows: the only privileged step of auditing.
//!
//! The rows go into a tuplestore, registered as the ephemeral relation `tenant_guard_rows`,
//! and one prepared statement copies them into the log as the extension owner:
//! `INSERT INTO tenant_guard.audit_log (...) SELECT ... FROM tenant_guard_rows`. The statement
//! is the same for every table (one plan per backend), calls no function and no operator, and
//! names the log with its schema; an ephemeral relation's name is resolved before any table's,
//! so nothing on the caller's search_path can stand in for it.

use super::chain;
use super::plans;
use super::trigger::{AuditRow, Statement, StatementMemory};
use crate::error;
use crate::memory;
use crate::privilege;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CString;

const ROWS: &std::ffi::CStr = c"tenant_guard_rows";

/// The rows' columns: the log's columns but `id`, in this order.
const COLUMNS: [(&str, pg_sys::Oid); 17] = [
    ("occurred_at", pg_sys::TIMESTAMPTZOID),
    ("txid", pg_sys::XID8OID),
    ("tenant_id", pg_sys::TEXTOID),
    ("user_id", pg_sys::TEXTOID),
    ("tenant_role", pg_sys::TEXTOID),
    ("trace_id", pg_sys::TEXTOID),
    ("db_role", pg_sys::NAMEOID),
    ("schema_name", pg_sys::NAMEOID),
    ("table_name", pg_sys::NAMEOID),
    ("table_oid", pg_sys::OIDOID),
    ("op", pg_sys::TEXTOID),
    ("pk", pg_sys::JSONBOID),
    ("old_row", pg_sys::JSONBOID),
    ("new_row", pg_sys::JSONBOID),
    ("chain_seq", pg_sys::INT8OID),
    ("chain_prev", pg_sys::BYTEAOID),
    ("chain_hash", pg_sys::BYTEAOID),
];

thread_local! {
    static DESCRIPTOR: Cell<pg_sys::TupleDesc> = const { Cell::new(std::ptr::null_mut()) };
}

/// The rows' tuple descriptor, made once per backend.
fn descriptor() -> pg_sys::TupleDesc {
    let existing = DESCRIPTOR.get();
    if !existing.is_null() {
        return existing;
    }
    let _in = memory::InContext::switch(unsafe { pg_sys::TopMemoryContext });
    unsafe {
        let desc = pg_sys::CreateTemplateTupleDesc(COLUMNS.len() as i32);
        for (i, (name, type_oid)) in COLUMNS.iter().enumerate() {
            let name = CString::new(*name).expect("column names have no NUL byte");
            pg_sys::TupleDescInitEntry(desc, (i + 1) as i16, name.as_ptr(), *type_oid, -1, 0);
        }
        DESCRIPTOR.set(desc);
        desc
    }
}

/// The INSERT (needs `tenant_guard_rows` registered).
const INSERT: &str = "INSERT INTO tenant_guard.audit_log (occurred_at, txid, tenant_id, user_id, \
     tenant_role, trace_id, db_role, schema_name, table_name, table_oid, op, pk, old_row, new_row, \
     chain_seq, chain_prev, chain_hash) \
     SELECT occurred_at, txid, tenant_id, user_id, tenant_role, trace_id, db_role, schema_name, \
     table_name, table_oid, op, pk, old_row, new_row, chain_seq, chain_prev, chain_hash \
     FROM tenant_guard_rows";

fn text(value: &Option<String>) -> Option<pg_sys::Datum> {
    value.as_deref().and_then(IntoDatum::into_datum)
}

unsafe fn name(value: &str) -> pg_sys::Datum {
    let name = pg_sys::palloc0(pg_sys::NAMEDATALEN as usize) as *mut pg_sys::NameData;
    let value = CString::new(value).unwrap_or_default();
    pg_sys::namestrcpy(name, value.as_ptr());
    pg_sys::Datum::from(name)
}

/// Write `rows` (with their hash-chain links when the table is chained) as the extension owner.
pub fn write(chained: bool, statement: &Statement, rows: &[AuditRow], memory: &StatementMemory) {
    privilege::as_extension_owner(|| unsafe {
        if pg_sys::SPI_connect() < 0 {
            error::raise(error::internal("SPI_connect failed"));
        }
        let links = chained.then(|| chain::append(statement, rows, memory));

        let desc = descriptor();
        let in_rows = memory::InContext::switch(memory.rows.0);
        let store = pg_sys::tuplestore_begin_heap(false, false, pg_sys::work_mem);
        let (user, role, trace) = (
            text(&statement.user),
            text(&statement.role),
            text(&statement.trace),
        );
        let (db_role, schema, table_name) = (
            name(&statement.db_role),
            name(&statement.schema),
            name(&statement.table),
        );
        let op = statement.op.as_str().into_datum();
        for (i, row) in rows.iter().enumerate() {
            let link = links.as_ref().map(|links| &links[i]);
            let columns: [Option<pg_sys::Datum>; 17] = [
                Some(pg_sys::Datum::from(statement.occurred_at)),
                Some(pg_sys::Datum::from(statement.txid)),
                text(&row.tenant),
                user,
                role,
                trace,
                Some(db_role),
                Some(schema),
                Some(table_name),
                Some(pg_sys::Datum::from(statement.table_oid)),
                op,
                row.pk,
                row.old,
                row.new,
                link.map(|l| pg_sys::Datum::from(l.seq)),
                link.and_then(|l| l.prev.to_vec().into_datum()),
                link.and_then(|l| l.hash.to_vec().into_datum()),
            ];
            let mut values = columns.map(|c| c.unwrap_or(pg_sys::Datum::from(0)));
            let mut nulls = columns.map(|c| c.is_none());
            pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        }
        let enr = pg_sys::palloc0(std::mem::size_of::<pg_sys::EphemeralNamedRelationData>())
            as *mut pg_sys::EphemeralNamedRelationData;
        (*enr).md.name = ROWS.as_ptr().cast_mut();
        (*enr).md.reliddesc = pg_sys::InvalidOid;
        (*enr).md.tupdesc = desc;
        (*enr).md.enrtype = pg_sys::EphemeralNameRelationType::ENR_NAMED_TUPLESTORE;
        (*enr).md.enrtuples = rows.len() as f64;
        (*enr).reldata = store.cast();
        drop(in_rows);

        if pg_sys::SPI_register_relation(enr) < 0 {
            error::raise(error::internal("could not register the audit rows"));
        }
        plans::execute(plans::plan(INSERT, &[]), &[]);
        // Frees its memory and closes its temporary file, if it spilled to one.
        pg_sys::tuplestore_end(store);
        pg_sys::SPI_finish();
    });
}
