//! Authenticated context: the database itself verifies who a session acts for.
//!
//! - `token`: signed tokens (JWT, HS256 and EdDSA), keys by `kid`, revocation by `jti`;
//! - `api_key`: tenant API keys, stored as hashes, with expiry, revocation and rotation;
//! - `membership`: who may act for which tenant, and as what (`tenant_guard.require_membership`);
//! - `tenants`: the tenants keys and memberships belong to, and their status.
//!
//! Shared here: the credential a context was granted on, checked again at every use (a token's
//! context ends when the token expires; a revoked key, a revoked token or a removed membership
//! ends it at the next query), the administrator check of the management functions, and the log
//! line a failed verification writes (never a secret).
//!
//! Every change to an auth table sends a relcache invalidation for it (a statement trigger,
//! `auth_table_changed`); every backend counts those in an epoch, and what it
//! caches (verified tokens, keys, memberships, suspended tenants) and the credentials it holds
//! are checked again once the epoch moves.

pub mod api_key;
pub mod cache;
#[cfg(test)]
mod fuzz_tests;
pub mod membership;
pub mod read;
pub mod tenants;
pub mod token;

use crate::context::Requested;
use crate::error::{self, Result};
use crate::gucs;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};

/// What a context was granted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `set_tenant_context`: the caller is trusted to choose.
    Trusted,
    /// A verified token, valid until `expires_at` (Unix seconds, its `exp`) and while its key
    /// is not retired (`retires_at`, Unix seconds, as last read), with the scopes of its
    /// `scope` claim (None without the claim).
    Token {
        kid: String,
        jti: Option<String>,
        expires_at: i64,
        retires_at: Option<i64>,
        scopes: Option<Vec<String>>,
    },
    /// A tenant API key, valid until `expires_at` (Unix microseconds), with its scopes (what
    /// the action gate lets it do; see `authz`).
    ApiKey {
        id: String,
        expires_at: i64,
        scopes: Vec<String>,
    },
}

#[derive(Clone)]
struct Held {
    credential: Credential,
    tenant: String,
    user: Option<String>,
    /// The role the context was given (a membership's, with `require_membership`).
    role: Option<String>,
    /// The epoch the credential was last checked against the catalog in.
    checked_in: u64,
    /// Whether that check covered a membership (`require_membership` was on).
    membership_checked: bool,
}

#[derive(Default)]
struct Slots {
    /// The session context's credential, as of the last COMMIT.
    session: Option<Held>,
    /// A session context's credential set (`Some(Some)`) or dropped (`Some(None)`) in this
    /// transaction: it replaces `session` at COMMIT, and is forgotten at ROLLBACK, as the context
    /// variables are.
    pending: Option<Option<Held>>,
    /// The transaction-local context's credential.
    local: Option<Held>,
    /// `pending` and `local` as each open subtransaction found them (by nesting level): a
    /// rolled-back savepoint or exception block restores them, as it restores the context
    /// variables.
    saved: Vec<(i32, Option<Option<Held>>, Option<Held>)>,
}

impl Slots {
    /// The credential of the context in effect: transaction-local, else the session context
    /// as this transaction left it, else as of the last COMMIT.
    fn in_effect(&mut self) -> Option<&mut Held> {
        match (self.local.as_mut(), self.pending.as_mut()) {
            (Some(local), _) => Some(local),
            (None, Some(pending)) => pending.as_mut(),
            (None, None) => self.session.as_mut(),
        }
    }
}

thread_local! {
    static SLOTS: RefCell<Slots> = RefCell::new(Slots::default());
    static EPOCH: Cell<u64> = const { Cell::new(1) };
    /// The auth tables' OIDs, once looked up (an invalidation of any other table is not ours).
    static TABLES: RefCell<Option<Vec<pg_sys::Oid>>> = const { RefCell::new(None) };
}

/// The auth tables, in schema `tenant_guard` (with the action gate's, whose caches share the
/// epoch).
const AUTH_TABLES: [&str; 7] = [
    "tenants",
    "memberships",
    "token_keys",
    "revoked_tokens",
    "api_keys",
    "actions",
    "action_rules",
];

