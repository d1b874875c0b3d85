//! Tenant API keys, for programmatic access (agents, services, CI).
//!
//! A key reads `tgk_<id>_<secret><check>`: the recognisable prefix `tgk_` (secret scanners can
//! match it), a public id of 12 base62 characters, a secret of 32 base62 characters (190 bits),
//! and 6 base62 characters of its SHA-256 as a checksum, so a mistyped or truncated key fails
//! before any lookup. Only the SHA-256 of the whole key is stored (a slow password hash would
//! cost tens of milliseconds per request, and buys nothing for 190 random bits); verification
//! looks the key up by its id and compares the hash in constant time. Expired, revoked, unknown
//! and malformed keys all get 28P01 and the same message (the server log says which).
//!
//! A key acts for the tenant and role it was issued for, as the user `api_key:<id>`; its scopes
//! are stored for the authorization functions. `rotate_api_key` issues a successor and lets the
//! old key work until a grace period ends.

use crate::auth::cache::{cached, EpochCache};
use crate::auth::{self, read, Credential};
use crate::context::{self, validate_value, Requested};
use crate::error::{self, Result};
use crate::jsonb::Jsonb;
use crate::privilege;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "tgk_";
const ID_CHARS: usize = 12;
const SECRET_CHARS: usize = 32;
const CHECK_CHARS: usize = 6;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The parts of a well-formed key.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'k> {
    pub id: &'k str,
    pub digest: [u8; 32],
}

fn base62(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Six base62 characters of the SHA-256 of the key's body.
pub(crate) fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let mut value = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) as u64;
    (0..CHECK_CHARS)
        .map(|_| {
            let c = ALPHABET[(value % 62) as usize] as char;
            value /= 62;
            c
        })
        .collect()
}

/// Parse a presented key: prefix, shape, charset and checksum (no lookup), or why not.
pub fn parse(key: &str) -> std::result::Result<Parsed<'_>, &'static str> {
    let expected = PREFIX.len() + ID_CHARS + 1 + SECRET_CHARS + CHECK_CHARS;
    if key.len() != expected || !key.is_ascii() {
        return Err("malformed");
    }
    let Some(rest) = key.strip_prefix(PREFIX) else {
        return Err("wrong prefix");
    };
    let (id, rest) = rest.split_at(ID_CHARS);
    let Some(tail) = rest.strip_prefix('_') else {
        return Err("malformed");
    };
    let (secret, check) = tail.split_at(SECRET_CHARS);
    if !base62(id) || !base62(secret) || !base62(check) {
        return Err("malformed");
    }
    let body = &key[..key.len() - CHECK_CHARS];
    if checksum(body) != check {
        return Err("bad checksum");
    }
    Ok(Parsed {
        id,
        digest: Sha256::digest(key.as_bytes()).into(),
    })
}

