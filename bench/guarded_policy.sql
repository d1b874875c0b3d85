-- Row 3 guarded: tenant_guard's policy on the same rows, also without a tenant index.
SELECT count(*) FROM bench.orders_guarded_noindex WHERE payload LIKE 'ff%';
