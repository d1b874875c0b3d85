//! Signed tokens: `set_tenant_context_token(token)` verifies a JWT (compact form) inside the
//! database and sets the context its claims name.
//!
//! - Algorithms: HS256 (HMAC-SHA-256, a shared secret) and EdDSA (Ed25519, a public key). The
//!   header's `alg` must equal the key's: `none`, any other algorithm, and algorithm confusion
//!   (an HS256 token "signed" with an EdDSA public key) are refused.
//! - Keys live in `tenant_guard.token_keys`, readable by the extension owner only, chosen by the
//!   header's `kid`; a token without `kid` is accepted only while exactly one key is valid. A key
//!   can be retired after an overlap window (rotation) or revoked at once.
//! - Claims: `exp` (required), `nbf` and `iat` are checked with `tenant_guard.token_leeway`;
//!   `exp` may lie at most `tenant_guard.token_max_lifetime` ahead; `iss` and `aud` must match
//!   `tenant_guard.token_issuer` / `token_audience` when those are set. The tenant is the claim
//!   `tenant_guard.token_tenant_claim` (`tid`), the user `sub`, then `role`, `trace_id` and
//!   `locale`; a `scope` claim (space-separated) limits what the action gate lets it do. A token whose `jti` was revoked (`revoke_token`) is refused everywhere at once.
//! - Verified tokens are cached per backend, keyed by their SHA-256 (and the claim settings): a hit still checks `exp`,
//!   and the cache is dropped whenever a key or a token is revoked (the auth epoch moves). A
//!   session context set from a token ends when the token expires (checked at every use).
//!
//! Verification uses RustCrypto's `hmac`/`sha2` (constant-time tag comparison) and
//! `ed25519-dalek` (strict verification). RS256 and ES256 are not supported yet (see README).

use crate::auth::cache::EpochCache;
use crate::auth::{self, read, Credential};
use crate::context::{self, Requested};
use crate::error::{self, Result};
use crate::gucs;
use crate::jsonb::Jsonb;
use crate::privilege;
use base64::Engine;
use hmac::{KeyInit, Mac};
use pgrx::prelude::*;
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;

/// Longest token accepted, in bytes (real access tokens are well under 2 KB).
pub const MAX_TOKEN_BYTES: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    EdDsa,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::Hs256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The length of its signatures, in bytes.
    fn signature_len(self) -> usize {
        match self {
            Alg::Hs256 => 32,
            Alg::EdDsa => 64,
        }
    }
}

/// A verification key as stored.
#[derive(Clone, Debug)]
pub struct Key {
    pub kid: String,
    pub alg: Alg,
    pub material: Vec<u8>,
    /// Unix seconds after which the key verifies nothing (retirement), if set.
    pub retire_at: Option<i64>,
}

impl Key {
    fn valid_at(&self, now: i64) -> bool {
        self.retire_at.is_none_or(|at| now < at)
    }
}

/// What a token says, once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub tenant: String,
    pub user: Option<String>,
    pub role: Option<String>,
    pub trace: Option<String>,
    pub locale: Option<String>,
    /// The `scope` claim, split at whitespace (RFC 8693): what the action gate lets the token do.
    pub scopes: Option<Vec<String>>,
    pub jti: Option<String>,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

/// Why a token was refused: a reason for the log (fixed words) and the header's `kid`.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub kid: Option<String>,
}

fn refuse<T>(reason: &'static str, kid: Option<&str>) -> std::result::Result<T, Refusal> {
    Err(Refusal {
        reason,
        kid: kid.map(str::to_string),
    })
}

/// The time and settings claims are checked against.
#[derive(Clone, Debug)]
pub struct Rules {
    pub now: i64,
    pub leeway: i64,
    pub max_lifetime: i64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub tenant_claim: String,
}

