-- TG016: audited tables with column-level privileges on columns the audit log copies in clear.
-- Column privileges mark a table whose columns are not all for everyone; the log keeps whole
-- rows. The primary key and the tenant column identify the row and are always logged.
SELECT 'warning', 'TG016', pg_describe_object('pg_class'::regclass, c.oid, 0),
       format('%s grants SELECT on column(s) %s, which the audit log copies in clear',
              c.oid::regclass, string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)),
       format('SELECT tenant_guard.enable_tenant_audit(%L, exclude_columns => %L, redact_columns => %L, hash_chain => %s);',
              c.oid::regclass::text, ac.exclude_columns::text,
              (ac.redact_columns || array_agg(a.attname ORDER BY a.attnum))::text,
              CASE WHEN ac.hash_chain THEN 'true' ELSE 'false' END)
  FROM tenant_guard.audit_config ac
  JOIN pg_class c ON c.oid = ac.relid::oid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE ac.parent IS NULL
   AND EXISTS (SELECT 1 FROM aclexplode(a.attacl) x WHERE x.privilege_type = 'SELECT')
   AND a.attname <> ALL (ac.exclude_columns || ac.redact_columns)
   AND a.attname IS DISTINCT FROM (SELECT p.tenant_column FROM tenant_guard.protected_tables p WHERE p.relid = ac.relid)
   AND NOT EXISTS (SELECT 1 FROM pg_index i
                    WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey::int2[]))
 GROUP BY c.oid, ac.exclude_columns, ac.redact_columns, ac.hash_chain
