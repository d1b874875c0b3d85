//! The `tenant_guard.*` configuration variables.
//!
//! The five context variables are `PGC_SUSET`: an ordinary role's `SET`, `set_config()`, `RESET`
//! or `ALTER ROLE ... SET` of them fails with 42501, so only this extension's functions (which
//! call `set_config_option` with superuser context after their own checks) can change them.
//! `DISCARD ALL` / `RESET ALL` reset them, which only fails closed. They are settable inside a
//! SECURITY DEFINER function (a DBA's wrapper around an entry point); the entry points refuse
//! security-restricted operations themselves (`context::apply`).

use pgrx::pg_sys;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::{CStr, CString};

pub const TENANT_ID: &CStr = c"tenant_guard.tenant_id";
pub const USER_ID: &CStr = c"tenant_guard.user_id";
pub const TENANT_ROLE: &CStr = c"tenant_guard.tenant_role";
pub const TRACE_ID: &CStr = c"tenant_guard.trace_id";
pub const LOCALE: &CStr = c"tenant_guard.locale";

pub static TENANT_ID_VALUE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static USER_ID_VALUE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static TENANT_ROLE_VALUE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static TRACE_ID_VALUE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static LOCALE_VALUE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub static REQUIRE_CONTEXT: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static ALLOW_SESSION_CONTEXT: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static AUTO_PROTECT: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static TENANT_COLUMN: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"tenant_id"));

// Authenticated context (src/auth).
pub static TOKEN_LEEWAY: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static TOKEN_MAX_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(86_400);
pub static TOKEN_ISSUER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static TOKEN_AUDIENCE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static TOKEN_TENANT_CLAIM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"tid"));
pub static REQUIRE_MEMBERSHIP: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static ADMIN_ROLE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"tenant_guard_admin"));

/// Flags shared by the context variables: never from a configuration file.
fn context_flags() -> GucFlags {
    GucFlags::DISALLOW_IN_FILE | GucFlags::DISALLOW_IN_AUTO_FILE
}

pub fn init() {
    let context_vars: [(
        &'static CStr,
        &'static GucSetting<Option<CString>>,
        &'static CStr,
    ); 5] = [
        (
            TENANT_ID,
            &TENANT_ID_VALUE,
            c"Tenant the session acts for (set it with tenant_guard.set_tenant_context).",
        ),
        (
            USER_ID,
            &USER_ID_VALUE,
            c"Application user the session acts for (set it with tenant_guard.set_tenant_context).",
        ),
        (
            TENANT_ROLE,
            &TENANT_ROLE_VALUE,
            c"Role of the user within the tenant (set it with tenant_guard.set_tenant_context).",
        ),
        (
            TRACE_ID,
            &TRACE_ID_VALUE,
            c"Trace id of the current request (set it with tenant_guard.set_tenant_context).",
        ),
        (
            LOCALE,
            &LOCALE_VALUE,
            c"Locale of the current request (set it with tenant_guard.set_tenant_context).",
        ),
    ];
    for (name, setting, description) in context_vars {
        GucRegistry::define_string_guc(
            name,
            description,
            c"Read-only for ordinary roles: only tenant_guard's functions change it.",
            setting,
            GucContext::Suset,
            context_flags(),
        );
    }
    GucRegistry::define_bool_guc(
        c"tenant_guard.require_context",
        c"Querying a protected table without a tenant context is an error (42501) instead of zero rows.",
        c"",
        &REQUIRE_CONTEXT,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.allow_session_context",
        c"Allow set_tenant_context(..., is_local => false).",
        c"Turn off on databases served through a transaction pooler, where session state leaks to the next client.",
        &ALLOW_SESSION_CONTEXT,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.auto_protect",
        c"Protect new tables that have the tenant column automatically.",
        c"",
        &AUTO_PROTECT,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.tenant_column",
        c"Name of the tenant column that auto_protect and protect_tenant_tables look for.",
        c"",
        &TENANT_COLUMN,
        GucContext::Suset,
        GucFlags::IS_NAME,
    );
    define_auth();
    define_cluster();
    reserve_prefix();
}

fn define_auth() {
    GucRegistry::define_int_guc(
        c"tenant_guard.token_leeway",
        c"Seconds of clock skew allowed when checking a token's exp, nbf and iat.",
        c"",
        &TOKEN_LEEWAY,
        0,
        3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.token_max_lifetime",
        c"Tokens whose exp is further away than this are refused.",
        c"Access tokens are short-lived; a long-lived one is a leaked one waiting to be used.",
        &TOKEN_MAX_LIFETIME,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.token_issuer",
        c"When set, a token's iss claim must equal it.",
        c"",
        &TOKEN_ISSUER,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.token_audience",
        c"When set, a token's aud claim (a string or an array) must contain it.",
        c"",
        &TOKEN_AUDIENCE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.token_tenant_claim",
        c"The token claim that names the tenant.",
        c"",
        &TOKEN_TENANT_CLAIM,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.require_membership",
        c"Every entry point gives a context only for a membership in tenant_guard.memberships.",
        c"The membership's role replaces the role asked for.",
        &REQUIRE_MEMBERSHIP,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.admin_role",
        c"Members of this role (and superusers) may manage tenants, members, token keys and API keys.",
        c"",
        &ADMIN_ROLE,
        GucContext::Suset,
        GucFlags::IS_NAME,
    );
}

