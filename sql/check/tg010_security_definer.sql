-- TG010: SECURITY DEFINER functions that others may call, whose owner can read a protected
-- table. An owner that bypasses row level security hands every tenant's rows to every caller
-- (error); a search_path that is not pinned lets a caller put its own functions and operators in
-- front of the owner's (warning). What the body does cannot be decided for PL/pgSQL or dynamic
-- SQL, so the rule goes by owner, privileges and configuration, not by the body. A pinned
-- search_path names pg_temp last, and no "$user" and no schema in which anyone but its owner may
-- create objects.
WITH definer AS (
    SELECT f.oid, f.proowner, o.rolname, o.rolsuper OR o.rolbypassrls AS bypasses,
           (SELECT bool_and(CASE WHEN e.name = '$user' THEN false
                                 WHEN e.name IN ('pg_catalog', 'pg_temp') THEN true
                                 ELSE NOT EXISTS (SELECT 1 FROM pg_namespace sn
                                                   CROSS JOIN LATERAL aclexplode(sn.nspacl) x
                                                  WHERE sn.nspname = e.name AND x.privilege_type = 'CREATE'
                                                    AND x.grantee <> sn.nspowner) END)
                   AND (array_agg(e.name ORDER BY e.n DESC))[1] = 'pg_temp'
              FROM unnest(f.proconfig) s
              CROSS JOIN LATERAL unnest(string_to_array(substr(s, length('search_path=') + 1), ','))
                   WITH ORDINALITY p(element, n)
              CROSS JOIN LATERAL (SELECT trim(both ' "' FROM p.element) AS name, p.n) e
             WHERE s LIKE 'search_path=%') IS TRUE AS pinned
      FROM pg_proc f
      JOIN pg_namespace n ON n.oid = f.pronamespace
      JOIN pg_roles o ON o.oid = f.proowner
     WHERE f.prosecdef
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenant_guard')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_proc'::regclass AND d.objid = f.oid AND d.deptype = 'e')
       -- someone other than its owner (and superusers) may call it
       AND EXISTS (SELECT 1 FROM aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
                    WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> f.proowner)
       AND EXISTS (SELECT 1 FROM tenant_guard.protected_tables p
                    WHERE has_table_privilege(f.proowner, p.relid::oid, 'SELECT'))
)
SELECT 'error', 'TG010', pg_describe_object('pg_proc'::regclass, d.oid, 0),
       format('SECURITY DEFINER function %s runs as %I, who bypasses row level security: whoever may call it can read every tenant''s rows through it',
              d.oid::regprocedure, d.rolname),
       format('ALTER FUNCTION %s SECURITY INVOKER;  -- or give it an owner subject to row level security', d.oid::regprocedure)
  FROM definer d
 WHERE d.bypasses
UNION ALL
SELECT 'warning', 'TG010', pg_describe_object('pg_proc'::regclass, d.oid, 0),
       format('SECURITY DEFINER function %s (owner %I, who can read protected tables) has no pinned search_path: a caller''s schema can put functions and operators in front of the ones it means',
              d.oid::regprocedure, d.rolname),
       format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp;', d.oid::regprocedure)
  FROM definer d
 WHERE NOT d.pinned
