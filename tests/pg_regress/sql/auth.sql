-- Authenticated context (src/auth): tokens, API keys and memberships. The goal: a role granted
-- only the authenticated entry points, with full SQL access (what an injection has), cannot act
-- for any tenant, user or role without a valid credential for exactly that, and cannot widen
-- what a credential grants. Tokens here are HS256, signed with pgcrypto; EdDSA tokens are
-- signed in pgrx-tests/auth.rs and tests/client/test_auth.py.
\c - postgres
CREATE EXTENSION pgcrypto;
CREATE FUNCTION tg_test.b64url(bytes bytea) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT rtrim(translate(encode(bytes, 'base64'), E'+/\n', '-_'), '=') $$;
-- A compact JWS: header.claims.signature, HMAC-SHA-256 with secret.
CREATE FUNCTION tg_test.jwt(header jsonb, claims jsonb, secret bytea) RETURNS text LANGUAGE sql
    AS $$ SELECT input || '.' || tg_test.b64url(hmac(convert_to(input, 'UTF8'), secret, 'sha256'))
            FROM (SELECT tg_test.b64url(convert_to(header::text, 'UTF8')) || '.' ||
                         tg_test.b64url(convert_to(claims::text, 'UTF8')) AS input) parts $$;
-- Claims for tenant tid and user sub, expiring in exp_in seconds, with more claims merged in.
CREATE FUNCTION tg_test.claims(tid text, sub text, exp_in int, more jsonb DEFAULT '{}')
    RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('tid', tid, 'sub', sub,
                                    'exp', extract(epoch FROM clock_timestamp())::bigint + exp_in) || more $$;
-- A token signed with key hs1 (or another kid/secret).
CREATE FUNCTION tg_test.hs(claims jsonb, kid text DEFAULT 'hs1',
                           secret text DEFAULT 'regress-hs256-secret-number-one-0001')
    RETURNS text LANGUAGE sql
    AS $$ SELECT tg_test.jwt(jsonb_build_object('alg', 'HS256', 'kid', kid), claims, convert_to(secret, 'UTF8')) $$;
