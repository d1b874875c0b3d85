-- Authorization inside a tenant (src/authz): per-role table permissions, user-private rows and
-- the action gate. Everything runs as roles that are neither superuser nor BYPASSRLS; every
-- input comes from the context, and every surface gets bad input and a cross-tenant check.
\c - postgres
GRANT EXECUTE ON FUNCTION
    tenant_guard.set_table_permissions(regclass, text, text[]),
    tenant_guard.remove_table_permissions(regclass, text),
    tenant_guard.enable_user_private_rows(regclass, name, text[]),
    tenant_guard.disable_user_private_rows(regclass),
    tenant_guard.require_action_for_writes(regclass, text)
TO tg_owner;
-- Waits (up to 10 s) until the audit log holds n denials: a background worker writes them.
CREATE FUNCTION tg_test.wait_for_denials(n int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE found bigint;
BEGIN
    FOR i IN 1..200 LOOP
        SELECT count(*) INTO found FROM tenant_guard.audit_log WHERE op = 'DENIED';
        EXIT WHEN found >= n;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN found;
END $$;

-- 1. Per-role table permissions.
\c - tg_owner
CREATE TABLE app.tickets (id serial PRIMARY KEY, tenant_id text NOT NULL, title text);
SELECT tenant_guard.enable_tenant_rls('app.tickets');
-- Without permissions, every role of the tenant may do everything (as before).
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'ann', 'guest') \gset ignored_
INSERT INTO app.tickets (title) VALUES ('acme before permissions');
COMMIT;
\c - tg_owner
SELECT tenant_guard.set_table_permissions('app.tickets', 'viewer', ARRAY['SELECT']);
SELECT tenant_guard.set_table_permissions('app.tickets', 'member', ARRAY['select', 'insert', 'update']);
SELECT tenant_guard.set_table_permissions('app.tickets', 'admin', ARRAY['ALL']);
-- A role name that needs quoting inside an array literal.
SELECT tenant_guard.set_table_permissions('app.tickets', 'night shift, "ops"', ARRAY['DELETE', 'SELECT']);
SELECT * FROM tg_test.protection('app.tickets');
SELECT tenant_role, commands FROM tenant_guard.table_permissions ORDER BY tenant_role;
SELECT polname, polcmd, pg_get_expr(polqual, polrelid) AS using_expr,
       pg_get_expr(polwithcheck, polrelid) AS check_expr
  FROM pg_policy WHERE polrelid = 'app.tickets'::regclass AND polname LIKE 'tenant_guard_permit%'
 ORDER BY polname;