/// Register the invalidation and subtransaction callbacks (from `_PG_init`).
pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(tables_changed), pg_sys::Datum::from(0));
        pg_sys::RegisterSubXactCallback(Some(subtransaction), std::ptr::null_mut());
    };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn subtransaction(
    event: pg_sys::SubXactEvent::Type,
    _mine: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_START_SUB => {
                let saved = (level, slots.pending.clone(), slots.local.clone());
                slots.saved.push(saved);
            }
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
                slots.saved.retain(|(at, _, _)| *at < level);
            }
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
                slots.saved.retain(|(at, _, _)| *at <= level);
                if slots.saved.last().is_some_and(|(at, _, _)| *at == level) {
                    let (_, pending, local) = slots.saved.pop().expect("checked");
                    slots.pending = pending;
                    slots.local = local;
                }
            }
            _ => {}
        }
    });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn tables_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let ours = TABLES.with(|tables| match tables.borrow().as_ref() {
        Some(tables) => relid == pg_sys::InvalidOid || tables.contains(&relid),
        None => true,
    });
    if ours {
        EPOCH.set(EPOCH.get() + 1);
        // Looked up again at the next use: a dropped and re-created extension has new tables.
        TABLES.with(|tables| *tables.borrow_mut() = None);
    }
}

/// The current epoch: caches and credentials checked in an older one are checked again.
pub fn epoch() -> u64 {
    if TABLES.with(|tables| tables.borrow().is_none()) {
        let oids: Vec<pg_sys::Oid> = AUTH_TABLES
            .iter()
            .filter_map(|name| table_oid(name))
            .collect();
        // Until every table exists (during CREATE EXTENSION), every invalidation counts.
        if oids.len() == AUTH_TABLES.len() {
            TABLES.with(|tables| *tables.borrow_mut() = Some(oids));
        }
    }
    EPOCH.get()
}

/// The OID of `tenant_guard.<name>` (a syscache lookup, no search_path involved).
fn table_oid(name: &str) -> Option<pg_sys::Oid> {
    let name = std::ffi::CString::new(name).expect("table names have no NUL byte");
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"tenant_guard".as_ptr(), true);
        let oid = pg_sys::get_relname_relid(name.as_ptr(), schema);
        (schema != pg_sys::InvalidOid && oid != pg_sys::InvalidOid).then_some(oid)
    }
}

/// `AFTER ... FOR EACH STATEMENT` on every auth table (sql/finalize.sql): tell every backend (at
/// COMMIT) that the table changed, whoever changed it (tenant_guard's functions, a superuser's
/// direct DML, a restore's COPY), so that caches and contexts are checked again.
mod change_trigger {
    use pgrx::prelude::*;

    #[pg_trigger]
    fn auth_table_changed<'a>(
        trigger: &'a pgrx::PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(trigger.relation()?.oid()) };
        Ok(None)
    }
}

/// Remember what the context just set (by `context::apply`) was granted on. `checked_in` is the
/// epoch the entry point took before it read anything.
pub fn remember(credential: Credential, granted: &Requested<'_>, is_local: bool, checked_in: u64) {
    let held = Held {
        credential,
        tenant: granted.tenant_id.to_string(),
        user: granted.user_id.map(str::to_string),
        role: granted.role.map(str::to_string),
        checked_in,
        membership_checked: gucs::REQUIRE_MEMBERSHIP.get(),
    };
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        if is_local {
            slots.local = Some(held);
        } else {
            slots.pending = Some(Some(held));
            slots.local = None;
        }
    });
}

/// The context was dropped (`clear_tenant_context`, `RESET ALL`, `DISCARD ALL`).
pub fn forget() {
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        slots.pending = Some(None);
        slots.local = None;
    });
}

/// At the end of a transaction (from `context`'s transaction callback).
pub fn end_of_transaction(committed: bool) {
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        if let Some(pending) = slots.pending.take() {
            if committed {
                slots.session = pending;
            }
        }
        slots.local = None;
        slots.saved.clear();
    });
}

/// Unix seconds now (PostgreSQL's clock), truncated.
pub fn now_seconds() -> i64 {
    now_micros().div_euclid(1_000_000)
}

