//! Reads of the auth tables: as the extension owner, and on the latest committed state.
//!
//! Plain SPI reads with the statement's snapshot (or, under REPEATABLE READ, the transaction's),
//! which may predate a revocation whose invalidation this backend has already processed: a
//! cache filled from it would be tagged with the new epoch and trusted until the next change.
//! `GetLatestSnapshot()` sees every transaction committed before the read; callers take the
//! epoch *before* reading, so a change committed after the snapshot moves the epoch past what
//! they tagged their answer with.

use crate::error;
use crate::privilege;
use pgrx::datum::{FromDatum, IntoDatum};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

thread_local! {
    /// The backend's saved plans, by query text (the plan cache replans them when the auth
    /// tables change).
    static PLANS: RefCell<HashMap<&'static str, pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

/// The saved plan of `sql`, prepared on first use (inside an SPI connection).
unsafe fn plan(sql: &'static str, types: &mut [pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    if let Some(plan) = PLANS.with(|plans| plans.borrow().get(sql).copied()) {
        return plan;
    }
    let text = CString::new(sql).expect("SQL text has no NUL byte");
    let plan = pg_sys::SPI_prepare(text.as_ptr(), types.len() as i32, types.as_mut_ptr());
    if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
        error::raise(error::internal("could not prepare an auth table query"));
    }
    PLANS.with(|plans| plans.borrow_mut().insert(sql, plan));
    plan
}

/// One row of a result, read by column number (from 1).
pub struct Row {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl Row {
    /// Column `n` as `T` (copied out of SPI's memory), None for NULL.
    pub fn get<T: FromDatum>(&self, n: i32) -> Option<T> {
        unsafe {
            let mut is_null = false;
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, n, &mut is_null);
            let type_oid = pg_sys::SPI_gettypeid(self.desc, n);
            T::from_polymorphic_datum(datum, is_null, type_oid)
        }
    }
}

/// A parameter: a built-in type's value, or NULL of it.
pub fn arg<T: IntoDatum>(value: Option<T>) -> (pg_sys::Oid, Option<pg_sys::Datum>) {
    (T::type_oid(), value.and_then(IntoDatum::into_datum))
}

/// Run `sql` (a SELECT over the auth tables, fully schema-qualified) with `args` on the latest
/// committed state, as the extension owner, and read each row with `read`.
pub fn select<R>(
    sql: &'static str,
    args: &[(pg_sys::Oid, Option<pg_sys::Datum>)],
    mut read: impl FnMut(&Row) -> R,
) -> Vec<R> {
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|(oid, _)| *oid).collect();
    let mut values: Vec<pg_sys::Datum> = args
        .iter()
        .map(|(_, value)| value.unwrap_or(pg_sys::Datum::from(0)))
        .collect();
    let nulls: Vec<std::ffi::c_char> = args
        .iter()
        .map(|(_, value)| if value.is_some() { b' ' } else { b'n' } as std::ffi::c_char)
        .collect();
    privilege::as_extension_owner(|| unsafe {
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
            error::raise(error::internal("SPI_connect failed"));
        }
        let status = pg_sys::SPI_execute_snapshot(
            plan(sql, &mut types),
            values.as_mut_ptr(),
            nulls.as_ptr(),
            pg_sys::GetLatestSnapshot(),
            std::ptr::null_mut(),
            true,
            false,
            0,
        );
        if status != pg_sys::SPI_OK_SELECT as i32 {
            error::raise(error::internal(format!(
                "SPI_execute_snapshot returned {status}"
            )));
        }
        let table = pg_sys::SPI_tuptable;
        let rows = (0..pg_sys::SPI_processed as usize)
            .map(|i| {
                read(&Row {
                    tuple: *(*table).vals.add(i),
                    desc: (*table).tupdesc,
                })
            })
            .collect();
        pg_sys::SPI_finish();
        rows
    })
}