\c - tg_app
-- viewer reads, and cannot write.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'vic', 'viewer') \gset ignored_
SELECT title FROM app.tickets;
SAVEPOINT s;
INSERT INTO app.tickets (title) VALUES ('viewer write');
ROLLBACK TO s;
UPDATE app.tickets SET title = 'viewer update';
ROLLBACK TO s;
DELETE FROM app.tickets;
ROLLBACK;
-- member writes but may not delete.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'meg', 'member') \gset ignored_
INSERT INTO app.tickets (title) VALUES ('acme by member');
UPDATE app.tickets SET title = title || ' (edited)' WHERE title = 'acme by member';
SAVEPOINT s;
DELETE FROM app.tickets WHERE title LIKE 'acme by member%';
ROLLBACK TO s;
COMMIT;
-- admin does everything; the quoted role deletes.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'ada', 'admin') \gset ignored_
DELETE FROM app.tickets WHERE title = 'acme before permissions';
SELECT title FROM app.tickets ORDER BY id;
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'ned', 'night shift, "ops"') \gset ignored_
DELETE FROM app.tickets WHERE title = 'acme before permissions' RETURNING title;
ROLLBACK;
-- Deny by default: a role not listed, and a context without a role.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'gus', 'guest') \gset ignored_
SELECT title FROM app.tickets;
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'gus') \gset ignored_
SELECT title FROM app.tickets;
ROLLBACK;
-- The check runs when the scan meets its first row: a scan that meets none (an empty table)
-- returns nothing without it, which is the same answer.
\c - tg_owner
CREATE TABLE app.empty_tickets (id int, tenant_id text);
SELECT tenant_guard.set_table_permissions('app.empty_tickets', 'viewer', '{SELECT}');
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'gus', 'guest') \gset ignored_
SELECT count(*) FROM app.empty_tickets;
ROLLBACK;
-- Cross-tenant: globex's admin sees none of acme's tickets and cannot write into acme.
BEGIN;
SELECT tenant_guard.set_tenant_context('globex', 'gil', 'admin') \gset ignored_
SELECT count(*) FROM app.tickets;
INSERT INTO app.tickets (tenant_id, title) VALUES ('acme', 'globex into acme');
ROLLBACK;
-- Evaluated once per query: the role check is an InitPlan, like the tenant's.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'vic', 'viewer') \gset ignored_
SET LOCAL enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT title FROM app.tickets WHERE id = 1;
ROLLBACK;
-- Bad input: 22023 for malformed arguments, 55000 for an unprotected table, 42501 for
-- a role that does not own the table.
\c - tg_owner
CREATE TABLE app.unprotected (id int, tenant_id text);
SELECT tenant_guard.exclude_table('app.unprotected');
SELECT tenant_guard.set_table_permissions(NULL, 'viewer', ARRAY['SELECT']);
SELECT tenant_guard.set_table_permissions('app.tickets', NULL, ARRAY['SELECT']);
SELECT tenant_guard.set_table_permissions('app.tickets', '', ARRAY['SELECT']);
SELECT tenant_guard.set_table_permissions('app.tickets', repeat('r', 300), ARRAY['SELECT']);
SELECT tenant_guard.set_table_permissions('app.tickets', E'bad\nrole', ARRAY['SELECT']);
SELECT tenant_guard.set_table_permissions('app.tickets', 'viewer', NULL);
SELECT tenant_guard.set_table_permissions('app.tickets', 'viewer', '{}');
SELECT tenant_guard.set_table_permissions('app.tickets', 'viewer', ARRAY['TRUNCATE']);
SELECT tenant_guard.set_table_permissions('app.tickets', 'viewer', ARRAY['SELECT', NULL]);
SELECT tenant_guard.set_table_permissions('app.tickets', 'viewer', ARRAY['SELECT; DROP TABLE app.tickets']);
SELECT tenant_guard.set_table_permissions('app.unprotected', 'viewer', ARRAY['SELECT']);
\c - tg_reader
SELECT tenant_guard.set_table_permissions('app.tickets', 'viewer', ARRAY['ALL']);
\c - tg_owner
-- Nothing was half-written.
SELECT tenant_role, commands FROM tenant_guard.table_permissions ORDER BY tenant_role;
-- The tamper guard keeps the generated permission policies as they are.
DROP POLICY tenant_guard_permit_delete ON app.tickets;
ALTER POLICY tenant_guard_permit_select ON app.tickets USING (true);
CREATE POLICY tenant_guard_permit_truncate ON app.tickets AS RESTRICTIVE USING (true);
SELECT count(*) AS permit_policies FROM pg_policy
 WHERE polrelid = 'app.tickets'::regclass AND polname LIKE 'tenant_guard_permit%';
-- Partitions carry the permissions of their table.
CREATE TABLE app.events (tenant_id text NOT NULL, at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT tenant_guard.set_table_permissions('app.events', 'viewer', ARRAY['SELECT']);
SELECT tenant_guard.set_table_permissions('app.events_2026', 'viewer', ARRAY['ALL']);
CREATE TABLE app.events_2027 PARTITION OF app.events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT c.relname, count(p.*) AS permit_policies
  FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname LIKE 'tenant_guard_permit%'
 WHERE c.relname LIKE 'events%' GROUP BY c.relname ORDER BY c.relname;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'vic', 'viewer') \gset ignored_
