//! User-private rows inside a tenant (session isolation for conversation and memory tables):
//! a protected table's user column holds the user each row belongs to; rows are visible and
//! writable only to the context's user, and to tenant roles named as seeing all rows.
//!
//! `enable_user_private_rows(tbl, user_column, all_rows_roles)` records the column in the
//! registry and regenerates the table's policies with a RESTRICTIVE `tenant_guard_private`:
//! `<user column> = (SELECT tenant_guard.required_user_id('<table>'::regclass, NULL::<type>,
//! '{<roles>}'))`, `OR (SELECT tenant_guard.tenant_role_in('{<roles>}'))` when roles are named;
//! the column's default becomes the context's user. A context without a user fails closed with
//! 42501, like one without a tenant; a role that sees all rows needs no user.

use crate::catalog::{Column, Registry, Table};
use crate::context;
use crate::error::{self, Result};
use crate::guard::OwnDdl;
use crate::policy::{self, PrivateRows};
use crate::sqltypes::{Name, RegClass};
use crate::tenant_type::{self, TenantType};
use pgrx::datum::AnyElement;
use pgrx::prelude::*;

fn lookup_user_column(table: &Table, name: &str, tenant_column: &str) -> Result<Column> {
    let column = Column::lookup(table.oid, name).ok_or_else(|| {
        error::undefined_column(
            format!(
                "tenant_guard: column {} of {} does not exist",
                pgrx::spi::quote_identifier(name),
                table.qualified()
            ),
            "Pass user_column => the name of the column holding each row's user.",
        )
    })?;
    if name == tenant_column {
        return Err(error::malformed(
            "tenant_guard: the user column cannot be the tenant column",
            "Pass the column holding each row's user.",
        ));
    }
    if TenantType::from_oid(column.type_oid).is_none() || !column.deterministic {
        return Err(error::malformed(
            format!(
                "tenant_guard: user column {} of {} has type {} or a nondeterministic collation",
                column.quoted(),
                table.qualified(),
                column.type_sql
            ),
            format!(
                "A user column is {} with a deterministic collation.",
                tenant_type::SUPPORTED
            ),
        ));
    }
    Ok(column)
}

/// Make a protected table's rows private to the user in each row's `user_column` (within the
/// tenant); `all_rows_roles` are tenant roles that see and write all of the tenant's rows.
/// Idempotent (re-running replaces the settings). For the table's owner.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn enable_user_private_rows(
    tbl: Option<RegClass>,
    user_column: default!(Option<Name>, "'owner_id'"),
    all_rows_roles: default!(Option<Vec<Option<String>>>, "'{}'"),
) -> Result<()> {
    let (table, entry) = policy::protected_top(tbl)?;
    let Some(Name(name)) = user_column else {
        return Err(error::malformed(
            "tenant_guard: user_column must not be NULL",
            "Pass the column holding each row's user.",
        ));
    };
    let column = lookup_user_column(&table, &name, &entry.column)?;
    let all_rows = super::role_list("all_rows_roles", all_rows_roles)?;
    let _ours = OwnDdl::start();
    policy::reprotect(&table, |protection| {
        protection.private = Some(PrivateRows {
            column: column.name.clone(),
            all_rows,
        })
    })?;
    // Reads of one user's rows use an index led by (tenant, user) when there is one.
    policy::ensure_index(&table, &[&entry.column, &column.name])
}

/// Make a table's rows visible to the whole tenant again (its user column keeps its values).
/// Idempotent. For the table's owner.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn disable_user_private_rows(tbl: Option<RegClass>) -> Result<()> {
    let table = Table::from_argument(tbl)?;
    policy::check_protectable(&table)?;
    let Some(entry) = policy::registered(table.oid) else {
        return Ok(());
    };
    if let Some(parent) = entry.parent {
        return Err(Registry::Protection.partition_error(&table, parent));
    }
    let _ours = OwnDdl::start();
    policy::reprotect(&table, |protection| protection.private = None)
}

fn role_in(roles: &Option<Vec<Option<String>>>) -> bool {
    let Some(role) = context::current_tenant_role() else {
        return false;
    };
    roles
        .as_ref()
        .is_some_and(|roles| roles.iter().flatten().any(|r| *r == role))
}

/// Whether the context's tenant role is one of `roles` (the generated private-rows policy).
#[pg_extern(stable, parallel_safe)]
pub fn tenant_role_in(roles: Option<Vec<Option<String>>>) -> bool {
    role_in(&roles)
}

/// What a user-private table's user column is compared with (and its default): the context's
/// user, typed like `user_type`. NULL for a role in `all_rows_roles` (the policy lets it
/// through by role); without a user, 42501 naming the table.
#[pg_extern(stable, parallel_safe)]
pub fn required_user_id(
    tbl: Option<RegClass>,
    user_type: Option<AnyElement>,
    all_rows_roles: Option<Vec<Option<String>>>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<AnyElement>> {
    let _ = user_type; // only its type matters
    let column = context::TypedColumn::of(fcinfo, "user", tbl)?;
    let table_name = || column.table_name();
    if context::tenant_in_use()?.is_none() {
        if crate::gucs::REQUIRE_CONTEXT.get() {
            return Err(context::missing_context(&table_name()));
        }
        return Ok(None);
    }
    if role_in(&all_rows_roles) {
        return Ok(None);
    }
    let Some(user) = context::current_user_id() else {
        return Err(error::forbidden(
            format!(
                "tenant_guard: the tenant context has no user; the rows of {} are private to their users",
                table_name()
            ),
            "Set the context with a user_id (tenant_guard.set_tenant_context(tenant_id, user_id => ...)), \
             or a token whose sub names the user.",
        ));
    };
    column.value(&user).map(Some)
}
