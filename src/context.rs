//! The tenant context: who the session acts for, set only through these functions.
//!
//! `set_tenant_context` validates its input and then sets the `PGC_SUSET` context variables
//! with superuser context (see `gucs`). The accessors are `STABLE PARALLEL SAFE` and return
//! NULL when unset. Policies call `required_tenant_id`, which is `current_tenant_id()` or,
//! when no context is set and `tenant_guard.require_context` is on, a 42501 error.
//!
//! A transaction acts for one tenant: the first context it sets binds it to that tenant until
//! it ends. The binding lives outside the GUC machinery (a backend-local value cleared by a
//! transaction callback), so that neither `ROLLBACK TO SAVEPOINT` nor a PL/pgSQL exception
//! block, which undo the context variables, can undo it: a transaction cannot read as one
//! tenant and then write as another.

use crate::auth;
use crate::catalog::Table;
use crate::error::{self, Result};
use crate::gucs;
use crate::jsonb::{Jsonb, ObjectBuilder};
use crate::session_state;
use crate::sqltypes::RegClass;
use crate::tenant_type::TenantType;
use pgrx::datum::AnyElement;
use pgrx::prelude::*;

/// Longest accepted context value, in bytes.
pub const MAX_VALUE_BYTES: usize = 255;

/// The tenant the current transaction acts for, and whether it got there through a
/// transaction-local context (which the next transaction on a pooled connection does not
/// share; see `session_state`).
struct Binding {
    tenant: String,
    local: bool,
}

thread_local! {
    static BINDING: std::cell::RefCell<Option<Binding>> = const { std::cell::RefCell::new(None) };
}

/// Register the transaction callback that ends the binding (from `_PG_init`).
pub fn init() {
    unsafe { pg_sys::RegisterXactCallback(Some(end_of_transaction), std::ptr::null_mut()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn end_of_transaction(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PREPARE
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PARALLEL_ABORT
    ) {
        BINDING.with(|binding| binding.borrow_mut().take());
        crate::auth::end_of_transaction(matches!(
            event,
            XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE
        ));
        crate::session_state::end_of_transaction();
        crate::guard::end_of_transaction();
        crate::citus::end_of_transaction();
        crate::citus::routing::end_of_transaction(matches!(
            event,
            XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT
        ));
    }
}

/// Run `f` with the transaction's tenant binding set aside and put back afterwards (also when
/// `f` unwinds): `assert_tenant_isolation` acts for two tenants in probes it rolls back, which
/// must not bind the caller's transaction to either.
pub fn with_binding_set_aside<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Binding>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let saved = self.0.take();
            BINDING.with(|binding| *binding.borrow_mut() = saved);
        }
    }
    let _restore = Restore(BINDING.with(|binding| binding.borrow_mut().take()));
    f()
}

/// Whether the current transaction acts for a tenant through a transaction-local context.
pub fn bound_locally() -> bool {
    BINDING.with(|binding| binding.borrow().as_ref().is_some_and(|b| b.local))
}

fn bind(tenant_id: &str, local: bool) {
    BINDING.with(|binding| {
        let mut binding = binding.borrow_mut();
        match binding.as_mut() {
            Some(existing) => existing.local |= local,
            None => {
                *binding = Some(Binding {
                    tenant: tenant_id.to_string(),
                    local,
                })
            }
        }
    });
}

/// The canonical spelling of a tenant id that reads as an integer or a UUID (as PostgreSQL
/// prints the column value); None for any other text.
fn canonical_spelling(tenant_id: &str) -> Option<String> {
    if let Ok(number) = tenant_id.parse::<i64>() {
        return Some(number.to_string());
    }
    crate::tenant_type::parse_uuid(tenant_id).map(|bytes| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    })
}