INSERT INTO app.events_2026 (at, what) VALUES ('2026-05-01', 'straight into the partition');
ROLLBACK;
-- Removing one role's permissions denies it; removing all lifts the restriction.
\c - tg_owner
SELECT tenant_guard.remove_table_permissions('app.tickets', 'night shift, "ops"');
SELECT tenant_role FROM tenant_guard.table_permissions WHERE relid = 'app.tickets'::regclass ORDER BY 1;
-- A detached partition stays protected on its own with the permissions its policies carry.
ALTER TABLE app.events DETACH PARTITION app.events_2027;
SELECT tenant_role, commands FROM tenant_guard.table_permissions WHERE relid = 'app.events_2027'::regclass;
SELECT tenant_guard.enable_tenant_rls('app.events_2027');
SELECT count(*) AS permit_policies FROM pg_policy
 WHERE polrelid = 'app.events_2027'::regclass AND polname LIKE 'tenant_guard_permit%';
-- Attaching it again needs the same protection: here it is.
ALTER TABLE app.events ATTACH PARTITION app.events_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT count(*) AS own_permission_rows FROM tenant_guard.table_permissions WHERE relid = 'app.events_2027'::regclass;
-- A table protected differently cannot become a parent (its scan would read past the child's
-- permissions), nor a partition be attached to one.
CREATE TABLE app.decoy_events (tenant_id text NOT NULL, at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE app.events_2028 (tenant_id text NOT NULL, at date NOT NULL, what text);
SELECT tenant_guard.set_table_permissions('app.events_2028', 'viewer', ARRAY['ALL']);
ALTER TABLE app.decoy_events ATTACH PARTITION app.events_2028 FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
ALTER TABLE app.events ATTACH PARTITION app.events_2028 FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
SELECT tenant_role, commands FROM tenant_guard.table_permissions WHERE relid = 'app.events_2028'::regclass;
DROP TABLE app.events_2028, app.decoy_events;
-- A table made for the purpose (protected automatically, with nothing more) may join: its
-- parent is stricter, and it takes the parent's permissions.
CREATE TABLE app.events_2029 (tenant_id text NOT NULL, at date NOT NULL, what text);
ALTER TABLE app.events ATTACH PARTITION app.events_2029 FOR VALUES FROM ('2029-01-01') TO ('2030-01-01');
SELECT count(*) AS permit_policies FROM pg_policy
 WHERE polrelid = 'app.events_2029'::regclass AND polname LIKE 'tenant_guard_permit%';
DROP TABLE app.events_2029;
-- A parent whose permissive policy reaches more roles than its child's is refused too.
CREATE TABLE app.narrow (tenant_id text NOT NULL, v int);
SELECT tenant_guard.enable_tenant_rls('app.narrow', to_roles => ARRAY['tg_app']::regrole[]);
CREATE TABLE app.wide (tenant_id text NOT NULL, v int);
ALTER TABLE app.narrow INHERIT app.wide;
DROP TABLE app.narrow, app.wide;
SELECT tenant_guard.remove_table_permissions('app.events');
SELECT count(*) AS permit_policies FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
 WHERE c.relname LIKE 'events%' AND p.polname LIKE 'tenant_guard_permit%';
-- disable_tenant_rls takes the permissions with the protection.
SELECT tenant_guard.disable_tenant_rls('app.events');
SELECT count(*) FROM tenant_guard.table_permissions WHERE relid = 'app.events'::regclass;
DROP TABLE app.events;

-- 2. User-private rows inside a tenant.
CREATE TABLE app.conversations (id serial PRIMARY KEY, tenant_id text NOT NULL,
                                owner_id text NOT NULL, body text);
SELECT tenant_guard.enable_tenant_rls('app.conversations');
SELECT tenant_guard.enable_user_private_rows('app.conversations', 'owner_id', ARRAY['admin']);
SELECT * FROM tg_test.protection('app.conversations');
SELECT column_default FROM tg_test.protection('app.conversations', 'owner_id');
SELECT user_column, user_all_rows FROM tenant_guard.protected_tables WHERE relid = 'app.conversations'::regclass;
SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'app.conversations'::regclass ORDER BY 1;
\c - tg_app
-- alice writes (the owner column fills from the context); bob, same tenant, sees nothing of it.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'alice', 'member') \gset ignored_
INSERT INTO app.conversations (body) VALUES ('case-123: alice''s notes');
SELECT owner_id, body FROM app.conversations;
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'bob', 'member') \gset ignored_
INSERT INTO app.conversations (body) VALUES ('bob''s notes');
SELECT owner_id, body FROM app.conversations;
UPDATE app.conversations SET body = 'bob was here' WHERE owner_id = 'alice';
DELETE FROM app.conversations WHERE owner_id = 'alice';
SAVEPOINT s;
INSERT INTO app.conversations (owner_id, body) VALUES ('alice', 'planted by bob');
ROLLBACK TO s;
UPDATE app.conversations SET owner_id = 'alice';
COMMIT;
-- The tenant's admin sees all of its users' rows, without a user of its own.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', NULL, 'admin') \gset ignored_
SELECT owner_id, body FROM app.conversations ORDER BY id;
ROLLBACK;
-- No user in the context fails closed, like no tenant.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', NULL, 'member') \gset ignored_
SELECT owner_id, body FROM app.conversations;
ROLLBACK;
-- Cross-tenant: an alice of globex is another user; globex's admin sees nothing of acme.
BEGIN;
SELECT tenant_guard.set_tenant_context('globex', 'alice', 'member') \gset ignored_
SELECT count(*) FROM app.conversations;
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('globex', NULL, 'admin') \gset ignored_
SELECT count(*) FROM app.conversations;
ROLLBACK;
-- Bad input.
\c - tg_owner
SELECT tenant_guard.enable_user_private_rows(NULL);
SELECT tenant_guard.enable_user_private_rows('app.conversations', NULL);
SELECT tenant_guard.enable_user_private_rows('app.conversations', 'no_such_column');
SELECT tenant_guard.enable_user_private_rows('app.conversations', 'tenant_id');
SELECT tenant_guard.enable_user_private_rows('app.conversations', 'id', ARRAY['admin', NULL]);
SELECT tenant_guard.enable_user_private_rows('app.conversations', 'body', ARRAY[E'ad\tmin']);
SELECT tenant_guard.enable_user_private_rows('app.unprotected', 'id');
SELECT user_column, user_all_rows FROM tenant_guard.protected_tables WHERE relid = 'app.conversations'::regclass;
-- The owner cannot replace the user column's default or drop the policy.
ALTER TABLE app.conversations ALTER COLUMN owner_id SET DEFAULT 'alice';
ALTER TABLE app.conversations ALTER COLUMN owner_id DROP DEFAULT;
DROP POLICY tenant_guard_private ON app.conversations;
-- Nor can a parent protected without private rows read around them: an owner's decoy.
CREATE TABLE app.decoy (LIKE app.conversations);
ALTER TABLE app.conversations INHERIT app.decoy;
SELECT user_column, user_all_rows FROM tenant_guard.protected_tables WHERE relid = 'app.conversations'::regclass;
SELECT count(*) AS private_policies FROM pg_policy
 WHERE polrelid = 'app.conversations'::regclass AND polname = 'tenant_guard_private';
