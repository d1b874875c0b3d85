-- TG013: ways around the context's entry points. An entry point executable by PUBLIC (the
-- trusted set_tenant_context lets anyone act for any tenant: error; the authenticated ones
-- still verify a credential: warning); GRANT SET ON PARAMETER tenant_guard.*; and stored
-- settings (ALTER ROLE / DATABASE ... SET) of the context, or of require_context and
-- auto_protect turned off, in this database.
WITH entry(oid, trusted) AS (
    SELECT 'tenant_guard.set_tenant_context(text, text, text, text, text, boolean)'::regprocedure::oid, true
    UNION ALL SELECT 'tenant_guard.set_tenant_context_token(text, boolean)'::regprocedure::oid, false
    UNION ALL SELECT 'tenant_guard.set_tenant_context_api_key(text, boolean)'::regprocedure::oid, false
),
context(name) AS (
    VALUES ('tenant_guard.tenant_id'), ('tenant_guard.user_id'), ('tenant_guard.tenant_role'),
           ('tenant_guard.trace_id'), ('tenant_guard.locale')
),
stored AS (
    SELECT s.setdatabase, s.setrole, split_part(c, '=', 1) AS name, substr(c, strpos(c, '=') + 1) AS value
      FROM pg_db_role_setting s
      CROSS JOIN LATERAL unnest(s.setconfig) c
     WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
)
SELECT CASE WHEN e.trusted THEN 'error' ELSE 'warning' END, 'TG013',
       pg_describe_object('pg_proc'::regclass, f.oid, 0),
       format('%s is executable by PUBLIC: %s', f.oid::regprocedure,
              CASE WHEN e.trusted THEN 'every role can act for any tenant it names'
                   ELSE 'every role can try credentials against it; grant it to the application roles only' END),
       format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC;', f.oid::regprocedure)
  FROM entry e
  JOIN pg_proc f ON f.oid = e.oid
 WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
UNION ALL
SELECT 'error', 'TG013', format('parameter %s', p.parname),
       format('%s holds %s on parameter %s: %s', CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END,
              a.privilege_type, p.parname,
              CASE WHEN p.parname IN (SELECT name FROM context) THEN 'it can set the tenant context without tenant_guard''s checks'
                   ELSE 'it can change tenant_guard''s configuration' END),
       format('REVOKE %s ON PARAMETER %s FROM %s;', a.privilege_type, p.parname,
              CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END)
  FROM pg_parameter_acl p
  CROSS JOIN LATERAL aclexplode(p.paracl) a
  LEFT JOIN pg_roles g ON g.oid = a.grantee
 WHERE p.parname LIKE 'tenant\_guard.%'
   AND NOT coalesce(g.rolsuper, false)
UNION ALL
SELECT CASE WHEN s.name IN (SELECT name FROM context) THEN 'error' ELSE 'warning' END, 'TG013',
       concat_ws(' ', 'setting', s.name,
                 CASE WHEN s.setrole <> 0 THEN format('for role %I', r.rolname) ELSE 'for all roles' END,
                 CASE WHEN s.setdatabase <> 0 THEN format('in database %I', current_database()) END),
       CASE WHEN s.name IN (SELECT name FROM context) THEN
                format('a stored setting gives sessions the context %s = %L without any entry point', s.name, s.value)
            ELSE format('a stored setting turns %s off', s.name) END,
       CASE WHEN s.setrole <> 0 AND s.setdatabase <> 0 THEN format('ALTER ROLE %I IN DATABASE %I RESET %s;', r.rolname, current_database(), s.name)
            WHEN s.setrole <> 0 THEN format('ALTER ROLE %I RESET %s;', r.rolname, s.name)
            WHEN s.setdatabase <> 0 THEN format('ALTER DATABASE %I RESET %s;', current_database(), s.name)
            ELSE format('ALTER ROLE ALL RESET %s;', s.name) END
  FROM stored s
  LEFT JOIN pg_roles r ON r.oid = s.setrole
 WHERE s.name IN (SELECT name FROM context)
    OR (s.name IN ('tenant_guard.require_context', 'tenant_guard.auto_protect')
        AND lower(s.value) IN ('off', 'false', 'no', '0', 'of', 'f', 'n', 'fa', 'fal', 'fals'))
