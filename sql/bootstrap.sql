-- tenant_guard: objects the generated functions rely on. Runs before all generated SQL.

-- Which tables are protected, and how. Written only by tenant_guard's functions (as the
-- extension owner); readable by everyone (it holds no tenant data).
CREATE TABLE tenant_guard.protected_tables (
    relid            regclass    PRIMARY KEY,
    tenant_column    name        NOT NULL,
    tenant_type      regtype     NOT NULL,
    to_roles         regrole[],  -- roles of the permissive policy; NULL means PUBLIC
    parent           regclass,   -- set for partitions protected through a protected table
    protected_via    text        NOT NULL
        CHECK (protected_via IN ('enable_tenant_rls', 'auto_protect', 'protect_tenant_tables', 'partition')),
    previous_default text,       -- the column default before tenant_guard replaced it
    protected_by     name        NOT NULL,
    protected_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE tenant_guard.protected_tables IS
    'Tables protected by tenant_guard (enable_tenant_rls, auto_protect, protect_tenant_tables, partitions).';

-- Tables opted out of automatic protection with exclude_table().
CREATE TABLE tenant_guard.excluded_tables (
    relid       regclass    PRIMARY KEY,
    excluded_by name        NOT NULL,
    excluded_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE tenant_guard.excluded_tables IS
    'Tables opted out of automatic protection with tenant_guard.exclude_table().';

-- Both are user data: pg_dump keeps their rows.
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.protected_tables', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.excluded_tables', '');
