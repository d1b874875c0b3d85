-- tenant_guard: objects the generated functions rely on. Runs before all generated SQL.

-- Which tables are protected, and how. Written only by tenant_guard's functions (as the
-- extension owner); readable by everyone (it holds no tenant data).
CREATE TABLE tenant_guard.protected_tables (
    relid            regclass    PRIMARY KEY,
    tenant_column    name        NOT NULL,
    tenant_type      regtype     NOT NULL,
    to_roles         regrole[],  -- roles of the permissive policy; NULL means PUBLIC
    parent           regclass,   -- set for partitions and inheritance children protected through
                                 -- a protected table (the top of the chain)
    protected_via    text        NOT NULL
        CHECK (protected_via IN ('enable_tenant_rls', 'auto_protect', 'protect_tenant_tables',
                                 'partition', 'inheritance')),
    previous_default text,       -- the column default before tenant_guard replaced it
    user_column      name,       -- user-private rows: the column naming each row's user
    user_all_rows    text[],     -- tenant roles that see and write all of the tenant's rows
    previous_user_default text,  -- the user column's default before tenant_guard replaced it
    write_action     text,       -- the action INSERT, UPDATE and DELETE need (the action gate)
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

-- The audit log (DESIGN.md 3, "Audit"). One row per changed row (one per TRUNCATE), written by
-- tenant_guard's statement triggers as the extension owner. Tenants read their own rows (policy
-- in finalize.sql); nobody but the extension owner may UPDATE, DELETE or TRUNCATE it.
CREATE TABLE tenant_guard.audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    txid        xid8        NOT NULL,
    tenant_id   text,            -- the tenant the row belongs to (its tenant column), else the context's
    user_id     text,            -- from the context
    tenant_role text,            -- from the context
    trace_id    text,            -- from the context
    db_role     name        NOT NULL,
    schema_name name        NOT NULL,
    table_name  name        NOT NULL,
    table_oid   oid         NOT NULL,
    op          text        NOT NULL,  -- INSERT, UPDATE, DELETE or TRUNCATE. Written only by the
                                       -- trigger; a CHECK would be re-read at every audited statement.
    pk          jsonb,           -- the primary key
    old_row     jsonb,           -- UPDATE: changed columns only; DELETE: the row
    new_row     jsonb,           -- UPDATE: changed columns only; INSERT: the row
    chain_seq   bigint,          -- chained tables (the default): position in the tenant's chain
    chain_prev  bytea,
    chain_hash  bytea
);
CREATE INDEX audit_log_tenant_id_idx ON tenant_guard.audit_log (tenant_id, id);
COMMENT ON TABLE tenant_guard.audit_log IS
    'Append-only, tenant-scoped change log written by tenant_guard''s audit triggers.';

-- Audited tables and their options, by column name (names survive pg_dump; the event trigger
-- follows renames).
CREATE TABLE tenant_guard.audit_config (
    relid           regclass    PRIMARY KEY,
    exclude_columns name[]      NOT NULL,
    redact_columns  name[]      NOT NULL,
    hash_chain      boolean     NOT NULL DEFAULT true,  -- every writer chains the table's rows
    parent          regclass,   -- set for partitions and children audited through an audited table
    enabled_by      name        NOT NULL,
    enabled_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The head of each tenant's hash chain ('' keys rows without a tenant). Locking the head row
-- serialises the writers of one tenant's chain until they commit.
CREATE TABLE tenant_guard.audit_chain_heads (
    tenant_id text   PRIMARY KEY,
    last_seq  bigint NOT NULL,
    last_hash bytea  NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('tenant_guard.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.audit_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.audit_config', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.audit_chain_heads', '');

-- Authenticated context (src/auth). Readable and writable by nobody but the extension owner:
-- tenant_guard's functions read and change them after their own checks.

-- The tenants keys and memberships belong to. A suspended tenant gets no context.
CREATE TABLE tenant_guard.tenants (
    tenant_id text        PRIMARY KEY,
    status    text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    plan      text,
    added_by  name        NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Who may act for which tenant, and as what (tenant_guard.require_membership).
CREATE TABLE tenant_guard.memberships (
    tenant_id text        NOT NULL REFERENCES tenant_guard.tenants ON DELETE CASCADE,
    user_id   text        NOT NULL,
    role      text,
    added_by  name        NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (tenant_id, user_id)
);

-- Token verification keys, by kid: an HS256 secret or a raw Ed25519 public key.
CREATE TABLE tenant_guard.token_keys (
    kid        text        PRIMARY KEY,
    alg        text        NOT NULL CHECK (alg IN ('HS256', 'EdDSA')),
    key        bytea       NOT NULL,
    retire_at  timestamptz,  -- verifies nothing from then on (rotation)
    revoked_at timestamptz,  -- verifies nothing, at once
    added_by   name        NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Tokens refused everywhere, by jti.
CREATE TABLE tenant_guard.revoked_tokens (
    jti        text        PRIMARY KEY,
    revoked_by name        NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Tenant API keys: the SHA-256 of the key, never the key.
CREATE TABLE tenant_guard.api_keys (
    id          text        PRIMARY KEY,
    tenant_id   text        NOT NULL REFERENCES tenant_guard.tenants ON DELETE CASCADE,
    role        text,
    scopes      text[]      NOT NULL DEFAULT '{}',
    label       text,
    secret_hash bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    replaces    text        REFERENCES tenant_guard.api_keys,  -- rotate_api_key's predecessor
    created_by  name        NOT NULL
);
CREATE INDEX api_keys_tenant_id_idx ON tenant_guard.api_keys (tenant_id);

SELECT pg_catalog.pg_extension_config_dump('tenant_guard.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.memberships', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.token_keys', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.revoked_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.api_keys', '');

-- Authorization (src/authz). Per-role table permissions: the tenant roles that may run each
-- command on a protected table (its partitions and children follow it). A table with no rows
-- here has no per-role restriction; a table with some denies every role not listed.
CREATE TABLE tenant_guard.table_permissions (
    relid       regclass    NOT NULL,
    tenant_role text        NOT NULL,
    commands    text[]      NOT NULL,  -- SELECT, INSERT, UPDATE, DELETE
    granted_by  name        NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (relid, tenant_role)
);

-- The action gate: the catalogue of actions, and the rules that grant or deny them. A rule
-- matches a context when every condition it sets holds (NULL: any); see src/authz/decision.rs.
CREATE TABLE tenant_guard.actions (
    action      text        PRIMARY KEY,
    description text,
    added_by    name        NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TABLE tenant_guard.action_rules (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action      text        NOT NULL REFERENCES tenant_guard.actions ON DELETE CASCADE,
    effect      text        NOT NULL CHECK (effect IN ('grant', 'deny')),
    tenant_role text,       -- the context's role
    plan        text,       -- the tenant's plan (tenant_guard.tenants)
    scope       text,       -- a scope of the context's API key
    tenant_id   text,       -- the context's tenant
    resource    text,       -- a pattern of the resource asked about ('*' matches any run)
    added_by    name        NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE NULLS NOT DISTINCT (action, effect, tenant_role, plan, scope, tenant_id, resource)
);

SELECT pg_catalog.pg_extension_config_dump('tenant_guard.table_permissions', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.actions', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.action_rules', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_guard.action_rules_id_seq', '');
