-- TG012: a partition or inheritance child of a protected table that is not protected: a query
-- that names it reads every tenant's rows (a scan of the parent applies the parent's policies
-- only to the parent's scan).
SELECT 'error', 'TG012', pg_describe_object('pg_class'::regclass, c.oid, 0),
       format('%s is a %s of protected table %s but is not protected: a query that names it reads every tenant''s rows',
              c.oid::regclass, CASE WHEN c.relispartition THEN 'partition' ELSE 'child' END, i.inhparent::regclass),
       CASE WHEN c.relkind = 'f' AND c.relispartition
                 THEN format('ALTER TABLE %s DETACH PARTITION %s;  -- a foreign table cannot be protected', i.inhparent::regclass, c.oid::regclass)
            WHEN c.relkind = 'f'
                 THEN format('ALTER TABLE %s NO INHERIT %s;  -- a foreign table cannot be protected', c.oid::regclass, i.inhparent::regclass)
            ELSE format('SELECT tenant_guard.reapply_protection(%L);', coalesce(p.parent, p.relid)::text) END
  FROM pg_inherits i
  JOIN tenant_guard.protected_tables p ON p.relid::oid = i.inhparent
  JOIN pg_class c ON c.oid = i.inhrelid
 WHERE c.relkind IN ('r', 'p', 'f')
   AND NOT EXISTS (SELECT 1 FROM tenant_guard.protected_tables q WHERE q.relid::oid = c.oid)