/// Unix microseconds now.
pub fn now_micros() -> i64 {
    unix_micros(unsafe { pg_sys::GetCurrentTimestamp() })
}

/// PostgreSQL timestamps count microseconds from 2000-01-01, 946684800 s after the Unix epoch.
fn unix_micros(timestamp: pg_sys::TimestampTz) -> i64 {
    timestamp + 946_684_800_000_000
}

fn in_parallel_worker() -> bool {
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

/// At every use of the context (from `required_tenant_id`): the credential it was granted on
/// must still hold. Expiry (a token's `exp` and its key's retirement, an API key's expiry) is
/// checked at every statement, against its start; revocation, suspension and membership (with
/// the role it gave) once per epoch, and again when `require_membership` was turned on. A
/// context that no entry point set (a superuser's `SET` or role default) has no credential to
/// check. Parallel workers do not see the backend's credentials and leave the check to the
/// leader (generated policies call `required_tenant_id` in an InitPlan, which the leader runs).
pub fn check_on_use(tenant: &str) -> Result<()> {
    if in_parallel_worker() {
        return Ok(());
    }
    let statement_micros = unix_micros(unsafe { pg_sys::GetCurrentStatementStartTimestamp() });
    let statement_seconds = statement_micros.div_euclid(1_000_000);
    let leeway = i64::from(gucs::TOKEN_LEEWAY.get());
    let require_membership = gucs::REQUIRE_MEMBERSHIP.get();
    let verdict = SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let Some(held) = slots.in_effect().filter(|held| held.tenant == tenant) else {
            // Not set by an entry point: only superuser context can set the variables (a
            // superuser's SET, a role default a superuser stored), and nothing here undoes an
            // entry point's context without undoing its credential (see `subtransaction`).
            return Ok(None);
        };
        let ended = match &held.credential {
            Credential::Token { expires_at, .. }
                if statement_seconds >= expires_at.saturating_add(leeway) =>
            {
                Some("expired in use")
            }
            Credential::Token { retires_at, .. }
                if retires_at.is_some_and(|at| statement_seconds >= at) =>
            {
                Some("key retired in use")
            }
            Credential::ApiKey { expires_at, .. } if statement_micros >= *expires_at => {
                Some("expired in use")
            }
            _ => None,
        };
        if let Some(reason) = ended {
            return Err((held.credential.clone(), reason));
        }
        if held.checked_in == EPOCH.get() && (held.membership_checked || !require_membership) {
            return Ok(None);
        }
        Ok(Some(held.clone()))
    });
    let held = match verdict {
        Ok(None) => return Ok(()),
        Ok(Some(held)) => held,
        Err((credential, reason)) => return Err(ended(&credential, tenant, reason)),
    };
    // The catalog is read outside the borrow (reading it may process invalidations), with the
    // epoch taken first (see `read`).
    let epoch = epoch();
    let renewed = match &held.credential {
        Credential::Trusted => Some(Credential::Trusted),
        Credential::Token {
            kid,
            jti,
            expires_at,
            scopes,
            ..
        } => token::key_retirement(kid, jti.as_deref()).map(|retires_at| Credential::Token {
            kid: kid.clone(),
            jti: jti.clone(),
            expires_at: *expires_at,
            retires_at,
            scopes: scopes.clone(),
        }),
        Credential::ApiKey { id, scopes, .. } => {
            api_key::current_expiry(id).map(|expires_at| Credential::ApiKey {
                id: id.clone(),
                expires_at,
                scopes: scopes.clone(),
            })
        }
    };
    let Some(renewed) = renewed else {
        return Err(ended(&held.credential, tenant, "revoked in use"));
    };
    tenants::require_active(tenant)?;
    if require_membership && !matches!(renewed, Credential::ApiKey { .. }) {
        membership::still_member(tenant, held.user.as_deref(), held.role.as_deref())?;
    }
    SLOTS.with(|slots| {
        if let Some(held) = slots.borrow_mut().in_effect() {
            // A rotation's grace or a key's retirement may have moved the deadline closer.
            held.credential = renewed;
            held.checked_in = epoch;
            held.membership_checked = require_membership;
        }
    });
    Ok(())
}

