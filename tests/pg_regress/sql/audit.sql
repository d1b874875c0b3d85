-- Audit: what every operation writes to tenant_guard.audit_log, who can read and change it,
-- how values are rendered (and that no code of the table owner's runs while they are), the
-- hash chain and its anchor, and bad input. The audited table is protected too; DML runs as the
-- app role.
\c - tg_owner
CREATE TABLE app.payments (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL,
    customer    text NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    card_number text,
    updated_at  timestamptz NOT NULL DEFAULT '2026-01-01 00:00+00'
);
SELECT tenant_guard.enable_tenant_audit('app.payments', exclude_columns => '{updated_at}', redact_columns => '{card_number}');
-- Idempotent, and listed with its options.
SELECT tenant_guard.enable_tenant_audit('app.payments', exclude_columns => '{updated_at}', redact_columns => '{card_number}');
SELECT relid, exclude_columns, redact_columns, hash_chain, primary_key, parent, enabled_by FROM tenant_guard.audited_tables;
SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'app.payments'::regclass AND tgname LIKE 'tenant_guard_audit%' ORDER BY tgname;

-- Every operation, as the app role, with a full context. Whole audit rows are compared (id and
-- time aside; the transaction is checked against the writer's own).
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'alice', 'clerk', 'trace-a1') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount, card_number)
VALUES ('c1', 10.00, '4111111111111111'), ('c2', 20.00, NULL), ('c3', 30.00, '5555555555554444');
UPDATE app.payments SET amount = 11.00, card_number = '4000056655665556' WHERE customer = 'c1';
UPDATE app.payments SET updated_at = '2026-02-01 00:00+00';  -- excluded column only: nothing logged
UPDATE app.payments SET amount = amount WHERE customer = 'c2';  -- no change: nothing logged
DELETE FROM app.payments WHERE customer = 'c3';
SELECT op, tenant_id, user_id, tenant_role, trace_id, db_role, schema_name, table_name,
       table_oid = 'app.payments'::regclass AS right_oid, txid = pg_current_xact_id() AS this_txid,
       occurred_at BETWEEN now() AND statement_timestamp() AS timed, pk, old_row, new_row
  FROM tenant_guard.audit_log ORDER BY id;
COMMIT;

-- Tenant B writes too; each tenant reads only its own audit rows, through the normal path.
BEGIN;
SELECT tenant_guard.set_tenant_context('globex', 'bob') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount) VALUES ('g1', 5.00);
SELECT tenant_id, op, new_row ->> 'customer' AS customer FROM tenant_guard.audit_log ORDER BY id;
SELECT count(*) AS acme_rows_visible_to_globex FROM tenant_guard.audit_log WHERE tenant_id = 'acme';
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT count(*) AS acme_rows, count(*) FILTER (WHERE tenant_id <> 'acme') AS others FROM tenant_guard.audit_log;
COMMIT;
-- Without a context: 42501, as for any protected table.
SELECT count(*) FROM tenant_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE

-- Redacted values never appear anywhere in the log (as the superuser, who sees every row).
\c - postgres
SELECT count(*) AS rows_with_a_card_number FROM tenant_guard.audit_log
 WHERE audit_log::text ~ '4111111111111111|5555555555554444|4000056655665556';
SELECT count(*) AS redaction_markers FROM tenant_guard.audit_log WHERE audit_log::text LIKE '%[redacted]%';

-- A superuser's change to tenant A's rows is logged under tenant A: it is A's data.
UPDATE app.payments SET amount = 12.00 WHERE customer = 'c1';
SELECT tenant_id, user_id, db_role, op, old_row, new_row FROM tenant_guard.audit_log ORDER BY id DESC LIMIT 1;
-- TRUNCATE (allowed only to roles RLS does not apply to) is logged as one event.
\c - tg_ops
BEGIN;
TRUNCATE app.payments;
SELECT op, tenant_id, db_role, pk, old_row, new_row FROM tenant_guard.audit_log WHERE op = 'TRUNCATE';
ROLLBACK;

