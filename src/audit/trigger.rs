//! The audit trigger: one cached, set-based statement per audited statement.
//!
//! Statement-level AFTER triggers (INSERT, UPDATE, DELETE with transition tables; TRUNCATE)
//! call `audit_trigger`. It prepares the table's statement once per backend (see
//! `statements.rs`), keeps the plan, and runs it as the extension owner: the app role has no
//! privilege on the log, so nothing but this trigger can write it. A failure aborts the audited
//! statement with it: no change without its audit row.
//!
//! Cached plans embed the table's column names and the shape of its transition tables, so a
//! relcache invalidation of the table (any ALTER, enable/disable) drops them; they are freed
//! at the next trigger call that is not inside an audit statement.
//!
//! The trigger function has no `SET search_path`: the cached statement is immune to the
//! caller's search_path by construction, and everything else it runs pins one.

use super::chain;
use super::config;
use super::statements::{self, AuditedTable, Op};
use crate::catalog;
use crate::error;
use crate::gucs;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::rc::Rc;

/// Prepared statements of one table and operation.
/// Cloned once per audited statement, so the table's description is shared, not copied.
#[derive(Clone)]
pub struct Plans {
    pub table: Rc<AuditedTable>,
    /// The plain insert, or (hash chain) the digest query and the chained insert.
    pub insert: pg_sys::SPIPlanPtr,
    pub chain: Option<(pg_sys::SPIPlanPtr, pg_sys::SPIPlanPtr)>,
}

// Borrows of PLANS are short and never held across SPI: SPI takes locks, taking a lock
// processes invalidations, and the invalidation callback borrows PLANS.
thread_local! {
    static PLANS: RefCell<HashMap<(pg_sys::Oid, Op), Plans>> = RefCell::new(HashMap::new());
    static STALE: RefCell<Vec<pg_sys::SPIPlanPtr>> = const { RefCell::new(Vec::new()) };
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Bumped by every invalidation: a plan built while it changed is used once, not cached.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Register the relcache callback (from `_PG_init`, once per backend).
pub fn init() {
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_plans), pg_sys::Datum::from(0)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_plans(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    GENERATION.set(GENERATION.get() + 1);
    catalog::forget_extension_owner();
    PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        let stale: Vec<(pg_sys::Oid, Op)> = plans
            .keys()
            .filter(|(table, _)| relid == pg_sys::InvalidOid || *table == relid)
            .copied()
            .collect();
        STALE.with(|queue| {
            let mut queue = queue.borrow_mut();
            for key in stale {
                if let Some(entry) = plans.remove(&key) {
                    queue.extend(entry.pointers());
                }
            }
        });
    });
}

impl Plans {
    fn pointers(&self) -> Vec<pg_sys::SPIPlanPtr> {
        let mut pointers = vec![self.insert];
        if let Some((digests, insert)) = self.chain {
            pointers.extend([digests, insert]);
        }
        pointers
    }
}

/// The plans of `relid` and `op`: cached, or built (SPI) and cached unless an invalidation
/// arrived meanwhile, in which case the plans built here are used for this statement and then
/// freed (a plan taken from the cache is the invalidation's to free, or still cached).
/// `with_chain` also builds the hash-chain statements.
fn plans_for(relid: pg_sys::Oid, op: Op, with_chain: bool) -> Plans {
    let cached = PLANS.with(|plans| plans.borrow().get(&(relid, op)).cloned());
    if let Some(plans) = &cached {
        if !with_chain || plans.chain.is_some() {
            return plans.clone();
        }
    }
    let generation = GENERATION.get();
    let mut built = Vec::new();
    let plans = catalog::with_pinned_search_path(|| {
        let mut plans = cached.unwrap_or_else(|| {
            let table = config::audited_table(relid).unwrap_or_else(|| {
                error::raise(error::invalid_state(
                    "tenant_guard: audit trigger fired for a table that is not audited",
                    "Call tenant_guard.enable_tenant_audit() or disable_tenant_audit() on it.",
                ))
            });
            let insert = prepare(&table.insert(op), &[]);
            built.push(insert);
            Plans {
                table: Rc::new(table),
                insert,
                chain: None,
            }
        });
        if with_chain && plans.chain.is_none() {
            let (digests, insert) = chain::prepare_statements(&plans.table, op);
            built.extend([digests, insert]);
            plans.chain = Some((digests, insert));
        }
        plans
    });
    if GENERATION.get() == generation {
        PLANS.with(|cache| cache.borrow_mut().insert((relid, op), plans.clone()));
    } else {
        STALE.with(|queue| queue.borrow_mut().extend(built));
    }
    plans
}

