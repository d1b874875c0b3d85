-- enable_tenant_rls, disable_tenant_rls, exclude_table, protect_tenant_tables: what they leave
-- behind, idempotence, and bad input (clear error, SQLSTATE, nothing half-applied).
\c - postgres
ALTER ROLE tg_owner SET tenant_guard.auto_protect = off;
\c - tg_owner

CREATE TABLE app.accounts (
    id     int PRIMARY KEY,
    org_id uuid DEFAULT '00000000-0000-0000-0000-000000000000',
    name   text
);
SELECT * FROM tg_test.protection('app.accounts', 'org_id');

SELECT tenant_guard.enable_tenant_rls('app.accounts', 'org_id');
SELECT * FROM tg_test.protection('app.accounts', 'org_id');
SELECT relid, tenant_column, tenant_type, to_roles, parent, protected_via, previous_default, protected_by
  FROM tenant_guard.protected_tables WHERE relid = 'app.accounts'::regclass;
SELECT polname, polpermissive, pg_get_expr(polqual, polrelid) AS using_expr,
       pg_get_expr(polwithcheck, polrelid) = pg_get_expr(polqual, polrelid) AS check_same_as_using
  FROM pg_policy WHERE polrelid = 'app.accounts'::regclass ORDER BY polname;

-- Idempotent: a second call leaves exactly the same objects (no duplicate policy or index).
SELECT tenant_guard.enable_tenant_rls('app.accounts', 'org_id');
SELECT * FROM tg_test.protection('app.accounts', 'org_id');
SELECT count(*) AS policies FROM pg_policy WHERE polrelid = 'app.accounts'::regclass;
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'app.accounts'::regclass;
SELECT previous_default FROM tenant_guard.protected_tables WHERE relid = 'app.accounts'::regclass;

-- The uuid column works end to end for the app role.
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11') IS NOT NULL AS set;
INSERT INTO app.accounts (id, name) VALUES (1, 'first') RETURNING *;
SELECT * FROM app.accounts;
COMMIT;
-- A tenant id that does not fit the column type: 22023 naming the table, at use.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT * FROM app.accounts;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- to_roles: the permissive policy is granted to listed roles only; the restrictive fence stays
-- on PUBLIC, so another role sees nothing, even with the right context.
\c - tg_owner
SELECT tenant_guard.enable_tenant_rls('app.accounts', 'org_id', to_roles => ARRAY['tg_app']::regrole[]);
SELECT policies FROM tg_test.protection('app.accounts', 'org_id');
SELECT to_roles FROM tenant_guard.protected_tables WHERE relid = 'app.accounts'::regclass;
\c - tg_reader
BEGIN;
SELECT tenant_guard.set_tenant_context('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11') IS NOT NULL AS set;
SELECT count(*) AS reader_rows FROM app.accounts;
COMMIT;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11') IS NOT NULL AS set;
SELECT count(*) AS app_rows FROM app.accounts;
COMMIT;

-- A protected table carries tenant_guard's policies only: adding one is refused, for the owner
-- and the superuser alike (tests/pg_regress/sql/tamper.sql has the rest of the guard) ...
\c - tg_owner
CREATE POLICY everything ON app.accounts AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
\echo :LAST_ERROR_SQLSTATE
\c - postgres
CREATE POLICY everything ON app.accounts AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
\echo :LAST_ERROR_SQLSTATE
-- ... unless a superuser switches the guard off, visibly. Even then the restrictive fence keeps a
-- later permissive policy from widening access past the tenant.
ALTER EVENT TRIGGER tenant_guard_protect_new_tables DISABLE;
CREATE POLICY everything ON app.accounts AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
ALTER EVENT TRIGGER tenant_guard_protect_new_tables ENABLE;
\c - tg_reader
BEGIN;
SELECT tenant_guard.set_tenant_context('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11') IS NOT NULL AS set;
SELECT count(*) AS other_tenant_rows FROM app.accounts;
COMMIT;

-- disable_tenant_rls removes its own objects, restores the previous default, keeps the index;
-- with another policy left on the table, RLS stays on.
\c - tg_owner
SELECT tenant_guard.disable_tenant_rls('app.accounts');
SELECT * FROM tg_test.protection('app.accounts', 'org_id');
-- A table with policies of its own is not protected until they are gone (55000).
SELECT tenant_guard.enable_tenant_rls('app.accounts', 'org_id');
\echo :LAST_ERROR_SQLSTATE
DROP POLICY everything ON app.accounts;
SELECT tenant_guard.enable_tenant_rls('app.accounts', 'org_id');
SELECT tenant_guard.disable_tenant_rls('app.accounts');
SELECT * FROM tg_test.protection('app.accounts', 'org_id');
-- Idempotent.
SELECT tenant_guard.disable_tenant_rls('app.accounts');

