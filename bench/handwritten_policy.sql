-- Row 3 baseline: a hand-written policy tenant_id = current_setting('app.tenant_id')::bigint,
-- on a query the tenant index cannot serve (there is none): evaluated once per row.
SELECT count(*) FROM bench.orders_handwritten WHERE payload LIKE 'ff%';