-- The tenant column cannot double as the user column.
SELECT tenant_guard.enable_tenant_rls('app.conversations', tenant_column => 'owner_id');
-- A stored default is replayed as it was printed, whatever standard_conforming_strings says:
-- a backslash before a quote cannot end its literal early and smuggle in a statement.
CREATE TABLE app.private_notes (id int, tenant_id text NOT NULL, author text DEFAULT E'x\\''; CREATE TABLE app.pwned (); --');
SELECT tenant_guard.enable_user_private_rows('app.private_notes', 'author');
SET standard_conforming_strings = off;
SELECT tenant_guard.disable_user_private_rows('app.private_notes');
RESET standard_conforming_strings;
SELECT column_default FROM tg_test.protection('app.private_notes', 'author');
SELECT to_regclass('app.pwned') AS smuggled_table;
-- Renaming the user column is followed.
ALTER TABLE app.conversations RENAME COLUMN owner_id TO user_id;
SELECT user_column FROM tenant_guard.protected_tables WHERE relid = 'app.conversations'::regclass;
SELECT tenant_guard.enable_tenant_rls('app.conversations');
SELECT user_column, user_all_rows FROM tenant_guard.protected_tables WHERE relid = 'app.conversations'::regclass;
-- Turned off: the default goes, the rows stay, the tenant sees all of them again.
SELECT tenant_guard.disable_user_private_rows('app.conversations');
SELECT column_default FROM tg_test.protection('app.conversations', 'user_id');
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'bob', 'member') \gset ignored_
SELECT user_id, body FROM app.conversations ORDER BY id;
ROLLBACK;

