//! Pooled connections: session state that would carry one tenant's data into the next
//! transaction on the same server connection.
//!
//! Behind a transaction pooler, the next transaction on a server connection belongs to another
//! client, acting for another tenant or for none. Three kinds of session state outlive a
//! transaction and can hold what a tenant read: a `WITH HOLD` cursor (materialised at COMMIT,
//! readable by name), a temporary table, and a `LISTEN` registration (notifications arrive at
//! whoever holds the connection). The rules (docs/DESIGN.md, "Pooled connections"):
//!
//! 1. While a transaction acts for a tenant through a *transaction-local* context, creating such
//!    state is refused (42501): `DECLARE ... WITH HOLD`, `LISTEN`, and temporary tables other
//!    than `ON COMMIT DROP` ones.
//! 2. A transaction-local context is refused (42501) while the connection holds such state,
//!    unless it belongs to that same tenant's session context: a temporary table created with
//!    no context and filled under tenant A would otherwise be readable by the next client.
//! 3. When a session stops acting for a tenant (`clear_tenant_context()`, a session context for
//!    another tenant, `RESET ALL`), the state is dropped with the context: temporary tables,
//!    `WITH HOLD` cursors, `LISTEN` registrations (`DISCARD ALL` drops them itself).
//!
//! A `ProcessUtility` hook sees every statement that creates such state (also from PL/pgSQL and
//! SPI). Whether any exists is remembered as "maybe" flags, which start out set when the library
//! loads (state made before is unknown) and are cleared by a catalog check that finds nothing,
//! so a connection that never makes such state pays no query at all.

use crate::context;
use crate::error::{self, Result};
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CStr;

thread_local! {
    static MAYBE_TEMP_TABLES: Cell<bool> = const { Cell::new(true) };
    static MAYBE_HOLD_CURSORS: Cell<bool> = const { Cell::new(true) };
    static MAYBE_LISTENING: Cell<bool> = const { Cell::new(true) };
    /// A LISTEN of the current transaction, which pg_listening_channels() shows only after COMMIT.
    static LISTEN_PENDING: Cell<bool> = const { Cell::new(false) };
    static PREVIOUS_HOOK: Cell<pg_sys::ProcessUtility_hook_type> = const { Cell::new(None) };
}

unsafe extern "C-unwind" {
    /// `UNLISTEN *` (commands/async.h, not in pgrx's bindings). Called through
    /// `pg_guard_ffi_boundary`.
    fn Async_UnlistenAll();
}

/// Install the hook (from `_PG_init`).
pub fn init() {
    unsafe {
        PREVIOUS_HOOK.set(pg_sys::ProcessUtility_hook);
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

/// Reset per-transaction state (from the transaction callback in `context`).
pub fn end_of_transaction() {
    LISTEN_PENDING.set(false);
}

/// What a utility statement creates that outlives the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Creates {
    HoldCursor,
    Listen,
    TempTable,
}

impl Creates {
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Creates::HoldCursor => (
                "a WITH HOLD cursor",
                "Use a cursor without WITH HOLD (it closes at COMMIT), or a session context \
                 (is_local => false) on a connection that is not pooled.",
            ),
            Creates::Listen => (
                "a LISTEN registration",
                "LISTEN from a connection that is not pooled, with a session context \
                 (is_local => false), or without a tenant context.",
            ),
            Creates::TempTable => (
                "a temporary table or sequence that outlives the transaction",
                "Create tables ON COMMIT DROP, or use a session context (is_local => false) on \
                 a connection that is not pooled.",
            ),
        }
    }
}

/// Whether a relation about to be created is temporary: declared so, named in `pg_temp`, or put
/// there by a search_path that starts with `pg_temp`.
unsafe fn range_var_is_temp(rel: *const pg_sys::RangeVar) -> bool {
    if rel.is_null() {
        return false;
    }
    if (*rel).relpersistence == pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char {
        return true;
    }
    let schema = (*rel).schemaname;
    if !schema.is_null() {
        return CStr::from_ptr(schema).to_bytes().starts_with(b"pg_temp");
    }
    let namespace = pg_sys::RangeVarGetCreationNamespace(rel);
    pg_sys::isTempNamespace(namespace)
}

