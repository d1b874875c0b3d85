//! The tamper guard: what protects or audits a table changes only through tenant_guard's own
//! functions, whoever owns the table.
//!
//! The event triggers (`event.rs`) hand every DDL command on a registered table to this module,
//! which judges each change on its own (not the table's whole state: a restore re-creates a
//! table's protection piece by piece) and refuses (42501) what would weaken the protection:
//!
//! - `NO FORCE` / `DISABLE ROW LEVEL SECURITY` on a protected table;
//! - `CREATE POLICY` on a protected table, unless it re-creates a generated policy exactly
//!   (a restore does); `ALTER POLICY`, renaming or dropping a policy of a protected table;
//! - `DISABLE TRIGGER ALL | USER`, and disabling, `ENABLE REPLICA | ALWAYS`, renaming or dropping
//!   one of tenant_guard's triggers; creating a trigger with tenant_guard's name prefix unless it
//!   re-creates a generated trigger exactly;
//! - `CREATE RULE` on a protected or audited table, and making it a typed table (`OF type`);
//! - `SET DEFAULT` / `DROP DEFAULT` on the tenant column, unless it restores the generated one;
//! - inheriting from (or being attached to) a table not protected the same way (`policy::
//!   check_parents`, from the follow-ups in `event.rs`).
//!
//! tenant_guard's own functions change tables through the same DDL; they mark it with
//! [`OwnDdl`], which only code of this library can create and which no user code can run under
//! (the DDL they issue evaluates no user-defined expression). What cannot be refused from
//! inside (a superuser who disables the event triggers, or sets `session_replication_role`)
//! is left for the self-check, which compares every table with `expected.rs`.

use crate::audit;
use crate::catalog::{self, Table};
use crate::error::{self, Result};
use crate::expected::{self, PREFIX};
use crate::policy;
use pgrx::pg_sys;
use pgrx::spi::quote_identifier;
use std::cell::Cell;

thread_local! {
    static OWN_DDL: Cell<u32> = const { Cell::new(0) };
}

/// Marks tenant_guard's own DDL while it lives (also when an error unwinds).
pub struct OwnDdl;

impl OwnDdl {
    pub fn start() -> OwnDdl {
        OWN_DDL.set(OWN_DDL.get() + 1);
        OwnDdl
    }
}

impl Drop for OwnDdl {
    fn drop(&mut self) {
        OWN_DDL.set(OWN_DDL.get().saturating_sub(1));
    }
}

/// Whether the DDL being run is tenant_guard's own.
pub fn own_ddl_running() -> bool {
    OWN_DDL.get() > 0
}

/// At transaction abort (belt and braces: the markers also unwind with the error).
pub fn end_of_transaction() {
    OWN_DDL.set(0);
}

pub const POLICY_CLASS: pg_sys::Oid = pg_sys::Oid::from_u32(3256);
pub const REWRITE_CLASS: pg_sys::Oid = pg_sys::Oid::from_u32(2618);
pub const CONSTRAINT_CLASS: pg_sys::Oid = pg_sys::Oid::from_u32(2606);

fn refuse(message: String, hint: impl Into<String>) -> Result<()> {
    Err(error::forbidden(message, hint))
}

fn table_name(relid: pg_sys::Oid) -> String {
    Table::lookup(relid)
        .map(|t| t.qualified())
        .unwrap_or_else(|| format!("relation {}", relid.to_u32()))
}