-- A role reads an audit row only if it may SELECT the table the row is about (schema USAGE and
-- table-level SELECT: column privileges do not cover a whole row image), and only in its tenant.
\c - postgres
CREATE ROLE tg_auditor NOSUPERUSER NOBYPASSRLS;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO tg_auditor;
SET ROLE tg_auditor;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT count(*) AS without_select_on_payments FROM tenant_guard.audit_log;
COMMIT;
RESET ROLE;
GRANT USAGE ON SCHEMA app TO tg_auditor;
GRANT SELECT (id, customer) ON app.payments TO tg_auditor;
SET ROLE tg_auditor;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT count(*) AS with_column_privileges_only FROM tenant_guard.audit_log;
COMMIT;
RESET ROLE;
GRANT SELECT ON app.payments TO tg_auditor;
SET ROLE tg_auditor;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT count(*) AS with_select, count(*) FILTER (WHERE tenant_id <> 'acme') AS other_tenants
  FROM tenant_guard.audit_log;
COMMIT;
RESET ROLE;
REVOKE ALL ON app.payments FROM tg_auditor;
REVOKE USAGE ON SCHEMA app FROM tg_auditor;

-- UPDATE pairs each row's old and new version by row identity, even when the primary key
-- itself changes.
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('pairs') IS NOT NULL AS set;
INSERT INTO app.payments (id, customer, amount) SELECT g, 'pair-' || g, g FROM generate_series(9001, 9050) g;
UPDATE app.payments SET id = id + 1000, amount = amount * 2 WHERE customer LIKE 'pair-%';
SELECT count(*) AS updates,
       count(*) FILTER (WHERE (new_row ->> 'id')::int = (pk ->> 'id')::int + 1000
                          AND (new_row ->> 'amount')::numeric = 2 * (old_row ->> 'amount')::numeric
                          AND (old_row ->> 'id')::int = (pk ->> 'id')::int) AS paired_right
  FROM tenant_guard.audit_log WHERE tenant_id = 'pairs' AND op = 'UPDATE';
ROLLBACK;

-- Values are rendered as to_jsonb() renders the built-in types (numbers, booleans, ISO dates and
-- timestamps, nested json, arrays, composites), without calling any cast.
\c - tg_owner
CREATE TYPE app.money_pair AS (amount numeric, currency text);
CREATE TABLE app.kinds (
    id bigint PRIMARY KEY, tenant_id text NOT NULL, i2 smallint, i4 integer, i8 bigint,
    n numeric, n_nan numeric, f4 real, f8 double precision, f_inf double precision, b boolean,
    d date, ts timestamp, tstz timestamptz, t time, iv interval, j json, jb jsonb, j_scalar json,
    jb_scalar jsonb, arr int[], arr2 text[], arr_empty int[], arr_nulls int[], pair app.money_pair,
    r int4range, u uuid, by bytea, ip inet, c char(3), v varchar(5), nm name, x xml
);
SELECT tenant_guard.enable_tenant_audit('app.kinds');
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('kinds') IS NOT NULL AS set;
INSERT INTO app.kinds VALUES (
    1, 'kinds', 2, 4, 8, 1.50, 'NaN', 1.25, 0.1, '-Infinity', true, '2026-01-02', '2026-01-02 03:04:05.678',
    '2026-01-02 03:04:05+00', '12:34', '1 day 2 hours', '{"b": [1, {"c": null}]}', '{"a": "x"}', '5', '"s"',
    '{1,2,3}', '{{a,b},{c,"d e"}}', '{}', '{1,NULL}', '(9.99,EUR)', '[1,10)', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '\xdeadbeef', '10.0.0.1/8', 'ab', 'vc', 'a name', '<x>1</x>');
INSERT INTO app.kinds (id) VALUES (2);
COMMIT;
\c - postgres
SELECT k.id, l.new_row = to_jsonb(k) AS same_as_to_jsonb
  FROM app.kinds k JOIN tenant_guard.audit_log l ON l.table_name = 'kinds' AND (l.pk ->> 'id')::bigint = k.id
 ORDER BY k.id;
SELECT new_row FROM tenant_guard.audit_log WHERE table_name = 'kinds' AND pk = '{"id": 1}';

-- A user-defined cast to json is never called: not for an enum, a domain over it, a composite
-- type or an array of the enum. to_jsonb() would call it, and the audit row is written as the
-- extension owner (a superuser); the table's owner defines the types and the casts.
\c - tg_owner
CREATE TYPE app.status AS ENUM ('open', 'paid');
CREATE DOMAIN app.status_domain AS app.status;
CREATE TYPE app.address AS (street text, city text);
CREATE FUNCTION app.escalate(app.status) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'cast function called as %', current_user;
    ALTER ROLE tg_owner SUPERUSER;
    RETURN '"escalated"'::json;
