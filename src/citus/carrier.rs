//! The context on every node of a Citus cluster: a signed carrier.
//!
//! A context is set on the coordinator through tenant_guard's entry points, into superuser-only
//! variables that Citus never sends to workers (it replays only `SET LOCAL` commands, as text,
//! as the session's role). So the coordinator also sends the user-settable variable
//! `tenant_guard.carrier` with every distributed transaction, holding the context and a MAC over
//! it and the distributed transaction id, keyed with `tenant_guard.cluster_secret` (the same on
//! every node, readable by superusers only). A worker trusts a carrier only when
//!
//! - its MAC verifies with the worker's own secret (a hand-made carrier does not);
//! - it names the distributed transaction this backend takes part in, as Citus assigned it on
//!   the coordinator (a carrier copied into another transaction does not);
//! - it was issued at most `tenant_guard.carrier_max_age` seconds ago (a long transaction gets
//!   a fresh one);
//! - and the coordinator confirms that the backend which issued it is still in that
//!   transaction and that this worker's connection is one of that backend's (see `origin`): a
//!   carrier read from `pg_stat_activity` and replayed on a connection of one's own, with
//!   `assign_distributed_transaction_id()` (which Citus lets any role call), gets nothing.
//!
//! It then sets the context variables for this transaction only, as the entry points do. A
//! context that was adopted is never sent on: a worker's own distributed queries fail closed.
//!
//! Format: `v1.<base64url(JSON payload)>.<base64url(HMAC-SHA256)>`; the MAC covers a domain
//! label and the payload bytes; the payload holds the context, the distributed transaction id
//! the time of issue and the origin (the issuing backend's pid, slot and nonce).

use super::ffi::{self, DistributedTransactionId};
use super::origin::{self, Origin};
use crate::catalog;
use crate::context;
use crate::error::{self, Result};
use crate::gucs;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{KeyInit, Mac};
use pgrx::pg_sys;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::ffi::CString;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const VERSION: &str = "v1";
const DOMAIN: &[u8] = b"tenant_guard carrier v1\0";
const MIN_SECRET: usize = 32;
/// A carrier is at most this long (the context's values are bounded by the entry points).
const MAX_CARRIER: usize = 8192;

/// The context a carrier carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub trace_id: Option<String>,
    pub locale: Option<String>,
}

impl Carried {
    fn current() -> Option<Carried> {
        Some(Carried {
            tenant_id: context::current_tenant_id()?,
            user_id: context::current_user_id(),
            role: context::current_tenant_role(),
            trace_id: context::current_trace_id(),
            locale: context::current_locale(),
        })
    }
}

/// What this backend did with carriers in the current transaction (reset at its end).
#[derive(Default)]
struct State {
    /// Issued (coordinator side): the context, when (unix seconds), and in which
    /// subtransaction (Citus forgets a `SET LOCAL` of a subtransaction rolled back).
    issued: Option<(Carried, i64, pg_sys::SubTransactionId)>,
    /// Adopted (worker side): the context came from a carrier.
    adopted: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

/// At the end of every transaction (commit, abort, prepare).
pub fn end_of_transaction() {
    with_state(|state| *state = State::default());
}

fn current_subtransaction() -> pg_sys::SubTransactionId {
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

thread_local! {
    /// The secret as read from `tenant_guard.cluster_secret_file`: (path, modified, secret).
    static SECRET: RefCell<Option<(String, std::time::SystemTime, Vec<u8>)>> = const { RefCell::new(None) };
}

/// The cluster secret, from the file `tenant_guard.cluster_secret_file` names (read again when
/// the file changes); surrounding whitespace is not part of it.
fn secret() -> Option<Vec<u8>> {
    let path = gucs::text_value(&gucs::CLUSTER_SECRET_FILE)?;
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    SECRET
        .with(|cached| {
            let mut cached = cached.borrow_mut();
            if let Some((p, m, secret)) = cached.as_ref() {
                if *p == path && *m == modified {
                    return Some(secret.clone());
                }
            }
            let secret = std::fs::read(&path).ok()?.trim_ascii().to_vec();
            *cached = Some((path, modified, secret.clone()));
            Some(secret)
        })
        .filter(|s| !s.is_empty())
}

fn mac(secret: &[u8], payload: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(DOMAIN);
    mac.update(payload);
    mac
}

/// What a carrier says (the only kind so far: a context to act for), signed with it so that
/// a later kind can never be read as a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Context,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Context => "context",
        }
    }
}

