//! TG011 and TG014: policies tenant_guard did not generate, judged by their expression trees
//! (`pg_policy.polqual` and `polwithcheck`, parsed back into nodes): the columns they read and
//! the functions they call. PostgreSQL records no dependency on built-in functions, so
//! `pg_depend` cannot tell that a policy calls `current_setting()`; the tree can.
//!
//! TG011 (hand-made policies on protected tables, which the tamper guard refuses through DDL):
//! one that reads the tenant column without comparing it with the context, or a permissive one
//! that reads no column at all (true or false for every row alike: it opens the table to its
//! roles). TG014 (every user policy): `current_setting()` (a setting the session can SET),
//! volatile functions (run per row), and IMMUTABLE functions of a procedural language (the
//! planner may fold them into a cached plan: if they read session state, one session's value
//! serves the next). Whether a PL/pgSQL body reads session state cannot be decided, so the rule
//! goes by volatility and language.

use super::{Finding, Severity};
use crate::error;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal, SpiResult};
use std::ffi::CString;

/// What an expression tree reads and calls.
#[derive(Default)]
struct Uses {
    functions: Vec<pg_sys::Oid>,
    /// Columns of the policy's table (range table entry 1 of the expression's own level).
    columns: Vec<i16>,
    depth: u32,
}

unsafe extern "C-unwind" fn collect_function(
    function: pg_sys::Oid,
    context: *mut std::ffi::c_void,
) -> bool {
    let uses = &mut *(context as *mut Uses);
    uses.functions.push(function);
    false
}

unsafe extern "C-unwind" fn walk(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
    if node.is_null() {
        return false;
    }
    let uses = &mut *(context as *mut Uses);
    if pgrx::is_a(node, pg_sys::NodeTag::T_Query) {
        uses.depth += 1;
        let stop = pg_sys::query_tree_walker(node as *mut pg_sys::Query, Some(walk), context, 0);
        uses.depth -= 1;
        return stop;
    }
    if pgrx::is_a(node, pg_sys::NodeTag::T_Var) {
        let var = &*(node as *mut pg_sys::Var);
        if var.varlevelsup == uses.depth && var.varno == 1 && var.varattno > 0 {
            uses.columns.push(var.varattno);
        }
    }
    pg_sys::check_functions_in_node(node, Some(collect_function), context);
    pg_sys::expression_tree_walker(node, Some(walk), context)
}

/// The uses of a stored expression (`nodeToString` text).
fn uses_of(stored: &str, into: &mut Uses) {
    let Ok(text) = CString::new(stored) else {
        return;
    };
    unsafe {
        let node = pg_sys::stringToNode(text.as_ptr()) as *mut pg_sys::Node;
        walk(node, into as *mut Uses as *mut std::ffi::c_void);
    }
}

struct UserPolicy {
    name: String,
    table: String,
    permissive: bool,
    has_using: bool,
    has_check: bool,
    expressions: Vec<String>,
    /// For a protected table: its tenant column's number and the top table of its protection.
    tenant_attnum: Option<i16>,
    top: Option<String>,
}

/// What the self-check needs to know of a function a policy calls.
struct Called {
    signature: String,
    volatility: String,
    procedural: bool,
    context: bool,
    reads_setting: bool,
}