-- 3. The action gate.
-- Administration is for tenant_guard administrators (tg_granted can EXECUTE everything).
\c - tg_granted
SELECT tenant_guard.add_action('tool:refund');
SELECT tenant_guard.grant_action('tool:refund');
SELECT tenant_guard.list_action_rules();
SELECT * FROM tenant_guard.action_rules;
\c - tg_admin
SELECT tenant_guard.add_tenant('acme', 'pro');
SELECT tenant_guard.add_tenant('globex', 'free');
SELECT tenant_guard.add_action('tool:send_email', 'Send an email');
SELECT tenant_guard.add_action('tool:refund', 'Refund a payment');
SELECT tenant_guard.add_action('export:csv', 'Export a table as CSV');
SELECT tenant_guard.add_action('doc:read');
SELECT action, description FROM tenant_guard.actions ORDER BY action;
-- Rules: by role, by plan, both, by tenant, by scope, by resource; and denies.
SELECT tenant_guard.grant_action('tool:send_email', tenant_role => 'member') AS r1;
SELECT tenant_guard.grant_action('tool:send_email', tenant_role => 'admin') AS r2;
SELECT tenant_guard.grant_action('tool:refund', tenant_role => 'admin', plan => 'pro') AS r3;
SELECT tenant_guard.grant_action('export:csv', plan => 'pro') AS r4;
SELECT tenant_guard.deny_action('export:csv', tenant_role => 'member', tenant_id => 'acme') AS r5;
SELECT tenant_guard.grant_action('tool:refund', scope => 'billing') AS r6;
SELECT tenant_guard.grant_action('doc:read', tenant_role => 'member', resource => 'project:42/*') AS r7;
SELECT tenant_guard.deny_action('doc:read', resource => 'project:42/secret*') AS r8;
-- Idempotent: the same rule again is the same id.
SELECT tenant_guard.grant_action('tool:send_email', tenant_role => 'member') AS r1_again;
SELECT id, action, effect, tenant_role, plan, scope, tenant_id, resource FROM tenant_guard.list_action_rules();
-- Bad input: 22023, and 42704 for an action that is not in the catalogue.
SELECT tenant_guard.add_action(NULL);
SELECT tenant_guard.add_action('');
SELECT tenant_guard.add_action(repeat('a', 129));
SELECT tenant_guard.add_action('tool:x''; DROP TABLE tenant_guard.actions; --');
SELECT tenant_guard.add_action('tool:ok', repeat('d', 2000));
SELECT tenant_guard.grant_action('tool:unknown', tenant_role => 'admin');
SELECT tenant_guard.grant_action('tool:refund', tenant_id => '007');
SELECT tenant_guard.grant_action('tool:refund', tenant_role => '');
SELECT tenant_guard.grant_action('tool:refund', resource => repeat('x', 2000));
SELECT tenant_guard.deny_action('tool:refund', plan => E'pro\n');
SELECT tenant_guard.remove_action_rule(NULL);
SELECT tenant_guard.remove_action_rule(-1);
SELECT tenant_guard.remove_action('tool:unknown');
SELECT count(*) AS rules FROM tenant_guard.list_action_rules();
\c - tg_app
-- Each term of the formula, from the context alone.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'meg', 'member') \gset ignored_
SELECT array_agg(a) AS member_of_acme FROM tenant_guard.allowed_actions() a;
SELECT tenant_guard.authorize('tool:send_email') AS send, tenant_guard.authorize('tool:refund') AS refund,
       tenant_guard.authorize('export:csv') AS export, tenant_guard.authorize('tool:nope') AS unknown;
-- A question without a resource is about every resource: the resource-limited deny applies.
SELECT tenant_guard.authorize('doc:read', 'project:42/readme') AS readme,
       tenant_guard.authorize('doc:read', 'project:42/secret-plan') AS secret,
       tenant_guard.authorize('doc:read', 'project:43/readme') AS other_project,
       tenant_guard.authorize('doc:read') AS no_resource;
