-- Rows 12-15 baseline: set_tenant_context per transaction (the trusted entry point), then a
-- point lookup in that tenant.
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :tenant
BEGIN;
SELECT tenant_guard.set_tenant_context(:tenant::text, 'bench-user');
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id;
COMMIT;