impl Rules {
    fn current() -> Rules {
        Rules {
            now: auth::now_seconds(),
            leeway: i64::from(gucs::TOKEN_LEEWAY.get()),
            max_lifetime: i64::from(gucs::TOKEN_MAX_LIFETIME.get()),
            issuer: gucs::text_value(&gucs::TOKEN_ISSUER),
            audience: gucs::text_value(&gucs::TOKEN_AUDIENCE),
            tenant_claim: gucs::text_value(&gucs::TOKEN_TENANT_CLAIM)
                .unwrap_or_else(|| "tid".into()),
        }
    }

    /// The checks that depend on the time, made on every use of a cached verification too.
    /// Saturating arithmetic: the dates are whatever the token says, up to i64::MIN and MAX.
    fn check_time(&self, claims: &Claims) -> std::result::Result<(), &'static str> {
        let now_ahead = self.now.saturating_add(self.leeway);
        if self.now >= claims.exp.saturating_add(self.leeway) {
            return Err("expired");
        }
        if claims.nbf.is_some_and(|nbf| nbf > now_ahead) {
            return Err("not yet valid");
        }
        if claims.iat.is_some_and(|iat| iat > now_ahead) {
            return Err("issued in the future");
        }
        if claims.exp.saturating_sub(self.now) > self.max_lifetime {
            return Err("lifetime too long");
        }
        Ok(())
    }
}

fn base64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

/// A NumericDate: a JSON number of seconds, truncated.
fn numeric_date(value: Option<&Value>) -> std::result::Result<Option<i64>, ()> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or(()),
        Some(_) => Err(()),
    }
}

fn text_claim(
    claims: &serde_json::Map<String, Value>,
    name: &str,
) -> std::result::Result<Option<String>, ()> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

/// The token's parts, decoded, with the signing input.
struct Parts<'t> {
    header: serde_json::Map<String, Value>,
    signing_input: &'t str,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

/// Split a compact JWS into its three base64url parts (no padding, no trailing bits).
fn split(token: &str) -> std::result::Result<Parts<'_>, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return refuse("too long", None);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return refuse("malformed", None);
    };
    let (Some(header_bytes), Some(payload_bytes), Some(signature)) =
        (base64url(header), base64url(payload), base64url(signature))
    else {
        return refuse("malformed", None);
    };
    let Ok(Value::Object(header_json)) = serde_json::from_slice::<Value>(&header_bytes) else {
        return refuse("malformed", None);
    };
    Ok(Parts {
        header: header_json,
        signing_input: &token[..header.len() + 1 + payload.len()],
        signature,
        payload: payload_bytes,
    })
}

