-- The self-check: check() on a database of its own (the other suites leave their own findings
-- behind). A fresh database reports nothing but TG017: this cluster runs without
-- shared_preload_libraries, as the suites' cluster does on purpose.
\c postgres postgres
CREATE DATABASE tg_check;
DO $$
BEGIN
    CREATE ROLE tenant_guard_admin NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;  -- an earlier suite may have created it
END $$;
CREATE ROLE tg_ci LOGIN IN ROLE tg_app, tenant_guard_admin;
\c tg_check postgres
CREATE EXTENSION tenant_guard;
SELECT code, severity, object FROM tenant_guard.check();

\i tests/fixtures/check_recommended.sql
SELECT code, severity, object FROM tenant_guard.check() WHERE code <> 'TG017';
SELECT tenant_guard.assert_no_findings('error');

\i tests/fixtures/check_mistakes.sql
-- A stored setting for every role in every database (the fix loop resets it).
ALTER ROLE ALL SET tenant_guard.trace_id = 'from-a-role-default';
-- Hostile names are quoted in every message and fix.
SET tenant_guard.auto_protect = off;
CREATE TABLE shop."odd""name; DROP TABLE shop.orders; --" (tenant_id text NOT NULL, "Id" int PRIMARY KEY);
RESET tenant_guard.auto_protect;

\x on
SELECT * FROM tenant_guard.check();
\x off

-- Every finding's fix makes it go away. Fixes are applied round by round: protecting a table
-- (TG001) can reveal findings about its keys in the next round. TG017's fix needs a restart
-- (tests/client/test_check.py makes it).
DO $$
DECLARE
    finding record;
    round int := 0;
BEGIN
    LOOP
        round := round + 1;
        EXIT WHEN NOT EXISTS (SELECT 1 FROM tenant_guard.check() WHERE code <> 'TG017') OR round > 5;
        FOR finding IN SELECT * FROM tenant_guard.check() WHERE code <> 'TG017' LOOP
            EXECUTE finding.fix;
        END LOOP;
    END LOOP;
    RAISE NOTICE 'fixed in % round(s)', round - 1;
END $$;
SELECT code, severity, object FROM tenant_guard.check();
-- The hostile table is protected and its key scoped (and shop.orders is still there).
SELECT pg_get_constraintdef(oid) AS key, to_regclass('shop.orders') IS NOT NULL AS orders_exists
  FROM pg_constraint WHERE conrelid = 'shop."odd""name; DROP TABLE shop.orders; --"'::regclass AND contype = 'p';
-- The drifted table is back as generated.
SELECT relrowsecurity, relforcerowsecurity,
       (SELECT string_agg(polname, ', ' ORDER BY polname) FROM pg_policy WHERE polrelid = c.oid) AS policies
  FROM pg_class c WHERE oid = 'shop.customers'::regclass;
\d shop.accounts
\d shop.sessions

-- assert_no_findings raises P0004 with the findings in its message.
\set VERBOSITY terse
SELECT tenant_guard.assert_no_findings();
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.assert_no_findings('error');
SELECT tenant_guard.assert_no_findings('fatal');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.assert_no_findings(NULL);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- check() and the helpers are not for PUBLIC.
\c - tg_app
SELECT count(*) FROM tenant_guard.check();
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.reapply_protection('shop.customers');
\echo :LAST_ERROR_SQLSTATE
\c - tg_owner
-- reapply_protection: for owners, granted like enable_tenant_rls; bad input is refused.
SELECT tenant_guard.reapply_protection('shop.customers');
SELECT tenant_guard.reapply_protection(NULL);
SELECT tenant_guard.reapply_protection('shared.currencies');
SELECT tenant_guard.reapply_protection('shop.events_acme');
SELECT tenant_guard.reapply_protection('tenant_guard.audit_log');
\c - postgres
ALTER ROLE tg_ops BYPASSRLS;

-- assert_tenant_isolation proves it by trying, as the role, with two tenants' rows. The role
-- may TRUNCATE shop.orders, so the TRUNCATE guard itself is tried there.
GRANT TRUNCATE ON shop.orders TO tg_app;
INSERT INTO shop.customers (tenant_id, name) VALUES ('acme', 'Ann'), ('acme', 'Al'), ('globex', 'Gus');
INSERT INTO shop.orders (tenant_id, customer_id, total, card)
    SELECT tenant_id, id, 10 * id, '4111-' || id FROM shop.customers;
CREATE TABLE public.before AS
SELECT (SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM shop.orders o) AS orders,
       (SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM shop.customers c) AS customers,
       (SELECT md5(string_agg(l::text, ',' ORDER BY id)) FROM tenant_guard.audit_log l) AS audit_log,
       (SELECT last_value FROM tenant_guard.audit_log_id_seq) AS audit_seq,
       (SELECT last_value FROM shop.orders_id_seq) AS orders_seq;