-- The checksum of an API key body (six base62 digits of its SHA-256), to forge well-formed keys.
CREATE FUNCTION tg_test.key_checksum(body text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT string_agg(substr('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz',
                                   ((v / power(62, i)::bigint) % 62)::int + 1, 1), '' ORDER BY i)
            FROM (SELECT ('x' || substr(encode(sha256(convert_to(body, 'UTF8')), 'hex'), 1, 8))::bit(32)::bigint AS v) d,
                 generate_series(0, 5) i $$;

-- tg_agent gets ONLY the authenticated entry points; tg_admin administers through the admin
-- role; tg_granted got EXECUTE on every function (as DBAs routinely do) but is no admin.
CREATE ROLE tg_agent LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE tenant_guard_admin NOLOGIN;
CREATE ROLE tg_admin LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE tenant_guard_admin;
CREATE ROLE tg_granted LOGIN NOSUPERUSER NOBYPASSRLS;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_token(text, boolean),
                          tenant_guard.set_tenant_context_api_key(text, boolean) TO tg_agent;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tenant_guard TO tenant_guard_admin, tg_granted;
GRANT USAGE ON SCHEMA app TO tg_agent;
\c - tg_owner
CREATE TABLE app.agent_notes (id serial PRIMARY KEY, tenant_id text NOT NULL, body text);
GRANT SELECT, INSERT ON app.agent_notes TO tg_agent;
GRANT USAGE ON SEQUENCE app.agent_notes_id_seq TO tg_agent;

-- 1. Management is for administrators only, whatever EXECUTE grants say.
\c - tg_agent
SELECT tenant_guard.add_tenant('acme');
\echo :LAST_ERROR_SQLSTATE
\c - tg_granted
SELECT tenant_guard.add_tenant('acme');
SELECT tenant_guard.issue_api_key('acme', 'agent', '1 day', 'x');
SELECT * FROM tenant_guard.list_token_keys();
SELECT tenant_guard.add_member('acme', 'mallory', 'owner');
\c - tg_admin
SELECT tenant_guard.add_tenant('acme');
SELECT tenant_guard.add_tenant('globex', 'pro');
SELECT tenant_guard.add_tenant('initech');
SELECT tenant_guard.add_tenant('acme', 'enterprise');  -- idempotent: changes the plan
-- Bad input: NULL, empty, blank-padded, non-canonical, huge, unknown status.
SELECT tenant_guard.add_tenant(NULL);
SELECT tenant_guard.add_tenant('');
SELECT tenant_guard.add_tenant(' acme');
SELECT tenant_guard.add_tenant('007');
SELECT tenant_guard.add_tenant(repeat('x', 1000000));
SELECT tenant_guard.set_tenant_status('acme', 'deleted');
SELECT tenant_guard.set_tenant_status('nobody', 'suspended');

-- 2. Token keys. HS256 needs 32 bytes or more; EdDSA a raw Ed25519 public key (RFC 8032 test 1).
SELECT tenant_guard.add_token_key('hs1', 'HS256', convert_to('regress-hs256-secret-number-one-0001', 'UTF8'));
SELECT tenant_guard.add_token_key('hs2', 'HS256', convert_to('regress-hs256-secret-number-two-0002', 'UTF8'));
SELECT tenant_guard.add_token_key('ed1', 'EdDSA', '\xd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
SELECT tenant_guard.add_token_key('hs1', 'HS256', convert_to('another-secret-of-at-least-32-bytes', 'UTF8'));
SELECT tenant_guard.add_token_key('short', 'HS256', convert_to('too short', 'UTF8'));
SELECT tenant_guard.add_token_key('rsa', 'RS256', convert_to('regress-hs256-secret-number-one-0001', 'UTF8'));
SELECT tenant_guard.add_token_key('none', 'none', '\x');
SELECT tenant_guard.add_token_key('ed2', 'EdDSA', '\x0102');
SELECT tenant_guard.add_token_key(NULL, 'HS256', convert_to('regress-hs256-secret-number-one-0001', 'UTF8'));
SELECT tenant_guard.add_token_key(E'bad\nkid', 'HS256', convert_to('regress-hs256-secret-number-one-0001', 'UTF8'));
SELECT tenant_guard.add_token_key('nokey', 'HS256', NULL);
SELECT tenant_guard.add_token_key('forever', 'HS256', convert_to('regress-hs256-secret-number-one-0001', 'UTF8'), 'infinity');
SELECT tenant_guard.revoke_token_key('no-such-key');
-- The listing never shows key material.
SELECT kid, alg, retire_at IS NULL AS active, revoked_at IS NULL AS not_revoked FROM tenant_guard.list_token_keys();

-- 3. The agent's reach: no trusted entry point, no auth table, no other function.
\c - tg_agent
SELECT tenant_guard.set_tenant_context('acme');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM tenant_guard.token_keys;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM tenant_guard.api_keys;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM tenant_guard.memberships;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM tenant_guard.tenants;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM tenant_guard.list_api_keys('acme');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.issue_api_key('acme', 'owner', '1 day', 'mine');
\echo :LAST_ERROR_SQLSTATE
-- Without a context, nothing is readable (fail closed).
SELECT count(*) FROM app.agent_notes;
\echo :LAST_ERROR_SQLSTATE

-- 4. A valid token acts for its tenant, user and role, and only for those.
\c - postgres
SELECT tg_test.hs(tg_test.claims('acme', 'alice', 600, '{"role": "editor", "trace_id": "t-1", "locale": "de-CH"}')) AS acme_token \gset
SELECT tg_test.hs(tg_test.claims('globex', 'hank', 600), 'hs2', 'regress-hs256-secret-number-two-0002') AS globex_token \gset
\c - tg_agent
BEGIN;
SELECT tenant_guard.set_tenant_context_token(:'acme_token');
INSERT INTO app.agent_notes (body) VALUES ('acme-agent-note');
SELECT tenant_guard.tenant_context();
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context_token(:'globex_token') ->> 'tenant_id' AS tenant;
INSERT INTO app.agent_notes (body) VALUES ('globex-agent-note');
SELECT tenant_id, body FROM app.agent_notes ORDER BY id;  -- globex's only
-- One transaction, one tenant: another credential cannot switch it.
SELECT tenant_guard.set_tenant_context_token(:'acme_token');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context_token(:'acme_token') IS NOT NULL AS set;
SELECT tenant_id, body FROM app.agent_notes ORDER BY id;  -- acme's only
-- The context cannot be widened or edited with plain SQL.
SET tenant_guard.tenant_role = 'owner';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- 5. Every bad token gets 28000, a reason, and no context.
\c - postgres
SELECT tg_test.hs(tg_test.claims('acme', 'alice', -120)) AS expired \gset
SELECT tg_test.hs(tg_test.claims('acme', 'alice', 600, jsonb_build_object('nbf', extract(epoch FROM now())::bigint + 300))) AS not_yet \gset
SELECT tg_test.hs(tg_test.claims('acme', 'alice', 600, jsonb_build_object('iat', extract(epoch FROM now())::bigint + 300))) AS issued_later \gset
SELECT tg_test.hs(tg_test.claims('acme', 'alice', 90000)) AS too_long \gset
SELECT tg_test.hs(tg_test.claims('acme', 'alice', 600), 'hs1', 'not-the-right-secret-but-32-bytes-long') AS wrong_key \gset
SELECT tg_test.hs(tg_test.claims('acme', 'alice', 600), 'hs9') AS unknown_kid \gset
SELECT tg_test.jwt('{"alg": "HS256"}', tg_test.claims('acme', 'alice', 600), convert_to('regress-hs256-secret-number-one-0001', 'UTF8')) AS no_kid \gset
SELECT tg_test.b64url(convert_to('{"alg": "none", "kid": "hs1"}', 'UTF8')) || '.' || tg_test.b64url(convert_to(tg_test.claims('acme', 'alice', 600)::text, 'UTF8')) || '.' AS alg_none \gset
SELECT tg_test.jwt('{"alg": "RS256", "kid": "hs1"}', tg_test.claims('acme', 'alice', 600), convert_to('regress-hs256-secret-number-one-0001', 'UTF8')) AS alg_rs256 \gset
-- Algorithm confusion: an HS256 token "signed" with the EdDSA key's public bytes.
SELECT tg_test.jwt('{"alg": "HS256", "kid": "ed1"}', tg_test.claims('acme', 'alice', 600), '\xd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a') AS confused \gset
SELECT tg_test.jwt('{"alg": "EdDSA", "kid": "ed1"}', tg_test.claims('acme', 'alice', 600), 'x') AS ed_forged \gset
SELECT left(:'acme_token', length(:'acme_token') - 5) AS truncated \gset
SELECT :'acme_token' || '.extra' AS extra_segment \gset
SELECT replace(:'acme_token', '.', '.!!') AS bad_base64 \gset
SELECT tg_test.hs('{"sub": "alice", "exp": 4102444800}') AS no_tenant \gset
SELECT tg_test.hs(jsonb_build_object('tid', 42, 'sub', 'alice', 'exp', extract(epoch FROM now())::bigint + 600)) AS numeric_tenant \gset
SELECT tg_test.hs('{"tid": "acme", "sub": "alice"}') AS no_exp \gset
SELECT tg_test.hs('{"tid": "acme", "sub": "alice", "exp": "tomorrow"}') AS text_exp \gset
SELECT tg_test.hs(tg_test.claims(' acme', 'alice', 600)) AS padded_tenant \gset
SELECT tg_test.hs(tg_test.claims('acme', E'ali\tce', 600)) AS control_user \gset
-- Tampered claims under the original signature: the agent cannot widen a token.
SELECT split_part(:'acme_token', '.', 1) || '.' || tg_test.b64url(convert_to(tg_test.claims('globex', 'alice', 600)::text, 'UTF8')) || '.' || split_part(:'acme_token', '.', 3) AS tampered \gset
\c - tg_agent
SELECT tenant_guard.set_tenant_context_token(:'expired');
SELECT tenant_guard.set_tenant_context_token(:'not_yet');
SELECT tenant_guard.set_tenant_context_token(:'issued_later');
SELECT tenant_guard.set_tenant_context_token(:'too_long');
SELECT tenant_guard.set_tenant_context_token(:'wrong_key');
SELECT tenant_guard.set_tenant_context_token(:'unknown_kid');
SELECT tenant_guard.set_tenant_context_token(:'no_kid');
SELECT tenant_guard.set_tenant_context_token(:'alg_none');
SELECT tenant_guard.set_tenant_context_token(:'alg_rs256');
SELECT tenant_guard.set_tenant_context_token(:'confused');
SELECT tenant_guard.set_tenant_context_token(:'ed_forged');
SELECT tenant_guard.set_tenant_context_token(:'truncated');
SELECT tenant_guard.set_tenant_context_token(:'extra_segment');
SELECT tenant_guard.set_tenant_context_token(:'bad_base64');
SELECT tenant_guard.set_tenant_context_token(repeat('a', 1000000));
SELECT tenant_guard.set_tenant_context_token(:'no_tenant');
SELECT tenant_guard.set_tenant_context_token(:'numeric_tenant');
SELECT tenant_guard.set_tenant_context_token(:'no_exp');
SELECT tenant_guard.set_tenant_context_token(:'text_exp');
SELECT tenant_guard.set_tenant_context_token(:'tampered');
SELECT tenant_guard.set_tenant_context_token(NULL);
SELECT tenant_guard.set_tenant_context_token('');
SELECT tenant_guard.set_tenant_context_token(:'acme_token', NULL);
-- Claims that verify but are not a valid context: 22023, as for set_tenant_context.
SELECT tenant_guard.set_tenant_context_token(:'padded_tenant');
SELECT tenant_guard.set_tenant_context_token(:'control_user');
SELECT tenant_guard.tenant_context() ->> 'tenant_id' AS still_no_context;

-- 6. Issuer and audience, when set, must match (superuser settings).
\c - postgres
LOAD 'tenant_guard';
SET tenant_guard.token_issuer = 'https://idp.example';
SET tenant_guard.token_audience = 'tenant-api';
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_token(:'acme_token');
SELECT tenant_guard.set_tenant_context_token(tg_test.hs(tg_test.claims('acme', 'alice', 600, '{"iss": "https://idp.example", "aud": "other"}')));
SELECT tenant_guard.set_tenant_context_token(tg_test.hs(tg_test.claims('acme', 'alice', 600, '{"iss": "https://idp.example", "aud": ["other", "tenant-api"]}'))) ->> 'tenant_id' AS with_iss_and_aud;
RESET ROLE;
RESET tenant_guard.token_issuer;
RESET tenant_guard.token_audience;
-- Another tenant claim.
SET tenant_guard.token_tenant_claim = 'org';
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_token(tg_test.hs(tg_test.claims('acme', 'hank', 600, '{"org": "globex"}'))) ->> 'tenant_id' AS from_org_claim;
RESET ROLE;
RESET tenant_guard.token_tenant_claim;

-- 7. A session context from a token ends when the token expires: the next query fails closed.
SET tenant_guard.token_leeway = 0;
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_token(tg_test.hs(tg_test.claims('acme', 'alice', 2)), false) ->> 'tenant_id' AS session_tenant;
SELECT count(*) AS while_valid FROM app.agent_notes;
SELECT pg_sleep(3);
SELECT count(*) FROM app.agent_notes;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT tenant_guard.clear_tenant_context();
RESET tenant_guard.token_leeway;

-- 8. Revocation reaches contexts in use: a token's jti, then its key.
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_token(tg_test.hs(tg_test.claims('acme', 'alice', 600, '{"jti": "jti-1"}')), false) ->> 'tenant_id' AS session_tenant;
SELECT count(*) AS before_revocation FROM app.agent_notes;
RESET ROLE;
SELECT tenant_guard.revoke_token('jti-1');
SELECT tenant_guard.revoke_token(NULL);
SELECT tenant_guard.revoke_token('');
SET ROLE tg_agent;
SELECT count(*) FROM app.agent_notes;
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.set_tenant_context_token(tg_test.hs(tg_test.claims('acme', 'alice', 600, '{"jti": "jti-1"}')));
RESET ROLE;
SELECT tenant_guard.clear_tenant_context();
SELECT tg_test.hs(tg_test.claims('globex', 'hank', 600), 'hs2', 'regress-hs256-secret-number-two-0002') AS hs2_token \gset
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_token(:'hs2_token', false) ->> 'tenant_id' AS session_tenant;
RESET ROLE;
SELECT tenant_guard.revoke_token_key('hs2');
SET ROLE tg_agent;
SELECT count(*) FROM app.agent_notes;
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.set_tenant_context_token(:'hs2_token');
RESET ROLE;
SELECT tenant_guard.clear_tenant_context();
-- Rotation: a new key, the old one retired after an overlap window (here: at once).
SELECT tenant_guard.add_token_key('hs3', 'HS256', convert_to('regress-hs256-secret-number-three-03', 'UTF8'));
SELECT tenant_guard.retire_token_key('hs1', '1 hour');
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_token(:'acme_token') ->> 'tenant_id' AS within_overlap;
RESET ROLE;
SELECT tenant_guard.retire_token_key('hs1');
SELECT tenant_guard.retire_token_key('hs1', NULL);
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_token(:'acme_token');
SELECT tenant_guard.set_tenant_context_token(tg_test.hs(tg_test.claims('acme', 'alice', 600), 'hs3', 'regress-hs256-secret-number-three-03')) ->> 'tenant_id' AS new_key;
RESET ROLE;
SELECT kid, retire_at IS NOT NULL AS retiring, revoked_at IS NOT NULL AS revoked FROM tenant_guard.list_token_keys();

-- 9. A suspended tenant gets no context through any entry point, and loses the one it has.
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_token(tg_test.hs(tg_test.claims('initech', 'peter', 600), 'hs3', 'regress-hs256-secret-number-three-03'), false) ->> 'tenant_id' AS session_tenant;
RESET ROLE;
SELECT tenant_guard.set_tenant_status('initech', 'suspended');
SET ROLE tg_agent;
SELECT count(*) FROM app.agent_notes;
SELECT tenant_guard.set_tenant_context_token(tg_test.hs(tg_test.claims('initech', 'peter', 600), 'hs3', 'regress-hs256-secret-number-three-03'));
RESET ROLE;
SELECT tenant_guard.clear_tenant_context();
SET ROLE tg_app;
SELECT tenant_guard.set_tenant_context('initech');
RESET ROLE;
SELECT tenant_guard.set_tenant_status('initech', 'active');

-- 10. API keys: shown once, stored as a hash, bound to their tenant and role.
\c - tg_admin
SELECT tenant_guard.issue_api_key('acme', 'agent', '30 days', 'ci runner', '{notes:read,notes:write}') AS acme_key \gset
SELECT tenant_guard.issue_api_key('globex', 'agent', '30 days', 'globex bot') AS globex_key \gset
SELECT :'acme_key' ~ '^tgk_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$' AS well_formed;
SELECT split_part(:'acme_key', '_', 2) AS acme_id, split_part(:'globex_key', '_', 2) AS globex_id \gset
SELECT label, role, scopes, revoked_at IS NULL AS active, expires_at > now() + '29 days' AS expires_later
  FROM tenant_guard.list_api_keys('acme');
-- The listing's columns: never a secret or a hash.
SELECT string_agg(a, ', ') AS listed_columns
  FROM unnest((SELECT proargnames FROM pg_proc WHERE proname = 'list_api_keys')) a;
-- Bad input.
SELECT tenant_guard.issue_api_key(NULL, 'agent', '1 day', 'x');
SELECT tenant_guard.issue_api_key('nobody', 'agent', '1 day', 'x');
SELECT tenant_guard.issue_api_key('acme', 'agent', NULL, 'x');
SELECT tenant_guard.issue_api_key('acme', 'agent', '-1 day', 'x');
SELECT tenant_guard.issue_api_key('acme', 'agent', '0', 'x');
SELECT tenant_guard.issue_api_key('acme', E'ag\nent', '1 day', 'x');
SELECT tenant_guard.issue_api_key('acme', 'agent', '1 day', repeat('x', 300));
SELECT tenant_guard.issue_api_key('acme', 'agent', '1 day', 'x', NULL);
SELECT tenant_guard.issue_api_key('acme', 'agent', '1 day', 'x', '{read,NULL}');
SELECT tenant_guard.revoke_api_key(NULL);
SELECT tenant_guard.revoke_api_key('x''; DROP TABLE app.agent_notes; --');
SELECT tenant_guard.revoke_api_key('AAAAAAAAAAAA');
SELECT tenant_guard.rotate_api_key('AAAAAAAAAAAA');
SELECT tenant_guard.rotate_api_key(:'acme_id', '-1 hour');
SELECT tenant_guard.list_api_keys(NULL);
\c - tg_agent
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'acme_key') - 'user_id' AS context,
       tenant_guard.current_user_id() = 'api_key:' || :'acme_id' AS acts_as_the_key;
INSERT INTO app.agent_notes (body) VALUES ('acme-key-note');
SELECT tenant_id, body FROM app.agent_notes ORDER BY id;
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'globex_key') ->> 'tenant_id' AS tenant;
SELECT tenant_id, body FROM app.agent_notes ORDER BY id;  -- globex's only
ROLLBACK;
-- Every invalid key: the same SQLSTATE and message.
SELECT tenant_guard.set_tenant_context_api_key(NULL);
SELECT tenant_guard.set_tenant_context_api_key('');
SELECT tenant_guard.set_tenant_context_api_key(repeat('k', 1000000));
SELECT tenant_guard.set_tenant_context_api_key(replace(:'acme_key', 'tgk_', 'xyz_'));
SELECT tenant_guard.set_tenant_context_api_key(left(:'acme_key', 20) || CASE WHEN substr(:'acme_key', 21, 1) = 'a' THEN 'b' ELSE 'a' END || substr(:'acme_key', 22));
SELECT tenant_guard.set_tenant_context_api_key(left(:'acme_key', -1));
-- Well-formed keys (valid checksum) that do not verify: an unknown id, and globex's id with
-- acme's secret.
SELECT 'tgk_ZZZZZZZZZZZZ_' || substr(:'acme_key', 18, 32) AS body \gset
SELECT tenant_guard.set_tenant_context_api_key(:'body' || tg_test.key_checksum(:'body'));
SELECT 'tgk_' || :'globex_id' || '_' || substr(:'acme_key', 18, 32) AS body \gset
SELECT tenant_guard.set_tenant_context_api_key(:'body' || tg_test.key_checksum(:'body'));
SELECT tenant_guard.set_tenant_context_api_key(:'acme_key', NULL);