END
$$;
CREATE FUNCTION app.escalate_address(app.address) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'cast function called as %', current_user;
    ALTER ROLE tg_owner SUPERUSER;
    RETURN '"escalated"'::json;
END
$$;
CREATE CAST (app.status AS json) WITH FUNCTION app.escalate(app.status);
CREATE CAST (app.address AS json) WITH FUNCTION app.escalate_address(app.address);
CREATE TABLE app.bills (id bigserial PRIMARY KEY, tenant_id text NOT NULL, status app.status,
                        status_domain app.status_domain, address app.address, history app.status[]);
SELECT tenant_guard.enable_tenant_audit('app.bills');
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app.bills (status, status_domain, address, history)
VALUES ('open', 'paid', ROW('Main St 1', 'Springfield'), '{open,paid}');
UPDATE app.bills SET status = 'paid', history = '{open,paid,paid}';
SELECT op, new_row FROM tenant_guard.audit_log WHERE table_name = 'bills' ORDER BY id;
COMMIT;
\c - postgres
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'tg_owner';
-- The same row through to_jsonb(), as the old audit statement rendered it: the cast runs (as the
-- caller here, so it fails: permission denied). That is what ran as the superuser.
\c - tg_owner
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT to_jsonb(b) FROM app.bills b;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
\c - postgres
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'tg_owner';

-- Append-only: the app role and the audited table's owner cannot change or remove audit rows ...
\c - tg_app
UPDATE tenant_guard.audit_log SET user_id = 'mallory';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM tenant_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE tenant_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO tenant_guard.audit_log (occurred_at, txid, db_role, schema_name, table_name, table_oid, op)
VALUES (now(), pg_current_xact_id(), 'x', 'x', 'x', 0, 'INSERT');
\echo :LAST_ERROR_SQLSTATE
\c - tg_owner
DELETE FROM tenant_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
-- ... nor can a role that was granted the privileges by mistake.
\c - postgres
GRANT UPDATE, DELETE, TRUNCATE ON tenant_guard.audit_log TO tg_ops;
\c - tg_ops
DELETE FROM tenant_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE tenant_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
REVOKE UPDATE, DELETE, TRUNCATE ON tenant_guard.audit_log FROM tg_ops;

-- No change without its audit row: when the audit insert fails, the change fails with it.
CREATE FUNCTION tg_test.refuse() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN IF NEW.new_row ->> 'customer' = 'refused' THEN RAISE EXCEPTION 'audit insert refused'; END IF; RETURN NEW; END$$;
CREATE TRIGGER refuse BEFORE INSERT ON tenant_guard.audit_log FOR EACH ROW EXECUTE FUNCTION tg_test.refuse();
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount) VALUES ('refused', 1.00);
\echo :LAST_ERROR_SQLSTATE
COMMIT;
\c - postgres
SELECT count(*) AS refused_rows FROM app.payments WHERE customer = 'refused';
SELECT count(*) AS refused_audit_rows FROM tenant_guard.audit_log WHERE new_row ->> 'customer' = 'refused';
DROP TRIGGER refuse ON tenant_guard.audit_log;
DROP FUNCTION tg_test.refuse();
-- No audit row without its change: a change that fails later (here at COMMIT) takes its audit
-- rows with it.
ALTER TABLE app.payments ADD CONSTRAINT small_amounts CHECK (amount < 1000) NOT VALID;
ALTER TABLE app.payments ADD CONSTRAINT one_per_customer UNIQUE (tenant_id, customer) DEFERRABLE INITIALLY DEFERRED;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount) VALUES ('dup', 1.00), ('dup', 2.00);
COMMIT;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT count(*) AS dup_rows, (SELECT count(*) FROM tenant_guard.audit_log WHERE new_row ->> 'customer' = 'dup') AS dup_audit_rows
  FROM app.payments WHERE customer = 'dup';
ALTER TABLE app.payments DROP CONSTRAINT small_amounts, DROP CONSTRAINT one_per_customer;

