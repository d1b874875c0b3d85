-- Audit: what every operation writes to tenant_guard.audit_log, who can read and change it,
-- the hash chain, and bad input. The audited table is protected too; DML runs as the app role.
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
SELECT relid, exclude_columns, redact_columns, primary_key, parent, enabled_by FROM tenant_guard.audited_tables;
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

-- The audit statement cannot be redirected by the caller's objects: an operator in a schema
-- first on the app role's search_path is not used (the trigger pins its search_path).
\c - postgres
CREATE SCHEMA evil;
CREATE FUNCTION evil.hijack(jsonb, jsonb) RETURNS jsonb LANGUAGE sql AS $$SELECT '{"hijacked": true}'::jsonb$$;
CREATE OPERATOR evil.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = evil.hijack);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
\c - tg_app
SET search_path = evil, pg_catalog, public;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app.payments (customer, amount, card_number) VALUES ('search-path', 1.00, '4111111111111111');
SELECT new_row FROM tenant_guard.audit_log WHERE new_row ->> 'customer' = 'search-path';
COMMIT;
RESET search_path;
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

-- The hash chain (superuser setting): each tenant's audit rows chain with SHA-256.
\c - postgres
ALTER ROLE tg_app SET tenant_guard.audit_hash_chain = on;
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
ALTER ROLE tg_app RESET tenant_guard.audit_hash_chain;
SELECT tenant_id, op, chain_seq, chain_prev = lag(chain_hash, 1, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                                  OVER (PARTITION BY tenant_id ORDER BY chain_seq) AS links
  FROM tenant_guard.audit_log WHERE chain_seq IS NOT NULL ORDER BY tenant_id, chain_seq;
SELECT tenant_id, last_seq FROM tenant_guard.audit_chain_heads ORDER BY tenant_id;
SELECT * FROM tenant_guard.verify_audit_chain('chain-a');
SELECT * FROM tenant_guard.verify_audit_chain('chain-b');
SELECT * FROM tenant_guard.verify_audit_chain('no-such-tenant');
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
DELETE FROM tenant_guard.audit_log WHERE tenant_id = 'chain-a' AND chain_seq = 8;
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
-- verify_audit_chain is not for PUBLIC.
\c - tg_app
SELECT * FROM tenant_guard.verify_audit_chain('chain-a');
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
GRANT EXECUTE ON FUNCTION tenant_guard.enable_tenant_audit(regclass, name[], name[]) TO tg_app;
\c - tg_app
SELECT tenant_guard.enable_tenant_audit('app.payments');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
REVOKE EXECUTE ON FUNCTION tenant_guard.enable_tenant_audit(regclass, name[], name[]) FROM tg_app;
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