-- 11. Expiry, revocation and rotation.
\c - tg_admin
SELECT tenant_guard.issue_api_key('acme', 'agent', '1 microsecond', 'short-lived') AS expired_key \gset
SELECT tenant_guard.rotate_api_key(:'acme_id', '1 hour') AS acme_key_2 \gset
SELECT tenant_guard.rotate_api_key(:'globex_id', '2 seconds') AS globex_key_2 \gset
SELECT label, role, scopes, replaces IS NOT NULL AS is_successor, expires_at < now() + '2 hours' AS ends_soon
  FROM tenant_guard.list_api_keys('acme') WHERE label <> 'short-lived' ORDER BY created_at;
\c - tg_agent
SELECT tenant_guard.set_tenant_context_api_key(:'expired_key');
SELECT tenant_guard.set_tenant_context_api_key(:'acme_key') ->> 'tenant_id' AS old_key_within_grace;
SELECT tenant_guard.set_tenant_context_api_key(:'acme_key_2') ->> 'tenant_id' AS new_key;
SELECT tenant_guard.set_tenant_context_api_key(:'globex_key') ->> 'tenant_id' AS old_key_within_grace;
SELECT pg_sleep(2.5);
SELECT tenant_guard.set_tenant_context_api_key(:'globex_key');
SELECT tenant_guard.set_tenant_context_api_key(:'globex_key_2') ->> 'tenant_id' AS new_key;
-- Revoking a key ends the session contexts set with it at their next query.
\c - postgres
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_api_key(:'acme_key_2', false) ->> 'tenant_id' AS session_tenant;
SELECT count(*) > 0 AS reads_before_revocation FROM app.agent_notes;
RESET ROLE;
SELECT tenant_guard.revoke_api_key(split_part(:'acme_key_2', '_', 2));
SET ROLE tg_agent;
SELECT count(*) FROM app.agent_notes;
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.set_tenant_context_api_key(:'acme_key_2');
RESET ROLE;
SELECT tenant_guard.clear_tenant_context();
-- A revoked or expired key has no successor, and a key has one at most (55000; the messages
-- name the random key ids).
\set VERBOSITY sqlstate
SELECT tenant_guard.rotate_api_key(split_part(:'acme_key_2', '_', 2));
SELECT tenant_guard.rotate_api_key(split_part(:'expired_key', '_', 2));
SELECT tenant_guard.rotate_api_key(:'acme_id');
\set VERBOSITY default

