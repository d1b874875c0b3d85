-- Row 5 baseline: insert into a plain table with the same indexes, tenant given explicitly.
INSERT INTO bench.inserts_plain (tenant_id, amount, payload) VALUES (:tenant, 12.34, 'payload of a new order');
