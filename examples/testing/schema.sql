-- The schema the four test paths run against: an agent's memory, one table, three roles.
-- The owner migrates; the application role sets a context per request and runs DML; the CI
-- role runs the tests: it is a member of the application role (so it writes and reads exactly as
-- the application does) and a tenant_guard administrator (for the test helpers). Run as a
-- superuser on an empty database: psql -d <db> -f examples/testing/schema.sql
CREATE EXTENSION IF NOT EXISTS tenant_guard;
DO $$
BEGIN
    CREATE ROLE agent_owner NOLOGIN;
    CREATE ROLE agent_app LOGIN;
    CREATE ROLE agent_ci LOGIN IN ROLE agent_app;
EXCEPTION WHEN duplicate_object THEN NULL;  -- roles are cluster-wide: a second database reuses them
END $$;
DO $$
BEGIN
    CREATE ROLE tenant_guard_admin NOLOGIN;  -- tenant_guard.admin_role
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
GRANT tenant_guard_admin TO agent_ci;
CREATE SCHEMA memory AUTHORIZATION agent_owner;
GRANT USAGE ON SCHEMA memory TO agent_app;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean),
                          tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[])
   TO agent_owner;
SET ROLE agent_owner;
CREATE TABLE memory.facts (
    tenant_id text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    subject text NOT NULL,
    fact text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Protected as it was created (auto_protect); the recommended form names the application role.
SELECT tenant_guard.enable_tenant_rls('memory.facts', to_roles => ARRAY['agent_app']::regrole[]);
GRANT SELECT, INSERT, UPDATE, DELETE ON memory.facts TO agent_app;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) FROM agent_owner;
-- The application role sets contexts; the CI role also runs the test helpers.
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO agent_app;
GRANT EXECUTE ON FUNCTION tenant_guard.assert_tenant_isolation(regclass, name, text, text),
                          tenant_guard.check(),
                          tenant_guard.assert_no_findings(text)
   TO agent_ci;
