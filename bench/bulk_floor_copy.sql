-- Row 18: the physical floor, as the superuser: the unaudited bulk insert plus the same 10,000
-- audit rows copied in with COPY (heap_multi_insert: tuples formed and written, nothing
-- rendered). The file is written by bench/schema.sql into the data directory.
BEGIN;
INSERT INTO bench.invoices_plain (tenant_id, number, customer_id, status, currency, amount, tax,
                                 issued_at, due_at, card_number, notes)
SELECT :tenant, 'INV-' || :client_id || '-' || g, g % 500, 'open', 'EUR', 100.00, 19.00,
       '2026-01-01', '2026-02-01', '4111111111111111', 'net 30'
  FROM generate_series(1, 10000) g;
COPY tenant_guard.audit_log (occurred_at, txid, tenant_id, user_id, tenant_role, trace_id, db_role,
                             schema_name, table_name, table_oid, op, pk, old_row, new_row)
FROM 'tenant_guard_bench_audit_rows.copy';
ROLLBACK;