fn user_policies() -> Vec<UserPolicy> {
    let generated: Vec<&str> = crate::expected::GENERATED_POLICIES.to_vec();
    Spi::connect(|client| {
        client
            .select(
                "SELECT pol.polname::text, pol.polrelid::regclass::text, pol.polpermissive,
                        array_remove(ARRAY[pol.polqual::text, pol.polwithcheck::text], NULL),
                        ta.attnum, coalesce(p.parent, p.relid)::text,
                        pol.polqual IS NOT NULL, pol.polwithcheck IS NOT NULL
                   FROM pg_policy pol
                   JOIN pg_class c ON c.oid = pol.polrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   LEFT JOIN tenant_guard.protected_tables p ON p.relid::oid = pol.polrelid
                   LEFT JOIN pg_attribute ta ON ta.attrelid = pol.polrelid AND ta.attname = p.tenant_column
                  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenant_guard')
                    AND NOT (p.relid IS NOT NULL AND pol.polname = ANY ($1::name[]))
                    AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                       AND d.deptype = 'e')
                  ORDER BY 2, 1",
                None,
                &[generated.into()],
            )?
            .map(|row| {
                Ok(UserPolicy {
                    name: row.get::<String>(1)?.unwrap_or_default(),
                    table: row.get::<String>(2)?.unwrap_or_default(),
                    permissive: row.get::<bool>(3)?.unwrap_or(true),
                    expressions: row.get::<Vec<String>>(4)?.unwrap_or_default(),
                    tenant_attnum: row.get::<i16>(5)?,
                    top: row.get::<String>(6)?,
                    has_using: row.get::<bool>(7)?.unwrap_or(false),
                    has_check: row.get::<bool>(8)?.unwrap_or(false),
                })
            })
            .collect::<SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

fn called(functions: &[pg_sys::Oid]) -> Vec<Called> {
    if functions.is_empty() {
        return Vec::new();
    }
    Spi::connect(|client| {
        client
            .select(
                "SELECT f.oid::regprocedure::text, f.provolatile::text,
                        l.lanname NOT IN ('c', 'internal') AND n.nspname <> 'pg_catalog'
                          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                           WHERE d.classid = 'pg_proc'::regclass AND d.objid = f.oid
                                             AND d.deptype = 'e'),
                        n.nspname = 'tenant_guard'
                          AND f.proname IN ('required_tenant_id', 'current_tenant_id', 'required_user_id',
                                            'current_user_id', 'tenant_role_in', 'current_tenant_role'),
                        f.oid IN ('pg_catalog.current_setting(text)'::regprocedure,
                                  'pg_catalog.current_setting(text, boolean)'::regprocedure)
                   FROM pg_proc f
                   JOIN pg_language l ON l.oid = f.prolang
                   JOIN pg_namespace n ON n.oid = f.pronamespace
                  WHERE f.oid = ANY ($1)",
                None,
                &[functions.to_vec().into()],
            )?
            .map(|row| {
                Ok(Called {
                    signature: row.get::<String>(1)?.unwrap_or_default(),
                    volatility: row.get::<String>(2)?.unwrap_or_default(),
                    procedural: row.get::<bool>(3)?.unwrap_or(false),
                    context: row.get::<bool>(4)?.unwrap_or(false),
                    reads_setting: row.get::<bool>(5)?.unwrap_or(false),
                })
            })
            .collect::<SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

pub fn findings() -> Vec<Finding> {
    let mut found = Vec::new();
    for policy in user_policies() {
        let mut uses = Uses::default();
        for expression in &policy.expressions {
            uses_of(expression, &mut uses);
        }
        uses.functions.sort_by_key(|oid| oid.to_u32());
        uses.functions.dedup();
        let functions = called(&uses.functions);
        let object = format!(
            "policy {} on table {}",
            quote_identifier(&policy.name),
            policy.table
        );
        // Elsewhere the fix removes the call and fails closed: a permissive policy goes (it can
        // only have widened access); a restrictive one becomes false (dropping it would widen).
        let drop = if policy.permissive {
            format!(
                "DROP POLICY IF EXISTS {} ON {};",
                quote_identifier(&policy.name),
                policy.table
            )
        } else {
            let mut clauses = Vec::new();
            if policy.has_using {
                clauses.push("USING (false)");
            }
            if policy.has_check {
                clauses.push("WITH CHECK (false)");
            }
            format!(
                "ALTER POLICY {} ON {} {};  -- fails closed: rewrite it with tenant_guard's context",
                quote_identifier(&policy.name),
                policy.table,
                clauses.join(" ")
            )
        };
        // On a protected table, reapply_protection removes what tenant_guard did not generate.
        let fix = match &policy.top {
            Some(top) => format!(
                "SELECT tenant_guard.reapply_protection({});",
                quote_literal(top)
            ),
            None => drop,
        };
        let finding = |severity, code, message: String| Finding {
            severity,
            code,
            object: object.clone(),
            message,
            fix: fix.clone(),
        };
        if let Some(tenant) = policy.tenant_attnum {
            let reads_tenant = uses.columns.contains(&tenant);
            let reads_context = functions.iter().any(|f| f.context);
            found.push(if reads_tenant && !reads_context {
                finding(
                    Severity::Error,
                    "TG011",
                    format!(
                        "policy {} on protected table {} compares the tenant column with something other than the tenant context",
                        quote_identifier(&policy.name),
                        policy.table
                    ),
                )
            } else if policy.permissive && uses.columns.is_empty() {
                finding(
                    Severity::Error,
                    "TG011",
                    format!(
                        "permissive policy {} on protected table {} reads no column: it is true (or false) for every row alike, and opens the table to its roles past the isolation policy",
                        quote_identifier(&policy.name),
                        policy.table
                    ),
                )
            } else {
                finding(
                    Severity::Warning,
                    "TG011",
                    format!(
                        "policy {} on protected table {} was not generated by tenant_guard (it was added past the tamper guard)",
                        quote_identifier(&policy.name),
                        policy.table
                    ),
                )
            });
        }
        for function in &functions {
            if function.reads_setting {
                found.push(finding(
                    Severity::Error,
                    "TG014",
                    format!(
                        "policy {} on {} calls {}: a setting the session can SET (and a tenant_guard.* one is a placeholder anyone can set until the library loads); read the context with tenant_guard's functions",
                        quote_identifier(&policy.name),
                        policy.table,
                        function.signature
                    ),
                ));
            } else if function.volatility == "v" && !function.context {
                found.push(finding(
                    Severity::Warning,
                    "TG014",
                    format!(
                        "policy {} on {} calls the volatile function {}, which runs for every row and keeps the policy from using an index",
                        quote_identifier(&policy.name),
                        policy.table,
                        function.signature
                    ),
                ));
            } else if function.volatility == "i" && function.procedural {
                found.push(Finding {
                    severity: Severity::Warning,
                    code: "TG014",
                    object: format!("function {}", function.signature),
                    message: format!(
                        "IMMUTABLE function {} is called by policy {} on {}: the planner may fold it into a cached plan, so if it reads session state (a setting, the user) one session's value serves another (an index or generated column that uses it must be rebuilt without it first)",
                        function.signature,
                        quote_identifier(&policy.name),
                        policy.table
                    ),
                    fix: format!("ALTER FUNCTION {} STABLE;", function.signature),
                });
            }
        }
    }
    found
}
