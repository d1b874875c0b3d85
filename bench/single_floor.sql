-- Row 18: the single-row floor: the unaudited single-row insert plus its audit row written by
-- the same statement (no trigger, nothing rendered: the image is a constant).
WITH invoice AS (
    INSERT INTO bench.invoices_plain (tenant_id, number, customer_id, status, currency, amount, tax,
                                     issued_at, due_at, card_number, notes)
    VALUES (:tenant, 'S-' || nextval('bench.invoice_numbers'), 42, 'open', 'EUR', 100.00, 19.00,
            '2026-01-01', '2026-02-01', '4111111111111111', 'net 30')
    RETURNING id, tenant_id)
INSERT INTO tenant_guard.audit_log (occurred_at, txid, tenant_id, db_role, schema_name, table_name, table_oid, op,
                                    pk, new_row)
SELECT statement_timestamp(), pg_current_xact_id(), invoice.tenant_id::text, 'bench_app', 'bench',
       'invoices_audited', 0, 'INSERT', jsonb_build_object('id', invoice.id),
       '{"tax": 19.00, "notes": "net 30", "amount": 100.00, "due_at": "2026-02-01T00:00:00+00:00", "number": "S-1", "status": "open", "currency": "EUR", "issued_at": "2026-01-01T00:00:00+00:00", "tenant_id": 1, "card_number": "[redacted]", "customer_id": 42}'::jsonb
  FROM invoice;