/// One tenant, one spelling: a tenant id that an integer or uuid tenant column would read as
/// another spelling (`07` and `7`, upper-case or braced UUIDs) is refused, so that the tenant a
/// table matches is the tenant the audit log, its hash chain and every text comparison see.
fn check_canonical(tenant_id: &str) -> Result<()> {
    match canonical_spelling(tenant_id) {
        Some(canonical) if canonical != tenant_id => Err(error::malformed(
            "tenant_guard: tenant_id is not written in its canonical form",
            format!(
                "A tenant id that reads as an integer or a UUID must be spelled the way PostgreSQL \
                 prints it, here '{canonical}'."
            ),
        )),
        _ => Ok(()),
    }
}

const SET_HINT: &str = "Call tenant_guard.set_tenant_context('<tenant id>') in this transaction \
                        (or with is_local => false for the whole session).";

/// Check one context value: non-empty, bounded, no control characters, no surrounding blanks.
/// The value itself is never echoed: it may be hostile or huge.
pub fn validate_value(argument: &str, value: &str) -> Result<()> {
    let fail = |problem: String| {
        error::malformed(
            format!("tenant_guard: {argument} {problem}"),
            format!(
                "Pass a non-empty {argument} of at most {MAX_VALUE_BYTES} bytes without control \
                 characters or leading/trailing whitespace."
            ),
        )
    };
    if value.is_empty() {
        return Err(fail("must not be empty".into()));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(fail(format!(
            "is {} bytes long; the limit is {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(fail("contains a control character".into()));
    }
    if value.trim() != value {
        return Err(fail("has leading or trailing whitespace".into()));
    }
    Ok(())
}

fn optional_value(argument: &str, value: Option<&str>) -> Result<()> {
    match value {
        None => Ok(()),
        Some(value) => validate_value(argument, value),
    }
}

/// A transaction acts for one tenant. The tenant in effect is the one bound by an earlier call
/// in this transaction (clearing the context does not lift that), or, inside a transaction
/// block, the tenant of a session context inherited from an earlier transaction.
fn refuse_tenant_switch(tenant_id: &str) -> Result<()> {
    let bound = BINDING.with(|binding| binding.borrow().as_ref().map(|b| b.tenant.clone()));
    let in_effect = bound.or_else(|| {
        if unsafe { pg_sys::IsTransactionBlock() } {
            gucs::text_value(&gucs::TENANT_ID_VALUE)
        } else {
            None
        }
    });
    match in_effect {
        Some(current) if current != tenant_id => Err(error::invalid_state(
            "tenant_guard: cannot switch to another tenant inside a transaction",
            "A transaction acts for one tenant: COMMIT or ROLLBACK first. To replace a session \
             context inherited from an earlier transaction, call \
             tenant_guard.clear_tenant_context() first.",
        )),
        _ => Ok(()),
    }
}

/// `{"tenant_id", "user_id", "role", "trace_id", "locale"}`, NULL where unset.
fn context_object<'a>(context: &Requested<'a>) -> ObjectBuilder<'a> {
    ObjectBuilder::new()
        .text("tenant_id", Some(context.tenant_id))
        .text("user_id", context.user_id)
        .text("role", context.role)
        .text("trace_id", context.trace_id)
        .text("locale", context.locale)
}

/// What an entry point asks to act as; `tenant_id` is required.
#[derive(Clone, Copy, Debug)]
pub struct Requested<'a> {
    pub tenant_id: &'a str,
    pub user_id: Option<&'a str>,
    pub role: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub locale: Option<&'a str>,
}

impl<'a> Requested<'a> {
    /// Every value validated (22023): non-empty, bounded, printable, canonical tenant id.
    pub fn validated(self) -> Result<Requested<'a>> {
        validate_tenant_id(self.tenant_id)?;
        for (argument, value) in [
            ("user_id", self.user_id),
            ("role", self.role),
            ("trace_id", self.trace_id),
            ("locale", self.locale),
        ] {
            optional_value(argument, value)?;
        }
        Ok(self)
    }
}

/// A tenant id as a context takes it (22023): a valid value, spelled canonically.
pub fn validate_tenant_id(tenant_id: &str) -> Result<()> {
    validate_value("tenant_id", tenant_id)?;
    check_canonical(tenant_id)
}