/// `n` random base62 characters from the server's strong random source.
fn random_base62(n: usize) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut bytes = [0u8; 64];
        if !unsafe { pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) } {
            error::raise(error::internal("could not generate random bytes"));
        }
        // Rejection sampling keeps every character equally likely.
        for b in bytes.into_iter().filter(|b| *b < 248) {
            if out.len() < n {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// A new key: (id, the whole key).
fn generate() -> (String, String) {
    let id = random_base62(ID_CHARS);
    let body = format!("{PREFIX}{id}_{}", random_base62(SECRET_CHARS));
    let key = format!("{body}{}", checksum(&body));
    (id, key)
}

/// A stored key, as verification needs it.
#[derive(Clone, Debug)]
struct Stored {
    tenant_id: String,
    role: Option<String>,
    digest: Vec<u8>,
    /// Unix microseconds.
    expires_at: i64,
    revoked: bool,
    scopes: Vec<String>,
}

thread_local! {
    static STORED: RefCell<EpochCache<String, Option<Stored>>> = RefCell::new(EpochCache::default());
}

fn stored(id: &str) -> Option<Stored> {
    cached(&STORED, id.to_string(), || {
        read::select(
            "SELECT tenant_id, role, secret_hash,
                    (EXTRACT(epoch FROM expires_at) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8,
                    revoked_at IS NOT NULL, scopes
               FROM tenant_guard.api_keys WHERE id OPERATOR(pg_catalog.=) $1",
            &[read::arg(Some(id))],
            |row| Stored {
                tenant_id: row.get::<String>(1).unwrap_or_default(),
                role: row.get::<String>(2),
                digest: row.get::<Vec<u8>>(3).unwrap_or_default(),
                expires_at: row.get::<i64>(4).unwrap_or(0),
                revoked: row.get::<bool>(5).unwrap_or(true),
                scopes: row.get::<Vec<String>>(6).unwrap_or_default(),
            },
        )
        .into_iter()
        .next()
    })
}

/// The one error every invalid key gets.
pub fn invalid() -> pgrx::pg_sys::panic::ErrorReport {
    error::invalid_secret(
        "tenant_guard: the API key is not valid",
        "Use a current key issued by tenant_guard.issue_api_key(), passed as a bind parameter.",
    )
}

/// Check a presented key; the stored key, or why not (with the id, when it parsed).
fn verify(key: &str) -> std::result::Result<(String, Stored), (&'static str, Option<String>)> {
    let parsed = parse(key).map_err(|reason| (reason, None))?;
    let id = parsed.id.to_string();
    let Some(stored) = stored(&id) else {
        return Err(("unknown", Some(id)));
    };
    if !bool::from(stored.digest.as_slice().ct_eq(&parsed.digest)) {
        return Err(("wrong secret", Some(id)));
    }
    if stored.revoked {
        return Err(("revoked", Some(id)));
    }
    if auth::now_micros() >= stored.expires_at {
        return Err(("expired", Some(id)));
    }
    Ok((id, stored))
}

/// For a context in use after the auth tables changed: the key's expiry now (a rotation may
/// have brought it forward), or None when it was revoked or is gone.
pub fn current_expiry(id: &str) -> Option<i64> {
    stored(id)
        .filter(|s| !s.revoked && auth::now_micros() < s.expires_at)
        .map(|s| s.expires_at)
}

/// Set the tenant context from an API key: its tenant and role, as the user `api_key:<id>`.
/// Transaction-local by default.
#[pg_extern(volatile, parallel_unsafe)]
pub fn set_tenant_context_api_key(
    api_key: Option<&str>,
    is_local: default!(Option<bool>, true),
) -> Result<Jsonb> {
    auth::with_hidden_statement(|| set_from_api_key(api_key, is_local))
}

fn set_from_api_key(api_key: Option<&str>, is_local: Option<bool>) -> Result<Jsonb> {
    let checked_in = auth::epoch();
    let is_local = context::scope(is_local)?;
    let (id, stored) = verify(api_key.unwrap_or(""))
        .map_err(|(reason, id)| auth::failure("api_key", reason, id.as_deref(), None, invalid()))?;
    let user = format!("api_key:{id}");
    let requested = Requested {
        tenant_id: &stored.tenant_id,
        user_id: Some(&user),
        role: stored.role.as_deref(),
        trace_id: None,
        locale: None,
    };
    context::apply(
        requested,
        is_local,
        Credential::ApiKey {
            id,
            expires_at: stored.expires_at,
            scopes: stored.scopes,
        },
        checked_in,
    )
}

fn id_argument(id: Option<&str>) -> Result<&str> {
    match id {
        Some(id) if id.len() == ID_CHARS && base62(id) => Ok(id),
        _ => Err(error::malformed(
            "tenant_guard: id must be an API key's id (12 letters and digits)",
            "tenant_guard.list_api_keys(tenant_id) lists the ids.",
        )),
    }
}

fn unknown(id: &str) -> pgrx::pg_sys::panic::ErrorReport {
    error::undefined_object(
        format!("tenant_guard: there is no API key with id '{id}'"),
        "tenant_guard.list_api_keys(tenant_id) lists the ids.",
    )
}

/// Store a new key and return it (the only time its secret is shown).
#[allow(clippy::too_many_arguments)]
fn store(
    tenant_id: &str,
    role: Option<&str>,
    expires_in: &Interval,
    label: Option<&str>,
    scopes: &[String],
    replaces: Option<&str>,
) -> String {
    let (id, key) = generate();
    let digest: Vec<u8> = Sha256::digest(key.as_bytes()).to_vec();
    let created_by = crate::catalog::current_role_name();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.api_keys
                    (id, tenant_id, role, scopes, label, secret_hash, expires_at, replaces, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, pg_catalog.now() OPERATOR(pg_catalog.+) $7, $8,
                     $9::pg_catalog.name)",
            &[
                id.as_str().into(),
                tenant_id.into(),
                role.into(),
                scopes.to_vec().into(),
                label.into(),
                digest.into(),
                (*expires_in).into(),
                replaces.into(),
                created_by.as_str().into(),
            ],
        )
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)));
    key
}

