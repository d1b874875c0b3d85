//! The audit trigger: statement-level AFTER triggers (INSERT, UPDATE and DELETE with transition
//! tables; TRUNCATE) call `audit_trigger`, which renders the statement's audit rows from the
//! transition tuples as the invoking role (`render.rs`, `table.rs`) and streams them into the
//! log (`write.rs`), one row at a time: a statement of any size holds one rendered row in
//! memory. A failure aborts the audited statement with it: no change without its audit row.
//!
//! The table's description (columns, renderers, options) is built once per backend and table,
//! and forgotten at any relcache invalidation of the table (any ALTER, enable/disable).

use super::chain;
use super::config;
use super::table::{AuditedTable, Tuple};
use super::write::{self, Log};
use crate::catalog;
use crate::error;
use crate::gucs;
use crate::memory;
use crate::privilege;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
    /// An action the gate denied (`authz::denial`).
    Denied,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Truncate => "TRUNCATE",
            Op::Denied => "DENIED",
        }
    }
}

/// What every audit row of one statement shares.
pub struct Statement {
    /// Statement start, PostgreSQL's microseconds since 2000-01-01.
    pub occurred_at: i64,
    pub txid: u64,
    pub context_tenant: Option<String>,
    pub user: Option<String>,
    pub role: Option<String>,
    pub trace: Option<String>,
    pub db_role: String,
    pub schema: String,
    pub table: String,
    pub table_oid: pg_sys::Oid,
    pub op: Op,
}

/// One audit row, rendered: jsonb datums in the statement's memory context.
pub struct AuditRow {
    pub tenant: Option<String>,
    pub pk: Option<pg_sys::Datum>,
    pub old: Option<pg_sys::Datum>,
    pub new: Option<pg_sys::Datum>,
}

// Borrows of DESCRIPTIONS are short and never held across SPI or catalog access: those process
// invalidations, and the invalidation callback borrows DESCRIPTIONS.
thread_local! {
    static DESCRIPTIONS: RefCell<HashMap<pg_sys::Oid, Rc<AuditedTable>>> = RefCell::new(HashMap::new());
    /// Bumped by every invalidation: a description built while it changed is used once.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Register the relcache callback (from `_PG_init`, once per backend).
pub fn init() {
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget), pg_sys::Datum::from(0)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    GENERATION.set(GENERATION.get() + 1);
    catalog::forget_extension_owner();
    write::forget(relid);
    // Taken out of the map first: dropping a description frees memory, never under a borrow.
    let forgotten: Vec<Rc<AuditedTable>> = DESCRIPTIONS.with(|map| {
        let mut map = map.borrow_mut();
        if relid == pg_sys::InvalidOid {
            map.drain().map(|(_, d)| d).collect()
        } else {
            map.remove(&relid).into_iter().collect()
        }
    });
    drop(forgotten);
}

fn described(relation: &pg_sys::RelationData) -> Rc<AuditedTable> {
    let relid = relation.rd_id;
    if let Some(found) = DESCRIPTIONS.with(|map| map.borrow().get(&relid).cloned()) {
        return found;
    }
    let generation = GENERATION.get();
    let table = privilege::with_pinned_search_path(|| config::audited_table(relation))
        .unwrap_or_else(|| {
            error::raise(error::invalid_state(
                "tenant_guard: audit trigger fired for a table that is not audited",
                "Call tenant_guard.enable_tenant_audit() or disable_tenant_audit() on it.",
            ))
        });
    let table = Rc::new(table);
    if GENERATION.get() == generation {
        DESCRIPTIONS.with(|map| map.borrow_mut().insert(relid, table.clone()));
    }
    table
}

