//! `assert_tenant_isolation(tbl, as_role)`: prove, by trying, that a role cannot cross tenants
//! on a table. With the contexts of two tenants that have rows in it, as `as_role`: row level
//! security applies; only the context tenant's rows are visible (and some are); an INSERT of a
//! copy of a visible row with the other tenant's id fails; an UPDATE and a DELETE without a
//! WHERE (held to the UPDATE and DELETE policies alone) reach only the tenant's own rows; moving
//! rows to the other tenant fails; and TRUNCATE fails. Only 42501 counts as a refusal (0A000
//! too for TRUNCATE of a referenced table); a constraint violation means row level security let
//! the row through (a leak), any other error leaves the result inconclusive. Every probe runs in
//! a subtransaction that is rolled back (the table, the audit log and its sequences stay as they
//! were; denials of the action gate are not recorded), and the caller's own tenant binding is
//! set aside meanwhile. It is for tenant_guard administrators: the probes act for tenants
//! without a credential. The table owner's code (triggers) runs in the probes as `as_role`, as it
//! would for the application.
//!
//! The two tenants are found as the extension owner by grouping the tenant column (a built-in
//! type, compared with its built-in operators); every other statement runs as `as_role`, whose
//! own code (triggers, defaults) is the code under test. The context is set before the user id
//! changes, and the probes run as a security-restricted operation, so nothing they run can set
//! another context.

use crate::audit;
use crate::authz::denial;
use crate::catalog::{select_column, Table};
use crate::context;
use crate::error::{self, Result};
use crate::gucs;
use crate::policy;
use crate::privilege;
use crate::sqltypes::{Name, RegClass};
use crate::tenant_type::TenantType;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use std::ffi::CString;

/// What a probe did: the rows it counted or changed, or the SQLSTATE it failed with.
enum Outcome {
    Rows(i64, i64, i64),
    Failed(String, String),
}

fn sqlstate(code: PgSqlErrorCode) -> String {
    let packed = code as i32;
    (0..5)
        .map(|i| (((packed >> (6 * i)) & 0x3F) as u8 + b'0') as char)
        .collect()
}

/// The context a probe acts with.
struct Acting<'a> {
    role: pg_sys::Oid,
    tenant_role: Option<&'a str>,
    user_id: Option<&'a str>,
}

/// Run `f` as `acting.role` with `tenant`'s context, in a subtransaction that is rolled back.
fn probe(
    acting: &Acting<'_>,
    tenant: &str,
    f: impl FnOnce() -> (i64, i64, i64) + std::panic::UnwindSafe,
) -> Outcome {
    unsafe {
        let memory = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(memory);
        let outcome = PgTryBuilder::new(|| {
            // Transaction-local settings of this subtransaction, undone by its rollback.
            gucs::set(gucs::TENANT_ID, tenant, true);
            gucs::set(gucs::USER_ID, acting.user_id.unwrap_or(""), true);
            gucs::set(gucs::TENANT_ROLE, acting.tenant_role.unwrap_or(""), true);
            gucs::set(gucs::TRACE_ID, "", true);
            gucs::set(gucs::LOCALE, "", true);
            let mut saved_user = pg_sys::InvalidOid;
            let mut saved_context = 0;
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
            pg_sys::SetUserIdAndSecContext(
                acting.role,
                saved_context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
            let (a, b, c) = audit::discarding(|| denial::quietly(f));
            pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
            Outcome::Rows(a, b, c)
        })
        .catch_others(|caught| match caught {
            // A cancel (statement_timeout, Ctrl-C) ends the assertion, it is no refusal.
            CaughtError::PostgresError(ref report)
                if report.sql_error_code() == PgSqlErrorCode::ERRCODE_QUERY_CANCELED =>
            {
                caught.rethrow()
            }
            CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
                Outcome::Failed(
                    sqlstate(report.sql_error_code()),
                    report.message().to_string(),
                )
            }
            other => other.rethrow(),
        })
        .execute();
        // Undoes the probe's writes, settings and user id.
        pg_sys::RollbackAndReleaseCurrentSubTransaction();
        pg_sys::MemoryContextSwitchTo(memory);
        pg_sys::CurrentResourceOwner = owner;
        outcome
    }
}

