-- The agent's memory from psql: psql -v key_a=tgk_... -v key_b=tgk_... -f memory.sql
-- Each request is one transaction that first sets its tenant's context from the API key.
\set ON_ERROR_STOP 1
\set QUIET 1

-- tenant-a saves a fact.
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'key_a') \g /dev/null
INSERT INTO memory.facts (subject, fact) VALUES ('case-123', 'the customer prefers email');
COMMIT;

-- tenant-b lists the facts about case-123: none.
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'key_b') \g /dev/null
SELECT count(*) AS seen_by_b FROM memory.facts WHERE subject = 'case-123' \gset
COMMIT;

-- tenant-a lists them: its fact.
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:'key_a') \g /dev/null
SELECT count(*) AS seen_by_a FROM memory.facts WHERE subject = 'case-123' \gset
COMMIT;

SELECT format('DO $do$ BEGIN RAISE EXCEPTION %L; END $do$',
              format('tenant-b sees %s facts of tenant-a, tenant-a sees %s', :seen_by_b, :seen_by_a))
 WHERE :seen_by_b <> 0 OR :seen_by_a = 0 \gexec
\echo 'ok: tenant-b lists nothing for case-123; tenant-a lists' :seen_by_a