// A Citus cluster (src/citus).
pub static CLUSTER_SECRET_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static CARRIER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CARRIER_MAX_AGE: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static ROUTE_TENANT_QUERIES: GucSetting<bool> = GucSetting::<bool>::new(true);

fn define_cluster() {
    GucRegistry::define_string_guc(
        c"tenant_guard.cluster_secret_file",
        c"A file holding the secret every node of a Citus cluster shares, to sign and verify the context a coordinator sends to workers.",
        c"The secret: at least 32 characters, the same on every node; the file readable by the server's OS user only. \
          (A secret in a setting would be readable by pg_read_all_settings.)",
        &CLUSTER_SECRET_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.carrier",
        c"The signed context a Citus coordinator sends with a distributed transaction (set by tenant_guard).",
        c"Anyone may set it: a worker trusts it only when its signature and its transaction check out.",
        &CARRIER,
        GucContext::Userset,
        GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.route_tenant_queries",
        c"Route a tenant's queries on distributed tables to the tenant's shard (Citus).",
        c"Off: every tenant query runs one task per shard, as Citus plans it by itself.",
        &ROUTE_TENANT_QUERIES,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.carrier_max_age",
        c"Seconds a worker accepts a coordinator's signed context for after it was issued.",
        c"The coordinator issues a fresh one to a longer transaction.",
        &CARRIER_MAX_AGE,
        1,
        3600,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

#[cfg(any(feature = "pg13", feature = "pg14"))]
fn reserve_prefix() {
    unsafe { pg_sys::EmitWarningsOnPlaceholders(c"tenant_guard".as_ptr()) }
}

#[cfg(not(any(feature = "pg13", feature = "pg14")))]
fn reserve_prefix() {
    unsafe { pg_sys::MarkGUCPrefixReserved(c"tenant_guard".as_ptr()) }
}

/// Look at a string setting's current bytes (empty when unset) in place, without copying.
/// PostgreSQL owns the memory; the borrow must not outlive `read`.
fn with_bytes<T>(setting: &GucSetting<Option<CString>>, read: impl FnOnce(&[u8]) -> T) -> T {
    let raw = unsafe { *setting.as_ptr() };
    if raw.is_null() {
        read(&[])
    } else {
        read(unsafe { CStr::from_ptr(raw) }.to_bytes())
    }
}

/// The current value of a string setting, `None` when unset or empty.
pub fn text_value(setting: &GucSetting<Option<CString>>) -> Option<String> {
    with_bytes(setting, |bytes| {
        (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
    })
}

/// The current value of any setting, by name (`""` when there is none), read past a
/// superuser-only flag: only for settings that are no secret (library lists, Citus's options).
pub fn value_of(name: &CStr) -> String {
    unsafe { crate::catalog::c_string(pg_sys::GetConfigOption(name.as_ptr(), true, false)) }
        .unwrap_or_default()
}

/// Whether a string setting currently holds `value` (unset counts as `""`).
pub fn holds(setting: &GucSetting<Option<CString>>, value: &str) -> bool {
    with_bytes(setting, |bytes| bytes == value.as_bytes())
}

/// Change a context variable with superuser context. `local` is `SET LOCAL` semantics.
/// Callers validate the value first; PostgreSQL still refuses in a parallel worker.
pub fn set(name: &CStr, value: &str, local: bool) {
    let value = CString::new(value).expect("validated context values contain no NUL byte");
    let action = if local {
        pg_sys::GucAction::GUC_ACTION_LOCAL
    } else {
        pg_sys::GucAction::GUC_ACTION_SET
    };
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            pgrx::PgLogLevel::ERROR as i32,
            false,
        );
    }
}

/// Run `f` with `name` set to `value` at a GUC nest level of its own. When `f` returns `Ok`,
/// the setting is restored at once; when it fails (an `Err` that pgrx raises after it returns,
/// or an error raised inside it), the (sub)transaction's abort restores it, after the error was
/// reported with the setting in effect. A setting that cannot be made is an error.
pub fn with_setting<T, E>(
    name: &CStr,
    value: &CStr,
    context: pg_sys::GucContext::Type,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let level = unsafe { pg_sys::NewGUCNestLevel() };
    let status = unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            pgrx::PgLogLevel::ERROR as i32,
            false,
        )
    };
    if status <= 0 {
        crate::error::raise(crate::error::internal(format!(
            "could not set {}",
            name.to_string_lossy()
        )));
    }
    let result = f();
    if result.is_ok() {
        unsafe { pg_sys::AtEOXact_GUC(true, level) };
    }
    result
}