impl Statement {
    fn capture(relation: &pg_sys::RelationData, op: Op) -> Statement {
        unsafe {
            let schema = pg_sys::get_namespace_name((*relation.rd_rel).relnamespace);
            Statement {
                occurred_at: pg_sys::GetCurrentStatementStartTimestamp(),
                txid: pg_sys::GetTopFullTransactionId().value,
                context_tenant: gucs::text_value(&gucs::TENANT_ID_VALUE),
                user: gucs::text_value(&gucs::USER_ID_VALUE),
                role: gucs::text_value(&gucs::TENANT_ROLE_VALUE),
                trace: gucs::text_value(&gucs::TRACE_ID_VALUE),
                db_role: catalog::current_role_name(),
                schema: std::ffi::CStr::from_ptr(schema)
                    .to_string_lossy()
                    .into_owned(),
                table: std::ffi::CStr::from_ptr((*relation.rd_rel).relname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
                table_oid: relation.rd_id,
                op,
            }
        }
    }
}

/// Memory for one audited statement: `statement` for what lasts as long as it (the log
/// writer's state); `scratch` (inside it) for one row: its images, reset after every row.
/// Deleted when dropped.
pub struct StatementMemory {
    scratch: memory::Owned,
    pub statement: memory::Owned,
}

impl StatementMemory {
    pub fn new() -> StatementMemory {
        let statement = memory::Owned::new(
            unsafe { pg_sys::CurrentMemoryContext },
            c"tenant_guard audit statement",
        );
        StatementMemory {
            scratch: memory::Owned::new(statement.0, c"tenant_guard audit row"),
            statement,
        }
    }

    /// Run `f` in the scratch context, then reset it: nothing `f` allocates outlives it.
    pub fn scratch<T>(&self, f: impl FnOnce() -> T) -> T {
        let result = {
            let _in = memory::InContext::switch(self.scratch.0);
            f()
        };
        unsafe { pg_sys::MemoryContextReset(self.scratch.0) };
        result
    }
}

/// Reads one transition table, with a read pointer of its own (other triggers of the statement
/// read the same tuplestore).
struct Transition {
    store: *mut pg_sys::Tuplestorestate,
    slot: *mut pg_sys::TupleTableSlot,
    natts: i32,
}

impl Transition {
    unsafe fn open(
        store: *mut pg_sys::Tuplestorestate,
        relation: &pg_sys::RelationData,
        natts: usize,
    ) -> Transition {
        if store.is_null() {
            error::raise(error::internal(
                "an audit trigger is missing its transition table",
            ));
        }
        let pointer = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(store, pointer);
        pg_sys::tuplestore_rescan(store);
        Transition {
            store,
            slot: pg_sys::MakeSingleTupleTableSlot(relation.rd_att, &pg_sys::TTSOpsMinimalTuple),
            natts: natts as i32,
        }
    }

    /// The next tuple; valid until the next call.
    unsafe fn next(&mut self) -> Option<Tuple<'_>> {
        if !pg_sys::tuplestore_gettupleslot(self.store, true, false, self.slot) {
            return None;
        }
        pg_sys::slot_getsomeattrs(self.slot, self.natts);
        let natts = self.natts as usize;
        Some(Tuple {
            values: std::slice::from_raw_parts((*self.slot).tts_values, natts),
            nulls: std::slice::from_raw_parts((*self.slot).tts_isnull, natts),
        })
    }
}

impl Drop for Transition {
    fn drop(&mut self) {
        unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.slot) };
    }
}

/// The transition table a row's tenant is read from: the new rows' for INSERT and UPDATE, the
/// old rows' for DELETE (None for TRUNCATE).
fn tenant_rows(data: &pg_sys::TriggerData, op: Op) -> Option<*mut pg_sys::Tuplestorestate> {
    match op {
        Op::Insert | Op::Update => Some(data.tg_newtable),
        Op::Delete => Some(data.tg_oldtable),
        Op::Truncate | Op::Denied => None,
    }
}

/// The chain keys of every row the statement may write: one pass over its transition table
/// that reads the tenant column and nothing else (the context's tenant for a table without one).
unsafe fn chain_keys(
    data: &pg_sys::TriggerData,
    table: &AuditedTable,
    statement: &Statement,
    memory: &StatementMemory,
) -> BTreeSet<String> {
    let (Some(store), Some(natts)) = (tenant_rows(data, statement.op), table.tenant_natts()) else {
        return BTreeSet::from([chain::key(statement.context_tenant.as_deref()).to_string()]);
    };
    let mut keys = BTreeSet::new();
    let mut transition = Transition::open(store, &*data.tg_relation, natts);
    while let Some(row) = transition.next() {
        memory.scratch(|| {
            keys.insert(chain::key(row_tenant(table, statement, &row).as_deref()).to_string())
        });
    }
    keys
}

