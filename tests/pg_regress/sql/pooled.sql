-- Pooled connections: session state (WITH HOLD cursors, temporary tables, LISTEN) must not carry
-- one tenant's data to the next transaction on the connection. tests/client/test_pooling.py
-- runs the same through a real PgBouncer.
\c - tg_owner
CREATE TABLE app.pooled_notes (id bigserial PRIMARY KEY, tenant_id text NOT NULL, body text);
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app.pooled_notes (body) VALUES ('acme-note');
COMMIT;

-- 1. Under a transaction-local context, nothing that outlives the transaction can be created.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
DECLARE held CURSOR WITH HOLD FOR SELECT body FROM app.pooled_notes;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
LISTEN acme_events;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
CREATE TEMP TABLE copied AS SELECT body FROM app.pooled_notes;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT body INTO TEMP copied FROM app.pooled_notes;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
CREATE TABLE pg_temp.copied (body text);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
CREATE TEMP TABLE copied (body text) ON COMMIT DELETE ROWS;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Nor through a search_path that starts with pg_temp, EXPLAIN ANALYZE, or a sequence.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SET LOCAL search_path = pg_temp, app;
CREATE TABLE stash AS SELECT body FROM app.pooled_notes;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) CREATE TEMP TABLE stash AS SELECT body FROM app.pooled_notes;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
CREATE TEMP SEQUENCE stash;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- From PL/pgSQL too.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
DO $$BEGIN EXECUTE 'CREATE TEMP TABLE copied (body text)'; END$$;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- What ends with the transaction is fine: ON COMMIT DROP tables, cursors without HOLD.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
CREATE TEMP TABLE scratch (body text) ON COMMIT DROP;
INSERT INTO scratch SELECT body FROM app.pooled_notes;
DECLARE plain CURSOR FOR SELECT body FROM scratch;
FETCH ALL FROM plain;
COMMIT;
SELECT to_regclass('pg_temp.scratch') IS NULL AS dropped_at_commit;

-- 2. A connection that holds such state cannot take a transaction-local context: a temporary
-- table made with no context could be filled under acme and read by the next client.
CREATE TEMP TABLE left_behind (body text);
BEGIN;
SELECT tenant_guard.set_tenant_context('acme');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
DROP TABLE left_behind;
DECLARE left_open CURSOR WITH HOLD FOR SELECT 1;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
CLOSE left_open;
LISTEN left_listening;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
UNLISTEN *;
-- A LISTEN earlier in the same transaction counts, though it only registers at COMMIT.
BEGIN;
LISTEN same_transaction;
SELECT tenant_guard.set_tenant_context('acme');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS clean_again;
COMMIT;

-- 3. A session context may keep session state: it belongs to that tenant. When the session
-- stops acting for it, the state goes with the context.
SELECT tenant_guard.set_tenant_context('acme', is_local => false) IS NOT NULL AS set;
CREATE TEMP TABLE acme_copy AS SELECT body FROM app.pooled_notes;
DECLARE acme_cursor CURSOR WITH HOLD FOR SELECT body FROM app.pooled_notes;
LISTEN acme_events;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', trace_id => 't-1') IS NOT NULL AS same_tenant_locally;
SELECT body FROM acme_copy;
COMMIT;
SELECT count(*) AS session_state FROM pg_cursors;
SELECT tenant_guard.clear_tenant_context();
SELECT to_regclass('pg_temp.acme_copy') IS NULL AS temp_table_gone,
       (SELECT count(*) FROM pg_cursors) AS cursors_left,
       (SELECT count(*) FROM pg_listening_channels()) AS listening;
-- ... also when another tenant's session context replaces it ...
SELECT tenant_guard.set_tenant_context('acme', is_local => false) IS NOT NULL AS set;
CREATE TEMP TABLE acme_copy AS SELECT body FROM app.pooled_notes;
SELECT tenant_guard.set_tenant_context('globex', is_local => false) IS NOT NULL AS set;
SELECT to_regclass('pg_temp.acme_copy') IS NULL AS temp_table_gone;
-- ... or RESET ALL.
SELECT tenant_guard.clear_tenant_context();
SELECT tenant_guard.set_tenant_context('acme', is_local => false) IS NOT NULL AS set;
CREATE TEMP TABLE acme_copy AS SELECT body FROM app.pooled_notes;
DECLARE acme_cursor CURSOR WITH HOLD FOR SELECT body FROM app.pooled_notes;
RESET ALL;
SELECT tenant_guard.current_tenant_id() IS NULL AS no_context,
       to_regclass('pg_temp.acme_copy') IS NULL AS temp_table_gone,
       (SELECT count(*) FROM pg_cursors) AS cursors_left;