fn positive(name: &str, interval: Option<Interval>, allow_zero: bool) -> Result<Interval> {
    let Some(interval) = interval else {
        return Err(error::malformed(
            format!("tenant_guard: {name} must not be NULL"),
            "Pass an interval, e.g. '90 days'.",
        ));
    };
    let micros = i64::from(interval.months()) * 30 * 86_400_000_000
        + i64::from(interval.days()) * 86_400_000_000
        + interval.micros();
    if micros < 0 || (micros == 0 && !allow_zero) {
        return Err(error::malformed(
            if allow_zero {
                format!("tenant_guard: {name} must not be negative")
            } else {
                format!("tenant_guard: {name} must be positive")
            },
            "Pass an interval, e.g. '90 days'.",
        ));
    }
    Ok(interval)
}

/// Issue a key for a registered tenant; returns it (its secret is shown only now). For
/// administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn issue_api_key(
    tenant_id: Option<&str>,
    role: Option<&str>,
    expires_in: Option<Interval>,
    label: Option<&str>,
    scopes: default!(Option<Vec<Option<String>>>, "'{}'"),
) -> Result<String> {
    auth::require_admin("issue_api_key")?;
    let tenant_id = auth::tenants::tenant_argument(tenant_id)?;
    if let Some(role) = role {
        validate_value("role", role)?;
    }
    if let Some(label) = label {
        validate_value("label", label)?;
    }
    let expires_in = positive("expires_in", expires_in, false)?;
    let Some(scopes) = scopes else {
        return Err(error::malformed(
            "tenant_guard: scopes must not be NULL",
            "Pass '{}' for none.",
        ));
    };
    let scopes = scopes
        .into_iter()
        .map(|scope| {
            let scope = scope.ok_or_else(|| {
                error::malformed(
                    "tenant_guard: scopes must not contain NULL",
                    "Remove the NULL element.",
                )
            })?;
            validate_value("scope", &scope)?;
            Ok(scope)
        })
        .collect::<Result<Vec<String>>>()?;
    auth::tenants::require_registered(tenant_id)?;
    Ok(store(tenant_id, role, &expires_in, label, &scopes, None))
}

/// Revoke a key at once; contexts set with it end at their next query. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn revoke_api_key(id: Option<&str>) -> Result<()> {
    auth::require_admin("revoke_api_key")?;
    let id = id_argument(id)?;
    let found = privilege::as_extension_owner(|| {
        crate::catalog::select_exists(
            "WITH changed AS (
                 UPDATE tenant_guard.api_keys SET revoked_at = COALESCE(revoked_at, pg_catalog.now())
                  WHERE id OPERATOR(pg_catalog.=) $1 RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM changed)",
            &[id.into()],
        )
    });
    if !found {
        return Err(unknown(id));
    }
    Ok(())
}