-- 12. Memberships: with require_membership on, a context needs one, and its role wins.
\c - tg_admin
SELECT tenant_guard.add_member('acme', 'alice', 'viewer');
SELECT tenant_guard.add_member('globex', 'hank', NULL);
SELECT tenant_guard.add_member('acme', NULL, 'viewer');
SELECT tenant_guard.add_member('nobody', 'alice', 'viewer');
SELECT tenant_guard.add_member('acme', '', 'viewer');
SELECT tenant_guard.add_member('acme', 'alice', repeat('r', 256));
SELECT tenant_guard.remove_member('acme', 'nobody') AS removed_nobody;
\c - postgres
LOAD 'tenant_guard';
SET tenant_guard.require_membership = on;
SELECT tg_test.hs(tg_test.claims('acme', 'alice', 600, '{"role": "owner"}'), 'hs3', 'regress-hs256-secret-number-three-03') AS alice_token \gset
SELECT tg_test.hs(tg_test.claims('acme', 'mallory', 600, '{"role": "owner"}'), 'hs3', 'regress-hs256-secret-number-three-03') AS mallory_token \gset
SELECT tg_test.hs(jsonb_build_object('tid', 'acme', 'exp', extract(epoch FROM now())::bigint + 600), 'hs3', 'regress-hs256-secret-number-three-03') AS anonymous_token \gset
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_token(:'alice_token') ->> 'role' AS role_asked_owner_got;
SELECT tenant_guard.set_tenant_context_token(:'mallory_token');
SELECT tenant_guard.set_tenant_context_token(:'anonymous_token');
RESET ROLE;
SET ROLE tg_app;
SELECT tenant_guard.set_tenant_context('acme', 'alice', 'owner') ->> 'role' AS trusted_role;
SELECT tenant_guard.set_tenant_context('acme', 'mallory');
SELECT tenant_guard.set_tenant_context('acme');
RESET ROLE;
-- An API key acts as itself (its tenant and role were chosen by an administrator): no
-- membership is asked of it.
SET ROLE tg_agent;
SELECT tenant_guard.set_tenant_context_api_key(:'acme_key') ->> 'role' AS api_key_role;
-- Changing a member's role ends their session context at its next query (it carries the old
-- role); setting it again takes the new one.
SELECT tenant_guard.set_tenant_context_token(:'alice_token', false) ->> 'role' AS session_role;
SELECT count(*) > 0 AS reads_as_member FROM app.agent_notes;
RESET ROLE;
SELECT tenant_guard.add_member('acme', 'alice', 'editor');
SET ROLE tg_agent;
SELECT count(*) FROM app.agent_notes;
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.set_tenant_context_token(:'alice_token', false) ->> 'role' AS session_role;
-- Removing a member ends their session context at its next query.
SELECT count(*) > 0 AS reads_as_member FROM app.agent_notes;
RESET ROLE;
SELECT tenant_guard.remove_member('acme', 'alice') AS removed;
SET ROLE tg_agent;
SELECT count(*) FROM app.agent_notes;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT tenant_guard.clear_tenant_context();
RESET tenant_guard.require_membership;