/// The tenant an audit row is recorded under: the row's tenant column, or the context's for a
/// table without one.
unsafe fn row_tenant(table: &AuditedTable, statement: &Statement, row: &Tuple) -> Option<String> {
    table
        .tenant(row)
        .unwrap_or_else(|| statement.context_tenant.clone())
}

/// Render the statement's audit rows and hand each to `write` (in the row's scratch memory,
/// reset after it). UPDATE reads the old and new transition tables in lockstep: PostgreSQL
/// appends each updated row's old and new versions to them together, so the n-th old row and
/// the n-th new row are the same row (even when its primary key changed).
unsafe fn render_rows(
    data: &pg_sys::TriggerData,
    table: &AuditedTable,
    statement: &Statement,
    memory: &StatementMemory,
    write: &mut dyn FnMut(&AuditRow),
) {
    let relation = &*data.tg_relation;
    let natts = table.natts();
    match statement.op {
        Op::Truncate | Op::Denied => memory.scratch(|| {
            write(&AuditRow {
                tenant: statement.context_tenant.clone(),
                pk: None,
                old: None,
                new: None,
            })
        }),
        Op::Insert | Op::Delete => {
            let store = tenant_rows(data, statement.op).expect("a row operation");
            let mut transition = Transition::open(store, relation, natts);
            while let Some(row) = transition.next() {
                memory.scratch(|| {
                    let image = table.image(&row);
                    write(&AuditRow {
                        tenant: row_tenant(table, statement, &row),
                        pk: Some(table.primary_key(&row)),
                        old: (statement.op == Op::Delete).then_some(image),
                        new: (statement.op == Op::Insert).then_some(image),
                    })
                });
            }
        }
        Op::Update => {
            let mut old_rows = Transition::open(data.tg_oldtable, relation, natts);
            let mut new_rows = Transition::open(data.tg_newtable, relation, natts);
            loop {
                match (old_rows.next(), new_rows.next()) {
                    (Some(old), Some(new)) => memory.scratch(|| {
                        if let Some((old_image, new_image)) = table.changes(&old, &new) {
                            write(&AuditRow {
                                tenant: row_tenant(table, statement, &new),
                                pk: Some(table.primary_key(&old)),
                                old: Some(old_image),
                                new: Some(new_image),
                            })
                        }
                    }),
                    (None, None) => break,
                    _ => error::raise(error::internal(
                        "the old and new transition tables of an UPDATE differ in length",
                    )),
                }
            }
        }
    }
}

// No SET search_path clause: setting and restoring it would cost every audited statement a
// search path recomputation. Nothing here resolves a name through the caller's path: the
// renderer calls no SQL, and the SQL the writer runs is fully schema-qualified (see
// `privilege.rs`). Not executable by PUBLIC (see sql/finalize.sql): only tenant_guard attaches it.
#[pg_trigger(sql = r#"
CREATE FUNCTION tenant_guard.audit_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn audit_trigger<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    use pgrx::{PgTriggerLevel, PgTriggerOperation, PgTriggerWhen};
    let after = matches!(trigger.when()?, PgTriggerWhen::After);
    if !after || !matches!(trigger.level(), PgTriggerLevel::Statement) {
        error::raise(error::malformed(
            "tenant_guard: audit_trigger must fire AFTER ... FOR EACH STATEMENT",
            "Let tenant_guard.enable_tenant_audit() create the triggers.",
        ));
    }
    if super::discarded() {
        return Ok(None);
    }
    let op = match trigger.op()? {
        PgTriggerOperation::Insert => Op::Insert,
        PgTriggerOperation::Update => Op::Update,
        PgTriggerOperation::Delete => Op::Delete,
        PgTriggerOperation::Truncate => Op::Truncate,
    };
    let data = trigger.trigger_data();
    let relation = unsafe { &*data.tg_relation };
    let table = described(relation);
    let statement = Statement::capture(relation, op);
    let memory = StatementMemory::new();
    let keys = table
        .chained
        .then(|| unsafe { chain_keys(data, &table, &statement, &memory) });
    // Opened at the first row: a statement that changed nothing logged writes nothing.
    let mut log: Option<Log> = None;
    unsafe {
        render_rows(data, &table, &statement, &memory, &mut |row| {
            log.get_or_insert_with(|| Log::open(&statement, keys.as_ref(), &memory))
                .write(row)
        })
    };
    if let Some(log) = log {
        log.close();
    }
    Ok(None)
}
