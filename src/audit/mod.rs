//! Audit: an append-only, tenant-scoped change log (`tenant_guard.audit_log`) written by
//! set-based statement triggers.
//!
//! - `config`: enable_tenant_audit / disable_tenant_audit and the options the trigger reads;
//! - `trigger`: the trigger, and the cache of audited tables' descriptions;
//! - `table`: an audited table's description and the jsonb images of its rows;
//! - `render`: one value as jsonb, without calling user-definable code;
//! - `write`: the one privileged step, the INSERT of the finished rows;
//! - `plans`: the statements prepared once per backend;
//! - `chain`: the per-tenant hash chain, verify_audit_chain and audit_chain_head.

pub mod chain;
pub mod config;
pub mod plans;
pub mod render;
pub mod table;
pub mod trigger;
pub mod write;

pub use trigger::Op;

use crate::catalog;
use crate::error;
use pgrx::prelude::*;

pub fn init() {
    trigger::init();
}

/// BEFORE UPDATE, DELETE or TRUNCATE on the audit log: only the extension owner may (no other
/// role has the privilege either; this also stops a role that was granted it by mistake).
#[pg_trigger]
fn audit_log_guard<'a>(
    _trigger: &'a pgrx::PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    if unsafe { pg_sys::GetUserId() } != catalog::extension_owner() {
        error::raise(error::forbidden(
            "tenant_guard: tenant_guard.audit_log is append-only",
            "Audit rows cannot be changed or removed, except by the owner of the tenant_guard extension.",
        ));
    }
    Ok(None)
}

thread_local! {
    static DISCARDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with audited statements writing no audit rows: for `assert_tenant_isolation`'s
/// probes, which are rolled back (their audit rows would be too, but not the identity values
/// and chain-head locks writing them takes). Nothing else sets it.
pub fn discarding<T>(f: impl FnOnce() -> T) -> T {
    crate::scoped::while_set(&DISCARDING, f)
}

fn discarded() -> bool {
    DISCARDING.get()
}
