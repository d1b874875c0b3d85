//! `reapply_protection`: put a table back the way the registry says tenant_guard left it. The
//! fix of the self-check's drift findings (TG002, TG011, TG012, TG015): the tamper guard refuses
//! weakening DDL, but a superuser with the event triggers off (or `session_replication_role =
//! replica`) can still change a table, and a restore can go wrong.

use crate::audit;
use crate::catalog::{Registry, Table};
use crate::error::{self, Result};
use crate::expected;
use crate::guard::OwnDdl;
use crate::policy;
use crate::sqltypes::RegClass;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// `DROP` what tenant_guard did not generate on a protected table: policies, rules, and
/// triggers that carry its name prefix. The guard refuses all three through DDL, so they were
/// added past it; any of them can widen what the generated policies allow.
fn drop_foreign_objects(table: &Table) -> Result<()> {
    let wanted = expected::of(table);
    // `policy "name"` / `rule "name"`, the name already quoted.
    let mut ddl: String = policy::policies_and_rules_of_its_own(table)
        .iter()
        .filter_map(|item| item.split_once(' '))
        .map(|(kind, name)| {
            format!(
                "DROP {} {name} ON {};",
                kind.to_uppercase(),
                table.qualified()
            )
        })
        .collect();
    for trigger in expected::our_triggers(table.oid) {
        if wanted.trigger(&trigger.name).is_none() {
            ddl.push_str(&format!(
                "DROP TRIGGER {} ON {};",
                quote_identifier(&trigger.name),
                table.qualified()
            ));
        }
    }
    if ddl.is_empty() {
        return Ok(());
    }
    // Only a superuser can have added them (past the guard); only a superuser removes them: a
    // restrictive one may be a superuser's deliberate narrowing.
    if !unsafe { pg_sys::superuser() } {
        return Err(error::forbidden(
            format!(
                "tenant_guard: {} has policies, rules or triggers tenant_guard did not generate",
                table.qualified()
            ),
            "They were added past the tamper guard, by a superuser: a superuser runs \
             reapply_protection() to remove them.",
        ));
    }
    Spi::run(&ddl).map_err(error::internal)
}

/// Apply a protected or audited table's registered protection and audit again, to it and its
/// partitions and children, and drop the policies, rules and tenant_guard-named triggers that
/// tenant_guard did not generate on its protected tables. Run it as the table's owner.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn reapply_protection(tbl: Option<RegClass>) -> Result<()> {
    let table = Table::from_argument(tbl)?;
    policy::check_protectable(&table)?;
    let protected = policy::registered(table.oid);
    let audited = audit::config::options(table.oid);
    if let Some(parent) = protected.as_ref().and_then(|entry| entry.parent) {
        return Err(Registry::Protection.partition_error(&table, parent));
    }
    if let Some(parent) = audited.as_ref().and_then(|options| options.parent) {
        return Err(Registry::Audit.partition_error(&table, parent));
    }
    if protected.is_none() && audited.is_none() {
        return Err(error::invalid_state(
            format!(
                "tenant_guard: {} is neither protected nor audited",
                table.qualified()
            ),
            "Protect it with tenant_guard.enable_tenant_rls() (or audit it with enable_tenant_audit()).",
        ));
    }
    let _ours = OwnDdl::start();
    if protected.is_some() {
        for oid in std::iter::once(table.oid).chain(table.descendants()) {
            if policy::registered(oid).is_some() {
                drop_foreign_objects(&Table::require(oid)?)?;
            }
        }
    }
    // Audit first: re-protecting checks the whole table against what is expected of it.
    audit::config::reapply(&table)?;
    if protected.is_some() {
        policy::reprotect(&table, |_| {})?;
    }
    Ok(())
}
