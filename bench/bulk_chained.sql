-- Row 10: one INSERT ... SELECT of 10,000 invoices into the table audited with the hash chain
-- (rolled back).
BEGIN;
INSERT INTO bench.invoices_chained (tenant_id, number, customer_id, status, currency, amount, tax,
                                 issued_at, due_at, card_number, notes)
SELECT :tenant, 'INV-' || :client_id || '-' || g, g % 500, 'open', 'EUR', 100.00, 19.00,
       '2026-01-01', '2026-02-01', '4111111111111111', 'net 30'
  FROM generate_series(1, 10000) g;
ROLLBACK;
