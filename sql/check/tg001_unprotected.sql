-- TG001: a table with the tenant column that is neither protected nor excluded. Partitions and
-- inheritance children of a table with the tenant column are judged through it (TG001 on it,
-- or TG012 when it is protected); a child that adds the column under a parent without it is
-- judged on its own.
SELECT 'error', 'TG001', pg_describe_object('pg_class'::regclass, c.oid, 0),
       format('%s has the tenant column %I but is neither protected nor excluded: whoever may read it reads every tenant''s rows',
              c.oid::regclass, $1::name),
       format('SELECT tenant_guard.enable_tenant_rls(%L, tenant_column => %L);', c.oid::regclass::text, $1::name)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1::name AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenant_guard')
   AND n.nspname !~ '^pg_(toast|temp)'
   AND NOT EXISTS (SELECT 1 FROM pg_inherits i
                     JOIN pg_attribute pa ON pa.attrelid = i.inhparent AND pa.attname = $1::name
                                         AND NOT pa.attisdropped
                    WHERE i.inhrelid = c.oid)
   AND NOT EXISTS (SELECT 1 FROM tenant_guard.protected_tables p WHERE p.relid::oid = c.oid)
   AND NOT EXISTS (SELECT 1 FROM tenant_guard.excluded_tables e WHERE e.relid::oid = c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