fn count(sql: &str, args: &[&str]) -> (i64, i64, i64) {
    let args: Vec<_> = args.iter().map(|a| (*a).into()).collect();
    match Spi::get_three_with_args::<i64, i64, i64>(sql, &args) {
        Ok((a, b, c)) => (a.unwrap_or(0), b.unwrap_or(0), c.unwrap_or(0)),
        Err(e) => error::raise(error::internal(e)),
    }
}

fn change(sql: &str, args: &[&str]) -> (i64, i64, i64) {
    let args: Vec<_> = args.iter().map(|a| (*a).into()).collect();
    Spi::connect_mut(|client| {
        client
            .update(sql, None, &args)
            .map(|t| (t.len() as i64, 0, 0))
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

/// Record how one kind of attempt was refused.
fn refused(refusals: &mut Vec<(&'static str, Vec<String>)>, kind: &'static str, how: String) {
    match refusals.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, hows)) if hows.contains(&how) => {}
        Some((_, hows)) => hows.push(how),
        None => refusals.push((kind, vec![how])),
    }
}

fn fail(message: String) -> Result<String> {
    Err(error::assertion_failed(
        message,
        "Run SELECT * FROM tenant_guard.check(); for the configuration that allows it.",
    ))
}

/// Raise (P0004) unless `as_role` is held to the context's tenant on `tbl`; return a summary
/// starting with 'isolated' when it is, or with 'inconclusive' when the table lacks rows of
/// two tenants (or the role cannot read them). `tenant_role` and `user_id` complete the context
/// the probes act with (for per-role permissions and user-private rows).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn assert_tenant_isolation(
    tbl: Option<RegClass>,
    as_role: Option<Name>,
    tenant_role: default!(Option<&str>, "NULL"),
    user_id: default!(Option<&str>, "NULL"),
) -> Result<String> {
    let table = Table::from_argument(tbl)?;
    let Some(Name(role_name)) = as_role else {
        return Err(error::malformed(
            "tenant_guard: as_role must not be NULL",
            "Pass the role the application connects as.",
        ));
    };
    for (argument, value) in [("tenant_role", tenant_role), ("user_id", user_id)] {
        if let Some(value) = value {
            context::validate_value(argument, value)?;
        }
    }
    let role_c = CString::new(role_name.as_str()).map_err(|_| {
        error::malformed(
            "tenant_guard: as_role contains a NUL byte",
            "Pass a role name.",
        )
    })?;
    let role = unsafe { pg_sys::get_role_oid(role_c.as_ptr(), true) };
    if role == pg_sys::InvalidOid {
        return Err(error::undefined_object(
            format!(
                "tenant_guard: role {} does not exist",
                quote_identifier(&role_name)
            ),
            "Pass the role the application connects as.",
        ));
    }
    // The probes act for tenants without a credential, membership or tenant status: that is
    // for tenant_guard administrators, acting as a role whose privileges they have.
    crate::auth::require_admin("assert_tenant_isolation")?;
    let caller = unsafe { pg_sys::GetUserId() };
    if !unsafe { pg_sys::has_privs_of_role(caller, role) } {
        return Err(error::forbidden(
            format!(
                "tenant_guard: assert_tenant_isolation as {} needs that role's privileges",
                quote_identifier(&role_name)
            ),
            format!(
                "Run it as a superuser, or as an administrator that is a member of {}.",
                quote_identifier(&role_name)
            ),
        ));
    }
    let Some(entry) = policy::registered(table.oid) else {
        return fail(format!(
            "tenant_guard: {} is not protected by tenant_guard",
            table.qualified()
        ));
    };
    let bypasses = crate::catalog::select_value::<String>(
        "SELECT CASE WHEN rolsuper THEN 'SUPERUSER' WHEN rolbypassrls THEN 'BYPASSRLS' END
           FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) $1",
        &[role.into()],
    );
    if let Some(attribute) = bypasses {
        return fail(format!(
            "tenant_guard: row level security does not apply to role {} ({attribute}): it reads every tenant's rows of {}",
            quote_identifier(&role_name),
            table.qualified()
        ));
    }
    let kind = TenantType::from_oid(entry.type_oid).unwrap_or(TenantType::Text);
    let name = table.qualified();
    let column = quote_identifier(&entry.column);
    let typed = |n: usize| format!("${n}::{}", kind.sql_name());
    // Two tenants with rows, the most populous first.
    let tenants = privilege::as_extension_owner(|| {
        privilege::with_pinned_search_path(|| {
            select_column::<String>(
                &format!(
                    "SELECT t FROM (SELECT {column}::pg_catalog.text AS t, pg_catalog.count(*) AS n
                                      FROM {name} WHERE {column} IS NOT NULL GROUP BY 1) s
                      ORDER BY n DESC, t LIMIT 2"
                ),
                &[],
            )
        })
    });
    let inconclusive = |why: String| Ok(format!("inconclusive: {why}"));
    if tenants.len() < 2 {
        return inconclusive(format!(
            "{name} needs rows of two tenants; it has rows of {}",
            tenants.len()
        ));
    }
    if tenants
        .iter()
        .any(|t| context::validate_tenant_id(t).is_err())
    {
        return inconclusive(format!("a tenant id in {name} cannot be set as a context"));
    }
    // The columns an INSERT can name: all but generated ones.
    let columns = select_column::<String>(
        "SELECT pg_catalog.quote_ident(attname) FROM pg_catalog.pg_attribute
          WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0
            AND NOT attisdropped AND attgenerated OPERATOR(pg_catalog.=) ''
          ORDER BY attnum",
        &[table.oid.into()],
    );
    let copied: Vec<String> = columns
        .iter()
        .map(|c| if *c == column { typed(2) } else { c.clone() })
        .collect();
    let acting = Acting {
        role,
        tenant_role,
        user_id,
    };
    let may_truncate = crate::catalog::select_exists(
        "SELECT pg_catalog.has_table_privilege($1, $2, 'TRUNCATE')",
        &[role.into(), table.oid.into()],
    );
    // How each kind of attempt was refused (the same in both directions, as a rule).
    let mut refusals: Vec<(&'static str, Vec<String>)> = Vec::new();
    context::with_binding_set_aside(|| {
        for (me, other) in [(&tenants[0], &tenants[1]), (&tenants[1], &tenants[0])] {
            let args = [me.as_str(), other.as_str()];
            let who = format!(
                "as {} with tenant {me}'s context",
                quote_identifier(&role_name)
            );
            // Row level security applies, only this tenant's rows are visible, and some are (a
            // role that sees nothing proves nothing about writes).
            let sql = format!(
                "SELECT pg_catalog.row_security_active({lit})::pg_catalog.int4::pg_catalog.int8,
                        pg_catalog.count(*) FILTER (WHERE {column} IS DISTINCT FROM {me_t}),
                        pg_catalog.count(*) FILTER (WHERE {column} = {me_t})
                   FROM {name}",
                lit = table.regclass_literal(),
                me_t = typed(1),
            );
            match probe(&acting, me, || count(&sql, &args)) {
                Outcome::Rows(0, ..) => {
                    return fail(format!(
                        "tenant_guard: row level security does not apply to {} on {name}",
                        quote_identifier(&role_name)
                    ))
                }
                Outcome::Rows(_, foreign, _) if foreign > 0 => {
                    return fail(format!(
                    "tenant_guard: {who}, {foreign} row(s) of other tenants in {name} are visible"
                ))
                }
                Outcome::Rows(_, _, 0) => {
                    return inconclusive(format!(
                        "{who}, none of the tenant's rows in {name} are visible (pass the tenant_role or user_id the rows need)"
                    ))
                }
                Outcome::Rows(..) => {}
                Outcome::Failed(state, message) => {
                    return inconclusive(format!(
                        "{who}, reading {name} failed ({state}: {message})"
                    ))
                }
            }
            // Blind writes (no WHERE, nothing read) are judged by the UPDATE and DELETE
            // policies alone: they must reach this tenant's rows and no others. A write that
            // reads a column is also held to the SELECT policies, which would hide a too-wide
            // UPDATE or DELETE policy.
            let attempts = [
                (
                    "INSERT",
                    "INSERT of a row for tenant {other}",
                    format!(
                        "INSERT INTO {name} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {name} LIMIT 1",
                        columns.join(", "),
                        copied.join(", ")
                    ),
                ),
                (
                    "UPDATE",
                    "UPDATE without a WHERE",
                    format!("UPDATE {name} SET {column} = {}", typed(1)),
                ),
                (
                    "UPDATE moving rows",
                    "UPDATE moving rows to tenant {other}",
                    format!("UPDATE {name} SET {column} = {}", typed(2)),
                ),
                (
                    "DELETE",
                    "DELETE without a WHERE",
                    format!("DELETE FROM {name}"),
                ),
                ("TRUNCATE", "TRUNCATE", format!("TRUNCATE {name}")),
            ];
            for (kind, what, sql) in attempts {
                let what = what.replace("{other}", other);
                if kind == "TRUNCATE" && !may_truncate {
                    refused(&mut refusals, kind, "not granted".to_string());
                    continue;
                }
                let own_rows = format!(
                    "SELECT pg_catalog.count(*), 0::pg_catalog.int8, 0::pg_catalog.int8 FROM {name}"
                );
                match probe(&acting, me, || {
                    // The rows this tenant sees, then the write, in one subtransaction.
                    let (own, _, _) = count(&own_rows, &[]);
                    let (written, _, _) = change(&sql, &args);
                    (written, own, 0)
                }) {
                    // A blind UPDATE or DELETE that stays within the tenant's own rows.
                    Outcome::Rows(n, own, _)
                        if (kind == "UPDATE" || kind == "DELETE") && n <= own =>
                    {
                        refused(&mut refusals, kind, format!("own rows only ({n})"))
                    }
                    Outcome::Rows(0, ..) if kind != "TRUNCATE" => {
                        refused(&mut refusals, kind, "no row".to_string())
                    }
                    Outcome::Rows(n, own, _) if kind == "UPDATE" || kind == "DELETE" => {
                        return fail(format!(
                            "tenant_guard: {who}, {what} on {name} reached {} row(s) of other tenants",
                            n - own
                        ))
                    }
                    Outcome::Rows(n, ..) => {
                        return fail(format!(
                            "tenant_guard: {who}, {what} on {name} succeeded ({n} row(s))"
                        ))
                    }
                    // Row level security refused it (or a privilege, or the TRUNCATE guard);
                    // a table referenced by foreign keys cannot be truncated at all.
                    Outcome::Failed(state, _)
                        if state == "42501" || (kind == "TRUNCATE" && state == "0A000") =>
                    {
                        refused(&mut refusals, kind, state)
                    }
                    // WITH CHECK runs before constraints: a constraint violation means row level
                    // security let the row through.
                    Outcome::Failed(state, message) if state.starts_with("23") => {
                        return fail(format!(
                            "tenant_guard: {who}, {what} on {name} passed row level security and failed only on a constraint ({state}: {message})"
                        ))
                    }
                    Outcome::Failed(state, message) => {
                        return inconclusive(format!(
                            "{who}, {what} on {name} failed before row level security could refuse it ({state}: {message})"
                        ))
                    }
                }
            }
        }
        let refusals: Vec<String> = refusals
            .iter()
            .map(|(kind, hows)| format!("{kind} {}", hows.join("/")))
            .collect();
        Ok(format!(
            "isolated: {name} as {}, tenants {} and {}: other tenants' rows invisible; across tenants {}",
            quote_identifier(&role_name),
            tenants[0],
            tenants[1],
            refusals.join(", ")
        ))
    })
}
