-- Tenant A writes, tenant B reads through the normal path and gets nothing. pgTAP, run by
-- pg_prove:  pg_prove -d <db> -U agent_ci examples/testing/pgtap/isolation.sql
-- (needs CREATE EXTENSION pgtap in the database).
--
-- pgTAP keeps its state in temporary tables, and tenant_guard treats temporary tables as state a
-- tenant could leave on a connection for the next one: a connection that holds them takes no
-- transaction-local context, and switching session contexts drops them. So tenant-a's rows are
-- written before plan(), and the tests act for tenant-b with a session context.
\set ON_ERROR_STOP 1
BEGIN;
SELECT tenant_guard.set_tenant_context('tenant-a') \g /dev/null
INSERT INTO memory.facts (subject, fact) VALUES ('case-123', 'prefers email');
COMMIT;

SELECT plan(4);
SELECT lives_ok($$SELECT tenant_guard.set_tenant_context('tenant-b', is_local => false)$$,
                'act for tenant-b');
SELECT is((SELECT count(*) FROM memory.facts WHERE subject = 'case-123'), 0::bigint,
          'tenant-b sees none of tenant-a''s facts');
SELECT lives_ok($$INSERT INTO memory.facts (subject, fact) VALUES ('case-456', 'prefers phone')$$,
                'tenant-b saves a fact');
SELECT matches(tenant_guard.assert_tenant_isolation('memory.facts', 'agent_app'), '^isolated',
               'no read or write crosses tenants (assert_tenant_isolation)');
SELECT * FROM finish();
