//! Writing one statement's audit rows into `tenant_guard.audit_log`: the only privileged step of
//! auditing.
//!
//! Rows stream: the trigger hands each row over as soon as it is rendered and forgets it, so a
//! statement of any size holds one rendered row at a time. [`Log`] has two ways in:
//!
//! - **Direct** (the log as tenant_guard created it): each row is formed into a heap tuple with
//!   its `id` from the identity sequence, and the tuples go in as COPY writes them: buffered,
//!   `heap_multi_insert` (one WAL record per page) and `ExecInsertIndexTuples`. No SQL
//!   statement, no second executor; the buffer holds at most [`BATCH_ROWS`] rows or
//!   [`BATCH_BYTES`] bytes. It runs no code but the heap's
//!   and the log's own btree indexes', so it needs no switch of user.
//! - **SQL** (anything else on the log: a trigger, a rule, a CHECK constraint, another column, a
//!   partitioned log, another access method; only a superuser can add one): the rows go into a
//!   tuplestore, registered as the ephemeral relation `tenant_guard_rows`, and one prepared
//!   statement copies them into the log as the extension owner, so that whatever the DBA
//!   attached runs: `INSERT INTO tenant_guard.audit_log (...) SELECT ... FROM
//!   tenant_guard_rows`. The statement is the same for every table (one plan per backend),
//!   calls no function and no operator, and names the log with its schema; an ephemeral
//!   relation's name is resolved before any table's, so nothing on the caller's search_path can
//!   stand in for it. The tuplestore spills to disk beyond `work_mem`.
//!
//! Chained rows are linked as they stream ([`chain::Chain`]); the heads are locked when the log
//! is opened and advanced when it is closed, as the extension owner in an SPI connection.

use super::chain;
use super::plans;
use super::trigger::{AuditRow, Statement, StatementMemory};
use crate::error;
use crate::memory;
use crate::privilege;
use pgrx::prelude::*;
use std::cell::Cell;
use std::collections::BTreeSet;
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
    /// The log's OID and its identity sequence's, looked up once per backend.
    static LOG: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
}

/// Forget the log's OIDs (the relcache callback, for the log or for every relation).
pub fn forget(relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid || LOG.get().is_some_and(|(log, _)| log == relid) {
        LOG.set(None);
    }
}

