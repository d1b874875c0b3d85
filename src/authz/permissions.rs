//! Per-role table permissions: which tenant roles may run which commands on a protected table.
//!
//! `set_table_permissions(tbl, tenant_role, commands)` records them in
//! `tenant_guard.table_permissions` and regenerates the table's policies: for each command a
//! RESTRICTIVE policy `tenant_guard_permit_<command>` whose expression is
//! `(SELECT tenant_guard.permitted('<table>'::regclass, '<COMMAND>', '{<roles>}'))`, an InitPlan
//! evaluated once per query. The roles are written into the policy (visible to anyone reading
//! `pg_policies`, no lookup at query time); partitions and children carry the same policies.
//!
//! A denied command is an error, not silently fewer rows: `permitted` raises 42501 naming the
//! role, the table and the command. A query whose plan never evaluates the policy (an empty
//! table, say) returns nothing either way. A table without permissions has no such policies;
//! a table with some denies every role not listed, and a context without a role.

use crate::catalog::{self, Table};
use crate::context;
use crate::error::{self, Result};
use crate::guard::OwnDdl;
use crate::policy;
use crate::privilege;
use crate::sqltypes::RegClass;
use pgrx::prelude::*;

/// The commands, in the order their policies are generated.
pub const COMMANDS: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

/// Per command, the roles that may run it (sorted), or None when the table (or the protected
/// table it belongs to) has no permissions.
pub fn roles_by_command(top: pg_sys::Oid) -> Option<Vec<(&'static str, Vec<String>)>> {
    let rows: Vec<(String, Vec<String>)> = Spi::connect(|client| {
        client
            .select(
                "SELECT tenant_role, commands FROM tenant_guard.table_permissions
                  WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass
                  ORDER BY tenant_role COLLATE \"C\"",
                None,
                &[top.into()],
            )?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<Vec<String>>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<pgrx::spi::SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)));
    if rows.is_empty() {
        return None;
    }
    Some(
        COMMANDS
            .iter()
            .map(|command| {
                let roles = rows
                    .iter()
                    .filter(|(_, commands)| commands.iter().any(|c| c == command))
                    .map(|(role, _)| role.clone())
                    .collect();
                (*command, roles)
            })
            .collect(),
    )
}

/// `commands` as given: each SELECT, INSERT, UPDATE, DELETE or ALL (any case), no NULLs, at
/// least one; returned in `COMMANDS` order.
fn command_list(commands: Option<Vec<Option<String>>>) -> Result<Vec<String>> {
    let hint = "Pass some of SELECT, INSERT, UPDATE, DELETE (or ALL), e.g. ARRAY['SELECT'].";
    let Some(commands) = commands else {
        return Err(error::malformed(
            "tenant_guard: commands must not be NULL",
            hint,
        ));
    };
    if commands.is_empty() {
        return Err(error::malformed(
            "tenant_guard: commands must not be empty",
            "A role that may do nothing needs no entry (roles not listed are denied): use \
             tenant_guard.remove_table_permissions(tbl, tenant_role).",
        ));
    }
    let mut wanted = Vec::new();
    for command in commands {
        let Some(command) = command else {
            return Err(error::malformed(
                "tenant_guard: commands must not contain NULL",
                hint,
            ));
        };
        let upper = command.to_ascii_uppercase();
        if upper == "ALL" {
            wanted.extend(COMMANDS);
        } else if let Some(known) = COMMANDS.iter().find(|c| **c == upper) {
            wanted.push(known);
        } else {
            return Err(error::malformed(
                "tenant_guard: unknown command in commands",
                hint,
            ));
        }
    }
    Ok(COMMANDS
        .iter()
        .filter(|c| wanted.contains(c))
        .map(|c| c.to_string())
        .collect())
}