-- 13. A SECURITY DEFINER wrapper may call an entry point (a DBA's login function); a
-- security-restricted operation (here a materialized view refresh) may not.
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_token(text, boolean) TO tg_owner;
\c - tg_owner
CREATE FUNCTION app.login(token text) RETURNS text LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT tenant_guard.set_tenant_context_token(token) ->> 'tenant_id' $$;
REVOKE EXECUTE ON FUNCTION app.login(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.login(text) TO tg_app;
CREATE MATERIALIZED VIEW app.logged_in AS SELECT 1 AS one WITH NO DATA;
\c - postgres
SELECT tg_test.hs(tg_test.claims('globex', 'hank', 600), 'hs3', 'regress-hs256-secret-number-three-03') AS hank_token \gset
\c - tg_app
BEGIN;
SELECT app.login(:'hank_token') AS wrapper_set;
SELECT tenant_guard.current_tenant_id(), tenant_guard.current_user_id();
COMMIT;
\c - tg_owner
DROP MATERIALIZED VIEW app.logged_in;
CREATE MATERIALIZED VIEW app.logged_in AS SELECT app.login(:'hank_token') AS tenant WITH NO DATA;
REFRESH MATERIALIZED VIEW app.logged_in;
DROP MATERIALIZED VIEW app.logged_in;

-- 14. The auth tables travel with pg_dump (configuration tables of the extension).
\c - postgres
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) t JOIN pg_class c ON c.oid = t
 WHERE e.extname = 'tenant_guard' AND c.relnamespace = 'tenant_guard'::regnamespace ORDER BY 1;
