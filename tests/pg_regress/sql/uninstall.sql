-- Dropping the extension never opens protected tables: without CASCADE it is refused (policies
-- and defaults depend on it); with CASCADE the policies go, FORCE stays, and the tables deny all.
\c - postgres
\set VERBOSITY terse
DROP EXTENSION tenant_guard;
\echo :LAST_ERROR_SQLSTATE
-- (How many objects go with it depends on the suites before: not shown.)
SET client_min_messages = warning;
DROP EXTENSION tenant_guard CASCADE;
RESET client_min_messages;
\set VERBOSITY default
SELECT relrowsecurity, relforcerowsecurity, (SELECT count(*) FROM pg_policy WHERE polrelid = 'app.invoices'::regclass) AS policies
  FROM pg_class WHERE oid = 'app.invoices'::regclass;
INSERT INTO app.invoices (tenant_id, amount, note) VALUES ('acme', 1, 'after uninstall');
\c - tg_app
SELECT count(*) AS visible_after_uninstall FROM app.invoices;
INSERT INTO app.invoices (tenant_id, amount) VALUES ('acme', 2);
\echo :LAST_ERROR_SQLSTATE
-- Reinstalling and protecting again restores the tenant view.
\c - postgres
CREATE EXTENSION tenant_guard;
SELECT tenant_guard.enable_tenant_rls('app.invoices');
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO tg_app;
\c - tg_app
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT tenant_id, note FROM app.invoices;
COMMIT;