/// Issue a successor of a key (same tenant, role, scopes, label and lifetime) and let the old key
/// work for `grace` more (default: not at all). Returns the new key. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn rotate_api_key(
    id: Option<&str>,
    grace: default!(Option<Interval>, "'0'"),
) -> Result<String> {
    auth::require_admin("rotate_api_key")?;
    let id = id_argument(id)?;
    let grace = positive("grace", grace, true)?;
    // The key's row stays locked until COMMIT: two rotations of one key wait for each other.
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "SELECT 1 FROM tenant_guard.api_keys WHERE id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
            &[id.into()],
        )
    })
    .map_err(error::internal)?;
    let old = privilege::as_extension_owner(|| {
        crate::catalog::select_row(
            "SELECT tenant_id, role, scopes, label, expires_at OPERATOR(pg_catalog.-) created_at,
                    CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
                         WHEN expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() THEN 'expired'
                         WHEN EXISTS (SELECT 1 FROM tenant_guard.api_keys successor
                                       WHERE successor.replaces OPERATOR(pg_catalog.=) k.id)
                         THEN 'already rotated' END
               FROM tenant_guard.api_keys k WHERE id OPERATOR(pg_catalog.=) $1",
            &[id.into()],
            |row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?,
                    row.get::<Vec<String>>(3)?.unwrap_or_default(),
                    row.get::<String>(4)?,
                    row.get::<Interval>(5)?,
                    row.get::<String>(6)?,
                ))
            },
        )
    });
    let Some((tenant_id, role, scopes, label, lifetime, unusable)) = old else {
        return Err(unknown(id));
    };
    if let Some(state) = unusable {
        // A revoked or expired key has no successor, and a key has one successor at most (its
        // lifetime was cut to the grace period when it got it).
        return Err(error::invalid_state(
            format!("tenant_guard: API key '{id}' is {state}"),
            "Rotate the current key, or issue a new one with tenant_guard.issue_api_key().",
        ));
    }
    let lifetime = lifetime.unwrap_or(grace);
    let key = store(
        &tenant_id,
        role.as_deref(),
        &lifetime,
        label.as_deref(),
        &scopes,
        Some(id),
    );
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "UPDATE tenant_guard.api_keys
                SET expires_at = LEAST(expires_at, pg_catalog.now() OPERATOR(pg_catalog.+) $2)
              WHERE id OPERATOR(pg_catalog.=) $1",
            &[id.into(), grace.into()],
        )
    })
    .map_err(error::internal)?;
    Ok(key)
}

/// A tenant's keys: never a secret or a hash. For administrators.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn list_api_keys(
    tenant_id: Option<&str>,
) -> Result<
    TableIterator<
        'static,
        (
            name!(id, String),
            name!(label, Option<String>),
            name!(role, Option<String>),
            name!(scopes, Vec<String>),
            name!(created_at, Option<pgrx::datum::TimestampWithTimeZone>),
            name!(expires_at, Option<pgrx::datum::TimestampWithTimeZone>),
            name!(revoked_at, Option<pgrx::datum::TimestampWithTimeZone>),
            name!(replaces, Option<String>),
        ),
    >,
> {
    auth::require_admin("list_api_keys")?;
    let tenant_id = auth::tenants::tenant_argument(tenant_id)?;
    let rows = privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT id, label, role, scopes, created_at, expires_at, revoked_at, replaces
                       FROM tenant_guard.api_keys WHERE tenant_id OPERATOR(pg_catalog.=) $1
                      ORDER BY created_at, id",
                    None,
                    &[tenant_id.into()],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get(2)?,
                        row.get(3)?,
                        row.get::<Vec<String>>(4)?.unwrap_or_default(),
                        row.get(5)?,
                        row.get(6)?,
                        row.get(7)?,
                        row.get(8)?,
                    ))
                })
                .collect::<pgrx::spi::SpiResult<Vec<_>>>()
        })
    })
    .map_err(error::internal)?;
    Ok(TableIterator::new(rows))
}

#[cfg(test)]
mod unit_tests {
    use super::{checksum, parse, CHECK_CHARS, PREFIX};

    fn key(id: &str, secret: &str) -> String {
        let body = format!("{PREFIX}{id}_{secret}");
        format!("{body}{}", checksum(&body))
    }

    #[test]
    fn a_well_formed_key_parses_to_its_id() {
        let k = key("AbCdEf012345", "0123456789abcdefghijABCDEFGHIJkl");
        assert_eq!(parse(&k).map(|p| p.id), Ok("AbCdEf012345"));
        assert_eq!(checksum("x").len(), CHECK_CHARS);
    }

    #[test]
    fn typos_and_other_shapes_fail_before_any_lookup() {
        let k = key("AbCdEf012345", "0123456789abcdefghijABCDEFGHIJkl");
        let mut typo = k.clone().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            parse(std::str::from_utf8(&typo).unwrap()),
            Err("bad checksum")
        );
        assert_eq!(parse(&k.replacen("tgk_", "tgx_", 1)), Err("wrong prefix"));
        assert_eq!(parse(&k[..k.len() - 1]), Err("malformed"));
        assert_eq!(parse(""), Err("malformed"));
        assert!(parse(&k.replacen('_', "-", 2)).is_err());
        assert_eq!(parse(&format!("{}é", &k[..k.len() - 2])), Err("malformed"));
    }
}
