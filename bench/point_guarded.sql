-- Row 1 guarded: the app role under tenant_guard's policies, context set for the session.
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :tenant
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id;