unsafe fn creates(node: *mut pg_sys::Node) -> Option<Creates> {
    if node.is_null() {
        return None;
    }
    match (*node).type_ {
        pg_sys::NodeTag::T_DeclareCursorStmt => {
            let stmt = node as *mut pg_sys::DeclareCursorStmt;
            ((*stmt).options & pg_sys::CURSOR_OPT_HOLD as i32 != 0).then_some(Creates::HoldCursor)
        }
        pg_sys::NodeTag::T_ListenStmt => Some(Creates::Listen),
        pg_sys::NodeTag::T_CreateStmt => {
            let stmt = node as *mut pg_sys::CreateStmt;
            (range_var_is_temp((*stmt).relation)
                && (*stmt).oncommit != pg_sys::OnCommitAction::ONCOMMIT_DROP)
                .then_some(Creates::TempTable)
        }
        pg_sys::NodeTag::T_CreateTableAsStmt => {
            let stmt = node as *mut pg_sys::CreateTableAsStmt;
            let into = (*stmt).into;
            (!into.is_null()
                && (*stmt).objtype == pg_sys::ObjectType::OBJECT_TABLE
                && range_var_is_temp((*into).rel)
                && (*into).onCommit != pg_sys::OnCommitAction::ONCOMMIT_DROP)
                .then_some(Creates::TempTable)
        }
        // A temporary sequence's value can carry data too.
        pg_sys::NodeTag::T_CreateSeqStmt => {
            let stmt = node as *mut pg_sys::CreateSeqStmt;
            range_var_is_temp((*stmt).sequence).then_some(Creates::TempTable)
        }
        // EXPLAIN ANALYZE CREATE TABLE ... AS runs the statement it explains (analyzed: a Query
        // wrapping the utility statement).
        pg_sys::NodeTag::T_ExplainStmt => creates((*(node as *mut pg_sys::ExplainStmt)).query),
        pg_sys::NodeTag::T_Query => creates((*(node as *mut pg_sys::Query)).utilityStmt),
        _ => None,
    }
}

unsafe fn is_reset_all(node: *mut pg_sys::Node) -> bool {
    !node.is_null()
        && (*node).type_ == pg_sys::NodeTag::T_VariableSetStmt
        && (*(node as *mut pg_sys::VariableSetStmt)).kind == pg_sys::VariableSetKind::VAR_RESET_ALL
}

unsafe fn is_discard_all(node: *mut pg_sys::Node) -> bool {
    !node.is_null()
        && (*node).type_ == pg_sys::NodeTag::T_DiscardStmt
        && (*(node as *mut pg_sys::DiscardStmt)).target == pg_sys::DiscardMode::DISCARD_ALL
}