/// Verify `token` against `keys` by `rules`, without touching the database: the parser and the
/// checks the fuzz tests drive. `is_revoked` is asked about the `jti` of a verified token.
pub fn verify(
    token: &str,
    keys: &[Key],
    rules: &Rules,
    is_revoked: impl FnOnce(&str) -> bool,
) -> std::result::Result<(Claims, String), Refusal> {
    let Parts {
        header,
        signing_input,
        signature,
        payload,
    } = split(token)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return refuse("malformed", None),
    };
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => match Alg::parse(alg) {
            Some(alg) => alg,
            None => return refuse("algorithm not allowed", kid),
        },
        _ => return refuse("malformed", kid),
    };
    if header.contains_key("crit") {
        return refuse("unsupported critical header", kid);
    }
    // A signature of another length was cut or padded: malformed, whatever its bytes (a cut
    // that still decodes as base64url would otherwise read as a bad signature).
    if signature.len() != alg.signature_len() {
        return refuse("malformed", kid);
    }
    let valid: Vec<&Key> = keys.iter().filter(|k| k.valid_at(rules.now)).collect();
    let key = match kid {
        Some(kid) => match valid.iter().find(|k| k.kid == kid) {
            Some(key) => *key,
            None => return refuse("unknown key", Some(kid)),
        },
        None => match valid.as_slice() {
            [only] => *only,
            _ => return refuse("no kid", None),
        },
    };
    if key.alg != alg {
        return refuse("algorithm does not match the key", Some(&key.kid));
    }
    let verified = match alg {
        Alg::Hs256 => hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.material)
            .map(|mut mac| {
                mac.update(signing_input.as_bytes());
                mac.verify_slice(&signature).is_ok()
            })
            .unwrap_or(false),
        Alg::EdDsa => {
            let public: Option<[u8; 32]> = key.material.as_slice().try_into().ok();
            let signature: Option<[u8; 64]> = signature.as_slice().try_into().ok();
            match (public, signature) {
                (Some(public), Some(signature)) => ed25519_dalek::VerifyingKey::from_bytes(&public)
                    .map(|public| {
                        public
                            .verify_strict(
                                signing_input.as_bytes(),
                                &ed25519_dalek::Signature::from_bytes(&signature),
                            )
                            .is_ok()
                    })
                    .unwrap_or(false),
                _ => false,
            }
        }
    };
    if !verified {
        return refuse("bad signature", Some(&key.kid));
    }
    let kid = Some(key.kid.as_str());
    let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(&payload) else {
        return refuse("malformed claims", kid);
    };
    let dates = (
        numeric_date(payload.get("exp")),
        numeric_date(payload.get("nbf")),
        numeric_date(payload.get("iat")),
    );
    let (Ok(Some(exp)), Ok(nbf), Ok(iat)) = dates else {
        return refuse("missing or malformed exp, nbf or iat", kid);
    };
    if let Some(issuer) = &rules.issuer {
        if payload.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
            return refuse("wrong issuer", kid);
        }
    }
    if let Some(audience) = &rules.audience {
        let matches = match payload.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience.as_str())),
            _ => false,
        };
        if !matches {
            return refuse("wrong audience", kid);
        }
    }
    let tenant = match payload.get(rules.tenant_claim.as_str()) {
        Some(Value::String(tenant)) => tenant.clone(),
        _ => return refuse("missing or malformed tenant claim", kid),
    };
    let texts = (
        text_claim(&payload, "sub"),
        text_claim(&payload, "role"),
        text_claim(&payload, "trace_id"),
        text_claim(&payload, "locale"),
        text_claim(&payload, "jti"),
        match payload.get("scope") {
            // Present but null would read as "no scopes", which is unrestricted.
            Some(Value::Null) => Err(()),
            _ => text_claim(&payload, "scope"),
        },
    );
    let (Ok(user), Ok(role), Ok(trace), Ok(locale), Ok(jti), Ok(scope)) = texts else {
        return refuse("malformed claims", kid);
    };
    // RFC 6749: scopes separated by single spaces; any other whitespace or control character
    // makes the claim malformed.
    let scopes: Option<Vec<String>> = scope.map(|scope| {
        scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    if scopes.as_ref().is_some_and(|s| {
        s.len() > 100
            || s.iter()
                .any(|s| s.len() > 255 || s.chars().any(|c| c.is_whitespace() || c.is_control()))
    }) {
        return refuse("malformed claims", kid);
    }
    let claims = Claims {
        tenant,
        user,
        role,
        trace,
        locale,
        scopes,
        jti,
        exp,
        nbf,
        iat,
    };
    if let Err(reason) = rules.check_time(&claims) {
        return refuse(reason, kid);
    }
    if claims.jti.as_deref().is_some_and(is_revoked) {
        return refuse("revoked", kid);
    }
    Ok((claims, key.kid.clone()))
}

thread_local! {
    /// The keys, as of an epoch.
    static KEYS: RefCell<Option<(u64, Rc<[Key]>)>> = const { RefCell::new(None) };
    /// Verified tokens by their SHA-256, as of an epoch.
    static VERIFIED: RefCell<EpochCache<[u8; 32], (Claims, String)>> = RefCell::new(EpochCache::default());
}

fn keys() -> Rc<[Key]> {
    let epoch = auth::epoch();
    if let Some(keys) = KEYS.with(|cache| match cache.borrow().as_ref() {
        Some((at, keys)) if *at == epoch => Some(keys.clone()),
        _ => None,
    }) {
        return keys;
    }
    // A retirement at +/-infinity: add_token_key refuses those; read one as never / always.
    let keys: Rc<[Key]> = read::select(
        "SELECT kid, alg, key,
                CASE WHEN pg_catalog.isfinite(retire_at)
                     THEN pg_catalog.floor(EXTRACT(epoch FROM retire_at))::pg_catalog.int8
                     WHEN retire_at OPERATOR(pg_catalog.<) pg_catalog.now() THEN 0 END
           FROM tenant_guard.token_keys WHERE revoked_at IS NULL",
        &[],
        |row| Key {
            kid: row.get::<String>(1).unwrap_or_default(),
            alg: row
                .get::<String>(2)
                .and_then(|a| Alg::parse(&a))
                .unwrap_or(Alg::Hs256),
            material: row.get::<Vec<u8>>(3).unwrap_or_default(),
            retire_at: row.get::<i64>(4),
        },
    )
    .into();
    KEYS.with(|cache| *cache.borrow_mut() = Some((epoch, keys.clone())));
    keys
}

fn jti_revoked(jti: &str) -> bool {
    !read::select(
        "SELECT 1 FROM tenant_guard.revoked_tokens WHERE jti OPERATOR(pg_catalog.=) $1",
        &[read::arg(Some(jti))],
        |_| (),
    )
    .is_empty()
}

/// Verify a token with the database's keys and revocations, through the backend's cache.
/// The key a verified token was signed with, as the context remembers it.
struct SignedBy {
    kid: String,
    retire_at: Option<i64>,
}

fn verify_cached(token: &str) -> std::result::Result<(Claims, SignedBy), Refusal> {
    use sha2::Digest;
    let rules = Rules::current();
    // The settings a verification depended on are part of the key: a changed issuer, audience
    // or tenant claim verifies again.
    let mut hasher = sha2::Sha256::new();
    for part in [
        rules.issuer.as_deref().unwrap_or(""),
        rules.audience.as_deref().unwrap_or(""),
        &rules.tenant_claim,
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update(token.as_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    let epoch = auth::epoch();
    let keys = keys();
    let (claims, kid) = match VERIFIED.with(|cache| cache.borrow_mut().get(epoch, &digest)) {
        Some((claims, kid)) => {
            rules
                .check_time(&claims)
                .or_else(|reason| refuse(reason, Some(&kid)))?;
            (claims, kid)
        }
        None => {
            let verified = verify(token, &keys, &rules, jti_revoked)?;
            VERIFIED.with(|cache| cache.borrow_mut().insert(digest, verified.clone()));
            verified
        }
    };
    // The key must still verify (a cached token was verified in this epoch, but time passes).
    match keys.iter().find(|k| k.kid == kid && k.valid_at(rules.now)) {
        Some(key) => Ok((
            claims,
            SignedBy {
                retire_at: key.retire_at,
                kid,
            },
        )),
        None => refuse("unknown key", Some(&kid)),
    }
}

/// For a context in use after the auth tables changed: the retirement of the key `kid` (None
/// inside: never), or None when the key no longer verifies or the token `jti` was revoked.
pub fn key_retirement(kid: &str, jti: Option<&str>) -> Option<Option<i64>> {
    let now = auth::now_seconds();
    let key = keys()
        .iter()
        .find(|k| k.kid == kid && k.valid_at(now))
        .map(|k| k.retire_at)?;
    (!jti.is_some_and(jti_revoked)).then_some(key)
}

fn token_error(reason: &str) -> pgrx::pg_sys::panic::ErrorReport {
    error::invalid_credential(
        format!("tenant_guard: the token is not valid: {reason}"),
        "Present a token signed with a current key (tenant_guard.token_keys), unexpired, \
         naming the tenant in its tenant claim. Pass it as a bind parameter, never as a literal.",
    )
}

/// Set the tenant context from a verified token. Transaction-local by default.
#[pg_extern(volatile, parallel_unsafe)]
pub fn set_tenant_context_token(
    token: Option<&str>,
    is_local: default!(Option<bool>, true),
) -> Result<Jsonb> {
    auth::with_hidden_statement(|| set_from_token(token, is_local))
}

fn set_from_token(token: Option<&str>, is_local: Option<bool>) -> Result<Jsonb> {
    let checked_in = auth::epoch();
    let is_local = context::scope(is_local)?;
    let Some(token) = token else {
        return Err(auth::failure(
            "token",
            "missing",
            None,
            None,
            token_error("no token"),
        ));
    };
    let (claims, key) = verify_cached(token).map_err(|refusal| {
        auth::failure(
            "token",
            refusal.reason,
            refusal.kid.as_deref(),
            None,
            token_error(refusal.reason),
        )
    })?;
    let requested = Requested {
        tenant_id: &claims.tenant,
        user_id: claims.user.as_deref(),
        role: claims.role.as_deref(),
        trace_id: claims.trace.as_deref(),
        locale: claims.locale.as_deref(),
    }
    .validated()?;
    context::apply(
        requested,
        is_local,
        Credential::Token {
            kid: key.kid,
            jti: claims.jti.clone(),
            expires_at: claims.exp,
            retires_at: key.retire_at,
            scopes: claims.scopes.clone(),
        },
        checked_in,
    )
}

fn kid_argument(kid: Option<&str>) -> Result<&str> {
    let Some(kid) = kid else {
        return Err(error::malformed(
            "tenant_guard: kid must not be NULL",
            "Pass the key id that tokens name in their kid header.",
        ));
    };
    context::validate_value("kid", kid)?;
    Ok(kid)
}

/// Add a verification key: HS256 (a secret of at least 32 bytes) or EdDSA (a raw 32-byte Ed25519
/// public key). Optionally retired from `retire_at` on. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn add_token_key(
    kid: Option<&str>,
    alg: Option<&str>,
    key: Option<Vec<u8>>,
    retire_at: default!(Option<pgrx::datum::TimestampWithTimeZone>, "NULL"),
) -> Result<()> {
    auth::require_admin("add_token_key")?;
    let kid = kid_argument(kid)?;
    let Some(alg) = alg.and_then(Alg::parse) else {
        return Err(error::malformed(
            "tenant_guard: alg must be 'HS256' or 'EdDSA'",
            "tenant_guard verifies HMAC-SHA-256 and Ed25519 signatures.",
        ));
    };
    let Some(key) = key else {
        return Err(error::malformed(
            "tenant_guard: key must not be NULL",
            "Pass the key's bytes.",
        ));
    };
    if retire_at.is_some_and(|at| !at.is_finite()) {
        return Err(error::malformed(
            "tenant_guard: retire_at must be a finite time",
            "Pass NULL for a key that does not retire, or a time.",
        ));
    }
    match alg {
        Alg::Hs256 if key.len() < 32 => {
            return Err(error::malformed(
                "tenant_guard: an HS256 secret must be at least 32 bytes",
                "Use 32 random bytes or more: gen_random_bytes(32) (pgcrypto), or openssl rand 32.",
            ))
        }
        Alg::EdDsa => {
            let valid = <[u8; 32]>::try_from(key.as_slice())
                .ok()
                .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
                .is_some();
            if !valid {
                return Err(error::malformed(
                    "tenant_guard: an EdDSA key is a raw 32-byte Ed25519 public key",
                    "From a PEM public key: openssl pkey -pubin -in key.pem -outform DER | tail -c 32.",
                ));
            }
        }
        _ => {}
    }
    let added_by = crate::catalog::current_role_name();
    let added = privilege::as_extension_owner(|| {
        crate::catalog::select_exists(
            "WITH added AS (
                 INSERT INTO tenant_guard.token_keys (kid, alg, key, retire_at, added_by)
                 VALUES ($1, $2, $3, $4, $5::pg_catalog.name)
                 ON CONFLICT (kid) DO NOTHING RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM added)",
            &[
                kid.into(),
                alg.name().into(),
                key.into(),
                retire_at.into(),
                added_by.as_str().into(),
            ],
        )
    });
    if !added {
        return Err(error::duplicate_object(
            format!("tenant_guard: a token key with kid '{kid}' exists"),
            "Key ids are never reused: add the new key under a new kid, then retire the old one.",
        ));
    }
    Ok(())
}

fn update_key(
    function: &str,
    kid: Option<&str>,
    sql: &str,
    arg: Option<pgrx::datum::DatumWithOid<'_>>,
) -> Result<()> {
    auth::require_admin(function)?;
    let kid = kid_argument(kid)?;
    let mut args: Vec<pgrx::datum::DatumWithOid> = vec![kid.into()];
    args.extend(arg);
    let found = privilege::as_extension_owner(|| crate::catalog::select_exists(sql, &args));
    if !found {
        return Err(error::undefined_object(
            format!("tenant_guard: there is no token key with kid '{kid}'"),
            "tenant_guard.list_token_keys() lists them.",
        ));
    }
    Ok(())
}

/// Retire a key after `grace` (an overlap window for rotation: add the new key first). Tokens
/// signed with it are refused from then on, and so are contexts set with them. For
/// administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn retire_token_key(
    kid: Option<&str>,
    grace: default!(Option<pgrx::datum::Interval>, "'0'"),
) -> Result<()> {
    let Some(grace) = grace else {
        return Err(error::malformed(
            "tenant_guard: grace must not be NULL",
            "Pass '0' to retire it now.",
        ));
    };
    update_key(
        "retire_token_key",
        kid,
        "WITH changed AS (
             UPDATE tenant_guard.token_keys
                SET retire_at = LEAST(COALESCE(retire_at, 'infinity'), pg_catalog.now() OPERATOR(pg_catalog.+) $2)
              WHERE kid OPERATOR(pg_catalog.=) $1 RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM changed)",
        Some(grace.into()),
    )
}

