-- The self-check: check() on a database of its own (the other suites leave their own findings
-- behind). A fresh database reports nothing but TG017: this cluster runs without
-- shared_preload_libraries, as the suites' cluster does on purpose.
\c postgres postgres
CREATE DATABASE tg_check;
\c tg_check postgres
CREATE EXTENSION tenant_guard;
SELECT code, severity, object FROM tenant_guard.check();

-- The setup README recommends: the owner migrates, the application only sets contexts and
-- runs DML, tables are protected with to_roles, keys and references lead with the tenant,
-- views are security_invoker, shared tables excluded on purpose.
CREATE SCHEMA shop AUTHORIZATION tg_owner;
GRANT USAGE ON SCHEMA shop TO tg_app, tg_reader;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO tg_app;
GRANT EXECUTE ON FUNCTION
    tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[]),
    tenant_guard.exclude_table(regclass),
    tenant_guard.enable_tenant_audit(regclass, name[], name[], boolean),
    tenant_guard.reapply_protection(regclass)
TO tg_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA shop GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tg_app;
SET ROLE tg_owner;
CREATE TABLE shop.customers (
    tenant_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, name text NOT NULL,
    PRIMARY KEY (tenant_id, id));
CREATE TABLE shop.orders (
    tenant_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, customer_id bigint NOT NULL,
    total numeric NOT NULL, card text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES shop.customers (tenant_id, id) ON DELETE CASCADE);
CREATE TABLE shop.events (tenant_id text NOT NULL, at timestamptz NOT NULL, what text)
    PARTITION BY LIST (tenant_id);
CREATE TABLE shop.events_acme PARTITION OF shop.events FOR VALUES IN ('acme');
CREATE TABLE shop.events_other PARTITION OF shop.events DEFAULT;
CREATE TABLE shop.currencies (code text PRIMARY KEY);
CREATE TABLE shop.plans (tenant_id text, name text);
SELECT tenant_guard.exclude_table('shop.plans');
SELECT tenant_guard.enable_tenant_rls(t, to_roles => ARRAY['tg_app']::regrole[])
  FROM unnest(ARRAY['shop.customers', 'shop.orders', 'shop.events']::regclass[]) t;
SELECT tenant_guard.enable_tenant_audit('shop.orders', redact_columns => '{card}');
CREATE VIEW shop.order_totals WITH (security_invoker = true) AS
    SELECT tenant_id, customer_id, sum(total) AS total FROM shop.orders GROUP BY 1, 2;
RESET ROLE;
SELECT code, severity, object FROM tenant_guard.check() WHERE code <> 'TG017';
SELECT tenant_guard.assert_no_findings('error');

-- Each mistake once.
SET tenant_guard.auto_protect = off;
SET ROLE tg_owner;
CREATE TABLE shop.tickets (tenant_id text NOT NULL, id bigint PRIMARY KEY, subject text);     -- TG001
CREATE TABLE shop.notes (tenant_id text NOT NULL, body text);
SELECT tenant_guard.enable_tenant_rls('shop.notes', create_index => false);                  -- TG003
RESET ROLE;
RESET tenant_guard.auto_protect;
SET ROLE tg_owner;
CREATE TABLE shop.accounts (tenant_id text NOT NULL, id bigserial PRIMARY KEY, email text NOT NULL); -- TG004
CREATE UNIQUE INDEX accounts_email ON shop.accounts (lower(email));                          -- TG004
CREATE TABLE shop.sessions (tenant_id text NOT NULL, id bigserial, account_id bigint NOT NULL
    REFERENCES shop.accounts (id) ON DELETE CASCADE, PRIMARY KEY (tenant_id, id));           -- TG005
CREATE VIEW shop.owner_view AS SELECT * FROM shop.customers;                                  -- TG006 (warning)
CREATE FUNCTION shop.count_orders() RETURNS bigint LANGUAGE sql SECURITY DEFINER
    AS 'SELECT count(*) FROM shop.orders';                                                    -- TG010 (warning)