/// The scopes of the credential the context in effect for `tenant` was set with: an API key's,
/// a token's `scope` claim; None for a credential without scopes.
pub fn current_scopes(tenant: &str) -> Option<Vec<String>> {
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        match &slots
            .in_effect()
            .filter(|held| held.tenant == tenant)?
            .credential
        {
            Credential::ApiKey { scopes, .. } => Some(scopes.clone()),
            Credential::Token { scopes, .. } => scopes.clone(),
            Credential::Trusted => None,
        }
    })
}

/// The error for a context whose credential ended: 28000 for a token, 28P01 for an API key.
fn ended(credential: &Credential, tenant: &str, reason: &str) -> pgrx::pg_sys::panic::ErrorReport {
    match credential {
        Credential::ApiKey { id, .. } => failure(
            "api_key",
            reason,
            Some(id),
            Some(tenant),
            api_key::invalid(),
        ),
        Credential::Token { kid, .. } => failure(
            "token",
            reason,
            Some(kid),
            Some(tenant),
            error::invalid_credential(
                if reason == "revoked in use" {
                    "tenant_guard: the token this tenant context was set with was revoked"
                } else {
                    "tenant_guard: the token this tenant context was set with has expired"
                },
                "Set the context again with a current token.",
            ),
        ),
        Credential::Trusted => unreachable!("a trusted context neither expires nor is revoked"),
    }
}

/// 42501 unless the caller is a superuser or has the privileges of `tenant_guard.admin_role`.
/// Management functions check it inside, because DBAs routinely `GRANT EXECUTE ON ALL FUNCTIONS
/// IN SCHEMA`.
pub fn require_admin(function: &str) -> Result<()> {
    let user = unsafe { pg_sys::GetUserId() };
    if unsafe { pg_sys::superuser_arg(user) } {
        return Ok(());
    }
    let role = gucs::text_value(&gucs::ADMIN_ROLE).unwrap_or_default();
    let name = std::ffi::CString::new(role.clone()).unwrap_or_default();
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    if oid != pg_sys::InvalidOid && unsafe { pg_sys::has_privs_of_role(user, oid) } {
        return Ok(());
    }
    Err(error::forbidden(
        format!("tenant_guard: {function} is for tenant_guard administrators"),
        format!(
            "A superuser grants it: CREATE ROLE {role} NOLOGIN; GRANT {role} TO <role> \
             (tenant_guard.admin_role names the role)."
        ),
    ))
}

/// A failed verification: the server log line (fixed format, never a secret) and the error
/// (28000 or 28P01). The entry points keep their statement out of the log (`with_hidden_statement`).
pub fn failure(
    method: &str,
    reason: &str,
    key: Option<&str>,
    tenant: Option<&str>,
    error: pgrx::pg_sys::panic::ErrorReport,
) -> pgrx::pg_sys::panic::ErrorReport {
    log_failure(method, reason, key, tenant);
    error
}

/// Run a credential entry point so that any error it raises, before or after verification, is
/// logged without the statement, which may hold the token or key as a literal
/// (`log_min_error_statement = panic` while it runs; see `gucs::with_setting`).
pub fn with_hidden_statement<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    gucs::with_setting(
        c"log_min_error_statement",
        c"panic",
        pg_sys::GucContext::PGC_SUSET,
        f,
    )
}

/// A value from untrusted input, made safe for a log line: short, printable ASCII, or `?`.
fn loggable(value: Option<&str>) -> &str {
    match value {
        None => "-",
        Some(v) if !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()) => v,
        Some(_) => "?",
    }
}

/// `tenant_guard: authentication failed: method=... reason=... key=... tenant=...` (tenant only
/// when the credential verified, e.g. a valid token for a suspended tenant).
fn log_failure(method: &str, reason: &str, key: Option<&str>, tenant: Option<&str>) {
    let line = format!(
        "tenant_guard: authentication failed: method={method} reason={reason} key={} tenant={}",
        loggable(key),
        loggable(tenant)
    );
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        line,
        "tenant_guard",
    )
    .report(pgrx::PgLogLevel::LOG_SERVER_ONLY);
}
