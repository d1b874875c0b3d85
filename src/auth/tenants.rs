//! `tenant_guard.tenants`: the tenants API keys and memberships belong to, with a status and a
//! plan. Registering a tenant fixes its one spelling (the context's rules). A suspended tenant
//! gets no context through any entry point.

use crate::auth::{self, read};
use crate::error::{self, Result};
use crate::privilege;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashSet;

thread_local! {
    /// The suspended tenants, as of an epoch.
    static SUSPENDED: RefCell<Option<(u64, HashSet<String>)>> = const { RefCell::new(None) };
}

fn suspended(tenant_id: &str) -> bool {
    let epoch = auth::epoch();
    let cached = SUSPENDED.with(|cache| match cache.borrow().as_ref() {
        Some((at, set)) if *at == epoch => Some(set.contains(tenant_id)),
        _ => None,
    });
    if let Some(answer) = cached {
        return answer;
    }
    let set: HashSet<String> = read::select(
        "SELECT tenant_id FROM tenant_guard.tenants
          WHERE status OPERATOR(pg_catalog.=) 'suspended'",
        &[],
        |row| row.get::<String>(1).unwrap_or_default(),
    )
    .into_iter()
    .collect();
    let answer = set.contains(tenant_id);
    SUSPENDED.with(|cache| *cache.borrow_mut() = Some((epoch, set)));
    answer
}

/// 42501 for a suspended tenant (every entry point asks).
pub fn require_active(tenant_id: &str) -> Result<()> {
    if suspended(tenant_id) {
        return Err(error::forbidden(
            format!("tenant_guard: tenant '{tenant_id}' is suspended"),
            "An administrator resumes it: tenant_guard.set_tenant_status(tenant_id, 'active').",
        ));
    }
    Ok(())
}

/// Whether a tenant is registered (in any status).
pub fn exists(tenant_id: &str) -> bool {
    privilege::as_extension_owner(|| {
        crate::catalog::select_exists(
            "SELECT EXISTS (SELECT 1 FROM tenant_guard.tenants
                             WHERE tenant_id OPERATOR(pg_catalog.=) $1)",
            &[tenant_id.into()],
        )
    })
}

/// 42704 for a tenant that is not registered.
pub fn require_registered(tenant_id: &str) -> Result<()> {
    if exists(tenant_id) {
        return Ok(());
    }
    Err(error::undefined_object(
        format!("tenant_guard: tenant '{tenant_id}' is not registered"),
        "Register it first: SELECT tenant_guard.add_tenant('<tenant id>');",
    ))
}

/// A tenant id argument: not NULL, and spelled as a context would spell it (22023).
pub fn tenant_argument(tenant_id: Option<&str>) -> Result<&str> {
    let Some(tenant_id) = tenant_id else {
        return Err(error::malformed(
            "tenant_guard: tenant_id must not be NULL",
            "Pass the tenant's id.",
        ));
    };
    crate::context::validate_tenant_id(tenant_id)?;
    Ok(tenant_id)
}

/// Register a tenant (or change its plan). Idempotent. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn add_tenant(tenant_id: Option<&str>, plan: default!(Option<&str>, "NULL")) -> Result<()> {
    auth::require_admin("add_tenant")?;
    let tenant_id = tenant_argument(tenant_id)?;
    if let Some(plan) = plan {
        crate::context::validate_value("plan", plan)?;
    }
    let added_by = crate::catalog::current_role_name();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.tenants (tenant_id, plan, added_by) VALUES ($1, $2, $3::pg_catalog.name)
             ON CONFLICT (tenant_id) DO UPDATE SET plan = excluded.plan",
            &[tenant_id.into(), plan.into(), added_by.as_str().into()],
        )
    })
    .map_err(error::internal)?;
    Ok(())
}

/// Suspend a tenant ('suspended': no entry point gives it a context, and its session contexts
/// end at their next query) or resume it ('active'). For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn set_tenant_status(tenant_id: Option<&str>, status: Option<&str>) -> Result<()> {
    auth::require_admin("set_tenant_status")?;
    let tenant_id = tenant_argument(tenant_id)?;
    let status = match status {
        Some(status @ ("active" | "suspended")) => status,
        _ => {
            return Err(error::malformed(
                "tenant_guard: status must be 'active' or 'suspended'",
                "Pass 'active' or 'suspended'.",
            ))
        }
    };
    require_registered(tenant_id)?;
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "UPDATE tenant_guard.tenants SET status = $2 WHERE tenant_id OPERATOR(pg_catalog.=) $1",
            &[tenant_id.into(), status.into()],
        )
    })
    .map_err(error::internal)?;
    Ok(())
}