fn sealed(
    secret: &[u8],
    mut payload: Value,
    kind: Kind,
    id: &DistributedTransactionId,
    origin: &Origin,
    issued_at: i64,
    database: &str,
) -> String {
    payload["k"] = json!(kind.as_str());
    payload["d"] = json!(database);
    payload["n"] = json!(id.initiator_node_identifier);
    payload["q"] = json!(id.transaction_number.to_string());
    payload["s"] = json!(id.timestamp);
    payload["i"] = json!(issued_at);
    payload["p"] = json!(origin.pid);
    payload["b"] = json!(origin.slot);
    payload["o"] = json!(origin.nonce_hex());
    let payload = payload.to_string();
    let tag = mac(secret, payload.as_bytes()).finalize().into_bytes();
    format!(
        "{VERSION}.{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The carrier for `carried` in distributed transaction `id`, issued by `origin` at
/// `issued_at`.
pub fn seal(
    secret: &[u8],
    carried: &Carried,
    id: &DistributedTransactionId,
    origin: &Origin,
    issued_at: i64,
    database: &str,
) -> String {
    let payload = json!({
        "t": carried.tenant_id,
        "u": carried.user_id,
        "r": carried.role,
        "x": carried.trace_id,
        "l": carried.locale,
    });
    sealed(
        secret,
        payload,
        Kind::Context,
        id,
        origin,
        issued_at,
        database,
    )
}

/// Why a carrier is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    BadSignature,
    OtherTransaction,
    Expired,
}

/// The payload of `carrier`, if its MAC verifies, it is of `kind` and for transaction `id`,
/// issued within `max_age` seconds of `now`.
fn opened(
    secret: &[u8],
    carrier: &str,
    kind: Kind,
    id: &DistributedTransactionId,
    now: i64,
    max_age: i64,
    database: &str,
) -> std::result::Result<Value, Refused> {
    if carrier.len() > MAX_CARRIER {
        return Err(Refused::Malformed);
    }
    let mut parts = carrier.split('.');
    let (Some(VERSION), Some(payload), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::Malformed);
    };
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Refused::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| Refused::Malformed)?;
    if tag.len() != 32 {
        return Err(Refused::Malformed);
    }
    mac(secret, &payload)
        .verify_slice(&tag)
        .map_err(|_| Refused::BadSignature)?;
    let value: Value = serde_json::from_slice(&payload).map_err(|_| Refused::Malformed)?;
    if value.get("k").and_then(Value::as_str) != Some(kind.as_str()) {
        return Err(Refused::Malformed);
    }
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let number = |key: &str| value.get(key).and_then(Value::as_i64);
    let carried_id = (
        number("n"),
        text("q").and_then(|q| q.parse::<u64>().ok()),
        number("s"),
    );
    if carried_id
        != (
            Some(i64::from(id.initiator_node_identifier)),
            Some(id.transaction_number),
            Some(id.timestamp),
        )
        || id.transaction_number == 0
        || text("d").as_deref() != Some(database)
    {
        return Err(Refused::OtherTransaction);
    }
    let issued_at = number("i").ok_or(Refused::Malformed)?;
    // A little skew between the nodes' clocks is allowed into the future.
    if now.saturating_sub(issued_at) > max_age || issued_at.saturating_sub(now) > 5 {
        return Err(Refused::Expired);
    }
    Ok(value)
}

/// The context in `carrier` and its origin, if it holds for transaction `id` of `database`
/// (see `opened`).
pub fn open(
    secret: &[u8],
    carrier: &str,
    id: &DistributedTransactionId,
    now: i64,
    max_age: i64,
    database: &str,
) -> std::result::Result<(Carried, Origin), Refused> {
    let value = opened(secret, carrier, Kind::Context, id, now, max_age, database)?;
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let carried = Carried {
        tenant_id: text("t")
            .filter(|t| !t.is_empty())
            .ok_or(Refused::Malformed)?,
        user_id: text("u"),
        role: text("r"),
        trace_id: text("x"),
        locale: text("l"),
    };
    let number = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
    };
    let origin = Origin {
        pid: number("p").ok_or(Refused::Malformed)?,
        slot: number("b").ok_or(Refused::Malformed)?,
        nonce: text("o")
            .as_deref()
            .and_then(Origin::nonce_from_hex)
            .ok_or(Refused::Malformed)?,
    };
    Ok((carried, origin))
}

