-- Row 16 guarded: the same point lookup on a copy of bench.orders with per-role permissions, as
-- a clerk (SELECT allowed): the tenant policies plus the permission policy's InitPlan.
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :tenant
SELECT id, tenant_id, status, amount FROM bench.orders_permitted WHERE id = :id;