/// Revoke a key at once: tokens signed with it are refused, and contexts set with them end at
/// their next query. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn revoke_token_key(kid: Option<&str>) -> Result<()> {
    update_key(
        "revoke_token_key",
        kid,
        "WITH changed AS (
             UPDATE tenant_guard.token_keys SET revoked_at = COALESCE(revoked_at, pg_catalog.now())
              WHERE kid OPERATOR(pg_catalog.=) $1 RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM changed)",
        None,
    )
}

/// Refuse the token with this `jti` everywhere, at once (contexts set with it end at their next
/// query). For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn revoke_token(jti: Option<&str>) -> Result<()> {
    auth::require_admin("revoke_token")?;
    let Some(jti) = jti else {
        return Err(error::malformed(
            "tenant_guard: jti must not be NULL",
            "Pass the token's jti claim.",
        ));
    };
    context::validate_value("jti", jti)?;
    let revoked_by = crate::catalog::current_role_name();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.revoked_tokens (jti, revoked_by) VALUES ($1, $2::pg_catalog.name)
             ON CONFLICT (jti) DO NOTHING",
            &[jti.into(), revoked_by.as_str().into()],
        )
    })
    .map_err(error::internal)?;
    Ok(())
}

/// The token keys, without their material. For administrators.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn list_token_keys() -> Result<
    TableIterator<
        'static,
        (
            name!(kid, String),
            name!(alg, String),
            name!(added_at, Option<pgrx::datum::TimestampWithTimeZone>),
            name!(retire_at, Option<pgrx::datum::TimestampWithTimeZone>),
            name!(revoked_at, Option<pgrx::datum::TimestampWithTimeZone>),
        ),
    >,
> {
    auth::require_admin("list_token_keys")?;
    let rows = privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT kid, alg, added_at, retire_at, revoked_at FROM tenant_guard.token_keys ORDER BY added_at, kid",
                    None,
                    &[],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                })
                .collect::<pgrx::spi::SpiResult<Vec<_>>>()
        })
    })
    .map_err(error::internal)?;
    Ok(TableIterator::new(rows))
}