/// Coordinator side, before Citus plans a query on a distributed table: send this
/// transaction's context to the nodes it works on (once, and again when it grows old).
pub fn issue() -> Result<()> {
    if with_state(|state| state.adopted) {
        return Ok(());
    }
    // As a policy would: bind the transaction to the tenant, and check that the credential the
    // context was set with still holds (a cached plan runs no policy here).
    if context::tenant_in_use()?.is_none() || with_state(|state| state.adopted) {
        return Ok(()); // no context (the workers fail closed), or one adopted just now
    }
    let Some(carried) = Carried::current() else {
        return Ok(());
    };
    let now = crate::auth::now_seconds();
    let max_age = i64::from(gucs::CARRIER_MAX_AGE.get());
    let fresh = with_state(|state| {
        state
            .issued
            .as_ref()
            .is_some_and(|(issued, at, subtransaction)| {
                *issued == carried
                    && now - at < max_age / 2
                    && *subtransaction == current_subtransaction()
            })
    });
    if fresh {
        return Ok(());
    }
    let secret = cluster_secret()?;
    let id = coordinated_transaction()?;
    let origin = origin::of_this_transaction()?;
    send(
        c"tenant_guard.carrier",
        &seal(
            &secret,
            &carried,
            &id,
            &origin,
            now,
            &catalog::current_database_name(),
        ),
    );
    with_state(|state| state.issued = Some((carried, now, current_subtransaction())));
    Ok(())
}

fn cluster_secret() -> Result<Vec<u8>> {
    secret().filter(|s| s.len() >= MIN_SECRET).ok_or_else(|| {
        error::invalid_state(
            "tenant_guard: no cluster secret (tenant_guard.cluster_secret_file unset, unreadable, or \
             shorter than 32 characters)",
            "Put the same secret into a file on every node of the Citus cluster, readable by the \
             server only, name it in tenant_guard.cluster_secret_file and reload: without it the \
             workers cannot trust the coordinator's context.",
        )
    })
}

/// Citus's distributed transaction id, after making this transaction a coordinated one.
fn coordinated_transaction() -> Result<DistributedTransactionId> {
    ffi::use_coordinated_transaction();
    ffi::current_transaction_id()
        .filter(|id| id.transaction_number != 0)
        .ok_or_else(|| error::internal("Citus gave this transaction no distributed transaction id"))
}

/// `SET LOCAL <name> TO '<value>'` on every node the transaction works on.
fn send(name: &std::ffi::CStr, value: &str) {
    // Carriers are base64url and dots: nothing to quote.
    let sql = CString::new(format!("SET LOCAL {} TO '{value}'", name.to_string_lossy()))
        .expect("base64url has no NUL byte");
    ffi::propagate_set_local(name, &sql);
}

/// A client's `SET [LOCAL] tenant_guard.carrier` while Citus forwards `SET LOCAL`s to the
/// nodes (`citus.propagate_set_commands = 'local'`) is refused: it would hand workers a carrier
/// the session copied from someone else's transaction. Only tenant_guard sends carriers.
pub fn refuse_forwarded_set(node: *mut pg_sys::Node) -> Result<()> {
    unsafe {
        if node.is_null() || !pgrx::is_a(node, pg_sys::NodeTag::T_VariableSetStmt) {
            return Ok(());
        }
        let stmt = &*(node as *mut pg_sys::VariableSetStmt);
        if stmt.name.is_null()
            || !std::ffi::CStr::from_ptr(stmt.name)
                .to_bytes()
                .eq_ignore_ascii_case(b"tenant_guard.carrier")
        {
            return Ok(());
        }
    }
    if gucs::value_of(c"citus.propagate_set_commands") != "local" {
        return Ok(());
    }
    Err(error::forbidden(
        "tenant_guard: tenant_guard.carrier cannot be set while citus.propagate_set_commands is 'local'",
        "tenant_guard sends the carrier itself; set a context with tenant_guard's functions.",
    ))
}

/// Whether this transaction's context came from a carrier (this is a worker).
pub fn adopted() -> bool {
    with_state(|state| state.adopted)
}