#[allow(non_upper_case_globals)] // PostgreSQL's AlterTableType names
/// Judge one ALTER TABLE subcommand on `relid` (the table the command names; `address` is
/// what the subcommand reports, e.g. the column or the attached partition).
pub unsafe fn judge_alter_table(
    relid: pg_sys::Oid,
    command: &pg_sys::AlterTableCmd,
    address: &pg_sys::ObjectAddress,
) -> Result<()> {
    use pg_sys::AlterTableType::*;
    let protected = policy::registered(relid);
    let name = || table_name(relid);
    match command.subtype {
        AT_DisableRowSecurity | AT_NoForceRowSecurity if protected.is_some() => refuse(
            format!(
                "tenant_guard: row level security of protected table {} cannot be disabled or unforced",
                name()
            ),
            format!(
                "Protection changes only through tenant_guard's functions: \
                 SELECT tenant_guard.disable_tenant_rls('{}');",
                name().replace('\'', "''")
            ),
        ),
        AT_DisableTrigAll | AT_DisableTrigUser => {
            let ours = Table::lookup(relid)
                .map(|t| !expected::of(&t).triggers.is_empty())
                .unwrap_or(false);
            if ours {
                return refuse(
                    format!(
                        "tenant_guard: the triggers of {} include tenant_guard's, which cannot be disabled",
                        name()
                    ),
                    "Disable your own triggers by name; tenant_guard's change only through \
                     disable_tenant_rls and disable_tenant_audit.",
                );
            }
            Ok(())
        }
        AT_DisableTrig | AT_EnableAlwaysTrig | AT_EnableReplicaTrig => {
            let trigger = catalog::c_string(command.name).unwrap_or_default();
            if trigger.starts_with(PREFIX) {
                return refuse(
                    format!(
                        "tenant_guard: trigger {} of {} belongs to tenant_guard and stays enabled as generated",
                        quote_identifier(&trigger),
                        name()
                    ),
                    "It changes only through tenant_guard's functions (disable_tenant_rls, \
                     disable_tenant_audit).",
                );
            }
            Ok(())
        }
        AT_AddOf
            if protected.is_some() || audit::config::options(relid).is_some() =>
        {
            refuse(
                format!(
                    "tenant_guard: {} cannot become a typed table while tenant_guard protects or audits it",
                    name()
                ),
                "A typed table's columns are renamed through its type, past tenant_guard's registry.",
            )
        }
        AT_ColumnDefault => {
            let column = catalog::c_string(command.name).unwrap_or_default();
            // The subcommand reports the column of the table it changed (ALTER TABLE recurses
            // to partitions and children).
            let target = if address.classId == pg_sys::RelationRelationId {
                address.objectId
            } else {
                relid
            };
            let Some(table) = Table::lookup(target) else {
                return Ok(());
            };
            let Some((_, wanted)) = expected::of(&table)
                .defaults
                .into_iter()
                .find(|(c, _)| *c == column)
            else {
                return Ok(());
            };
            if expected::column_default(target, &column).as_deref() != Some(wanted.as_str()) {
                return refuse(
                    format!(
                        "tenant_guard: the default of column {} of {} comes from the tenant context and cannot be changed",
                        quote_identifier(&column),
                        table.qualified()
                    ),
                    "It changes only with the table's protection (tenant_guard.disable_tenant_rls).",
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Judge a `CREATE POLICY`, `ALTER POLICY` or policy rename (`created` for CREATE).
pub fn judge_policy(policy_oid: pg_sys::Oid, created: bool) -> Result<()> {
    let Some((relid, actual)) = expected::policy(policy_oid) else {
        return Ok(());
    };
    let Some(table) = Table::lookup(relid) else {
        return Ok(());
    };
    if policy::registered(relid).is_none() {
        return Ok(());
    }
    let expected = expected::of(&table);
    if created && expected.policy(&actual.name) == Some(&actual) {
        return Ok(()); // a generated policy re-created exactly, as by a restore
    }
    if created && expected::is_permission_shaped(&table, &actual) {
        return Ok(()); // a restore ahead of the permissions' registry rows (it only narrows)
    }
    refuse(
        format!(
            "tenant_guard: policies of protected table {} are tenant_guard's and cannot be created, altered or renamed",
            table.qualified()
        ),
        "Row security of a protected table changes only through tenant_guard's functions. \
         To take the table over, call tenant_guard.disable_tenant_rls() first.",
    )
}

/// What a command did to a trigger.
pub enum TriggerChange {
    Created,
    Renamed {
        from: String,
    },
    /// `ALTER TRIGGER ... DEPENDS ON EXTENSION`: dropping that extension would drop the trigger.
    MadeDependent,
}

/// Judge a change to a trigger: tenant_guard's triggers (by name prefix) are re-created only
/// exactly as generated, and never renamed or tied to another extension.
pub fn judge_trigger(trigger_oid: pg_sys::Oid, change: TriggerChange) -> Result<()> {
    let Some((relid, actual)) = expected::trigger_by_oid(trigger_oid) else {
        return Ok(());
    };
    let touches_ours = actual.name.starts_with(PREFIX)
        || matches!(&change, TriggerChange::Renamed { from } if from.starts_with(PREFIX));
    if !touches_ours {
        return Ok(());
    }
    let Some(table) = Table::lookup(relid) else {
        return Ok(());
    };
    if matches!(change, TriggerChange::Created)
        && expected::of(&table).trigger(&actual.name) == Some(&actual)
    {
        return Ok(()); // a generated trigger re-created exactly, as by a restore
    }
    refuse(
        format!(
            "tenant_guard: trigger names starting with {PREFIX} on {} belong to tenant_guard",
            table.qualified()
        ),
        "tenant_guard creates, renames and drops its triggers itself; name yours differently.",
    )
}

/// Judge a `CREATE RULE`.
pub fn judge_rule(relid: pg_sys::Oid) -> Result<()> {
    if policy::registered(relid).is_none() && audit::config::options(relid).is_none() {
        return Ok(());
    }
    refuse(
        format!(
            "tenant_guard: rules cannot be added to {}, which tenant_guard protects or audits",
            table_name(relid)
        ),
        "A rule rewrites statements on the table into others, past its policies or its audit. \
         Use a view or a trigger instead.",
    )
}

/// Judge the drop of a policy or trigger (from `sql_drop`) on `relid`, a table that still
/// exists after the command.
pub fn judge_drop(relid: pg_sys::Oid, object_type: &str, name: &str) -> Result<()> {
    match object_type {
        "policy" if policy::registered(relid).is_some() => refuse(
            format!(
                "tenant_guard: policy {} of protected table {} cannot be dropped",
                quote_identifier(name),
                table_name(relid)
            ),
            "Row security of a protected table changes only through tenant_guard's functions \
             (tenant_guard.disable_tenant_rls).",
        ),
        "trigger" if name.starts_with(PREFIX) => {
            let ours =
                Table::lookup(relid).is_some_and(|t| expected::of(&t).trigger(name).is_some());
            if !ours {
                return Ok(());
            }
            refuse(
                format!(
                    "tenant_guard: trigger {} of {} belongs to tenant_guard and cannot be dropped",
                    quote_identifier(name),
                    table_name(relid)
                ),
                "It goes with the table's protection or audit: tenant_guard.disable_tenant_rls \
                 or tenant_guard.disable_tenant_audit.",
            )
        }
        _ => Ok(()),
    }
}