/// The log's OID and its `id` sequence's.
unsafe fn log_relation() -> (pg_sys::Oid, pg_sys::Oid) {
    if let Some(found) = LOG.get() {
        return found;
    }
    let schema = pg_sys::get_namespace_oid(c"tenant_guard".as_ptr(), false);
    let log = pg_sys::get_relname_relid(c"audit_log".as_ptr(), schema);
    if log == pg_sys::InvalidOid {
        error::raise(error::internal("tenant_guard.audit_log is missing"));
    }
    let sequence = pg_sys::getIdentitySequence(log, 1, true);
    LOG.set(Some((log, sequence)));
    (log, sequence)
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

unsafe extern "C-unwind" {
    /// commands/sequence.h (not in pgrx's bindings): the next value of a sequence. Called
    /// through `pg_guard_ffi_boundary` (it raises an error when the sequence is exhausted).
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// What every row of the statement shares, as datums (in the statement's memory).
struct Shared {
    user: Option<pg_sys::Datum>,
    role: Option<pg_sys::Datum>,
    trace: Option<pg_sys::Datum>,
    db_role: pg_sys::Datum,
    schema: pg_sys::Datum,
    table: pg_sys::Datum,
    op: Option<pg_sys::Datum>,
}

/// One statement's rows on their way into the log.
pub struct Log<'s> {
    statement: &'s Statement,
    shared: Shared,
    chain: Option<chain::Chain>,
    sink: Sink,
}

enum Sink {
    Direct(Direct),
    Sql(*mut pg_sys::Tuplestorestate, usize),
}

impl<'s> Log<'s> {
    /// Open the log for `statement`'s rows. `chain_keys`: for a chained table, the chain keys of
    /// every row the statement may write (their heads are locked now).
    pub fn open(
        statement: &'s Statement,
        chain_keys: Option<&BTreeSet<String>>,
        memory: &StatementMemory,
    ) -> Log<'s> {
        let _in = memory::InContext::switch(memory.statement.0);
        let shared = unsafe {
            Shared {
                user: text(&statement.user),
                role: text(&statement.role),
                trace: text(&statement.trace),
                db_role: name(&statement.db_role),
                schema: name(&statement.schema),
                table: name(&statement.table),
                op: statement.op.as_str().into_datum(),
            }
        };
        privilege::as_extension_owner(|| unsafe {
            let direct = Direct::open();
            if needs_spi(chain_keys.is_some(), direct.is_none()) && pg_sys::SPI_connect() < 0 {
                error::raise(error::internal("SPI_connect failed"));
            }
            // SPI_connect switched to its own context; the sink lives in the statement's.
            let _in = memory::InContext::switch(memory.statement.0);
            let chain = chain_keys.map(|keys| chain::Chain::lock(keys));
            let sink = match direct {
                Some(direct) => Sink::Direct(direct),
                None => Sink::Sql(
                    pg_sys::tuplestore_begin_heap(false, false, pg_sys::work_mem),
                    0,
                ),
            };
            Log {
                statement,
                shared,
                chain,
                sink,
            }
        })
    }

    /// Write one row (rendered in the caller's current memory context, which the caller resets
    /// afterwards).
    pub fn write(&mut self, row: &AuditRow) {
        let statement = self.statement;
        let link = self.chain.as_mut().map(|chain| chain.link(statement, row));
        let shared = &self.shared;
        let columns: [Option<pg_sys::Datum>; 17] = [
            Some(pg_sys::Datum::from(statement.occurred_at)),
            Some(pg_sys::Datum::from(statement.txid)),
            text(&row.tenant),
            shared.user,
            shared.role,
            shared.trace,
            Some(shared.db_role),
            Some(shared.schema),
            Some(shared.table),
            Some(pg_sys::Datum::from(statement.table_oid)),
            shared.op,
            row.pk,
            row.old,
            row.new,
            link.as_ref().map(|l| pg_sys::Datum::from(l.seq)),
            link.as_ref().and_then(|l| l.prev.to_vec().into_datum()),
            link.as_ref().and_then(|l| l.hash.to_vec().into_datum()),
        ];
        unsafe {
            match &mut self.sink {
                Sink::Direct(direct) => direct.insert(&columns),
                Sink::Sql(store, count) => {
                    let (mut values, mut nulls) = datums(&columns);
                    pg_sys::tuplestore_putvalues(
                        *store,
                        descriptor(),
                        values.as_mut_ptr(),
                        nulls.as_mut_ptr(),
                    );
                    *count += 1;
                }
            }
        }
    }

    /// Finish the statement's rows: the SQL path's INSERT, the chain heads, the cleanup.
    pub fn close(self) {
        // SPI_finish switches to the context SPI_connect was called in; come back to this one.
        let _here = memory::InContext::switch(unsafe { pg_sys::CurrentMemoryContext });
        let spi = needs_spi(self.chain.is_some(), matches!(self.sink, Sink::Sql(..)));
        privilege::as_extension_owner(|| unsafe {
            match self.sink {
                Sink::Direct(direct) => direct.close(),
                Sink::Sql(store, count) => {
                    insert_from(store, count);
                    // Frees its memory and closes its temporary file, if it spilled to one.
                    pg_sys::tuplestore_end(store);
                }
            }
            if let Some(chain) = &self.chain {
                chain.advance();
            }
            if spi {
                pg_sys::SPI_finish();
            }
        });
    }
}

/// Whether the log needs an SPI connection: for the chain's statements or the SQL path's.
fn needs_spi(chained: bool, sql_path: bool) -> bool {
    chained || sql_path
}

/// The datums and null flags of the log's columns but `id`, as PostgreSQL takes them.
fn datums(columns: &[Option<pg_sys::Datum>; 17]) -> ([pg_sys::Datum; 17], [bool; 17]) {
    (
        columns.map(|c| c.unwrap_or(pg_sys::Datum::from(0))),
        columns.map(|c| c.is_none()),
    )
}