-- Bulk: one INSERT ... SELECT of 10,000 rows writes 10,000 audit rows.
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('bulk') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount, card_number)
SELECT 'bulk-' || g, g / 100.0, '4111111111111111' FROM generate_series(1, 10000) g;
SELECT count(*) AS audit_rows, count(DISTINCT pk) AS distinct_keys,
       count(*) FILTER (WHERE new_row ->> 'card_number' = '[redacted]') AS redacted
  FROM tenant_guard.audit_log WHERE tenant_id = 'bulk';
COMMIT;

-- Nothing the caller defines is picked up by what tenant_guard runs: not an operator or a
-- function in a schema first on the search_path (for jsonb, text or oid, as catalog lookups and
-- audit statements would use), not under a search_path that puts pg_catalog last.
\c - postgres
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION evil.hijack(jsonb, jsonb) RETURNS jsonb LANGUAGE plpgsql AS
$$BEGIN RAISE NOTICE 'evil jsonb operator called'; RETURN '{"hijacked": true}'::jsonb; END$$;
CREATE OPERATOR evil.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = evil.hijack);
CREATE FUNCTION evil.oid_eq(oid, oid) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN RAISE NOTICE 'evil oid = called'; RETURN true; END$$;
CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.oid_eq);
CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN RAISE NOTICE 'evil text = called'; RETURN true; END$$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS
$$BEGIN RAISE NOTICE 'evil to_jsonb called'; RETURN '{}'::jsonb; END$$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
$$BEGIN RAISE NOTICE 'evil now called'; RETURN 'epoch'; END$$;
-- (The test's own statements under that path spell their operators out.)
\c - tg_app
SET search_path = evil, pg_catalog, public;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount, card_number) VALUES ('search-path', 1.00, '4111111111111111');
UPDATE app.payments SET amount = 2.00 WHERE customer OPERATOR(pg_catalog.=) 'search-path';
RESET search_path;
SELECT op, old_row, new_row FROM tenant_guard.audit_log
 WHERE pk IN (SELECT pk FROM tenant_guard.audit_log WHERE new_row ->> 'customer' = 'search-path') ORDER BY id;
COMMIT;
\c - tg_owner
SET search_path = evil, pg_catalog, public;
CREATE TABLE app.search_path_check (id int PRIMARY KEY, tenant_id text);
SELECT tenant_guard.enable_tenant_audit('app.search_path_check');
ALTER TABLE app.search_path_check NO FORCE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
RESET search_path;
SELECT * FROM tg_test.protection('app.search_path_check');
DROP TABLE app.search_path_check;
\c - postgres
DROP SCHEMA evil CASCADE;

-- Excluded and redacted columns cannot be renamed or dropped behind the audit's back (fail
-- closed) ...
\c - tg_owner
ALTER TABLE app.payments RENAME COLUMN card_number TO pan;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE app.payments DROP COLUMN updated_at;
\echo :LAST_ERROR_SQLSTATE
-- ... but can, in one transaction, with the settings changed around them.
BEGIN;
SELECT tenant_guard.enable_tenant_audit('app.payments', exclude_columns => '{updated_at}');
ALTER TABLE app.payments RENAME COLUMN card_number TO pan;
SELECT tenant_guard.enable_tenant_audit('app.payments', exclude_columns => '{updated_at}', redact_columns => '{pan}');
COMMIT;
SELECT redact_columns FROM tenant_guard.audited_tables WHERE relid = 'app.payments'::regclass;
-- Other DDL re-plans the audit statement: a new column is logged from then on.
ALTER TABLE app.payments ADD COLUMN note text;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount, pan, note) VALUES ('after-ddl', 1.00, '4111111111111111', 'new column');
SELECT new_row FROM tenant_guard.audit_log WHERE new_row ->> 'customer' = 'after-ddl';
COMMIT;

