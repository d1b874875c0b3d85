-- The example app: an agent's memory, shared by many tenants. Run as a superuser on an empty
-- database: psql -d <db> -f examples/agent_memory/schema.sql
-- The owner migrates; the application connects as memory_app and can only set a context with a
-- tenant API key (the verifying entry point), then save and list facts.
CREATE EXTENSION IF NOT EXISTS tenant_guard;
DO $$
BEGIN
    CREATE ROLE memory_owner NOLOGIN;
    CREATE ROLE memory_app LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;  -- roles are cluster-wide
END $$;
CREATE SCHEMA memory AUTHORIZATION memory_owner;
GRANT USAGE ON SCHEMA memory TO memory_app;
GRANT EXECUTE ON FUNCTION tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[]) TO memory_owner;
SET ROLE memory_owner;
CREATE TABLE memory.facts (
    tenant_id text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    subject text NOT NULL,
    fact text NOT NULL,
    saved_by text DEFAULT tenant_guard.current_user_id(),
    saved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ON memory.facts (tenant_id, subject);
SELECT tenant_guard.enable_tenant_rls('memory.facts', to_roles => ARRAY['memory_app']::regrole[]);
GRANT SELECT, INSERT ON memory.facts TO memory_app;
RESET ROLE;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_api_key(text, boolean) TO memory_app;
-- The tenants; their API keys are issued by an administrator and handed to the agents:
--   SELECT tenant_guard.issue_api_key('tenant-a', 'agent', '90 days', 'memory agent');
SELECT tenant_guard.add_tenant('tenant-a'), tenant_guard.add_tenant('tenant-b');