/// The SQL path: register `store` as `tenant_guard_rows` and copy it into the log.
unsafe fn insert_from(store: *mut pg_sys::Tuplestorestate, count: usize) {
    let enr = pg_sys::palloc0(std::mem::size_of::<pg_sys::EphemeralNamedRelationData>())
        as *mut pg_sys::EphemeralNamedRelationData;
    (*enr).md.name = ROWS.as_ptr().cast_mut();
    (*enr).md.reliddesc = pg_sys::InvalidOid;
    (*enr).md.tupdesc = descriptor();
    (*enr).md.enrtype = pg_sys::EphemeralNameRelationType::ENR_NAMED_TUPLESTORE;
    (*enr).md.enrtuples = count as f64;
    (*enr).reldata = store.cast();
    if pg_sys::SPI_register_relation(enr) < 0 {
        error::raise(error::internal("could not register the audit rows"));
    }
    plans::execute(plans::plan(INSERT, &[]), &[]);
    pg_sys::SPI_unregister_relation(ROWS.as_ptr());
}

/// The direct path flushes its buffer at this many rows (as COPY does) ...
const BATCH_ROWS: usize = 1000;
/// ... or at this many bytes of tuples.
const BATCH_BYTES: usize = 64 * 1024;

/// The direct path: the log's heap and indexes, written as COPY writes them.
struct Direct {
    relation: pg_sys::Relation,
    sequence: pg_sys::Oid,
    estate: *mut pg_sys::EState,
    result: *mut pg_sys::ResultRelInfo,
    /// One slot per buffered row, made as needed (a one-row statement makes one).
    slots: Vec<*mut pg_sys::TupleTableSlot>,
    buffered: usize,
    buffered_bytes: usize,
    /// The buffered tuples; reset at every flush (a child of the executor state's memory,
    /// deleted with it).
    batch: pg_sys::MemoryContext,
    /// Made at the first full batch: a statement of a few rows does without its ring of buffers.
    bulk: pg_sys::BulkInsertState,
}

impl Direct {
    /// Open the log for direct writing, if it is exactly as tenant_guard created it.
    unsafe fn open() -> Option<Direct> {
        let (log, sequence) = log_relation();
        let relation = pg_sys::table_open(log, pg_sys::RowExclusiveLock as i32);
        if sequence == pg_sys::InvalidOid || !as_created(&*relation) {
            pg_sys::table_close(relation, pg_sys::NoLock as i32);
            return None;
        }
        let estate = pg_sys::CreateExecutorState();
        let _in = memory::InContext::switch((*estate).es_query_cxt);
        let result = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            as *mut pg_sys::ResultRelInfo;
        pg_sys::InitResultRelInfo(result, relation, 1, std::ptr::null_mut(), 0);
        pg_sys::ExecOpenIndices(result, false);
        Some(Direct {
            relation,
            sequence,
            estate,
            result,
            slots: Vec::new(),
            buffered: 0,
            buffered_bytes: 0,
            batch: pg_sys::AllocSetContextCreateInternal(
                (*estate).es_query_cxt,
                c"tenant_guard audit batch".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            ),
            bulk: std::ptr::null_mut(),
        })
    }

