-- tenant_guard in five minutes: two tenants, an application role that is neither superuser nor
-- BYPASSRLS, and a table owner that is not a superuser either. Run it with `make demo`; it is
-- also a regression test (tests/pg_regress/sql/demo.sql), so its output is checked.
\pset null '(null)'

\echo '== 1. Install the extension: once per database, as a superuser.'
CREATE EXTENSION IF NOT EXISTS tenant_guard;

\echo '== 2. Roles. The application connects as demo_app; demo_owner owns the tables.'
CREATE ROLE demo_owner LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE demo_app LOGIN NOSUPERUSER NOBYPASSRLS;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO demo_app, demo_owner;
CREATE SCHEMA shop AUTHORIZATION demo_owner;
GRANT USAGE ON SCHEMA shop TO demo_app;
ALTER DEFAULT PRIVILEGES FOR ROLE demo_owner IN SCHEMA shop GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO demo_app;
ALTER DEFAULT PRIVILEGES FOR ROLE demo_owner IN SCHEMA shop GRANT USAGE ON SEQUENCES TO demo_app;

\echo '== 3. The owner creates a table with a tenant_id column. It is protected at once:'
\echo '   ENABLE + FORCE row level security, two policies, a default from the context, an index.'
\c - demo_owner
CREATE TABLE shop.orders (id bigserial PRIMARY KEY, tenant_id text NOT NULL, item text, amount numeric);
\d shop.orders
SELECT relid, tenant_column, protected_via FROM tenant_guard.protected_tables WHERE relid = 'shop.orders'::regclass;

\echo '== 4. The application says which tenant it acts for: one call per transaction.'
\c - demo_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', user_id => 'alice', trace_id => 'req-1');
INSERT INTO shop.orders (item, amount) VALUES ('anvil', 120), ('rocket skates', 300);
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('globex', user_id => 'hank', trace_id => 'req-2');
INSERT INTO shop.orders (item, amount) VALUES ('doomsday device', 1000000);
COMMIT;

\echo '== 5. Each tenant sees only its own rows, with plain SQL.'
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') ->> 'tenant_id' AS acting_for;
SELECT tenant_id, item, amount FROM shop.orders ORDER BY id;
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('globex') ->> 'tenant_id' AS acting_for;
SELECT tenant_id, item, amount FROM shop.orders ORDER BY id;
COMMIT;

\echo '== 6. Writing into the other tenant is refused; its rows cannot even be found.'
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') ->> 'tenant_id' AS acting_for;
INSERT INTO shop.orders (tenant_id, item) VALUES ('globex', 'planted');
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') ->> 'tenant_id' AS acting_for;
UPDATE shop.orders SET tenant_id = 'globex' WHERE item = 'anvil';
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') ->> 'tenant_id' AS acting_for;
DELETE FROM shop.orders WHERE item = 'doomsday device' RETURNING *;
ROLLBACK;

\echo '== 7. A forged context is refused: the context variables are superuser-only.'
SET tenant_guard.tenant_id = 'globex';
SELECT set_config('tenant_guard.tenant_id', 'globex', false);

\echo '== 8. No context: the query fails closed, and the hint says what to do.'
SELECT count(*) FROM shop.orders;

\echo '== 9. FORCE at work: the owner (not a superuser) is held to the tenant too, and TRUNCATE'
\echo '   (which row level security does not cover) is refused.'
\c - demo_owner
SELECT count(*) FROM shop.orders;
BEGIN;
SELECT tenant_guard.set_tenant_context('globex') ->> 'tenant_id' AS acting_for;
SELECT tenant_id, item FROM shop.orders;
COMMIT;
TRUNCATE shop.orders;

\echo '== 10. The owner cannot switch the protection off either: tenant_guard guards its own objects.'
ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY;
DROP POLICY tenant_guard_fence ON shop.orders;

\echo '== 11. Audit: every change is logged with tenant, user and trace from the context, append-only,'
\echo '   and each tenant reads only its own audit rows.'
\c - postgres
SELECT tenant_guard.enable_tenant_audit('shop.orders');
\c - demo_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', user_id => 'alice', trace_id => 'req-3') ->> 'tenant_id' AS acting_for;
UPDATE shop.orders SET amount = 150 WHERE item = 'anvil';
SELECT tenant_id, user_id, trace_id, op, pk, old_row, new_row FROM tenant_guard.audit_log
 WHERE schema_name = 'shop' AND table_name = 'orders';
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('globex') ->> 'tenant_id' AS acting_for;
SELECT count(*) AS acme_audit_rows_globex_can_see FROM tenant_guard.audit_log WHERE tenant_id = 'acme';
COMMIT;

\echo '== 12. Tamper evidence: each tenant''s audit rows form a hash chain. Keep its head outside the'
\echo '   database, verify against it later: no row means intact up to the anchor.'
\c - postgres
SELECT chain_seq, chain_hash FROM tenant_guard.audit_chain_head('acme') \gset
SELECT * FROM tenant_guard.verify_audit_chain('acme', :chain_seq, :'chain_hash');

\echo '== 13. Authenticated context: the database itself checks who asks. demo_agent may only call'
\echo '   the verifying entry points, so an injected query cannot pick a tenant: it needs a token'
\echo '   signed with a registered key, or an API key, for exactly that tenant.'
CREATE ROLE demo_agent LOGIN NOSUPERUSER NOBYPASSRLS;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_token(text, boolean),
                          tenant_guard.set_tenant_context_api_key(text, boolean) TO demo_agent;
