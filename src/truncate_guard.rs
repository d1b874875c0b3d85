//! The BEFORE TRUNCATE guard that every protected table gets.
//!
//! TRUNCATE is not subject to row level security, so any role that RLS applies to on the table
//! is refused (42501). Superusers and BYPASSRLS roles (to whom RLS does not apply) may truncate.

use crate::catalog::Table;
use crate::error;
use pgrx::prelude::*;

#[pg_trigger]
fn truncate_guard<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let relid = trigger.relid()?;
    let rls = unsafe { pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, true) };
    if rls == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32 {
        let table = Table::lookup(relid)
            .map(|t| t.qualified())
            .unwrap_or_default();
        error::raise(error::forbidden(
            format!("tenant_guard: permission denied to truncate {table}: TRUNCATE bypasses row level security"),
            "Delete the tenant's rows with DELETE, or truncate as a role with BYPASSRLS.",
        ));
    }
    Ok(None)
}
