-- The boring test: tenant A writes, tenant B reads through the normal path and gets nothing.
\c - tg_owner
CREATE TABLE app.invoices (id bigserial PRIMARY KEY, tenant_id text NOT NULL, amount numeric NOT NULL, note text);
SELECT * FROM tg_test.protection('app.invoices');

\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
INSERT INTO app.invoices (amount, note) VALUES (100, 'acme-1'), (200, 'acme-2') RETURNING tenant_id, amount, note;
COMMIT;

BEGIN;
SELECT tenant_guard.set_tenant_context('globex') IS NOT NULL AS set;
SELECT * FROM app.invoices;
SELECT count(*) FROM app.invoices WHERE note = 'acme-1';
WITH changed AS (UPDATE app.invoices SET amount = 0 RETURNING 1) SELECT count(*) AS updated FROM changed;
WITH changed AS (DELETE FROM app.invoices RETURNING 1) SELECT count(*) AS deleted FROM changed;
COPY app.invoices TO STDOUT;
SAVEPOINT s;
-- Cannot write a row for another tenant ...
INSERT INTO app.invoices (tenant_id, amount, note) VALUES ('acme', 1, 'planted');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
INSERT INTO app.invoices (amount, note) VALUES (5, 'globex-1') RETURNING tenant_id, note;
-- ... nor move its own row to another tenant ...
UPDATE app.invoices SET tenant_id = 'acme' WHERE note = 'globex-1';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
INSERT INTO app.invoices (amount, note) VALUES (5, 'globex-1');
-- ... nor reach the other tenant's rows through ON CONFLICT.
INSERT INTO app.invoices (id, amount, note) VALUES (1, 9, 'hijack') ON CONFLICT (id) DO UPDATE SET amount = 9;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
INSERT INTO app.invoices (amount, note) VALUES (5, 'globex-1');
SELECT tenant_id, amount, note FROM app.invoices ORDER BY id;
COMMIT;

-- Tenant A's rows are untouched and A does not see B's.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT tenant_id, amount, note FROM app.invoices ORDER BY id;
COMMIT;

-- Missing context, require_context on (the default): 42501 with a hint, for reads and writes.
SELECT count(*) FROM app.invoices;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO app.invoices (amount) VALUES (1);
\echo :LAST_ERROR_SQLSTATE
UPDATE app.invoices SET amount = 0;
\echo :LAST_ERROR_SQLSTATE
-- require_context off: zero rows, and writes still fail.
\c - postgres
ALTER ROLE tg_app SET tenant_guard.require_context = off;
\c - tg_app
SELECT count(*) AS rows_without_context FROM app.invoices;
INSERT INTO app.invoices (amount) VALUES (1);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO app.invoices (tenant_id, amount) VALUES ('acme', 1);
\echo :LAST_ERROR_SQLSTATE
WITH changed AS (DELETE FROM app.invoices RETURNING 1) SELECT count(*) AS deleted FROM changed;
\c - postgres
ALTER ROLE tg_app RESET tenant_guard.require_context;

-- The owner (not superuser) is subject to the policies too: FORCE ROW LEVEL SECURITY.
\c - tg_owner
SELECT count(*) FROM app.invoices;
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT tenant_guard.set_tenant_context('globex') IS NOT NULL AS set;
SELECT tenant_id, note FROM app.invoices ORDER BY id;
COMMIT;

-- A view without security_invoker runs as its owner; the owner is subject, so the view is
-- still filtered by the caller's context.
CREATE VIEW app.invoice_totals AS SELECT tenant_id, sum(amount) AS total FROM app.invoices GROUP BY tenant_id;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT * FROM app.invoice_totals;
COMMIT;

-- TRUNCATE bypasses RLS, so it is refused (42501) to every role RLS applies to ...
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
TRUNCATE app.invoices;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
\c - tg_owner
TRUNCATE app.invoices;
\echo :LAST_ERROR_SQLSTATE
-- ... and allowed to roles RLS does not apply to: BYPASSRLS, and superusers.
\c - tg_ops
BEGIN;
TRUNCATE app.invoices;
ROLLBACK;
\c - postgres
SELECT count(*) AS all_rows_as_superuser FROM app.invoices;
TRUNCATE app.invoices;
SELECT count(*) FROM app.invoices;
