//! Statements the audit trigger prepares once per backend and keeps: the insert of the rendered
//! rows and the hash chain's head statements. Every one is fully schema-qualified (see
//! `privilege.rs`); PostgreSQL's plan cache re-validates them after DDL on what they use.

use crate::error;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

/// The kept plan of `sql` with parameters of `types`, prepared on first use. Needs an SPI
/// connection (with any ephemeral relation the statement reads registered).
pub unsafe fn plan(sql: &'static str, types: &[pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    if let Some(plan) = PLANS.with(|plans| plans.borrow().get(sql).copied()) {
        return plan;
    }
    let text = CString::new(sql).expect("no NUL byte");
    let mut types = types.to_vec();
    let plan = pg_sys::SPI_prepare(text.as_ptr(), types.len() as i32, types.as_mut_ptr());
    if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
        let result = pg_sys::SPI_result;
        error::raise(error::internal(format!(
            "could not prepare an audit statement (SPI result {result})"
        )));
    }
    PLANS.with(|plans| plans.borrow_mut().insert(sql, plan));
    plan
}

/// Execute a kept plan with `args` (None is NULL); raises on failure, returns SPI's status.
pub unsafe fn execute(plan: pg_sys::SPIPlanPtr, args: &[Option<pg_sys::Datum>]) -> i32 {
    let mut values: Vec<pg_sys::Datum> = args
        .iter()
        .map(|a| a.unwrap_or(pg_sys::Datum::from(0)))
        .collect();
    let nulls: Vec<std::ffi::c_char> = args
        .iter()
        .map(|a| if a.is_some() { b' ' } else { b'n' } as std::ffi::c_char)
        .collect();
    let status = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0);
    if status < 0 {
        error::raise(error::internal(format!(
            "an audit statement failed (SPI result {status})"
        )));
    }
    status
}