GRANT USAGE ON SCHEMA shop TO demo_agent;
GRANT SELECT ON shop.orders TO demo_agent;
SELECT tenant_guard.add_tenant('acme');
SELECT tenant_guard.add_tenant('globex');
-- The identity provider's HS256 secret (use 32 random bytes; EdDSA public keys work too).
SELECT tenant_guard.add_token_key('idp-2026', 'HS256', convert_to('demo-secret-use-32-random-bytes!', 'UTF8'));
-- A token as the identity provider issues it (signed here with pgcrypto, for the demo only).
CREATE EXTENSION IF NOT EXISTS pgcrypto;
SELECT input || '.' || rtrim(translate(encode(hmac(input, 'demo-secret-use-32-random-bytes!', 'sha256'), 'base64'), '+/', '-_'), '=') AS token
  FROM (SELECT rtrim(translate(encode(convert_to('{"alg":"HS256","kid":"idp-2026"}', 'UTF8'), 'base64'), '+/', '-_'), '=') || '.' ||
               rtrim(translate(encode(convert_to(json_build_object('tid', 'acme', 'sub', 'alice', 'role', 'clerk',
                     'exp', extract(epoch FROM now())::bigint + 900)::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '=') AS input) t \gset
\c - demo_agent
BEGIN;
SELECT tenant_guard.set_tenant_context_token(:'token');
SELECT tenant_id, item FROM shop.orders ORDER BY id;
COMMIT;
\echo '   The trusted entry point is not granted, and a token edited to name another tenant fails.'
SELECT tenant_guard.set_tenant_context('globex');
SELECT tenant_guard.set_tenant_context_token(replace(:'token', split_part(:'token', '.', 2),
       rtrim(translate(encode(convert_to('{"tid":"globex","sub":"alice","exp":4102444800}', 'UTF8'), 'base64'), E'+/\n', '-_'), '=')));
\echo '   An API key for an agent: shown once, stored as a SHA-256, bound to its tenant and role.'
\c - postgres
SELECT tenant_guard.issue_api_key('globex', 'agent', '90 days', 'inventory bot', '{orders:read}') AS api_key \gset
SELECT label, role, scopes, expires_at > now() AS valid FROM tenant_guard.list_api_keys('globex') WHERE label = 'inventory bot';
\c - demo_agent
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'api_key') - 'user_id' AS context;
SELECT tenant_id, item FROM shop.orders ORDER BY id;
COMMIT;

\echo '== 14. Gating agent tools: a catalogue of actions, deny by default. The tool list is filtered'
\echo '   before the model sees it (allowed_actions), and the tool''s SQL is guarded where the data'
\echo '   is (require_action). Inputs come only from the verified context: here, an API key whose'
\echo '   scopes cover email but not refunds.'
\c - postgres
SELECT tenant_guard.add_tenant('globex', 'pro');
SELECT tenant_guard.add_action('tool:send_email', 'Email a customer');
SELECT tenant_guard.add_action('tool:refund', 'Refund an order');
SELECT tenant_guard.grant_action('tool:send_email', tenant_role => 'agent') AS rule_id \gset
SELECT tenant_guard.grant_action('tool:refund', tenant_role => 'agent', plan => 'pro') AS rule_id \gset
SELECT tenant_guard.issue_api_key('globex', 'agent', '90 days', 'support bot', '{tool:send_email}') AS support_key \gset
-- The table owner (the migration role) manages permissions and private rows of its tables.
GRANT EXECUTE ON FUNCTION tenant_guard.set_table_permissions(regclass, text, text[]),
                          tenant_guard.enable_user_private_rows(regclass, name, text[]) TO demo_owner;
\c - demo_agent
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'support_key') ->> 'role' AS role;
SELECT array_agg(a) AS tools_the_model_sees FROM tenant_guard.allowed_actions() a;
SELECT tenant_guard.require_action('tool:send_email');
SELECT tenant_guard.require_action('tool:refund');
ROLLBACK;

\echo '== 15. Per-role table permissions: a clerk may read orders, not change them (42501 naming'
\echo '   role, table and command); roles not listed get nothing.'
\c - demo_owner
SELECT tenant_guard.set_table_permissions('shop.orders', 'clerk', '{SELECT}');
SELECT tenant_guard.set_table_permissions('shop.orders', 'admin', '{ALL}');
\c - demo_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'alice', 'clerk') ->> 'role' AS role;
SELECT count(*) AS orders_alice_reads FROM shop.orders;
UPDATE shop.orders SET amount = 0;
ROLLBACK;

\echo '== 16. User-private rows: one user''s conversation is not another''s, inside one tenant; the'
\echo '   tenant''s admin sees all of them.'
\c - demo_owner
CREATE TABLE shop.conversations (id bigserial PRIMARY KEY, tenant_id text NOT NULL,
                                 owner_id text NOT NULL, message text);
SELECT tenant_guard.enable_user_private_rows('shop.conversations', 'owner_id', all_rows_roles => '{admin}');
\c - demo_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'alice', 'clerk') ->> 'user_id' AS user_id;
INSERT INTO shop.conversations (message) VALUES ('case-123: the customer wants a refund');
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'bob', 'clerk') ->> 'user_id' AS user_id;
SELECT count(*) AS alice_messages_bob_sees FROM shop.conversations;
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', role => 'admin') ->> 'role' AS role;
SELECT owner_id, message FROM shop.conversations;
COMMIT;

\echo '== Done. Read README.md for the security model and the function reference.'