#[allow(clippy::too_many_arguments)]
#[pg_guard]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let node = (*pstmt).utilityStmt;
    if let Err(report) = crate::citus::carrier::refuse_forwarded_set(node) {
        error::raise(report);
    }
    if let Some(kind) = creates(node) {
        if context::bound_locally() {
            let (what, hint) = kind.describe();
            error::raise(error::forbidden(
                format!(
                    "tenant_guard: cannot create {what} while acting for a tenant through a \
                     transaction-local context"
                ),
                format!(
                    "It would outlive the transaction on a pooled connection and reach the next \
                     client. {hint}"
                ),
            ));
        }
        match kind {
            Creates::HoldCursor => MAYBE_HOLD_CURSORS.set(true),
            Creates::Listen => {
                MAYBE_LISTENING.set(true);
                LISTEN_PENDING.set(true);
            }
            Creates::TempTable => MAYBE_TEMP_TABLES.set(true),
        }
    }
    // RESET ALL (and DISCARD ALL) reset the context variables: the session stops acting for its
    // tenant, and the credentials it held are forgotten with them.
    let reset_all = is_reset_all(node);
    let resets_context = reset_all || is_discard_all(node);
    let ends_tenant = reset_all && context::current_tenant_id().is_some();
    match PREVIOUS_HOOK.get() {
        Some(previous) => previous(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
        None => pg_sys::standard_ProcessUtility(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
    }
    if resets_context {
        crate::auth::forget();
    }
    if ends_tenant {
        discard();
    }
}

/// Whether `flag` may still be true after asking the catalog with `sql` (`SELECT EXISTS ...`);
/// a check that finds nothing clears the flag.
fn still_maybe(
    flag: &'static std::thread::LocalKey<Cell<bool>>,
    sql: &str,
    arg: Option<pg_sys::Oid>,
) -> bool {
    if !flag.get() {
        return false;
    }
    let args: Vec<pgrx::datum::DatumWithOid> = arg.into_iter().map(Into::into).collect();
    let exists = crate::catalog::select_exists(sql, &args);
    flag.set(exists);
    exists
}

/// The kinds of session state this connection holds now.
fn held() -> Vec<&'static str> {
    let mut held = Vec::new();
    let mut temp_namespace = pg_sys::InvalidOid;
    let mut toast_namespace = pg_sys::InvalidOid;
    unsafe { pg_sys::GetTempNamespaceState(&mut temp_namespace, &mut toast_namespace) };
    if temp_namespace == pg_sys::InvalidOid {
        MAYBE_TEMP_TABLES.set(false);
    } else if still_maybe(
        &MAYBE_TEMP_TABLES,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class
                         WHERE relnamespace OPERATOR(pg_catalog.=) $1
                           AND relkind OPERATOR(pg_catalog.=) ANY ('{r,p,S}'::pg_catalog.\"char\"[]))",
        Some(temp_namespace),
    ) {
        held.push("temporary tables or sequences");
    }
    if still_maybe(
        &MAYBE_HOLD_CURSORS,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable)",
        None,
    ) {
        held.push("WITH HOLD cursors");
    }
    let listening = still_maybe(
        &MAYBE_LISTENING,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels())",
        None,
    );
    if listening || LISTEN_PENDING.get() {
        held.push("LISTEN registrations");
    }
    held
}

/// Called by `set_tenant_context` before it acts for `tenant_id`, with the tenant the session
/// acted for until now. A session context for another tenant drops the state the previous
/// tenant left (rule 3); a transaction-local context is refused on a connection that holds
/// state, unless the session already acts for this very tenant (rule 2).
pub fn before_acting_for(tenant_id: &str, previous: Option<&str>, local: bool) -> Result<()> {
    if previous == Some(tenant_id) {
        return Ok(());
    }
    if !local {
        if previous.is_some() {
            discard();
        }
        return Ok(());
    }
    let held = held();
    if held.is_empty() {
        return Ok(());
    }
    Err(error::forbidden(
        format!(
            "tenant_guard: this connection holds {} that would outlive a transaction-local tenant context",
            held.join(", ")
        ),
        "Session state can carry a tenant's data to the next client of a pooled connection. \
         Drop it first (DISCARD ALL, or tenant_guard.clear_tenant_context()), or act for the \
         tenant with a session context (is_local => false).",
    ))
}

/// Drop the session state a tenant may have left: temporary tables (as DISCARD TEMP does),
/// WITH HOLD cursors, LISTEN registrations (UNLISTEN *, effective at COMMIT).
pub fn discard() {
    if MAYBE_TEMP_TABLES.get() {
        unsafe { pg_sys::ResetTempTableNamespace() };
    }
    if MAYBE_HOLD_CURSORS.get() {
        let cursors = crate::catalog::select_column::<String>(
            "SELECT name FROM pg_catalog.pg_cursors WHERE is_holdable",
            &[],
        );
        for name in cursors {
            let name = std::ffi::CString::new(name).expect("cursor names have no NUL byte");
            unsafe {
                let portal = pg_sys::SPI_cursor_find(name.as_ptr());
                if !portal.is_null() {
                    pg_sys::SPI_cursor_close(portal);
                }
            }
        }
    }
    if MAYBE_LISTENING.get() || LISTEN_PENDING.get() {
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| Async_UnlistenAll()) };
    }
}