SELECT array_agg(a) AS member_on_project_42 FROM tenant_guard.allowed_actions('project:42/readme') a;
SELECT tenant_guard.require_action('tool:send_email');
SAVEPOINT s;
SELECT tenant_guard.require_action('export:csv');
ROLLBACK TO s;
SELECT tenant_guard.require_action('tool:refund');
ROLLBACK TO s;
SELECT tenant_guard.require_action('doc:read', 'project:42/secret-plan');
ROLLBACK TO s;
SELECT tenant_guard.require_action('doc:read');
ROLLBACK TO s;
SELECT tenant_guard.require_action('tool:nope');
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'ada', 'admin') \gset ignored_
SELECT array_agg(a) AS admin_of_acme FROM tenant_guard.allowed_actions() a;
ROLLBACK;
-- The same admin role on the free plan: no refunds, no export.
BEGIN;
SELECT tenant_guard.set_tenant_context('globex', 'gil', 'admin') \gset ignored_
SELECT array_agg(a) AS admin_of_globex FROM tenant_guard.allowed_actions() a;
SELECT tenant_guard.require_action('tool:refund');
ROLLBACK;
-- No context: nothing is allowed.
SELECT tenant_guard.authorize('tool:send_email') AS without_context;
SELECT count(*) AS allowed_without_context FROM tenant_guard.allowed_actions();
SELECT tenant_guard.require_action('tool:send_email');
-- Inputs are the action and the resource only; bad ones are 22023.
SELECT tenant_guard.authorize(NULL);
SELECT tenant_guard.authorize('');
SELECT tenant_guard.authorize('tool:x'' OR true --');
SELECT tenant_guard.authorize(repeat('a', 10000));
SELECT tenant_guard.authorize('doc:read', E'project:42/\x01');
SELECT tenant_guard.require_action('doc:read', repeat('r', 2000));
SELECT tenant_guard.authorize('doc:read', 'project:*');
-- A caller cannot forge what the decision reads: the role and tenant settings are superuser-only.
SET tenant_guard.tenant_role = 'admin';
SELECT set_config('tenant_guard.tenant_id', 'acme', false);

-- API keys: a key acts only within its scopes, even for an admin role.
\c - tg_admin
SELECT tenant_guard.issue_api_key('acme', 'admin', '1 hour', 'mail bot', ARRAY['tool:send_email']) AS mail_key \gset
SELECT tenant_guard.issue_api_key('acme', 'admin', '1 hour', 'tools bot', ARRAY['tool:*']) AS tools_key \gset
SELECT tenant_guard.issue_api_key('acme', 'viewer', '1 hour', 'billing bot', ARRAY['billing']) AS billing_key \gset
SELECT tenant_guard.issue_api_key('acme', 'admin', '1 hour', 'no scopes') AS bare_key \gset
\c - tg_agent
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'mail_key') \gset ignored_
SELECT array_agg(a) AS mail_key_may FROM tenant_guard.allowed_actions() a;
SELECT tenant_guard.require_action('tool:refund');
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'tools_key') \gset ignored_
SELECT array_agg(a) AS tools_key_may FROM tenant_guard.allowed_actions() a;
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'billing_key') \gset ignored_
SELECT array_agg(a) AS billing_key_may FROM tenant_guard.allowed_actions() a;
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'bare_key') \gset ignored_
SELECT count(*) AS bare_key_may FROM tenant_guard.allowed_actions() a;
ROLLBACK;

-- Tokens: a scope claim (space-separated) limits a token as scopes limit a key; without the
-- claim, the role, plan and tenant decide.
\c - tg_admin
SELECT tenant_guard.add_token_key('authz-hs', 'HS256', convert_to('regress-authz-hs256-secret-0123456789', 'UTF8'));
\c - postgres
SELECT tg_test.hs(tg_test.claims('acme', 'tok', 600, '{"role": "admin", "scope": "tool:send_email billing"}'),
                  'authz-hs', 'regress-authz-hs256-secret-0123456789') AS scoped_token \gset
SELECT tg_test.hs(tg_test.claims('acme', 'tok', 600, '{"role": "admin"}'),
                  'authz-hs', 'regress-authz-hs256-secret-0123456789') AS plain_token \gset
