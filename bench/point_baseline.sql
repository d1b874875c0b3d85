-- Row 1 baseline: BYPASSRLS, the application filters by tenant itself.
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :tenant
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id AND tenant_id = :tenant;
