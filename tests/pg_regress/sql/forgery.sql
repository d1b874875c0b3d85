-- Forging a context with plain SQL. This cluster does not preload the library, so the first
-- part shows the placeholder path; the client tests repeat the checks with it preloaded.
\c - tg_owner
CREATE TABLE app.notes (id serial PRIMARY KEY, tenant_id text NOT NULL, body text);

-- Before the library is loaded in a session, SET only creates a placeholder. PostgreSQL
-- discards it (WARNING) when the library defines the superuser-only variable.
\c - tg_app
SET tenant_guard.tenant_id = 'globex';
SELECT tenant_guard.current_tenant_id() IS NULL AS placeholder_discarded;
SHOW tenant_guard.tenant_id;

-- The same inside a transaction, with the library loaded by the protected query itself.
\c - tg_app
BEGIN;
SELECT set_config('tenant_guard.tenant_id', 'globex', true);
SELECT count(*) FROM app.notes;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Once loaded, every route fails with 42501 and the context is unchanged.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'alice') IS NOT NULL AS set;
SAVEPOINT s;
SET tenant_guard.tenant_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SET LOCAL tenant_guard.tenant_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT set_config('tenant_guard.tenant_id', 'globex', false);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT set_config('tenant_guard.tenant_id', 'globex', true);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
RESET tenant_guard.tenant_id;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SET tenant_guard.user_id = 'mallory';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SET tenant_guard.tenant_role = 'owner';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SET tenant_guard.trace_id = 'forged';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
-- The tenant a transaction is bound to is no setting at all (not even a placeholder can be made).
SET tenant_guard.bound_tenant_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SET tenant_guard.require_context = off;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
-- A function with a SET clause, created by the app role.
CREATE FUNCTION pg_temp.as_globex() RETURNS text LANGUAGE sql
    SET tenant_guard.tenant_id = 'globex' AS 'SELECT tenant_guard.current_tenant_id()';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.tenant_context() AS unchanged;
COMMIT;

-- ALTER ROLE ... SET on itself, and ALTER DATABASE ... SET on a database it owns.
ALTER ROLE tg_app SET tenant_guard.tenant_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE tg_app IN DATABASE tg_app_db SET tenant_guard.tenant_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
ALTER DATABASE tg_app_db SET tenant_guard.tenant_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
-- The same before the library is loaded in the session: refused too.
\c - tg_app
ALTER ROLE tg_app SET tenant_guard.tenant_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS stored_role_settings FROM pg_db_role_setting WHERE 'tenant_guard.tenant_id=globex' = ANY (setconfig);

-- Operators get cross-tenant access from a BYPASSRLS role (visible, auditable), never a setting.
\c - tg_ops
SELECT tenant_guard.current_tenant_id() IS NULL AS loaded_and_unset;
SET tenant_guard.tenant_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
