-- Who holds what: every explicit grant on a protected table or a context entry point, with the
-- roles that hold it through membership (pg_auth_members, not pg_has_role: a superuser "has"
-- every privilege, which says nothing about what it was given). The bootstrap superuser's
-- ownership does not count: it logs in on every cluster.
--
-- TG008: a login role with SUPERUSER or BYPASSRLS that holds a protected table or an entry point:
-- row level security does not apply to it, whatever context it sets.
-- TG009: a role that owns protected tables and may also set a context: the application then runs
-- as the table owner, whose DDL can read around the protection (index expressions, triggers).
WITH RECURSIVE
entry(oid) AS (
    SELECT 'tenant_guard.set_tenant_context(text, text, text, text, text, boolean)'::regprocedure::oid
    UNION ALL SELECT 'tenant_guard.set_tenant_context_token(text, boolean)'::regprocedure::oid
    UNION ALL SELECT 'tenant_guard.set_tenant_context_api_key(text, boolean)'::regprocedure::oid
),
grants(grantee, what) AS (
    SELECT a.grantee, format('privileges on %s', c.oid::regclass)
      FROM tenant_guard.protected_tables p
      JOIN pg_class c ON c.oid = p.relid::oid
      CROSS JOIN LATERAL aclexplode(c.relacl) a
     WHERE a.grantee <> c.relowner AND a.grantee <> 0
  UNION ALL
    SELECT c.relowner, format('ownership of %s', c.oid::regclass)
      FROM tenant_guard.protected_tables p
      JOIN pg_class c ON c.oid = p.relid::oid
     WHERE c.relowner <> 10
  UNION ALL
    SELECT a.grantee, format('EXECUTE on %s', f.oid::regprocedure)
      FROM entry e
      JOIN pg_proc f ON f.oid = e.oid
      CROSS JOIN LATERAL aclexplode(f.proacl) a
     WHERE a.grantee <> f.proowner AND a.grantee <> 0
),
holders(role, grantee) AS (
    SELECT DISTINCT grantee, grantee FROM grants
  UNION
    SELECT m.member, h.grantee FROM holders h JOIN pg_auth_members m ON m.roleid = h.role
)
SELECT 'error', 'TG008', pg_describe_object('pg_authid'::regclass, r.oid, 0),
       format('login role %I has %s and holds %s: row level security does not apply to it',
              r.rolname,
              CASE WHEN r.rolsuper THEN 'SUPERUSER' ELSE 'BYPASSRLS' END,
              (SELECT string_agg(DISTINCT g.what, ', ') FROM holders h JOIN grants g ON g.grantee = h.grantee
                WHERE h.role = r.oid)),
       format('ALTER ROLE %I NOSUPERUSER NOBYPASSRLS;  -- or connect the application as another role', r.rolname)
  FROM pg_roles r
 WHERE r.rolcanlogin AND (r.rolsuper OR r.rolbypassrls)
   AND EXISTS (SELECT 1 FROM holders h WHERE h.role = r.oid)
UNION ALL
SELECT 'warning', 'TG009', pg_describe_object('pg_authid'::regclass, o.oid, 0),
       format('role %I owns protected tables (%s) and may set a tenant context with %s: the application should not run as the owner of its tables',
              o.rolname,
              (SELECT string_agg(c.oid::regclass::text, ', ' ORDER BY c.oid::regclass::text)
                 FROM tenant_guard.protected_tables p JOIN pg_class c ON c.oid = p.relid::oid
                WHERE c.relowner = o.oid AND p.parent IS NULL),
              (SELECT string_agg(e.oid::regprocedure::text, ', ') FROM entry e
                WHERE has_function_privilege(o.oid, e.oid, 'EXECUTE'))),
       (SELECT string_agg(format('REVOKE EXECUTE ON FUNCTION %s FROM %s;', f.oid::regprocedure,
                                 CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END), ' ')
          FROM entry e
          JOIN pg_proc f ON f.oid = e.oid
          CROSS JOIN LATERAL aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
          LEFT JOIN pg_roles g ON g.oid = a.grantee
         WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> f.proowner
           AND (a.grantee = 0 OR a.grantee = o.oid
                OR EXISTS (SELECT 1 FROM holders h WHERE h.role = o.oid AND h.grantee = a.grantee)))
  FROM pg_roles o
 WHERE NOT o.rolsuper
   AND EXISTS (SELECT 1 FROM tenant_guard.protected_tables p JOIN pg_class c ON c.oid = p.relid::oid
                WHERE c.relowner = o.oid)
   AND EXISTS (SELECT 1 FROM entry e WHERE has_function_privilege(o.oid, e.oid, 'EXECUTE'))