/// `is_local`, which must not be NULL.
pub fn scope(is_local: Option<bool>) -> Result<bool> {
    is_local.ok_or_else(|| {
        error::malformed(
            "tenant_guard: is_local must not be NULL",
            "Pass is_local => true (transaction scope) or false (session scope).",
        )
    })
}

/// Set the context for `requested` (validated by the caller), after the checks every entry
/// point shares: session scope allowed, no switch of tenant within a transaction, pooled
/// session state, a tenant that is not suspended, and (with `tenant_guard.require_membership`)
/// a membership, whose role replaces the one asked for. `credential` is what the context was
/// granted on: its use is checked again at every query (see `auth`); `checked_in` is the auth
/// epoch the entry point took before it read anything.
pub fn apply(
    requested: Requested<'_>,
    is_local: bool,
    credential: auth::Credential,
    checked_in: u64,
) -> Result<Jsonb> {
    if unsafe { pg_sys::InSecurityRestrictedOperation() } {
        return Err(error::forbidden(
            "tenant_guard: cannot set a tenant context within a security-restricted operation",
            "Index expressions, materialized view refreshes and the like run on behalf of a \
             table's owner: set the context before them.",
        ));
    }
    if !is_local && !gucs::ALLOW_SESSION_CONTEXT.get() {
        return Err(error::forbidden(
            "tenant_guard: session-scoped tenant context is disabled on this database",
            "tenant_guard.allow_session_context is off (session state would leak to the next \
             client of a transaction pooler): set the context inside the transaction with \
             is_local => true.",
        ));
    }
    auth::tenants::require_active(requested.tenant_id)?;
    let recorded = auth::membership::required_role(&requested, &credential)?;
    let role = match &recorded {
        Some(recorded) => recorded.as_deref(),
        None => requested.role,
    };
    let tenant_id = requested.tenant_id;
    refuse_tenant_switch(tenant_id)?;
    crate::citus::routing::context_changed(tenant_id);
    let previous = current_tenant_id();
    session_state::before_acting_for(tenant_id, previous.as_deref(), is_local)?;
    if is_local && !unsafe { pg_sys::IsTransactionBlock() } {
        error::warn(
            PgSqlErrorCode::ERRCODE_NO_ACTIVE_SQL_TRANSACTION,
            "tenant_guard: a transaction-local tenant context outside a transaction block ends \
             with this statement",
            "Call it after BEGIN, or pass is_local => false for the session.",
        );
    }

    // A transaction-local set of the value a variable already holds changes nothing, now or at
    // COMMIT/ROLLBACK, so it is skipped (usually the unused user_id, role and trace_id).
    let set = |name, setting, value: Option<&str>| {
        let value = value.unwrap_or("");
        if !(is_local && gucs::holds(setting, value)) {
            gucs::set(name, value, is_local);
        }
    };
    set(gucs::TENANT_ID, &gucs::TENANT_ID_VALUE, Some(tenant_id));
    set(gucs::USER_ID, &gucs::USER_ID_VALUE, requested.user_id);
    set(gucs::TENANT_ROLE, &gucs::TENANT_ROLE_VALUE, role);
    set(gucs::TRACE_ID, &gucs::TRACE_ID_VALUE, requested.trace_id);
    set(gucs::LOCALE, &gucs::LOCALE_VALUE, requested.locale);
    bind(tenant_id, is_local);
    let granted = Requested { role, ..requested };
    auth::remember(credential, &granted, is_local, checked_in);
    Ok(context_object(&granted)
        .boolean("is_local", is_local)
        .finish())
}