-- Partitioned tables: statements on the parent and on a partition are audited once each, and
-- new partitions are audited.
\c - tg_owner
CREATE TABLE app.ledger (id bigint, tenant_id text NOT NULL, at date NOT NULL, amount int,
                         PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE app.ledger_2026 PARTITION OF app.ledger FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT tenant_guard.enable_tenant_audit('app.ledger');
CREATE TABLE app.ledger_2027 PARTITION OF app.ledger FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT relid, parent FROM tenant_guard.audited_tables WHERE relid::text LIKE 'app.ledger%' ORDER BY relid::text;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app.ledger VALUES (1, 'acme', '2026-05-01', 10), (2, 'acme', '2027-05-01', 20);
INSERT INTO app.ledger_2027 VALUES (3, 'acme', '2027-06-01', 30);
SELECT table_name, op, pk FROM tenant_guard.audit_log WHERE table_name LIKE 'ledger%' ORDER BY id;
COMMIT;
\c - tg_owner
SELECT tenant_guard.disable_tenant_audit('app.ledger_2027');
\echo :LAST_ERROR_SQLSTATE

-- Two ways into the log, the same rows: directly (heap and indexes, as COPY writes them) while
-- the log is as tenant_guard created it, and through one INSERT ... SELECT once a superuser has
-- attached something to it (here a statement trigger), so that what they attached runs.
\c - postgres
CREATE TABLE tg_test.log_inserts (audit_rows bigint);
CREATE FUNCTION tg_test.count_log_inserts() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN INSERT INTO tg_test.log_inserts SELECT count(*) FROM inserted; RETURN NULL; END$$;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('paths', 'alice', 'clerk', 'trace-p') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount) VALUES ('direct-1', 1.00), ('direct-2', 2.00);
UPDATE app.payments SET amount = amount * 10 WHERE customer LIKE 'direct-%';
DELETE FROM app.payments WHERE customer = 'direct-2';
COMMIT;
\c - postgres
SELECT max(id) AS direct_last FROM tenant_guard.audit_log \gset
CREATE TRIGGER count_log_inserts AFTER INSERT ON tenant_guard.audit_log REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION tg_test.count_log_inserts();
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('paths', 'alice', 'clerk', 'trace-p') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount) VALUES ('sql-1', 1.00), ('sql-2', 2.00);
UPDATE app.payments SET amount = amount * 10 WHERE customer LIKE 'sql-%';
DELETE FROM app.payments WHERE customer = 'sql-2';
COMMIT;
\c - postgres
DROP TRIGGER count_log_inserts ON tenant_guard.audit_log;
SELECT audit_rows FROM tg_test.log_inserts;  -- the SQL path ran the trigger, once per statement
WITH logged AS (
    SELECT id <= :direct_last AS direct, row_number() OVER (PARTITION BY id <= :direct_last ORDER BY id) AS n,
           op, tenant_id, user_id, tenant_role, trace_id, db_role, schema_name, table_name, table_oid,
           chain_seq IS NOT NULL AS chained,
           regexp_replace(replace(replace(concat_ws(' | ', pk, old_row, new_row), 'direct-', 'x-'), 'sql-', 'x-'),
                          '"id": [0-9]+', '"id": N', 'g') AS images
      FROM tenant_guard.audit_log WHERE tenant_id = 'paths')
SELECT count(*) FILTER (WHERE direct) AS direct_rows, count(*) FILTER (WHERE NOT direct) AS sql_rows,
       (SELECT count(*) FROM (SELECT n, op, tenant_id, user_id, tenant_role, trace_id, db_role, schema_name, table_name,
                                     table_oid, chained, images FROM logged WHERE direct
                              EXCEPT
                              SELECT n, op, tenant_id, user_id, tenant_role, trace_id, db_role, schema_name, table_name,
                                     table_oid, chained, images FROM logged WHERE NOT direct) d) AS differing_rows
  FROM logged;
SELECT * FROM tenant_guard.verify_audit_chain('paths');
-- ids follow the order rows were written in, on both paths.
SELECT bool_and(id > prev) AS ids_increase FROM (
    SELECT id, lag(id, 1, 0::bigint) OVER (ORDER BY chain_seq) AS prev FROM tenant_guard.audit_log WHERE tenant_id = 'paths') s;

