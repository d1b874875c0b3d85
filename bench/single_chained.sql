-- Row 11: one single-row INSERT per transaction into the table audited with the hash chain
-- (both clients write the same tenant: they take turns on its chain head).
INSERT INTO bench.invoices_chained (tenant_id, number, customer_id, status, currency, amount, tax,
                                 issued_at, due_at, card_number, notes)
VALUES (:tenant, 'S-' || nextval('bench.invoice_numbers'), 42, 'open', 'EUR', 100.00, 19.00,
        '2026-01-01', '2026-02-01', '4111111111111111', 'net 30');