SELECT tg_test.hs(tg_test.claims('acme', 'tok', 600, '{"role": "admin", "scope": ["tool:*"]}'),
                  'authz-hs', 'regress-authz-hs256-secret-0123456789') AS malformed_scope_token \gset
\c - tg_agent
BEGIN;
SELECT tenant_guard.set_tenant_context_token(:'scoped_token') \gset ignored_
SELECT array_agg(a) AS scoped_token_may FROM tenant_guard.allowed_actions() a;
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context_token(:'plain_token') \gset ignored_
SELECT array_agg(a) AS plain_token_may FROM tenant_guard.allowed_actions() a;
ROLLBACK;
SELECT tenant_guard.set_tenant_context_token(:'malformed_scope_token');
\c - postgres
SELECT tg_test.hs(tg_test.claims('acme', 'tok', 600, '{"role": "admin", "scope": null}'),
                  'authz-hs', 'regress-authz-hs256-secret-0123456789') AS null_scope_token \gset
SELECT tg_test.hs(tg_test.claims('acme', 'tok', 600, jsonb_build_object('role', 'admin', 'scope', E'tool:send_email\u00a0tool:refund')),
                  'authz-hs', 'regress-authz-hs256-secret-0123456789') AS nbsp_scope_token \gset
\c - tg_agent
SELECT tenant_guard.set_tenant_context_token(:'null_scope_token');
SELECT tenant_guard.set_tenant_context_token(:'nbsp_scope_token');

-- A protected table whose writes need an action: generated policies, guarded like the others.
\c - tg_owner
CREATE TABLE app.refunds (id serial PRIMARY KEY, tenant_id text NOT NULL, amount numeric NOT NULL);
SELECT tenant_guard.require_action_for_writes('app.refunds', 'tool:refund');
SELECT polname, polcmd, pg_get_expr(polqual, polrelid) AS using_expr
  FROM pg_policy WHERE polrelid = 'app.refunds'::regclass AND polname LIKE 'tenant_guard_action%' ORDER BY 1;
DROP POLICY tenant_guard_action_insert ON app.refunds;
ALTER POLICY tenant_guard_action_delete ON app.refunds USING (true);
SELECT tenant_guard.require_action_for_writes(NULL, 'tool:refund');
SELECT tenant_guard.require_action_for_writes('app.refunds', 'tool:unknown');
SELECT tenant_guard.require_action_for_writes('app.refunds', 'tool:x''; DROP TABLE app.refunds; --');
SELECT tenant_guard.require_action_for_writes('app.unprotected', 'tool:refund');
SELECT write_action FROM tenant_guard.protected_tables WHERE relid = 'app.refunds'::regclass;
-- Referential actions run as the owner without row level security: gating a table whose
-- foreign keys cascade into it warns.
ALTER TABLE app.refunds ADD UNIQUE (tenant_id, id);
CREATE TABLE app.refund_lines (id serial PRIMARY KEY, tenant_id text NOT NULL, refund_id int,
    FOREIGN KEY (tenant_id, refund_id) REFERENCES app.refunds (tenant_id, id) ON DELETE CASCADE);
SELECT tenant_guard.require_action_for_writes('app.refund_lines', 'tool:refund');
DROP TABLE app.refund_lines;
-- With several parents, a table must be protected exactly as each: whichever it is protected
-- through, it may not carry rows into the other's scans past that one's write action.
CREATE TABLE app.mp_plain (tenant_id text NOT NULL, v int);
CREATE TABLE app.mp_gated (tenant_id text NOT NULL, v int);
SELECT tenant_guard.require_action_for_writes('app.mp_gated', 'tool:refund');
CREATE TABLE app.mp_child (tenant_id text NOT NULL, v int);
ALTER TABLE app.mp_child INHERIT app.mp_plain;
ALTER TABLE app.mp_child INHERIT app.mp_gated;
SELECT count(*) AS gated_parents FROM pg_inherits WHERE inhrelid = 'app.mp_child'::regclass
   AND inhparent = 'app.mp_gated'::regclass;
