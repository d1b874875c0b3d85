-- Row 13 guarded: an API key per transaction, then the same point lookup.
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :tenant
BEGIN;
SELECT tenant_guard.set_tenant_context_api_key(:api_key);
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id;
COMMIT;
