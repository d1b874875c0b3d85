-- The tamper guard: what protects or audits a table changes only through tenant_guard's
-- functions. Every attack here is made by the table's owner, a role that is neither superuser
-- nor BYPASSRLS (migrations usually run as the application role), and each is refused with
-- 42501; the protection is checked intact afterwards, through the normal path.
\c - postgres
CREATE SCHEMA tamper AUTHORIZATION tg_owner;
GRANT USAGE ON SCHEMA tamper TO tg_app, tg_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA tamper
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tg_app, tg_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA tamper GRANT USAGE ON SEQUENCES TO tg_app;
\c - tg_owner
CREATE TABLE tamper.orders (id bigserial PRIMARY KEY, tenant_id text NOT NULL, item text);
SELECT tenant_guard.enable_tenant_audit('tamper.orders');
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO tamper.orders (item) VALUES ('acme-secret');
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('globex') IS NOT NULL AS set;
INSERT INTO tamper.orders (item) VALUES ('globex-secret');
COMMIT;

\c - tg_owner
-- Row level security cannot be switched off ...
ALTER TABLE tamper.orders NO FORCE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tamper.orders DISABLE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
-- (turning it on is always fine)
ALTER TABLE tamper.orders ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
-- ... its policies cannot be replaced, widened, renamed or dropped ...
CREATE POLICY everything ON tamper.orders USING (true);
\echo :LAST_ERROR_SQLSTATE
ALTER POLICY tenant_guard_fence ON tamper.orders USING (true);
\echo :LAST_ERROR_SQLSTATE
ALTER POLICY tenant_guard_isolation ON tamper.orders TO tg_reader;
\echo :LAST_ERROR_SQLSTATE
ALTER POLICY tenant_guard_fence ON tamper.orders RENAME TO something_else;
\echo :LAST_ERROR_SQLSTATE
DROP POLICY tenant_guard_fence ON tamper.orders;
\echo :LAST_ERROR_SQLSTATE
-- ... nor dropped with the tenant column ...
ALTER TABLE tamper.orders DROP COLUMN tenant_id CASCADE;
\echo :LAST_ERROR_SQLSTATE
-- ... its triggers (TRUNCATE guard, audit) cannot be disabled, demoted to replica-only,
-- renamed, dropped or hijacked ...
ALTER TABLE tamper.orders DISABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tamper.orders DISABLE TRIGGER USER;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tamper.orders DISABLE TRIGGER tenant_guard_truncate_guard;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tamper.orders DISABLE TRIGGER tenant_guard_audit_insert;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tamper.orders ENABLE REPLICA TRIGGER tenant_guard_audit_update;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tamper.orders ENABLE ALWAYS TRIGGER tenant_guard_audit_delete;
\echo :LAST_ERROR_SQLSTATE
ALTER TRIGGER tenant_guard_audit_insert ON tamper.orders RENAME TO renamed;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER tenant_guard_truncate_guard ON tamper.orders;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER tenant_guard_audit_delete ON tamper.orders;
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION tamper.nothing() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER tenant_guard_audit_extra AFTER INSERT ON tamper.orders
    FOR EACH STATEMENT EXECUTE FUNCTION tamper.nothing();