/// Set the tenant context, as a trusted caller (one granted EXECUTE on this function).
/// Transaction-local by default; session scope on request.
#[pg_extern(volatile, parallel_unsafe)]
pub fn set_tenant_context(
    tenant_id: Option<&str>,
    user_id: default!(Option<&str>, "NULL"),
    role: default!(Option<&str>, "NULL"),
    trace_id: default!(Option<&str>, "NULL"),
    locale: default!(Option<&str>, "NULL"),
    is_local: default!(Option<bool>, true),
) -> Result<Jsonb> {
    let checked_in = auth::epoch();
    let Some(tenant_id) = tenant_id else {
        return Err(error::malformed(
            "tenant_guard: tenant_id must not be NULL",
            "To drop the context, call tenant_guard.clear_tenant_context().",
        ));
    };
    let requested = Requested {
        tenant_id,
        user_id,
        role,
        trace_id,
        locale,
    }
    .validated()?;
    apply(
        requested,
        scope(is_local)?,
        auth::Credential::Trusted,
        checked_in,
    )
}

/// Drop the context (session and transaction scope), and the session state the tenant may have
/// left on the connection (see `session_state`). Always allowed: it only fails closed.
#[pg_extern(volatile, parallel_unsafe)]
pub fn clear_tenant_context() {
    session_state::discard();
    auth::forget();
    for name in [
        gucs::TENANT_ID,
        gucs::USER_ID,
        gucs::TENANT_ROLE,
        gucs::TRACE_ID,
        gucs::LOCALE,
    ] {
        gucs::set(name, "", false);
    }
}

#[pg_extern(stable, parallel_safe)]
pub fn current_tenant_id() -> Option<String> {
    gucs::text_value(&gucs::TENANT_ID_VALUE)
}

#[pg_extern(stable, parallel_safe)]
pub fn current_user_id() -> Option<String> {
    gucs::text_value(&gucs::USER_ID_VALUE)
}

#[pg_extern(stable, parallel_safe)]
pub fn current_tenant_role() -> Option<String> {
    gucs::text_value(&gucs::TENANT_ROLE_VALUE)
}

#[pg_extern(stable, parallel_safe)]
pub fn current_trace_id() -> Option<String> {
    gucs::text_value(&gucs::TRACE_ID_VALUE)
}

#[pg_extern(stable, parallel_safe)]
pub fn current_locale() -> Option<String> {
    gucs::text_value(&gucs::LOCALE_VALUE)
}

/// The whole context as jsonb, for observability. Keys are present with NULL when unset.
#[pg_extern(stable, parallel_safe)]
pub fn tenant_context() -> Jsonb {
    let (tenant_id, user_id, role, trace_id, locale) = (
        current_tenant_id(),
        current_user_id(),
        current_tenant_role(),
        current_trace_id(),
        current_locale(),
    );
    ObjectBuilder::new()
        .text("tenant_id", tenant_id.as_deref())
        .text("user_id", user_id.as_deref())
        .text("role", role.as_deref())
        .text("trace_id", trace_id.as_deref())
        .text("locale", locale.as_deref())
        .finish()
}

/// The context tenant, for a use of the context outside the tenant policies (the action gate,
/// per-role permissions, user-private rows): it binds the transaction to the tenant and checks
/// the credential, as `required_tenant_id` does. None without a context.
pub fn tenant_in_use() -> Result<Option<String>> {
    let Some(tenant_id) = context_tenant()? else {
        return Ok(None);
    };
    bind(&tenant_id, false);
    auth::check_on_use(&tenant_id)?;
    Ok(Some(tenant_id))
}

/// The context tenant; on a Citus worker, the coordinator's, adopted from the carrier it sent
/// (`citus::carrier`).
fn context_tenant() -> Result<Option<String>> {
    if let Some(tenant_id) = current_tenant_id() {
        return Ok(Some(tenant_id));
    }
    if crate::citus::carrier::adopt()? {
        return Ok(current_tenant_id());
    }
    Ok(None)
}

/// 42501 for a protected query without a context (`require_context` on), naming the table.
pub fn missing_context(table: &str) -> pgrx::pg_sys::panic::ErrorReport {
    error::forbidden(
        format!("tenant_guard: no tenant context is set; {table} is tenant-protected"),
        SET_HINT,
    )
}

