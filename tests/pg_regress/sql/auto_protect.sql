-- Automatic protection by the ddl_command_end event trigger, for every way a table can gain
-- the tenant column, as a non-superuser owner.
\c - postgres
CREATE SCHEMA auto AUTHORIZATION tg_owner;
GRANT USAGE ON SCHEMA auto TO tg_app;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA auto
    GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO tg_app;
\c - tg_owner
CREATE TABLE auto.t_text (id int, tenant_id text);
CREATE TABLE auto.t_uuid (id int, tenant_id uuid);
CREATE TABLE auto.t_bigint (id int, tenant_id bigint);
CREATE TABLE auto.t_integer (id int, tenant_id integer);
CREATE TABLE auto.t_ctas AS SELECT 1::bigint AS tenant_id, 'x'::text AS v;
SELECT 2::integer AS tenant_id, 'y'::text AS v INTO auto.t_select_into;
CREATE TABLE auto.t_later (id int);
ALTER TABLE auto.t_later ADD COLUMN tenant_id text;
CREATE TABLE auto.t_like (LIKE auto.t_text INCLUDING ALL);
-- Not protected: no tenant column; temporary tables (private to the session).
CREATE TABLE auto.t_no_tenant (id int);
CREATE TEMP TABLE t_temp (tenant_id text);
SELECT relid, tenant_column, tenant_type, protected_via FROM tenant_guard.protected_tables
 WHERE relid::text LIKE 'auto.%' ORDER BY relid::text;
SELECT * FROM tg_test.protection('auto.t_ctas');
SELECT relid FROM tenant_guard.protected_tables WHERE relid::text LIKE '%t_temp%' OR relid::text LIKE '%no_tenant%';

