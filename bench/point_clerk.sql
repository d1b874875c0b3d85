-- Row 16 baseline: the point lookup on bench.orders (no per-role permissions), as the same
-- clerk context.
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :tenant
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id;