    /// Buffer one row: `id` from the sequence, then `columns` (the log's other columns).
    unsafe fn insert(&mut self, columns: &[Option<pg_sys::Datum>; 17]) {
        let sequence = self.sequence;
        let id = pg_sys::ffi::pg_guard_ffi_boundary(|| nextval_internal(sequence, false));
        let (rest, rest_nulls) = datums(columns);
        let mut values = [pg_sys::Datum::from(id); 18];
        let mut nulls = [false; 18];
        values[1..].copy_from_slice(&rest);
        nulls[1..].copy_from_slice(&rest_nulls);
        let desc = (*self.relation).rd_att;
        let tuple = {
            let _in = memory::InContext::switch(self.batch);
            pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr())
        };
        if self.buffered == self.slots.len() {
            let _in = memory::InContext::switch((*self.estate).es_query_cxt);
            self.slots.push(pg_sys::MakeSingleTupleTableSlot(
                desc,
                &pg_sys::TTSOpsHeapTuple,
            ));
        }
        // The slot owns the tuple (frees it when cleared): heap_multi_insert takes it as it is.
        pg_sys::ExecStoreHeapTuple(tuple, self.slots[self.buffered], true);
        self.buffered += 1;
        self.buffered_bytes += (*tuple).t_len as usize;
        if self.buffered == BATCH_ROWS || self.buffered_bytes >= BATCH_BYTES {
            if self.bulk.is_null() {
                // In the writer's memory: the caller's is the row's, reset after it.
                let _in = memory::InContext::switch((*self.estate).es_query_cxt);
                self.bulk = pg_sys::GetBulkInsertState();
            }
            self.flush();
        }
    }

    /// Insert the buffered rows into the heap, then their index entries.
    unsafe fn flush(&mut self) {
        if self.buffered == 0 {
            return;
        }
        let slots = &mut self.slots[..self.buffered];
        // The current command, as an INSERT would take it (the chain's SPI statements have
        // advanced it since the log was opened).
        pg_sys::heap_multi_insert(
            self.relation,
            slots.as_mut_ptr(),
            slots.len() as i32,
            pg_sys::GetCurrentCommandId(true),
            0,
            self.bulk,
        );
        let per_tuple = pg_sys::MakePerTupleExprContext(self.estate);
        for &slot in slots.iter() {
            pg_sys::ExecInsertIndexTuples(
                self.result,
                slot,
                self.estate,
                false,
                false,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            pg_sys::MemoryContextReset((*per_tuple).ecxt_per_tuple_memory);
            pg_sys::ExecClearTuple(slot);
        }
        self.buffered = 0;
        self.buffered_bytes = 0;
        pg_sys::MemoryContextReset(self.batch);
    }

    unsafe fn close(mut self) {
        self.flush();
        for &slot in &self.slots {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
        }
        if !self.bulk.is_null() {
            pg_sys::FreeBulkInsertState(self.bulk);
        }
        pg_sys::ExecCloseIndices(self.result);
        pg_sys::FreeExecutorState(self.estate);
        pg_sys::table_close(self.relation, pg_sys::NoLock as i32);
    }
}

/// Whether the log is exactly as tenant_guard created it: a heap table with the columns it made
/// (`id` an identity column), no trigger or rule that fires on INSERT, no CHECK constraint and
/// no generated column. Anything else takes the SQL path, which runs it.
unsafe fn as_created(relation: &pg_sys::RelationData) -> bool {
    let class = &*relation.rd_rel;
    if class.relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char
        || class.relam != pg_sys::HEAP_TABLE_AM_OID
        || !relation.rd_rules.is_null()
    {
        return false;
    }
    if let Some(t) = relation.trigdesc.as_ref() {
        if t.trig_insert_before_row
            || t.trig_insert_after_row
            || t.trig_insert_instead_row
            || t.trig_insert_before_statement
            || t.trig_insert_after_statement
            || t.trig_insert_new_table
        {
            return false;
        }
    }
    let desc = &*relation.rd_att;
    if let Some(constraints) = desc.constr.as_ref() {
        if constraints.num_check > 0 || constraints.has_generated_stored {
            return false;
        }
    }
    if desc.natts as usize != COLUMNS.len() + 1 {
        return false;
    }
    let attribute = |i: usize| &*desc.attrs.as_ptr().add(i);
    let named = |i: usize, name: &str, type_oid: pg_sys::Oid| {
        let a = attribute(i);
        !a.attisdropped
            && a.atttypid == type_oid
            && std::ffi::CStr::from_ptr(a.attname.data.as_ptr()).to_bytes() == name.as_bytes()
    };
    named(0, "id", pg_sys::INT8OID)
        && attribute(0).attidentity as u8 == pg_sys::ATTRIBUTE_IDENTITY_ALWAYS
        && COLUMNS
            .iter()
            .enumerate()
            .all(|(i, (name, type_oid))| named(i + 1, name, *type_oid))
}

/// Write `rows` of `statement` at once (an audited denial: one row).
pub fn write_rows(
    chained: bool,
    statement: &Statement,
    rows: &[AuditRow],
    memory: &StatementMemory,
) {
    let keys: Option<BTreeSet<String>> = chained.then(|| {
        rows.iter()
            .map(|row| chain::key(row.tenant.as_deref()).to_string())
            .collect()
    });
    let mut log = Log::open(statement, keys.as_ref(), memory);
    for row in rows {
        memory.scratch(|| log.write(row));
    }
    log.close();
}
