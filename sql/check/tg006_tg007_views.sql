-- TG006: views over protected tables (at any depth, through other views) without
-- security_invoker: they read as their owner. An owner that bypasses row level security reads
-- every tenant's rows (error); any other owner still gets the context's tenant only, but with its
-- own table privileges and policy roles, not the caller's (warning).
-- TG007: materialized views over protected tables: their rows are whatever the role that
-- refreshed them could see, stored without row level security.
WITH RECURSIVE over(relid) AS (
    SELECT p.relid::oid FROM tenant_guard.protected_tables p
  UNION
    SELECT r.ev_class
      FROM over o
      JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = o.relid
                      AND d.classid = 'pg_rewrite'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid
     WHERE r.ev_class <> o.relid
)
SELECT CASE WHEN c.relkind = 'm' OR o.rolsuper OR o.rolbypassrls THEN 'error' ELSE 'warning' END,
       CASE c.relkind WHEN 'm' THEN 'TG007' ELSE 'TG006' END,
       pg_describe_object('pg_class'::regclass, c.oid, 0),
       CASE WHEN c.relkind = 'm' THEN
                format('materialized view %s stores rows of protected tables without row level security: anyone who may read it reads what its last refresh saw, whatever their tenant',
                       c.oid::regclass)
            WHEN o.rolsuper OR o.rolbypassrls THEN
                format('view %s reads protected tables as its owner %I, who bypasses row level security: it shows every tenant''s rows',
                       c.oid::regclass, o.rolname)
            ELSE
                format('view %s reads protected tables with the privileges and policy roles of its owner %I, not of the caller (the tenant context still applies)',
                       c.oid::regclass, o.rolname)
       END,
       CASE c.relkind
           WHEN 'm' THEN format('DROP MATERIALIZED VIEW IF EXISTS %s;  -- replace it with a view WITH (security_invoker = true), or a protected table', c.oid::regclass)
           ELSE format('ALTER VIEW %s SET (security_invoker = true);', c.oid::regclass)
       END
  FROM (SELECT DISTINCT relid FROM over) v
  JOIN pg_class c ON c.oid = v.relid
  JOIN pg_roles o ON o.oid = c.relowner
 WHERE c.relkind IN ('v', 'm')
   AND NOT (c.relkind = 'v' AND coalesce((SELECT option_value::bool FROM pg_options_to_table(c.reloptions)
                                            WHERE option_name = 'security_invoker'), false))
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
