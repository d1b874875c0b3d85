//! Audit: an append-only, tenant-scoped change log (`tenant_guard.audit_log`) written by
//! set-based statement triggers.
//!
//! - `config`: enable_tenant_audit / disable_tenant_audit and the options the trigger reads;
//! - `statements`: the SQL one audited statement runs;
//! - `trigger`: the trigger, its plan cache and its invalidation;
//! - `chain`: the optional per-tenant hash chain and verify_audit_chain.

pub mod chain;
pub mod config;
pub mod statements;
pub mod trigger;

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