CREATE TABLE shop.memos (author text NOT NULL, body text);
ALTER TABLE shop.memos ENABLE ROW LEVEL SECURITY;
CREATE FUNCTION shop.me() RETURNS text LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN RETURN current_setting('app.user', true); END $$;
CREATE POLICY by_setting ON shop.memos USING (author = current_setting('app.user'));          -- TG014
CREATE POLICY by_random ON shop.memos AS RESTRICTIVE USING (random() < 2);                   -- TG014
CREATE POLICY by_me ON shop.memos AS RESTRICTIVE USING (author = shop.me());                 -- TG014
CREATE TABLE shop.payments (tenant_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,
    iban text, PRIMARY KEY (tenant_id, id));
SELECT tenant_guard.enable_tenant_audit('shop.payments');
GRANT SELECT (tenant_id, id, iban) ON shop.payments TO tg_reader;                            -- TG016
RESET ROLE;
CREATE VIEW shop.superuser_view AS SELECT * FROM shop.orders;                                 -- TG006
CREATE MATERIALIZED VIEW shop.order_stats AS SELECT tenant_id, count(*) FROM shop.orders GROUP BY 1; -- TG007
GRANT SELECT ON shop.customers TO tg_ops;                                                     -- TG008
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO tg_owner; -- TG009
CREATE FUNCTION shop.all_orders() RETURNS SETOF shop.orders LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog AS 'SELECT * FROM shop.orders';                              -- TG010
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_token(text, boolean) TO PUBLIC;      -- TG013
GRANT SET ON PARAMETER tenant_guard.tenant_id TO tg_app;                                      -- TG013
ALTER ROLE tg_reader IN DATABASE tg_check SET tenant_guard.tenant_id = 'acme';                -- TG013
ALTER DATABASE tg_check SET tenant_guard.require_context = off;                               -- TG013
GRANT INSERT ON tenant_guard.audit_log TO tg_app;                                             -- TG018
CREATE POLICY everyone ON tenant_guard.audit_log FOR SELECT USING (true);                     -- TG018
-- What only a superuser can do with the tamper guard off (session_replication_role = replica
-- stops event triggers): the drift check() finds.
SET session_replication_role = replica;
ALTER TABLE shop.customers NO FORCE ROW LEVEL SECURITY;                                       -- TG002
DROP POLICY tenant_guard_fence ON shop.customers;                                             -- TG002
ALTER TABLE shop.customers ALTER COLUMN tenant_id DROP DEFAULT;                               -- TG002
ALTER TABLE shop.customers DISABLE TRIGGER tenant_guard_truncate_guard;                      -- TG002
CREATE POLICY see_all ON shop.orders USING (true);                                            -- TG011
CREATE POLICY by_app_setting ON shop.orders AS RESTRICTIVE
    USING (tenant_id = current_setting('app.tenant'));                                        -- TG011, TG014
CREATE TABLE shop.events_new PARTITION OF shop.events FOR VALUES IN ('new');                 -- TG012
ALTER TABLE shop.payments DISABLE TRIGGER tenant_guard_audit_insert;                         -- TG015
RESET session_replication_role;

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
SELECT tenant_guard.reapply_protection('shop.currencies');
SELECT tenant_guard.reapply_protection('shop.events_acme');
SELECT tenant_guard.reapply_protection('tenant_guard.audit_log');
\c - postgres
ALTER ROLE tg_ops BYPASSRLS;

-- assert_tenant_isolation proves it by trying, as the role, with two tenants' rows.
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
SELECT tenant_guard.assert_tenant_isolation('shop.currencies', 'tg_app');
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
-- Not for PUBLIC; and a caller granted it still needs the role's privileges and
-- set_tenant_context (it could not run the probes itself otherwise).
GRANT EXECUTE ON FUNCTION tenant_guard.assert_tenant_isolation(regclass, name, text, text) TO tg_reader;
\c - tg_app
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app');
\echo :LAST_ERROR_SQLSTATE
\c - tg_reader
SELECT tenant_guard.assert_tenant_isolation('shop.customers', 'tg_app');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
\c postgres postgres
DROP DATABASE tg_check;
