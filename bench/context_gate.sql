-- Row 17 guarded: the agent's tool call: set_tenant_context per transaction, require_action
-- (the tool gate), then the same point lookup.
\set k random(0, :per_tenant - 1)
\set id :k * :tenants + :tenant
BEGIN;
SELECT tenant_guard.set_tenant_context(:tenant::text, 'bench-user', 'clerk');
SELECT tenant_guard.require_action('bench.tool_25');
SELECT id, tenant_id, status, amount FROM bench.orders WHERE id = :id;
COMMIT;