-- A tenant column of an unsupported type fails the command (fail closed): nothing is created.
CREATE TABLE auto.t_json (tenant_id jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT to_regclass('auto.t_json') AS not_created;
ALTER TABLE auto.t_no_tenant ADD COLUMN tenant_id numeric;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS still_without_column FROM pg_attribute WHERE attrelid = 'auto.t_no_tenant'::regclass AND attname = 'tenant_id';

-- Partitions: PARTITION OF (two levels deep) and ATTACH PARTITION get the parent's protection.
CREATE TABLE auto.measurements (tenant_id bigint NOT NULL, at date NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE auto.m_2026 PARTITION OF auto.measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
    PARTITION BY HASH (tenant_id);
CREATE TABLE auto.m_2026_h0 PARTITION OF auto.m_2026 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE auto.m_2026_h1 PARTITION OF auto.m_2026 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE auto.m_2027 (tenant_id bigint NOT NULL, at date NOT NULL, v int);
ALTER TABLE auto.measurements ATTACH PARTITION auto.m_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT relid, parent, protected_via FROM tenant_guard.protected_tables
 WHERE relid::text LIKE 'auto.m%' ORDER BY relid::text;
SELECT * FROM tg_test.protection('auto.m_2026_h1');
-- The parent's index covers every partition.
SELECT tenant_index FROM tg_test.protection('auto.m_2027');

-- Querying a partition directly is as protected as querying the parent.
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('1') IS NOT NULL AS set;
INSERT INTO auto.measurements (at, v) VALUES ('2026-03-01', 10), ('2026-04-01', 11), ('2027-05-01', 12);
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('2') IS NOT NULL AS set;
INSERT INTO auto.measurements (at, v) VALUES ('2026-03-01', 20);
SELECT count(*) AS via_parent FROM auto.measurements;
SELECT count(*) AS h0 FROM auto.m_2026_h0;
SELECT count(*) AS h1 FROM auto.m_2026_h1;
SELECT count(*) AS y2027 FROM auto.m_2027;
SELECT tableoid::regclass, v FROM auto.measurements ORDER BY v;
WITH changed AS (UPDATE auto.m_2027 SET v = 0 RETURNING 1) SELECT count(*) AS updated_2027 FROM changed;
WITH changed AS (DELETE FROM auto.m_2026_h1 RETURNING 1) SELECT count(*) AS deleted_h1 FROM changed;
SAVEPOINT s;
INSERT INTO auto.m_2027 (tenant_id, at, v) VALUES (1, '2027-06-01', 99);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
TRUNCATE auto.m_2027;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('1') IS NOT NULL AS set;
SELECT v FROM auto.measurements ORDER BY v;
COMMIT;
-- Without context, a partition fails closed like its parent.
SELECT count(*) FROM auto.m_2026_h0;
\echo :LAST_ERROR_SQLSTATE

-- A partition shares its parent's protection: it cannot be disabled or re-enabled alone.
\c - postgres
GRANT EXECUTE ON FUNCTION tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[]) TO tg_owner;
\c - tg_owner
SELECT tenant_guard.disable_tenant_rls('auto.m_2026_h0');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_rls('auto.m_2026_h0');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.exclude_table('auto.m_2027');
\echo :LAST_ERROR_SQLSTATE
-- Disabling the parent disables the whole tree; enabling it again protects the whole tree.
SELECT tenant_guard.disable_tenant_rls('auto.measurements');
SELECT count(*) AS registered FROM tenant_guard.protected_tables WHERE relid::text LIKE 'auto.m%';
SELECT count(*) AS policies FROM pg_policy WHERE polrelid::regclass::text LIKE 'auto.m%';
SELECT tenant_guard.enable_tenant_rls('auto.measurements');
SELECT count(*) AS registered FROM tenant_guard.protected_tables WHERE relid::text LIKE 'auto.m%';
SELECT count(*) AS policies FROM pg_policy WHERE polrelid::regclass::text LIKE 'auto.m%';

-- An excluded table is not re-protected when it gains the column again.
CREATE TABLE auto.t_excluded (id int);
SELECT tenant_guard.exclude_table('auto.t_excluded');
ALTER TABLE auto.t_excluded ADD COLUMN tenant_id text;
SELECT registered FROM tg_test.protection('auto.t_excluded');

-- Settings (superuser only): tenant_guard.tenant_column and tenant_guard.auto_protect.
\c - postgres
SET tenant_guard.tenant_column = 'org_id';
CREATE TABLE auto.t_org (org_id integer, tenant_id integer);
SELECT registered FROM tg_test.protection('auto.t_org', 'org_id');
RESET tenant_guard.tenant_column;
SET tenant_guard.auto_protect = off;
CREATE TABLE auto.t_off (tenant_id text);
SELECT registered FROM tg_test.protection('auto.t_off');
-- A new partition of a protected table is protected even with auto_protect off.
CREATE TABLE auto.m_2028 PARTITION OF auto.measurements FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
SELECT registered FROM tg_test.protection('auto.m_2028');
RESET tenant_guard.auto_protect;
-- Ordinary roles cannot change these settings. Before the library is loaded, SET only makes a
-- placeholder, which the event trigger's library discards before it reads the setting ...
\c - tg_owner
SET tenant_guard.auto_protect = off;
CREATE TABLE auto.t_placeholder (tenant_id text);
SELECT registered FROM tg_test.protection('auto.t_placeholder');
-- ... and once it is loaded, SET fails outright.
SET tenant_guard.auto_protect = off;
\echo :LAST_ERROR_SQLSTATE
SET tenant_guard.tenant_column = 'x';
\echo :LAST_ERROR_SQLSTATE

-- With row_security = off (as pg_dump scripts run) nothing is protected automatically: a restore
-- brings its own policies.
\c - postgres
SET row_security = off;
CREATE TABLE auto.t_restored (tenant_id text);
RESET row_security;
SELECT registered FROM tg_test.protection('auto.t_restored');

-- Dropped tables leave the registry (no row points at a relation that no longer exists).
\c - tg_owner
SELECT count(*) AS registered_in_auto FROM tenant_guard.protected_tables WHERE relid::text LIKE 'auto.%';
DROP TABLE auto.t_text;
DROP TABLE auto.measurements;
SELECT count(*) AS registered_in_auto FROM tenant_guard.protected_tables WHERE relid::text LIKE 'auto.%';
DROP SCHEMA auto CASCADE;
SELECT count(*) AS dangling_protected FROM tenant_guard.protected_tables p
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = p.relid);
SELECT count(*) AS dangling_excluded FROM tenant_guard.excluded_tables e
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = e.relid);
