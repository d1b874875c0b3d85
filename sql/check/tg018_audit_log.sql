-- TG018: the audit log's own protection: row level security on, no policy but the tenant's
-- read policy, its append-only trigger enabled, and no write privileges for anyone but its owner
-- (on the log, its configuration and its chain heads).
SELECT 'error', 'TG018', pg_describe_object('pg_policy'::regclass, pol.oid, 0),
       format('policy %I on tenant_guard.audit_log is not tenant_guard''s: it can widen who reads which tenant''s audit rows', pol.polname),
       format('DROP POLICY IF EXISTS %I ON tenant_guard.audit_log;', pol.polname)
  FROM pg_policy pol
 WHERE pol.polrelid = 'tenant_guard.audit_log'::regclass AND pol.polname <> 'tenant_reads_own_audit_rows'
UNION ALL
SELECT 'error', 'TG018', 'table tenant_guard.audit_log',
       'row level security is off on tenant_guard.audit_log: whoever may read it reads every tenant''s audit rows',
       'ALTER TABLE tenant_guard.audit_log ENABLE ROW LEVEL SECURITY;'
  FROM pg_class c
 WHERE c.oid = 'tenant_guard.audit_log'::regclass AND NOT c.relrowsecurity
UNION ALL
SELECT 'error', 'TG018', 'table tenant_guard.audit_log',
       'the append-only trigger audit_log_append_only of tenant_guard.audit_log is missing or not enabled: rows can be changed or deleted',
       'ALTER TABLE tenant_guard.audit_log ENABLE TRIGGER audit_log_append_only;'
 WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t
                    WHERE t.tgrelid = 'tenant_guard.audit_log'::regclass
                      AND t.tgname = 'audit_log_append_only' AND t.tgenabled = 'O')
UNION ALL
SELECT 'error', 'TG018', pg_describe_object('pg_class'::regclass, c.oid, 0),
       format('%s holds %s on %s: it can write audit state directly',
              CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END,
              string_agg(DISTINCT a.privilege_type, ', ' ORDER BY a.privilege_type), c.oid::regclass),
       format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON %s FROM %s;', c.oid::regclass,
              CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END)
  FROM pg_class c
  CROSS JOIN LATERAL (SELECT * FROM aclexplode(c.relacl)
                      UNION ALL  -- column privileges: a table-level REVOKE removes them too
                      SELECT x.* FROM pg_attribute att CROSS JOIN LATERAL aclexplode(att.attacl) x
                       WHERE att.attrelid = c.oid) a
  LEFT JOIN pg_roles g ON g.oid = a.grantee
 WHERE c.oid IN ('tenant_guard.audit_log'::regclass, 'tenant_guard.audit_config'::regclass,
                 'tenant_guard.audit_chain_heads'::regclass)
   AND a.grantee <> c.relowner
   AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES')
 GROUP BY c.oid, a.grantee, g.rolname