/// Free plans dropped by invalidations, unless an audit statement is running right now.
fn free_stale_plans() {
    if DEPTH.get() > 0 {
        return;
    }
    STALE.with(|queue| {
        for plan in queue.borrow_mut().drain(..) {
            unsafe { pg_sys::SPI_freeplan(plan) };
        }
    });
}

/// Marks an audit statement as running while it lives (also when an error unwinds).
struct Running;

impl Running {
    fn start() -> Running {
        DEPTH.set(DEPTH.get() + 1);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get() - 1);
    }
}

/// Prepare `sql` with the audit parameters (and `extra` after them) and keep the plan. Needs an
/// SPI connection with the trigger's transition tables registered.
pub fn prepare(sql: &str, extra: &[pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    let mut types: Vec<pg_sys::Oid> = statements::parameter_types().to_vec();
    types.extend_from_slice(extra);
    let sql = CString::new(sql).expect("generated SQL has no NUL byte");
    unsafe {
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
            let result = pg_sys::SPI_result;
            error::raise(error::internal(format!(
                "could not prepare an audit statement (SPI result {result})"
            )));
        }
        plan
    }
}

/// The per-statement parameters: the context, the role, the table.
pub struct Parameters {
    values: Vec<pg_sys::Datum>,
    nulls: Vec<std::ffi::c_char>,
}

impl Parameters {
    fn new(relation: &pg_sys::RelationData) -> Parameters {
        let mut parameters = Parameters {
            values: Vec::with_capacity(12),
            nulls: Vec::with_capacity(12),
        };
        for setting in [
            &gucs::TENANT_ID_VALUE,
            &gucs::USER_ID_VALUE,
            &gucs::TENANT_ROLE_VALUE,
            &gucs::TRACE_ID_VALUE,
        ] {
            parameters.push(gucs::text_value(setting).and_then(|v| v.into_datum()));
        }
        parameters.push(catalog::current_role_name().into_datum());
        let schema = unsafe {
            let name = pg_sys::get_namespace_name((*relation.rd_rel).relnamespace);
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        };
        let table = unsafe {
            std::ffi::CStr::from_ptr((*relation.rd_rel).relname.data.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        parameters.push(schema.into_datum());
        parameters.push(table.into_datum());
        parameters.push(Some(pg_sys::Datum::from(relation.rd_id)));
        parameters
    }

    pub fn push(&mut self, datum: Option<pg_sys::Datum>) {
        self.values.push(datum.unwrap_or(pg_sys::Datum::from(0)));
        self.nulls.push(if datum.is_some() {
            b' ' as _
        } else {
            b'n' as _
        });
    }

    /// Execute `plan` with these parameters; returns SPI's status.
    pub fn execute(&mut self, plan: pg_sys::SPIPlanPtr) -> i32 {
        unsafe {
            pg_sys::SPI_execute_plan(
                plan,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
                false,
                0,
            )
        }
    }
}

// No SET search_path clause: setting and restoring it costs every audited statement a search
// path recomputation. The cached statement is fully schema-qualified instead, and the SQL this
// function runs otherwise (on a cache miss, with the hash chain) pins one explicitly.
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
    let op = match trigger.op()? {
        PgTriggerOperation::Insert => Op::Insert,
        PgTriggerOperation::Update => Op::Update,
        PgTriggerOperation::Delete => Op::Delete,
        PgTriggerOperation::Truncate => Op::Truncate,
    };
    let data = trigger.trigger_data();
    let relation = unsafe { &*data.tg_relation };
    let relid = relation.rd_id;
    let mut parameters = Parameters::new(relation);
    let chained = gucs::AUDIT_HASH_CHAIN.get();

    free_stale_plans();
    let _running = Running::start();
    catalog::as_extension_owner(|| unsafe {
        pg_sys::SPI_connect();
        pg_sys::SPI_register_trigger_data(data as *const _ as *mut _);
        let plans = plans_for(relid, op, chained);
        let status = match plans.chain {
            Some(statements) if chained => {
                catalog::with_pinned_search_path(|| chain::write(statements, &mut parameters))
            }
            _ => parameters.execute(plans.insert),
        };
        if status < 0 {
            error::raise(error::internal(format!(
                "writing the audit rows failed (SPI result {status})"
            )));
        }
        pg_sys::SPI_finish();
    });
    Ok(None)
}
