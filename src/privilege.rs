//! The identities tenant_guard's code runs as, and why each switch is safe.
//!
//! Almost everything runs as the role that called it: DDL on a user's table needs that role's
//! own ownership, a policy's `required_tenant_id` runs as the querying role, triggers run as the
//! role whose statement fired them. The extension owner (a superuser: the extension is
//! `superuser = true`) is needed only to write tenant_guard's own tables, which no other role
//! may write. The contract (docs/DESIGN.md, "Identities"):
//!
//! > No code that a non-superuser can define or redirect (a function, cast, operator, type,
//! > default expression, trigger, rule, policy, or a name resolved through the caller's
//! > search_path) ever runs with the extension owner's privileges.
//!
//! Every switch goes through [`as_extension_owner`], and its callers are exactly these:
//!
//! 1. **Registry writes** (`policy.rs`, `audit/config.rs`, `event.rs`): INSERT, UPDATE and
//!    DELETE of `tenant_guard.protected_tables`, `excluded_tables` and `audit_config`, with
//!    parameters of built-in types and fully schema-qualified SQL. Those tables are owned by
//!    the extension owner, so only it can give them triggers, rules or defaults.
//! 2. **Trigger creation** (`policy.rs`, `audit/config.rs`): `CREATE TRIGGER ... EXECUTE
//!    FUNCTION tenant_guard.<function>()` on a table the caller owns (checked before). The
//!    trigger functions are not executable by PUBLIC (a hand-attached audit trigger could forge
//!    audit rows), so the owner creates them. CREATE TRIGGER evaluates nothing: no WHEN clause,
//!    no arguments. The event triggers it fires are tenant_guard's own (only superusers create
//!    event triggers).
//! 3. **The audit write** (`audit/write.rs`): `INSERT INTO tenant_guard.audit_log ... SELECT
//!    ... FROM` a tuplestore of finished rows. The rows are rendered *before* the switch, in
//!    Rust, as the invoking role, and without user-definable code (`audit/render.rs`); the
//!    privileged statement only copies values of built-in types into the log.
//! 4. **The hash chain** (`audit/chain.rs`): locking, reading and advancing rows of
//!    `tenant_guard.audit_chain_heads`, and reading `audit_log` to verify a chain.
//! 5. **The auth tables** (`auth/`): reading `tenant_guard.tenants`, `memberships`,
//!    `token_keys`, `revoked_tokens` and `api_keys` to verify a credential (as any caller of an
//!    entry point, and from `required_tenant_id` when they changed), and writing them from the
//!    administration functions after `auth::require_admin`. Parameters of built-in types, fully
//!    qualified SQL; the tables are the extension owner's and readable by nobody else.
//! 6. **The authorization registry** (`authz/`): writes of `tenant_guard.table_permissions`
//!    (after the table's ownership is checked), `actions` and `action_rules` (after
//!    `auth::require_admin`), and reads of the rules and plans; built-in types, fully
//!    qualified SQL.
//!
//! 7. **The tenants of an isolation assertion** (`check/isolation.rs`, for administrators): one
//!    `SELECT <tenant column>::pg_catalog.text, pg_catalog.count(*) ... GROUP BY` over the
//!    table under test, to find two tenants with rows. The tenant column is of a built-in type,
//!    compared and sorted with its built-in operators (a default operator class for it needs a
//!    superuser), no policy applies to the owner, and a protected table has no rules; the path
//!    is pinned. The probes that follow switch to the role under test instead (lower, not
//!    higher privileges), in subtransactions that are rolled back.
//!
//! One more identity is not a switch: the **denial writer** (`authz/denial.rs`) is a background
//! worker that connects as the extension owner and writes one audit row through (3) and (4),
//! built in Rust from the values `require_action` handed over (strings and numbers in a shared
//! memory segment). It runs no SQL but tenant_guard's own fully qualified statements, and only
//! this library's C code can start it.
//!
//! Every SQL text that runs as the owner is fully schema-qualified down to its operators
//! (`OPERATOR(pg_catalog.=)`) and casts, so it means the same under any search_path; catalog
//! lookups that do not run as the owner are written the same way, so that a caller's objects
//! cannot change their answers either ([`with_pinned_search_path`] adds a pinned path where a
//! lookup runs from a trigger without one). The self-check's catalog queries (`sql/check/`)
//! run as their caller inside functions whose path is pinned to `pg_catalog, pg_temp` (which
//! never looks up functions or operators in `pg_temp`), and are written plainly.
//!
//! The SECURITY DEFINER functions of the extension are the event trigger functions, which
//! are C functions with `SET search_path = pg_catalog, pg_temp` (see `sql/finalize.sql`).

use crate::catalog;
use pgrx::pg_sys;

/// Run `f` with the privileges of the extension owner, as PostgreSQL itself does for
/// referential-integrity checks. An error inside `f` aborts the (sub)transaction, and the abort
/// restores the previous user id. Callers are listed in the module documentation.
pub fn as_extension_owner<T>(f: impl FnOnce() -> T) -> T {
    let owner = catalog::extension_owner();
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_context = 0;
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let result = f();
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    result
}

/// Run `f` with `search_path = pg_catalog, pg_temp`, restored afterwards (on error, by the
/// (sub)transaction abort). A path that cannot be set is an error, never a silent fallback to
/// the caller's path.
pub fn with_pinned_search_path<T>(f: impl FnOnce() -> T) -> T {
    let pinned = crate::gucs::with_setting(
        c"search_path",
        c"pg_catalog, pg_temp",
        pg_sys::GucContext::PGC_USERSET,
        || Ok::<T, std::convert::Infallible>(f()),
    );
    match pinned {
        Ok(result) => result,
        Err(never) => match never {},
    }
}

/// Whether the current role bypasses row level security (a superuser, or BYPASSRLS).
pub fn bypasses_rls() -> bool {
    unsafe { pg_sys::superuser() || pg_sys::has_bypassrls_privilege(pg_sys::GetUserId()) }
}
