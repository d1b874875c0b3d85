-- Row 5 guarded: insert into a protected table; the tenant comes from the column default and
-- the policy's WITH CHECK verifies it.
INSERT INTO bench.inserts_guarded (amount, payload) VALUES (12.34, 'payload of a new order');