\echo :LAST_ERROR_SQLSTATE
-- (the trigger functions are not executable by PUBLIC: attached by hand they could forge rows)
CREATE TRIGGER forged AFTER INSERT ON tamper.orders REFERENCING NEW TABLE AS tenant_guard_new
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.audit_trigger();
\echo :LAST_ERROR_SQLSTATE
-- (nor tied to another extension, whose drop would take them along)
ALTER TRIGGER tenant_guard_truncate_guard ON tamper.orders DEPENDS ON EXTENSION plpgsql;
\echo :LAST_ERROR_SQLSTATE
-- (the owner's own triggers are the owner's business)
CREATE TRIGGER mine AFTER INSERT ON tamper.orders FOR EACH STATEMENT EXECUTE FUNCTION tamper.nothing();
ALTER TABLE tamper.orders DISABLE TRIGGER mine;
DROP TRIGGER mine ON tamper.orders;
-- ... no rule can rewrite statements on it ...
CREATE RULE no_deletes AS ON DELETE TO tamper.orders DO INSTEAD NOTHING;
\echo :LAST_ERROR_SQLSTATE
-- ... the tenant column's default stays the context ...
ALTER TABLE tamper.orders ALTER COLUMN tenant_id DROP DEFAULT;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tamper.orders ALTER COLUMN tenant_id SET DEFAULT 'acme';
\echo :LAST_ERROR_SQLSTATE
-- ... cannot be retyped (PostgreSQL itself: policies depend on it) ...
ALTER TABLE tamper.orders ALTER COLUMN tenant_id TYPE varchar;
\echo :LAST_ERROR_SQLSTATE
-- ... and the table cannot inherit from a table that would read its rows without its policies
-- (a scan of a parent applies only the parent's policies).
CREATE TABLE tamper.p (id bigint, item text);
GRANT SELECT ON tamper.p TO tg_reader;
ALTER TABLE tamper.orders INHERIT tamper.p;
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE tamper.orders_too (tenant_id text NOT NULL) INHERITS (tamper.p);
\echo :LAST_ERROR_SQLSTATE
SELECT to_regclass('tamper.orders_too') IS NULL AS not_created;
CREATE TABLE tamper.orders_two_parents () INHERITS (tamper.orders, tamper.p);
\echo :LAST_ERROR_SQLSTATE
-- ... it cannot become a typed table (whose columns are renamed through its type) ...
CREATE TYPE tamper.order_row AS (id bigint, tenant_id text, item text);
ALTER TABLE tamper.orders OF tamper.order_row;
\echo :LAST_ERROR_SQLSTATE
-- ... and a partition made inside CREATE SCHEMA is protected like any other.
CREATE TABLE tamper.by_day (tenant_id text NOT NULL, day date NOT NULL) PARTITION BY RANGE (day);
\c - postgres
CREATE SCHEMA tamper_side AUTHORIZATION tg_owner
    CREATE TABLE by_day_2026 PARTITION OF tamper.by_day FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT registered FROM tg_test.protection('tamper_side.by_day_2026');
DROP SCHEMA tamper_side CASCADE;
\c - tg_owner

-- Nothing of it took effect.
SELECT * FROM tg_test.protection('tamper.orders');
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'tamper.orders'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT rulename FROM pg_rules WHERE schemaname = 'tamper';
SELECT count(*) AS rows_without_context FROM tamper.orders;
\echo :LAST_ERROR_SQLSTATE
\c - tg_reader
SELECT count(*) AS parent_rows FROM tamper.p;
BEGIN;
SELECT tenant_guard.set_tenant_context('globex') IS NOT NULL AS set;
SELECT item FROM tamper.orders;
COMMIT;

-- A superuser is refused too; one who really wants it disables the event triggers, which is
-- visible (and what the self-check looks for).
\c - postgres
ALTER TABLE tamper.orders NO FORCE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
DROP POLICY tenant_guard_isolation ON tamper.orders;
\echo :LAST_ERROR_SQLSTATE

-- Renaming the tenant column is allowed: the registry follows it, and so do the policies.
\c - tg_owner
ALTER TABLE tamper.orders RENAME COLUMN tenant_id TO org;
SELECT tenant_column FROM tenant_guard.protected_tables WHERE relid = 'tamper.orders'::regclass;
SELECT * FROM tg_test.protection('tamper.orders', 'org');
SELECT tenant_guard.enable_tenant_rls('tamper.orders', 'org');
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO tamper.orders (item) VALUES ('acme-after-rename');
SELECT org, item FROM tamper.orders ORDER BY id;
COMMIT;
\c - tg_owner
ALTER TABLE tamper.orders RENAME COLUMN org TO tenant_id;

-- Inheritance: a child created under a protected parent is protected through it, and can be
-- read directly only as its tenant.
CREATE TABLE tamper.orders_archive (archived_at date) INHERITS (tamper.orders);
SELECT relid, parent, protected_via FROM tenant_guard.protected_tables
 WHERE relid::text LIKE 'tamper.%' ORDER BY relid::text;
SELECT * FROM tg_test.protection('tamper.orders_archive');
-- A table that joins later is protected too, and a protected parent is not a way around it.
CREATE TABLE tamper.orders_more (id bigint NOT NULL, tenant_id text NOT NULL, item text);
SELECT tenant_guard.exclude_table('tamper.orders_more');
ALTER TABLE tamper.orders_more INHERIT tamper.orders;
SELECT registered FROM tg_test.protection('tamper.orders_more');
SELECT tenant_guard.disable_tenant_rls('tamper.orders_more');
\echo :LAST_ERROR_SQLSTATE
-- NO INHERIT: the child stays protected, on its own.
ALTER TABLE tamper.orders_more NO INHERIT tamper.orders;
SELECT registered FROM tg_test.protection('tamper.orders_more');
SELECT tenant_guard.disable_tenant_rls('tamper.orders_more');
SELECT registered FROM tg_test.protection('tamper.orders_more');

-- Partitions: created with row_security off by a role that does not bypass row level security,
-- a partition of a protected table is still protected (and so is a new table with the column).
CREATE TABLE tamper.events (tenant_id bigint NOT NULL, at date NOT NULL, v int) PARTITION BY RANGE (at);
SET row_security = off;
CREATE TABLE tamper.events_2026 PARTITION OF tamper.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE tamper.loose (tenant_id text);
RESET row_security;
SELECT registered FROM tg_test.protection('tamper.events_2026');
SELECT registered FROM tg_test.protection('tamper.loose');
-- DETACH PARTITION leaves the detached table protected, audited and registered on its own.
SELECT tenant_guard.enable_tenant_audit('tamper.events', hash_chain => false);
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tamper.events ADD PRIMARY KEY (tenant_id, at);
SELECT tenant_guard.enable_tenant_audit('tamper.events', hash_chain => false);
ALTER TABLE tamper.events DETACH PARTITION tamper.events_2026;
SELECT * FROM tg_test.protection('tamper.events_2026');
SELECT relid, parent FROM tenant_guard.audited_tables WHERE relid::text LIKE 'tamper.events%' ORDER BY 1;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('7') IS NOT NULL AS set;
INSERT INTO tamper.events_2026 (at, v) VALUES ('2026-05-01', 1);
SELECT tenant_id, v FROM tamper.events_2026;
SELECT table_name, tenant_id, op FROM tenant_guard.audit_log WHERE table_name = 'events_2026';
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('8') IS NOT NULL AS set;
SELECT count(*) AS other_tenant_sees FROM tamper.events_2026;
COMMIT;
-- Attaching a protected table to a parent that is not protected the same way is refused.
\c - tg_owner
SELECT tenant_guard.exclude_table('tamper.events');
ALTER TABLE tamper.events ATTACH PARTITION tamper.events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS still_detached FROM pg_inherits WHERE inhrelid = 'tamper.events_2026'::regclass;

-- A restore re-creates policies and triggers one by one: re-creating exactly what tenant_guard
-- generates is accepted, anything else is not. (Here a superuser drops them with the guard off,
-- as a database without them would be.)
\c - postgres
ALTER EVENT TRIGGER tenant_guard_forget_dropped_tables DISABLE;
DROP POLICY tenant_guard_fence ON tamper.orders;
DROP TRIGGER tenant_guard_truncate_guard ON tamper.orders;
ALTER EVENT TRIGGER tenant_guard_forget_dropped_tables ENABLE;
CREATE POLICY tenant_guard_fence ON tamper.orders AS RESTRICTIVE FOR ALL TO PUBLIC USING (true);
\echo :LAST_ERROR_SQLSTATE
CREATE POLICY tenant_guard_fence ON tamper.orders AS RESTRICTIVE FOR ALL TO PUBLIC
    USING (tenant_id = (SELECT tenant_guard.required_tenant_id('tamper.orders'::regclass, NULL::text)))
    WITH CHECK (tenant_id = (SELECT tenant_guard.required_tenant_id('tamper.orders'::regclass, NULL::text)));
CREATE TRIGGER tenant_guard_truncate_guard AFTER TRUNCATE ON tamper.orders
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.truncate_guard();
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER tenant_guard_truncate_guard BEFORE TRUNCATE ON tamper.orders
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.truncate_guard();
SELECT * FROM tg_test.protection('tamper.orders');

-- A tenant column with a nondeterministic collation is refused: 'acme' and 'ACME' would match.
\c - postgres
CREATE COLLATION tamper.case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
\c - tg_owner
CREATE TABLE tamper.loose_collation (tenant_id text COLLATE tamper.case_insensitive);
\echo :LAST_ERROR_SQLSTATE
SELECT to_regclass('tamper.loose_collation') IS NULL AS not_created;

-- Foreign keys between protected tables that leave out the tenant column are reported: their
-- checks bypass row level security.
\c - tg_owner
CREATE TABLE tamper.customers (id bigint PRIMARY KEY, tenant_id text NOT NULL, UNIQUE (tenant_id, id));
CREATE TABLE tamper.invoices (id bigint PRIMARY KEY, tenant_id text NOT NULL,
                              customer_id bigint REFERENCES tamper.customers (id),
                              FOREIGN KEY (tenant_id, customer_id) REFERENCES tamper.customers (tenant_id, id));
-- (Validating a new foreign key of a table whose owner is subject to forced row level
-- security runs as the owner, under the policies: it needs a role that bypasses them.)
\c - postgres
ALTER TABLE tamper.invoices ADD CONSTRAINT unscoped FOREIGN KEY (customer_id) REFERENCES tamper.customers (id);
\c - tg_owner
SELECT tenant_guard.enable_tenant_rls('tamper.invoices');

\c - postgres
DROP SCHEMA tamper CASCADE;
SELECT count(*) AS left_in_registry FROM tenant_guard.protected_tables WHERE relid::text LIKE 'tamper.%';