/// What a generated policy compares the tenant column with, typed like `tenant_type` (a
/// `NULL::<column type>` argument): the context tenant; with no context, NULL (no row
/// matches), or 42501 naming the table when `require_context` is on. A tenant id that is not a
/// valid value of the column type is 22023, naming the table.
#[pg_extern(stable, parallel_safe)]
pub fn required_tenant_id(
    tbl: Option<RegClass>,
    tenant_type: Option<AnyElement>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<AnyElement>> {
    let _ = tenant_type; // only its type matters
    let column = TypedColumn::of(fcinfo, "tenant", tbl)?;
    let table_name = || column.table_name();
    let Some(tenant_id) = context_tenant()? else {
        if gucs::REQUIRE_CONTEXT.get() {
            return Err(missing_context(&table_name()));
        }
        return Ok(None);
    };
    // Reading or writing as a tenant binds the transaction to it, also through a session
    // context inherited from an earlier transaction (see `refuse_tenant_switch`); and the
    // credential the context was set with must still hold (see `auth`).
    bind(&tenant_id, false);
    auth::check_on_use(&tenant_id)?;
    column.value(&tenant_id).map(Some)
}

/// The column a generated policy or default compares with a context value (the tenant, or the
/// user of private rows), known by its table and the type of a typed NULL argument (argument 1).
pub struct TypedColumn {
    /// "tenant" or "user".
    what: &'static str,
    table: Option<RegClass>,
    type_oid: pg_sys::Oid,
    kind: TenantType,
}

impl TypedColumn {
    /// 22023 for a type that is not a tenant column type.
    pub fn of(
        fcinfo: pg_sys::FunctionCallInfo,
        what: &'static str,
        table: Option<RegClass>,
    ) -> Result<TypedColumn> {
        let type_oid = unsafe { pg_sys::get_fn_expr_argtype((*fcinfo).flinfo, 1) };
        let Some(kind) = TenantType::from_oid(type_oid) else {
            return Err(error::malformed(
                format!(
                    "tenant_guard: a {what} column cannot have type oid {}",
                    type_oid.to_u32()
                ),
                format!(
                    "{}{} columns are {}.",
                    what[..1].to_uppercase(),
                    &what[1..],
                    crate::tenant_type::SUPPORTED
                ),
            ));
        };
        Ok(TypedColumn {
            what,
            table,
            type_oid,
            kind,
        })
    }

    /// The table, for messages.
    pub fn table_name(&self) -> String {
        self.table
            .and_then(|t| Table::lookup(t.0))
            .map(|t| t.qualified())
            .unwrap_or_else(|| "the table".to_string())
    }

    /// `value` as the column's type; 22023 naming the table when it is not a valid one.
    pub fn value(&self, value: &str) -> Result<AnyElement> {
        match self.kind.datum(value) {
            Some(datum) => Ok(unsafe {
                AnyElement::from_polymorphic_datum(datum, false, self.type_oid)
                    .expect("a non-null datum")
            }),
            None => Err(error::malformed(
                format!(
                    "tenant_guard: the context's {} id is not a valid {} for {}",
                    self.what,
                    self.kind.sql_name(),
                    self.table_name()
                ),
                format!(
                    "Set a {} id of the form the {} column takes ({}).",
                    self.what,
                    self.what,
                    self.kind.sql_name()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::canonical_spelling;

    #[test]
    fn integers_and_uuids_have_one_spelling() {
        for (written, canonical) in [
            ("7", "7"),
            ("07", "7"),
            ("+7", "7"),
            ("-0", "0"),
            ("-42", "-42"),
            (
                "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            ),
            (
                "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            ),
            (
                "a0eebc999c0b4ef8bb6d6bb9bd380a11",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            ),
        ] {
            assert_eq!(
                canonical_spelling(written).as_deref(),
                Some(canonical),
                "{written}"
            );
        }
    }

    #[test]
    fn other_text_is_its_own_spelling() {
        for text in ["acme", "007-bond", "1e5", "99999999999999999999", "7 ", ""] {
            assert_eq!(canonical_spelling(text), None, "{text}");
        }
    }
}
