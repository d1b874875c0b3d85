-- Row 4 baseline: the usual application pattern, a custom variable set per transaction
-- (set_config(..., true) is SET LOCAL in a form -M prepared accepts) and an explicit filter.
\set t random(1, :tenants)
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :t
BEGIN;
SELECT set_config('app.tenant_id', :t::text, true);
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id AND tenant_id = :t;
COMMIT;
