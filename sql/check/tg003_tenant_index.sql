-- TG003: a protected table without an index led by its tenant column (no partial index counts).
SELECT 'warning', 'TG003', pg_describe_object('pg_class'::regclass, c.oid, 0),
       format('no index of %s is led by its tenant column %I: every tenant''s query reads the whole table',
              c.oid::regclass, p.tenant_column),
       format('CREATE INDEX ON %s (%I);', c.oid::regclass, p.tenant_column)
  FROM tenant_guard.protected_tables p
  JOIN pg_class c ON c.oid = p.relid::oid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = p.tenant_column
 WHERE c.relkind IN ('r', 'p')
   AND NOT EXISTS (SELECT 1 FROM pg_index i
                    WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum AND i.indpred IS NULL)