-- The hash chain: every audited table chains by default (hash_chain => false opts a table out),
-- whoever writes: it is a property of the table's audit settings, not of a session.
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('chain-a') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount) SELECT 'chain-' || g, g FROM generate_series(1, 5) g;
UPDATE app.payments SET amount = amount + 1 WHERE customer IN ('chain-2', 'chain-4');
DELETE FROM app.payments WHERE customer = 'chain-5';
COMMIT;
BEGIN;
SELECT tenant_guard.set_tenant_context('chain-b') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount) VALUES ('chain-b1', 1);
COMMIT;
\c - postgres
-- A superuser's write (no context) chains too, under the row's tenant.
UPDATE app.payments SET amount = 100 WHERE customer = 'chain-1';
SELECT tenant_id, op, chain_seq, chain_prev = lag(chain_hash, 1, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                                  OVER (PARTITION BY tenant_id ORDER BY chain_seq) AS links
  FROM tenant_guard.audit_log WHERE tenant_id LIKE 'chain-%' ORDER BY tenant_id, chain_seq;
SELECT count(*) AS unchained_payments_rows FROM tenant_guard.audit_log
 WHERE chain_seq IS NULL AND table_name IN ('payments', 'ledger', 'ledger_2026', 'ledger_2027');
SELECT tenant_id, last_seq FROM tenant_guard.audit_chain_heads WHERE tenant_id LIKE 'chain-%' ORDER BY tenant_id;
SELECT * FROM tenant_guard.verify_audit_chain('chain-a');
SELECT * FROM tenant_guard.verify_audit_chain('chain-b');
SELECT * FROM tenant_guard.verify_audit_chain('no-such-tenant');
SELECT * FROM tenant_guard.verify_audit_chain('bulk');
-- One statement that writes rows of two tenants (a superuser's) links each to its own chain.
INSERT INTO app.payments (tenant_id, customer, amount)
SELECT t, t || '-' || g, g FROM (VALUES ('chain-x'), ('chain-y')) v(t), generate_series(1, 3) g;
SELECT tenant_id, count(*) AS rows, max(chain_seq) AS last_seq FROM tenant_guard.audit_log
 WHERE tenant_id IN ('chain-x', 'chain-y') GROUP BY 1 ORDER BY 1;
SELECT * FROM tenant_guard.verify_audit_chain('chain-x');
SELECT * FROM tenant_guard.verify_audit_chain('chain-y');
-- Tampering (by the extension owner, the only role that can) is found at the right row.
BEGIN;
UPDATE tenant_guard.audit_log SET new_row = new_row || '{"amount": 999}' WHERE tenant_id = 'chain-a' AND chain_seq = 3;
SELECT chain_seq, problem FROM tenant_guard.verify_audit_chain('chain-a');
ROLLBACK;
BEGIN;
DELETE FROM tenant_guard.audit_log WHERE tenant_id = 'chain-a' AND chain_seq = 2;
SELECT chain_seq, problem FROM tenant_guard.verify_audit_chain('chain-a');
ROLLBACK;
BEGIN;
DELETE FROM tenant_guard.audit_log WHERE tenant_id = 'chain-a' AND chain_seq = 9;
SELECT chain_seq, problem FROM tenant_guard.verify_audit_chain('chain-a');
ROLLBACK;
BEGIN;
UPDATE tenant_guard.audit_log SET chain_seq = CASE chain_seq WHEN 4 THEN 5 ELSE 4 END
 WHERE tenant_id = 'chain-a' AND chain_seq IN (4, 5);
SELECT chain_seq, problem FROM tenant_guard.verify_audit_chain('chain-a');
ROLLBACK;
BEGIN;
INSERT INTO tenant_guard.audit_log (occurred_at, txid, tenant_id, db_role, schema_name, table_name, table_oid, op,
                                    chain_seq, chain_prev, chain_hash)
SELECT occurred_at, txid, tenant_id, db_role, schema_name, table_name, table_oid, 'DELETE', chain_seq, chain_prev, chain_hash
  FROM tenant_guard.audit_log WHERE tenant_id = 'chain-a' AND chain_seq = 3;
SELECT chain_seq, problem FROM tenant_guard.verify_audit_chain('chain-a');
ROLLBACK;

BEGIN;
INSERT INTO tenant_guard.audit_log (occurred_at, txid, tenant_id, db_role, schema_name, table_name, table_oid, op, pk)
VALUES (now(), pg_current_xact_id(), 'chain-a', 'tg_app', 'app', 'payments', 'app.payments'::regclass, 'INSERT', '{"id": 1}');
SELECT chain_seq, problem FROM tenant_guard.verify_audit_chain('chain-a');
ROLLBACK;

-- The anchor: whoever can write the log can also rewrite the chain consistently, so the
-- operator keeps audit_chain_head() outside the database and verifies against it.
SELECT chain_seq AS anchored_seq, chain_hash AS anchored_hash FROM tenant_guard.audit_chain_head('chain-a') \gset
SELECT :anchored_seq AS anchored_seq, length(:'anchored_hash') AS hex_length;
SELECT * FROM tenant_guard.verify_audit_chain('chain-a', :anchored_seq, :'anchored_hash');
SELECT * FROM tenant_guard.audit_chain_head('no-such-tenant');
-- An external verifier can recompute every hash: the digest's encoding (docs/DESIGN.md), in SQL.
CREATE FUNCTION tg_test.field(value text) RETURNS bytea LANGUAGE sql IMMUTABLE
RETURN CASE WHEN value IS NULL THEN '\x00'::bytea
            ELSE '\x01'::bytea || int8send(octet_length(value)::bigint) || convert_to(value, 'UTF8') END;
CREATE FUNCTION tg_test.digest(l tenant_guard.audit_log) RETURNS bytea LANGUAGE sql STABLE
RETURN sha256(convert_to('tenant_guard audit row v1', 'UTF8') || '\x00'::bytea
              || int8send((extract(epoch FROM l.occurred_at - '2000-01-01 00:00:00+00') * 1000000)::bigint)
              || int8send(l.txid::text::bigint)
              || tg_test.field(l.tenant_id) || tg_test.field(l.user_id) || tg_test.field(l.tenant_role)
              || tg_test.field(l.trace_id) || tg_test.field(l.db_role) || tg_test.field(l.schema_name)
              || tg_test.field(l.table_name) || substring(int8send(l.table_oid::bigint) FROM 5)
              || tg_test.field(l.op) || tg_test.field(l.pk::text) || tg_test.field(l.old_row::text)
              || tg_test.field(l.new_row::text));
SELECT bool_and(chain_hash = sha256(chain_prev || int8send(chain_seq) || tg_test.digest(l))) AS recomputed
  FROM tenant_guard.audit_log l WHERE tenant_id = 'chain-a';
-- A consistent rewrite: alter row 3 and re-chain every row after it, and the head. The chain
-- alone verifies; against the anchor it does not.
BEGIN;
UPDATE tenant_guard.audit_log SET new_row = new_row || '{"amount": 999}' WHERE tenant_id = 'chain-a' AND chain_seq = 3;
DO $$
DECLARE r tenant_guard.audit_log; prev bytea;
BEGIN
    FOR r IN SELECT * FROM tenant_guard.audit_log l WHERE tenant_id = 'chain-a' ORDER BY chain_seq LOOP
        prev := COALESCE(prev, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
        UPDATE tenant_guard.audit_log SET chain_prev = prev,
               chain_hash = sha256(prev || int8send(r.chain_seq) || tg_test.digest(r))
         WHERE id = r.id RETURNING chain_hash INTO prev;
    END LOOP;
    UPDATE tenant_guard.audit_chain_heads SET last_hash = prev WHERE tenant_id = 'chain-a';
END
$$;
SELECT * FROM tenant_guard.verify_audit_chain('chain-a');
SELECT chain_seq, problem FROM tenant_guard.verify_audit_chain('chain-a', :anchored_seq, :'anchored_hash');
ROLLBACK;
-- Deleting a tenant's newest rows with its head, or all of them, verifies clean without the
-- anchor, and not with it.
BEGIN;
DELETE FROM tenant_guard.audit_log WHERE tenant_id = 'chain-a' AND chain_seq > 5;
UPDATE tenant_guard.audit_chain_heads h SET last_seq = 5, last_hash = l.chain_hash
  FROM tenant_guard.audit_log l WHERE h.tenant_id = 'chain-a' AND l.tenant_id = 'chain-a' AND l.chain_seq = 5;
SELECT * FROM tenant_guard.verify_audit_chain('chain-a');
SELECT chain_seq, problem FROM tenant_guard.verify_audit_chain('chain-a', :anchored_seq, :'anchored_hash');
ROLLBACK;
BEGIN;
DELETE FROM tenant_guard.audit_log WHERE tenant_id = 'chain-a';
DELETE FROM tenant_guard.audit_chain_heads WHERE tenant_id = 'chain-a';
SELECT * FROM tenant_guard.verify_audit_chain('chain-a');
SELECT chain_seq, problem FROM tenant_guard.verify_audit_chain('chain-a', :anchored_seq, :'anchored_hash');
ROLLBACK;
-- Rows written after the anchor keep verifying against it.
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('chain-a') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount) VALUES ('chain-6', 6);
COMMIT;
\c - postgres
SELECT * FROM tenant_guard.verify_audit_chain('chain-a', :anchored_seq, :'anchored_hash');
-- A bad anchor is a clear error.
SELECT * FROM tenant_guard.verify_audit_chain('chain-a', :anchored_seq, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM tenant_guard.verify_audit_chain('chain-a', 0, :'anchored_hash');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM tenant_guard.verify_audit_chain('chain-a', 1, '\x00');
\echo :LAST_ERROR_SQLSTATE
-- A table audited with hash_chain => false writes unchained rows.
\c - tg_owner
CREATE TABLE app.clicks (id bigserial PRIMARY KEY, tenant_id text NOT NULL, url text);
SELECT tenant_guard.enable_tenant_audit('app.clicks', hash_chain => false);
SELECT tenant_guard.enable_tenant_audit('app.clicks', hash_chain => NULL);
\echo :LAST_ERROR_SQLSTATE
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('chain-a') IS NOT NULL AS set;
INSERT INTO app.clicks (url) VALUES ('/a'), ('/b');
SELECT count(*) AS clicks, count(chain_seq) AS chained FROM tenant_guard.audit_log WHERE table_name = 'clicks';
COMMIT;
\c - postgres
SELECT * FROM tenant_guard.verify_audit_chain('chain-a', :anchored_seq, :'anchored_hash');
-- verify_audit_chain and audit_chain_head are not for PUBLIC.
\c - tg_app
SELECT * FROM tenant_guard.verify_audit_chain('chain-a');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM tenant_guard.audit_chain_head('chain-a');
\echo :LAST_ERROR_SQLSTATE

-- Bad input: a clear error with its SQLSTATE, and nothing changed.
\c - tg_owner
CREATE TABLE app.no_pk (tenant_id text, v int);
CREATE VIEW app.payments_view AS SELECT * FROM app.payments;
SELECT tenant_guard.enable_tenant_audit(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_audit('app.no_pk');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_audit('app.payments_view');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_audit('app.payments', exclude_columns => '{no_such_column}');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_audit('app.payments', redact_columns => '{"card_number; DROP TABLE app.payments"}');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_audit('app.payments', exclude_columns => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_audit('app.payments', redact_columns => ARRAY[NULL]::name[]);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_audit('app.payments', exclude_columns => '{note}', redact_columns => '{note}');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_audit('app.payments', redact_columns => '{id}');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.enable_tenant_audit('app.ledger_2026');
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.disable_tenant_audit(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.disable_tenant_audit('app.no_pk');
\c - tg_app
SELECT tenant_guard.enable_tenant_audit('app.payments');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
GRANT EXECUTE ON FUNCTION tenant_guard.enable_tenant_audit(regclass, name[], name[], boolean) TO tg_app;
\c - tg_app
SELECT tenant_guard.enable_tenant_audit('app.payments');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
REVOKE EXECUTE ON FUNCTION tenant_guard.enable_tenant_audit(regclass, name[], name[], boolean) FROM tg_app;
SELECT relid, exclude_columns, redact_columns FROM tenant_guard.audited_tables ORDER BY relid::text;

-- disable_tenant_audit removes the triggers and the settings; the audit rows stay.
\c - tg_owner
SELECT tenant_guard.disable_tenant_audit('app.ledger');
SELECT count(*) AS audit_triggers_left FROM pg_trigger WHERE tgname LIKE 'tenant_guard_audit%'
   AND tgrelid::regclass::text LIKE 'app.ledger%';
SELECT relid FROM tenant_guard.audited_tables ORDER BY relid::text;
\c - postgres
SELECT count(*) > 0 AS ledger_audit_rows_kept FROM tenant_guard.audit_log WHERE table_name LIKE 'ledger%';
-- Dropping an audited table forgets its settings; its audit rows stay.
\c - tg_owner
CREATE TABLE app.short_lived (id int PRIMARY KEY, tenant_id text);
SELECT tenant_guard.enable_tenant_audit('app.short_lived');
DROP TABLE app.short_lived;
SELECT count(*) AS dangling_audit_settings FROM tenant_guard.audit_config c
 WHERE NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = c.relid);
