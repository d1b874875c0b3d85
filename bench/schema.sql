-- The benchmark data set. psql variables: rows, tenants, tenant (the fixed session tenant).
-- Tenants are interleaved (tenant_id = (id - 1) % tenants + 1), so one tenant's rows are spread
-- over the whole heap as in a table that many tenants write to at once.
\set ON_ERROR_STOP on
CREATE EXTENSION tenant_guard;

CREATE ROLE bench_owner NOSUPERUSER NOBYPASSRLS;
-- bench_app acts for one tenant for the whole session (a role default set by the superuser, so
-- the measured transactions contain nothing but the workload); bench_tx sets the context in
-- every transaction; bench_ops is the baseline that row level security does not apply to.
CREATE ROLE bench_app LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE bench_tx LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE bench_ops LOGIN NOSUPERUSER BYPASSRLS;
ALTER ROLE bench_app SET tenant_guard.tenant_id = :'tenant';
ALTER ROLE bench_app SET app.tenant_id = :'tenant';
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, boolean) TO bench_tx;
CREATE SCHEMA bench AUTHORIZATION bench_owner;
GRANT USAGE ON SCHEMA bench TO bench_app, bench_tx, bench_ops;
ALTER DEFAULT PRIVILEGES FOR ROLE bench_owner IN SCHEMA bench
    GRANT SELECT, INSERT ON TABLES TO bench_app, bench_tx, bench_ops;
ALTER DEFAULT PRIVILEGES FOR ROLE bench_owner IN SCHEMA bench
    GRANT USAGE ON SEQUENCES TO bench_app, bench_tx, bench_ops;

-- Rows 1, 2 and 4: the realistic table, protected automatically when it is created.
SET ROLE bench_owner;
CREATE TABLE bench.orders (
    id         bigint PRIMARY KEY,
    tenant_id  bigint NOT NULL,
    created_at timestamptz NOT NULL,
    status     text NOT NULL,
    amount     numeric(12, 2) NOT NULL,
    payload    text NOT NULL
);
RESET ROLE;
INSERT INTO bench.orders
SELECT g, (g - 1) % :tenants + 1, timestamptz '2026-01-01' + g * interval '1 second',
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[g % 4 + 1], (g % 100000) / 100.0,
       md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
  FROM generate_series(1, :rows) g;

-- Row 3: the same rows under a hand-written policy with an unwrapped current_setting(), and
-- under tenant_guard's policy, both without a tenant index, so the policy is evaluated per row.
SET tenant_guard.auto_protect = off;
CREATE TABLE bench.orders_handwritten AS SELECT * FROM bench.orders;
CREATE TABLE bench.orders_guarded_noindex AS SELECT * FROM bench.orders;
ALTER TABLE bench.orders_handwritten OWNER TO bench_owner, ADD PRIMARY KEY (id);
ALTER TABLE bench.orders_guarded_noindex OWNER TO bench_owner, ADD PRIMARY KEY (id);
GRANT SELECT ON bench.orders_handwritten, bench.orders_guarded_noindex TO bench_app;
ALTER TABLE bench.orders_handwritten ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY handwritten ON bench.orders_handwritten
    USING (tenant_id = current_setting('app.tenant_id')::bigint)
    WITH CHECK (tenant_id = current_setting('app.tenant_id')::bigint);
SELECT tenant_guard.enable_tenant_rls('bench.orders_guarded_noindex', create_index => false);

-- Row 5: two empty tables with the same columns and indexes; one plain, one protected.
SET ROLE bench_owner;
CREATE TABLE bench.inserts_plain (
    id bigserial PRIMARY KEY, tenant_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), amount numeric(12, 2) NOT NULL, payload text NOT NULL
);
CREATE INDEX ON bench.inserts_plain (tenant_id);
RESET ROLE;
RESET tenant_guard.auto_protect;
SET ROLE bench_owner;
CREATE TABLE bench.inserts_guarded (
    id bigserial PRIMARY KEY, tenant_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), amount numeric(12, 2) NOT NULL, payload text NOT NULL
);
RESET ROLE;

VACUUM ANALYZE;
SELECT relid::regclass AS protected FROM tenant_guard.protected_tables ORDER BY 1;