/// Let `tenant_role` run `commands` (SELECT, INSERT, UPDATE, DELETE, ALL) on a protected table
/// and its partitions; roles not listed for a command are denied it. Replaces the role's
/// earlier commands. For the table's owner (like enable_tenant_rls).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn set_table_permissions(
    tbl: Option<RegClass>,
    tenant_role: Option<&str>,
    commands: Option<Vec<Option<String>>>,
) -> Result<()> {
    let (table, _) = policy::protected_top(tbl)?;
    let Some(role) = tenant_role else {
        return Err(error::malformed(
            "tenant_guard: tenant_role must not be NULL",
            "Pass the tenant role (the role the context carries), e.g. 'viewer'.",
        ));
    };
    context::validate_value("tenant_role", role)?;
    let commands = command_list(commands)?;
    let granted_by = catalog::current_role_name();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.table_permissions (relid, tenant_role, commands, granted_by)
             VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4::pg_catalog.name)
             ON CONFLICT (relid, tenant_role) DO UPDATE
                SET commands = excluded.commands, granted_by = excluded.granted_by,
                    granted_at = pg_catalog.now()",
            &[
                table.oid.into(),
                role.into(),
                commands.into(),
                granted_by.as_str().into(),
            ],
        )
    })
    .map_err(error::internal)?;
    let _ours = OwnDdl::start();
    policy::reprotect(&table, |_| {})
}

/// Remove a role's permissions on a table (NULL: every role's, which lifts the per-role
/// restriction). Idempotent. For the table's owner.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn remove_table_permissions(
    tbl: Option<RegClass>,
    tenant_role: default!(Option<&str>, "NULL"),
) -> Result<()> {
    let (table, _) = policy::protected_top(tbl)?;
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "DELETE FROM tenant_guard.table_permissions
              WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass
                AND ($2::pg_catalog.text IS NULL OR tenant_role OPERATOR(pg_catalog.=) $2)",
            &[table.oid.into(), tenant_role.into()],
        )
    })
    .map_err(error::internal)?;
    let _ours = OwnDdl::start();
    policy::reprotect(&table, |_| {})
}

/// Give `to` the permissions of `from` (a partition detached from its protected table keeps
/// what its policies say).
pub fn copy(from: pg_sys::Oid, to: pg_sys::Oid) -> Result<()> {
    forget(&[to])?;
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.table_permissions (relid, tenant_role, commands, granted_by)
             SELECT $2::pg_catalog.oid::pg_catalog.regclass, tenant_role, commands, granted_by
               FROM tenant_guard.table_permissions
              WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass",
            &[from.into(), to.into()],
        )
    })
    .map_err(error::internal)
}

/// Forget the permissions of tables that are no longer protected or were dropped.
pub fn forget(relids: &[pg_sys::Oid]) -> Result<()> {
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "DELETE FROM tenant_guard.table_permissions
              WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])",
            &[relids.to_vec().into()],
        )
    })
    .map_err(error::internal)
}

/// The expression of the generated permission policies: true when the context's tenant role is
/// one of `roles`; otherwise 42501 naming the role, the table and the command.
/// The tenant policies of the same query bind the transaction and check the credential
/// (`required_tenant_id`); this reads the role only, once per query.
#[pg_extern(stable, parallel_safe)]
pub fn permitted(
    tbl: Option<RegClass>,
    command: Option<&str>,
    roles: Option<pgrx::datum::Array<'_, &str>>,
) -> Result<bool> {
    let table_name = || {
        tbl.and_then(|t| Table::lookup(t.0))
            .map(|t| t.qualified())
            .unwrap_or_else(|| "the table".to_string())
    };
    let command = command.unwrap_or("?");
    if context::current_tenant_id().is_none() {
        if crate::gucs::REQUIRE_CONTEXT.get() {
            return Err(context::missing_context(&table_name()));
        }
        return Ok(false);
    }
    let role = context::current_tenant_role();
    if let (Some(role), Some(roles)) = (&role, &roles) {
        if roles.iter().any(|r| r == Some(role.as_str())) {
            return Ok(true);
        }
    }
    let roles: Vec<&str> = roles.iter().flat_map(|a| a.iter().flatten()).collect();
    let allowed = if roles.is_empty() {
        "no role".to_string()
    } else {
        roles.join(", ")
    };
    Err(error::forbidden(
        match &role {
            Some(role) => format!(
                "tenant_guard: tenant role \"{role}\" may not {command} on {}",
                table_name()
            ),
            None => format!(
                "tenant_guard: the tenant context has no role, and {} has per-role permissions ({command})",
                table_name()
            ),
        },
        format!(
            "{command} on {} is allowed to: {allowed}. The table's owner changes that with \
             tenant_guard.set_table_permissions().",
            table_name()
        ),
    ))
}
