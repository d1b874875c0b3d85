-- Tenant A writes, tenant B reads through the normal path and gets nothing. Plain psql:
--   psql -v ON_ERROR_STOP=1 -f examples/testing/psql/isolation.sql   (exit status 0 = isolated)
\set ON_ERROR_STOP 1
\set QUIET 1

BEGIN;
SELECT tenant_guard.set_tenant_context('tenant-a') \g /dev/null
INSERT INTO memory.facts (subject, fact) VALUES ('case-123', 'prefers email');
COMMIT;

BEGIN;
SELECT tenant_guard.set_tenant_context('tenant-b') \g /dev/null
INSERT INTO memory.facts (subject, fact) VALUES ('case-456', 'prefers phone');
SELECT count(*) AS leaked FROM memory.facts WHERE subject = 'case-123' \gset
COMMIT;

-- Fail (a raised error stops psql with exit status 3) unless tenant-b saw nothing.
SELECT format('DO $do$ BEGIN RAISE EXCEPTION %L; END $do$',
              'tenant-b sees ' || :leaked || ' of tenant-a''s facts')
 WHERE :leaked <> 0 \gexec

-- The helper tries every way across tenants (reads, INSERT, UPDATE, DELETE, TRUNCATE) and
-- raises if one works; it rolls all of it back.
SELECT tenant_guard.assert_tenant_isolation('memory.facts', 'agent_app') AS result \gset
\echo :result
\echo 'ok: tenant-b sees none of tenant-a''s facts'
