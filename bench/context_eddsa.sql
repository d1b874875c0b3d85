-- Row 14 guarded: an EdDSA token per transaction (verified once per backend, then cached).
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :tenant
BEGIN;
SELECT tenant_guard.set_tenant_context_token(:eddsa_token);
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id;
COMMIT;