-- exclude_table: removes protection if present, and is recorded.
SELECT tenant_guard.enable_tenant_rls('app.accounts', 'org_id');
SELECT tenant_guard.exclude_table('app.accounts');
SELECT * FROM tg_test.protection('app.accounts', 'org_id');
SELECT relid, excluded_by FROM tenant_guard.excluded_tables;
SELECT tenant_guard.exclude_table('app.accounts');
SELECT count(*) FROM tenant_guard.excluded_tables;
-- enable_tenant_rls opts it back in.
SELECT tenant_guard.enable_tenant_rls('app.accounts', 'org_id');
SELECT count(*) AS excluded FROM tenant_guard.excluded_tables;
SELECT registered FROM tg_test.protection('app.accounts', 'org_id');

-- protect_tenant_tables: every unprotected, non-excluded table with the tenant column.
CREATE TABLE app.p1 (tenant_id bigint);
CREATE TABLE app.p2 (tenant_id integer, v text);
CREATE TABLE app.p3 (tenant_id text);
CREATE TABLE app.p_no_column (id int);
SELECT tenant_guard.exclude_table('app.p3');
\c - postgres
CREATE SCHEMA other AUTHORIZATION tg_owner;
\c - tg_owner
CREATE TABLE other.q1 (tenant_id uuid);
SELECT tenant_guard.protect_tenant_tables('app') ORDER BY 1;
SELECT tenant_guard.protect_tenant_tables('app');
SELECT tenant_guard.protect_tenant_tables();
SELECT relid, protected_via FROM tenant_guard.protected_tables WHERE protected_via = 'protect_tenant_tables' ORDER BY relid::text;
SELECT tenant_guard.protect_tenant_tables('no_such_schema');
\echo :LAST_ERROR_SQLSTATE

-- Hostile identifiers are quoted everywhere.
CREATE TABLE app."Robert'); DROP TABLE app.accounts;--" ("ten""ant" text, "select" int);
SELECT tenant_guard.enable_tenant_rls('app."Robert''); DROP TABLE app.accounts;--"', 'ten"ant');
SELECT rls, forced, policies, column_default FROM tg_test.protection('app."Robert''); DROP TABLE app.accounts;--"', 'ten"ant');
SELECT to_regclass('app.accounts') IS NOT NULL AS accounts_still_there;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app."Robert'); DROP TABLE app.accounts;--" ("select") VALUES (1) RETURNING *;
COMMIT;

-- Bad input. After each failure the catalog shows nothing applied.
\c - tg_owner
CREATE TABLE app.target (id int, tenant_id bigint, blob jsonb);
CREATE VIEW app.a_view AS SELECT * FROM app.target;
CREATE MATERIALIZED VIEW app.a_matview AS SELECT * FROM app.target;
CREATE SEQUENCE app.a_sequence;
CREATE TEMP TABLE a_temp (tenant_id text);
SELECT tenant_guard.enable_tenant_rls(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.no_such_table');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls(4000000000::oid::regclass);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.a_view');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.a_matview');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.a_sequence');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('a_temp');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('pg_catalog.pg_class');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', 'no_such_column');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', 'blob');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', 'ctid');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', '');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', 'tenant_id; DROP TABLE app.accounts');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', repeat('x', 10000));
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', create_index => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', to_roles => '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', to_roles => ARRAY[NULL]::regrole[]);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', to_roles => ARRAY[4000000000::oid::regrole]);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('app.target', to_roles => ARRAY['no_such_role']::regrole[]);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls(42);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.disable_tenant_rls(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.exclude_table(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.exclude_table('app.a_view');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM tg_test.protection('app.target');
SELECT count(*) AS registered FROM tenant_guard.protected_tables
 WHERE relid IN ('app.target'::regclass, 'app.a_view'::regclass, 'app.a_matview'::regclass);
SELECT count(*) AS policies FROM pg_policy WHERE polrelid IN ('app.target'::regclass, 'app.a_view'::regclass, 'app.a_matview'::regclass);

-- Not the owner: 42501 (the app role cannot even execute it; with EXECUTE it is still refused).
\c - tg_app
SELECT tenant_guard.enable_tenant_rls('app.target');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
GRANT EXECUTE ON FUNCTION tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[]), tenant_guard.disable_tenant_rls(regclass) TO tg_app;
\c - tg_app
SELECT tenant_guard.enable_tenant_rls('app.target');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.disable_tenant_rls('app.invoices');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM tg_test.protection('app.target');
SELECT rls, forced, policies IS NOT NULL AS has_policies FROM tg_test.protection('app.invoices');
\c - postgres
REVOKE EXECUTE ON FUNCTION tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[]), tenant_guard.disable_tenant_rls(regclass) FROM tg_app;

-- The registry cannot be written directly, not even by a table owner.
\c - tg_owner
DELETE FROM tenant_guard.protected_tables;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO tenant_guard.excluded_tables VALUES ('app.invoices', 'tg_owner');
\echo :LAST_ERROR_SQLSTATE

\c - postgres
ALTER ROLE tg_owner RESET tenant_guard.auto_protect;