DROP TABLE app.mp_child, app.mp_plain, app.mp_gated;
-- Gates on tables tenant_guard does not protect: a CHECK-style trigger, and a policy.
CREATE TABLE app.payouts (id serial PRIMARY KEY, amount numeric NOT NULL);
CREATE TRIGGER payouts_need_the_tool BEFORE INSERT OR UPDATE OR DELETE ON app.payouts
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.require_action_trigger('tool:refund');
CREATE TABLE app.misconfigured (id int);
CREATE TRIGGER no_action BEFORE INSERT ON app.misconfigured
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.require_action_trigger();
CREATE TABLE app.exports (id serial PRIMARY KEY, what text);
SELECT tenant_guard.exclude_table('app.exports');
ALTER TABLE app.exports ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY exports_need_the_action ON app.exports
    USING ((SELECT tenant_guard.authorize('export:csv')))
    WITH CHECK ((SELECT tenant_guard.require_action('export:csv')));
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'ada', 'admin') \gset ignored_
INSERT INTO app.refunds (amount) VALUES (10);
INSERT INTO app.payouts (amount) VALUES (10);
INSERT INTO app.exports (what) VALUES ('by the admin of acme');
SELECT what FROM app.exports;
COMMIT;
INSERT INTO app.misconfigured VALUES (1);
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'meg', 'member') \gset ignored_
SELECT count(*) FROM app.refunds;
SAVEPOINT s;
INSERT INTO app.refunds (amount) VALUES (20);
ROLLBACK TO s;
UPDATE app.refunds SET amount = 0;
ROLLBACK TO s;
INSERT INTO app.payouts (amount) VALUES (20);
ROLLBACK TO s;
SELECT what FROM app.exports;
INSERT INTO app.exports (what) VALUES ('by a member');
ROLLBACK;

-- Denials are in the audit log, written by a background worker (so they outlive the
-- transaction the denial rolled back), chained, and readable by their own tenant only.
\c - postgres
SELECT tg_test.wait_for_denials(11);
SELECT tenant_id, regexp_replace(user_id, '^api_key:.*', 'api_key:<id>') AS user_id, tenant_role, db_role, schema_name, table_name, op, pk,
       new_row ->> 'reason' AS reason, new_row ->> 'resource' AS resource, chain_seq IS NOT NULL AS chained
  FROM tenant_guard.audit_log WHERE op = 'DENIED' ORDER BY occurred_at, id;
SELECT count(*) AS broken_links FROM tenant_guard.verify_audit_chain('acme');
SELECT count(*) AS broken_links FROM tenant_guard.verify_audit_chain('globex');
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('globex', 'gil', 'admin') \gset ignored_
SELECT tenant_id, pk ->> 'action' AS action FROM tenant_guard.audit_log WHERE op = 'DENIED';
ROLLBACK;

-- Rule changes count from the next statement, in this transaction (tg_admin may also set a
-- context) and, in tests/client, in other sessions' running transactions.
\c - tg_admin
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'meg', 'member') \gset ignored_
SELECT tenant_guard.authorize('export:csv') AS before_lift;
SELECT tenant_guard.remove_action_rule(id) FROM tenant_guard.list_action_rules('export:csv') WHERE effect = 'deny';
SELECT tenant_guard.authorize('export:csv') AS after_lift;
COMMIT;
SELECT tenant_guard.revoke_action('tool:send_email', tenant_role => 'member') AS revoked;
SELECT tenant_guard.revoke_action('tool:send_email', tenant_role => 'member') AS revoked_again;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'meg', 'member') \gset ignored_
SELECT array_agg(a) AS member_after_changes FROM tenant_guard.allowed_actions() a;
ROLLBACK;
\c - tg_admin
SELECT tenant_guard.remove_action('export:csv');
SELECT action FROM tenant_guard.actions ORDER BY 1;
SELECT count(*) AS rules_of_removed_action FROM tenant_guard.list_action_rules('export:csv');

-- The new registry tables travel with pg_dump.
\c - postgres
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) t JOIN pg_class c ON c.oid = t
 WHERE e.extname = 'tenant_guard' AND c.relname IN ('table_permissions', 'actions', 'action_rules', 'action_rules_id_seq')
 ORDER BY 1;