SELECT tenant_guard.assert_tenant_isolation('shop.orders', 'tg_app');
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app');
-- ... and leaves no trace: the tables, the audit log and the sequences are as they were.
SELECT b.orders = (SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM shop.orders o) AS orders_unchanged,
       b.customers = (SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM shop.customers c) AS customers_unchanged,
       b.audit_log = (SELECT md5(string_agg(l::text, ',' ORDER BY id)) FROM tenant_guard.audit_log l) AS audit_log_unchanged,
       b.audit_seq = (SELECT last_value FROM tenant_guard.audit_log_id_seq) AS audit_sequence_unchanged,
       b.orders_seq = (SELECT last_value FROM shop.orders_id_seq) AS orders_sequence_unchanged
  FROM public.before b;
DROP TABLE public.before;
-- A table with one tenant's rows (or none) cannot prove anything.
SELECT tenant_guard.assert_tenant_isolation('shop.events', 'tg_app');
-- The caller's own context and tenant binding are untouched.
BEGIN;
SELECT tenant_guard.set_tenant_context('globex') IS NOT NULL AS set;
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app') LIKE 'isolated:%' AS isolated;
SELECT tenant_guard.current_tenant_id();
SELECT tenant_guard.set_tenant_context('acme');
ROLLBACK;
BEGIN;
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app') LIKE 'isolated:%' AS isolated;
SELECT tenant_guard.current_tenant_id() IS NULL AS no_context;
SELECT (tenant_guard.set_tenant_context('acme'))->>'tenant_id' AS now_acting_for;
ROLLBACK;
-- Failures raise P0004, naming the problem.
\set VERBOSITY terse
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_ops');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'postgres');
SELECT tenant_guard.assert_tenant_isolation('shared.currencies', 'tg_app');
-- A leak a superuser opened with the tamper guard off: reads, then writes only.
SET session_replication_role = replica;
DROP POLICY tenant_guard_fence ON shop.customers;
CREATE POLICY see_all ON shop.customers FOR SELECT USING (true);
RESET session_replication_role;
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app');
SET session_replication_role = replica;
DROP POLICY see_all ON shop.customers;
CREATE POLICY insert_any ON shop.customers FOR INSERT WITH CHECK (true);
RESET session_replication_role;
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app');
SET session_replication_role = replica;
DROP POLICY insert_any ON shop.customers;
CREATE POLICY update_any ON shop.customers FOR UPDATE USING (true);
RESET session_replication_role;
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app');
SET session_replication_role = replica;
DROP POLICY update_any ON shop.customers;
CREATE POLICY delete_any ON shop.customers FOR DELETE USING (true);
RESET session_replication_role;
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app');
-- reapply_protection drops what tenant_guard did not generate, for a superuser only.
\c - tg_owner
SELECT tenant_guard.reapply_protection('shop.customers');
\c - postgres
SELECT tenant_guard.reapply_protection('shop.customers');
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app') LIKE 'isolated:%' AS isolated_again;
-- Bad input.
SELECT tenant_guard.assert_tenant_isolation(NULL, 'tg_app');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.assert_tenant_isolation('shop.customers', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'x"; DROP TABLE shop.orders; --');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app', tenant_role => E'ad\nmin');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app', user_id => repeat('u', 300));
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.assert_tenant_isolation('no_such_table', 'tg_app');
\echo :LAST_ERROR_SQLSTATE
-- Not for PUBLIC; granted, it is still for tenant_guard administrators (the probes act for
-- tenants without a credential), acting as a role whose privileges they have.
GRANT EXECUTE ON FUNCTION tenant_guard.assert_tenant_isolation(regclass, name, text, text),
                          tenant_guard.check() TO tg_reader, tg_ci;
\c - tg_app
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app');
\echo :LAST_ERROR_SQLSTATE
\c - tg_reader
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app');
\echo :LAST_ERROR_SQLSTATE
-- A CI role: an administrator and a member of the application role. It runs check() (as a
-- non-superuser) and the assertion as the application role, not as a role it is not a member of.
\c - tg_ci
SELECT count(*) > 0 AS check_runs FROM tenant_guard.check();
SELECT tenant_guard.assert_tenant_isolation('shop.orders', 'tg_app') LIKE 'isolated:%' AS isolated;
SELECT tenant_guard.assert_tenant_isolation('shop.orders', 'tg_owner');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
\c postgres postgres
DROP DATABASE tg_check;
DROP ROLE tg_ci;
