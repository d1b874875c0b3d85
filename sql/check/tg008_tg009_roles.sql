-- Who holds what: every explicit grant on a protected table or a context entry point, with the
-- roles that hold it through membership (pg_auth_members, not pg_has_role: a superuser "has"
-- every privilege, which says nothing about what it was given). The bootstrap superuser's
-- ownership does not count (it logs in on every cluster), nor does the extension owner.
--
-- TG008: a login role that holds a protected table or an entry point and to which row level
-- security does not apply: it has SUPERUSER or BYPASSRLS, or it can SET ROLE to a role that has.
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
-- Every role a role is a member of, at any depth, with the first step of the way.
above(member, role, first) AS (
    SELECT m.member, m.roleid, m.roleid FROM pg_auth_members m
  UNION
    SELECT a.member, m.roleid, a.first FROM above a JOIN pg_auth_members m ON m.member = a.role
),
holds(role, what) AS (
    SELECT g.grantee, g.what FROM grants g
  UNION
    SELECT a.member, g.what FROM above a JOIN grants g ON g.grantee = a.role
),
bypass(role, how, fix) AS (
    SELECT r.oid, CASE WHEN r.rolsuper THEN 'has SUPERUSER' ELSE 'has BYPASSRLS' END,
           format('ALTER ROLE %I NOSUPERUSER NOBYPASSRLS;  -- or connect the application as another role', r.rolname)
      FROM pg_roles r
     WHERE r.rolsuper OR r.rolbypassrls
  UNION ALL
    SELECT a.member, format('can SET ROLE to %I, which has %s', b.rolname,
                            CASE WHEN b.rolsuper THEN 'SUPERUSER' ELSE 'BYPASSRLS' END),
           format('REVOKE %I FROM %I;', f.rolname, m.rolname)
      FROM above a
      JOIN pg_roles b ON b.oid = a.role AND (b.rolsuper OR b.rolbypassrls)
      JOIN pg_roles m ON m.oid = a.member AND NOT (m.rolsuper OR m.rolbypassrls)
      JOIN pg_roles f ON f.oid = a.first
)
SELECT 'error', 'TG008', pg_describe_object('pg_authid'::regclass, r.oid, 0),
       format('login role %I %s and holds %s: row level security does not apply to it',
              r.rolname, b.how,
              (SELECT string_agg(DISTINCT h.what, ', ') FROM holds h WHERE h.role = r.oid)),
       b.fix
  FROM pg_roles r
  JOIN bypass b ON b.role = r.oid
 WHERE r.rolcanlogin
   AND r.oid <> (SELECT extowner FROM pg_extension WHERE extname = 'tenant_guard')
   AND EXISTS (SELECT 1 FROM holds h WHERE h.role = r.oid)
UNION ALL
SELECT 'warning', 'TG009', pg_describe_object('pg_authid'::regclass, o.oid, 0),
       format('role %I owns protected tables (%s) and may set a tenant context with %s: the application should not run as the owner of its tables',
              o.rolname,
              (SELECT string_agg(c.oid::regclass::text, ', ' ORDER BY c.oid::regclass::text)
                 FROM tenant_guard.protected_tables p JOIN pg_class c ON c.oid = p.relid::oid
                WHERE c.relowner = o.oid AND p.parent IS NULL),
              (SELECT string_agg(e.oid::regprocedure::text, ', ') FROM entry e
                WHERE has_function_privilege(o.oid, e.oid, 'EXECUTE'))),
       -- Take the way to the entry point from the owner: its own grant, PUBLIC's, or the
       -- membership it holds it through (revoking the group's grant would take it from the
       -- application too).
       (SELECT string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC;', f.oid::regprocedure)
                                        WHEN a.grantee = o.oid THEN format('REVOKE EXECUTE ON FUNCTION %s FROM %I;', f.oid::regprocedure, o.rolname)
                                        ELSE format('REVOKE %I FROM %I;', first.rolname, o.rolname) END, ' ')
          FROM entry e
          JOIN pg_proc f ON f.oid = e.oid
          CROSS JOIN LATERAL aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
          LEFT JOIN above up ON up.member = o.oid AND up.role = a.grantee
          LEFT JOIN pg_roles first ON first.oid = up.first
         WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> f.proowner
           AND (a.grantee = 0 OR a.grantee = o.oid OR up.role IS NOT NULL))
  FROM pg_roles o
 WHERE NOT o.rolsuper
   AND EXISTS (SELECT 1 FROM tenant_guard.protected_tables p JOIN pg_class c ON c.oid = p.relid::oid
                WHERE c.relowner = o.oid)
   AND EXISTS (SELECT 1 FROM entry e WHERE has_function_privilege(o.oid, e.oid, 'EXECUTE'))
