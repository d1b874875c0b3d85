//! EdDSA tokens verified inside the server (the HS256 cases are in tests/pg_regress/sql/auth.sql,
//! where pgcrypto can sign them). Each test uses its own key ids and tenants: the tests run
//! concurrently, and a key id is unique.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::as_app_role;
    use base64::Engine;
    use ed25519_dalek::{Signer, SigningKey};
    use pgrx::prelude::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn now() -> i64 {
        Spi::get_one::<i64>("SELECT extract(epoch FROM now())::int8")
            .unwrap()
            .unwrap()
    }

    /// An EdDSA token signed with the key of `seed`, for `tenant` and `user`.
    fn ed_token(seed: u8, kid: &str, tenant: &str, user: &str) -> String {
        let header = serde_json::json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"});
        let claims = serde_json::json!({"tid": tenant, "sub": user, "exp": now() + 600});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = SigningKey::from_bytes(&[seed; 32]).sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }

    /// Register the public key of `seed` under `kid`, and the tenants.
    fn setup(kid: &str, seed: u8, tenants: &[&str]) {
        let public = SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes();
        Spi::run_with_args(
            "SELECT tenant_guard.add_token_key($1, 'EdDSA', $2)",
            &[kid.into(), public.to_vec().into()],
        )
        .unwrap();
        for tenant in tenants {
            Spi::run_with_args("SELECT tenant_guard.add_tenant($1)", &[(*tenant).into()]).unwrap();
        }
    }

    fn set_with_token(token: &str) -> serde_json::Value {
        Spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT tenant_guard.set_tenant_context_token($1)",
            &[token.into()],
        )
        .unwrap()
        .unwrap()
        .0
    }

    #[pg_test]
    fn an_eddsa_token_sets_its_context_and_sees_only_its_rows() {
        setup("pg-ed-1", 1, &["pg-ed-acme", "pg-ed-globex"]);
        Spi::run(
            "CREATE SCHEMA tg_ed;
             CREATE TABLE tg_ed.notes (id int, tenant_id text NOT NULL, body text);
             INSERT INTO tg_ed.notes VALUES (1, 'pg-ed-acme', 'mine'), (2, 'pg-ed-globex', 'theirs');",
        )
        .unwrap();
        as_app_role("tg_ed_app", "tg_ed");
        Spi::run(
            "RESET ROLE;
             GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_token(text, boolean) TO tg_ed_app;
             SET LOCAL ROLE tg_ed_app;",
        )
        .unwrap();
        let context = set_with_token(&ed_token(1, "pg-ed-1", "pg-ed-acme", "alice"));
        assert_eq!(context["tenant_id"], "pg-ed-acme");
        assert_eq!(context["user_id"], "alice");
        let seen =
            Spi::get_one::<String>("SELECT string_agg(body, ',' ORDER BY id) FROM tg_ed.notes")
                .unwrap();
        assert_eq!(seen.as_deref(), Some("mine"));
    }

    #[pg_test(error = "tenant_guard: the token is not valid: bad signature")]
    fn a_token_signed_by_another_key_is_refused() {
        setup("pg-ed-2", 2, &["pg-ed-acme2"]);
        set_with_token(&ed_token(99, "pg-ed-2", "pg-ed-acme2", "mallory"));
    }

    /// The verified-token cache never outlives a key's revocation, even within one transaction.
    #[pg_test(error = "tenant_guard: the token is not valid: unknown key")]
    fn the_cache_forgets_a_revoked_key() {
        setup("pg-ed-3", 3, &["pg-ed-acme3"]);
        let token = ed_token(3, "pg-ed-3", "pg-ed-acme3", "alice");
        assert_eq!(set_with_token(&token)["tenant_id"], "pg-ed-acme3");
        assert_eq!(set_with_token(&token)["tenant_id"], "pg-ed-acme3"); // cached
        Spi::run("SELECT tenant_guard.revoke_token_key('pg-ed-3')").unwrap();
        set_with_token(&token);
    }

    /// An EdDSA key's bytes are no HMAC secret (algorithm confusion).
    #[pg_test(error = "tenant_guard: the token is not valid: algorithm does not match the key")]
    fn an_hs256_token_cannot_use_an_eddsa_key() {
        use hmac::{KeyInit, Mac};
        setup("pg-ed-4", 4, &["pg-ed-acme4"]);
        let public = SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes();
        let header = serde_json::json!({"alg": "HS256", "kid": "pg-ed-4"});
        let claims = serde_json::json!({"tid": "pg-ed-acme4", "sub": "a", "exp": now() + 600});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public).unwrap();
        mac.update(input.as_bytes());
        set_with_token(&format!("{input}.{}", b64(&mac.finalize().into_bytes())));
    }
}