/// Worker side, when a policy needs the context and none is set: adopt the carrier's, if it
/// holds. Returns whether a context was adopted. A carrier that does not hold is 42501.
pub fn adopt() -> Result<bool> {
    let Some(carrier) = gucs::text_value(&gucs::CARRIER) else {
        return Ok(false);
    };
    let refuse = |why: &str| {
        Err(error::forbidden(
            format!("tenant_guard: the tenant context carried to this node was refused: {why}"),
            "Connect to the Citus coordinator: a worker trusts only the context that the \
             coordinator's tenant_guard signed for this distributed transaction.",
        ))
    };
    let Some(secret) = secret().filter(|s| s.len() >= MIN_SECRET) else {
        return refuse("this node has no cluster secret (tenant_guard.cluster_secret_file)");
    };
    let Some(id) = ffi::current_transaction_id() else {
        return refuse("this node does not run Citus");
    };
    // A transaction this node started has the context it was given here, never a carrier's.
    if ffi::local_group_id() == Some(id.initiator_node_identifier) {
        return refuse("this node started the distributed transaction it names");
    }
    let max_age = i64::from(gucs::CARRIER_MAX_AGE.get());
    let (carried, origin) = match open(
        &secret,
        &carrier,
        &id,
        crate::auth::now_seconds(),
        max_age,
        &catalog::current_database_name(),
    ) {
        Ok(opened) => opened,
        Err(Refused::Malformed) => return refuse("it is malformed"),
        Err(Refused::BadSignature) => return refuse("its signature does not verify"),
        Err(Refused::OtherTransaction) => {
            return refuse("it was issued for another distributed transaction")
        }
        Err(Refused::Expired) => return refuse("it is too old"),
    };
    match origin::confirmed_by_coordinator(&origin) {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                "the coordinator did not confirm it: the transaction it was issued for has \
                 ended, or it came on a connection of another backend (a replay)",
            )
        }
        Err(why) => return refuse(&format!("the coordinator could not confirm it: {why}")),
    }
    for (name, value) in [
        (gucs::TENANT_ID, Some(carried.tenant_id.as_str())),
        (gucs::USER_ID, carried.user_id.as_deref()),
        (gucs::TENANT_ROLE, carried.role.as_deref()),
        (gucs::TRACE_ID, carried.trace_id.as_deref()),
        (gucs::LOCALE, carried.locale.as_deref()),
    ] {
        gucs::set(name, value.unwrap_or(""), true);
    }
    with_state(|state| state.adopted = true);
    Ok(true)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn id(number: u64) -> DistributedTransactionId {
        DistributedTransactionId {
            initiator_node_identifier: 0,
            transaction_originator: true,
            transaction_number: number,
            timestamp: 123_456_789,
        }
    }

    const ORIGIN: Origin = Origin {
        pid: 4242,
        slot: 7,
        nonce: *b"0123456789abcdef",
    };

    fn carried() -> Carried {
        Carried {
            tenant_id: "acme".into(),
            user_id: Some("u1".into()),
            role: None,
            trace_id: Some("t\"'.x".into()),
            locale: None,
        }
    }

    #[test]
    fn round_trip() {
        let carrier = seal(SECRET, &carried(), &id(7), &ORIGIN, 1000, "db");
        assert!(carrier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(
            open(SECRET, &carrier, &id(7), 1010, 60, "db"),
            Ok((carried(), ORIGIN))
        );
    }

    #[test]
    fn refusals() {
        let carrier = seal(SECRET, &carried(), &id(7), &ORIGIN, 1000, "db");
        let other = b"another secret of thirty-two bytes";
        assert_eq!(
            open(other, &carrier, &id(7), 1000, 60, "db"),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            open(SECRET, &carrier, &id(8), 1000, 60, "db"),
            Err(Refused::OtherTransaction)
        );
        assert_eq!(
            open(SECRET, &carrier, &id(7), 1061, 60, "db"),
            Err(Refused::Expired)
        );
        assert_eq!(
            open(SECRET, &carrier, &id(7), 990, 60, "db"),
            Err(Refused::Expired)
        );
        // Another database of the same cluster: another transaction.
        assert_eq!(
            open(SECRET, &carrier, &id(7), 1000, 60, "other"),
            Err(Refused::OtherTransaction)
        );
        let forged = seal(SECRET, &carried(), &id(0), &ORIGIN, 1000, "db");
        assert_eq!(
            open(SECRET, &forged, &id(0), 1000, 60, "db"),
            Err(Refused::OtherTransaction)
        );
        // The payload changed, the MAC kept: refused.
        let parts: Vec<&str> = carrier.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
                .unwrap()
                .replace("acme", "evil"),
        );
        let tampered = format!("v1.{evil}.{}", parts[2]);
        assert_eq!(
            open(SECRET, &tampered, &id(7), 1000, 60, "db"),
            Err(Refused::BadSignature)
        );
        for bad in [
            "",
            "v1",
            "v1..",
            "v2.a.b",
            "v1.!!.??",
            &"v1.a.".repeat(3000),
        ] {
            assert_eq!(
                open(SECRET, bad, &id(7), 1000, 60, "db"),
                Err(Refused::Malformed),
                "{bad}"
            );
        }
    }
}
