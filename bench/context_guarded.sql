-- Row 4 guarded: tenant_guard's context per transaction, no filter in the query.
\set t random(1, :tenants)
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :t
BEGIN;
SELECT tenant_guard.set_tenant_context(:t::text);
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id;
COMMIT;
