-- Row 12 guarded: an HS256 token per transaction (an access token reused across requests, as
-- clients do until it expires), then the same point lookup.
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :tenant
BEGIN;
SELECT tenant_guard.set_tenant_context_token(:hs256_token);
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id;
COMMIT;
