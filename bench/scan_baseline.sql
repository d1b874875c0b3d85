-- Row 2 baseline: one tenant's rows (rows / tenants of them), BYPASSRLS with an explicit filter.
SELECT count(*), sum(amount) FROM bench.orders WHERE tenant_id = :tenant;
