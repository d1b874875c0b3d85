-- Roles and helpers the other suites use. The app role and the table owner are neither
-- superuser nor BYPASSRLS: a test run as superuser would prove nothing, RLS does not apply to it.
CREATE ROLE tg_app LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE tg_owner LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE tg_reader LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE tg_ops LOGIN NOSUPERUSER BYPASSRLS;
SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname LIKE 'tg\_%' ORDER BY rolname;

CREATE EXTENSION tenant_guard;
SELECT extname, extversion, n.nspname AS schema, extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'tenant_guard';

-- Nothing that sets a context is executable by PUBLIC: it is granted deliberately.
SELECT p.proname, has_function_privilege('tg_app', p.oid, 'EXECUTE') AS app_can_execute
  FROM pg_proc p WHERE p.pronamespace = 'tenant_guard'::regnamespace ORDER BY p.proname;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO tg_app, tg_owner, tg_reader;
GRANT EXECUTE ON FUNCTION
    tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[]),
    tenant_guard.disable_tenant_rls(regclass),
    tenant_guard.exclude_table(regclass),
    tenant_guard.protect_tenant_tables(name),
    tenant_guard.enable_tenant_audit(regclass, name[], name[], boolean),
    tenant_guard.disable_tenant_audit(regclass)
TO tg_owner;

-- The context variables are superuser-settable only.
SELECT name, context FROM pg_settings WHERE name LIKE 'tenant_guard.%' ORDER BY name;

-- The application schema, owned by a non-superuser owner; the app role gets DML only.
CREATE SCHEMA app AUTHORIZATION tg_owner;
GRANT USAGE ON SCHEMA app TO tg_app, tg_reader, tg_ops;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA app
    GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO tg_app, tg_reader, tg_ops;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA app GRANT USAGE ON SEQUENCES TO tg_app, tg_reader;

-- A database the app role owns, to show that even a database owner cannot forge a context.
CREATE DATABASE tg_app_db OWNER tg_app;

-- tg_test.protection(tbl, column): what tenant_guard left on a table, in one row.
CREATE SCHEMA tg_test;
GRANT USAGE ON SCHEMA tg_test TO PUBLIC;
CREATE FUNCTION tg_test.protection(tbl regclass, col name DEFAULT 'tenant_id')
RETURNS TABLE (rls boolean, forced boolean, policies text, column_default text,
               tenant_index boolean, truncate_guard boolean, registered text)
LANGUAGE sql STABLE AS $$
SELECT c.relrowsecurity, c.relforcerowsecurity,
       (SELECT string_agg(format('%s %s to %s', p.polname,
                                 CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
                                 (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END, ',')
                                    FROM unnest(p.polroles) r)), '; ' ORDER BY p.polname)
          FROM pg_policy p WHERE p.polrelid = c.oid),
       (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
          JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
         WHERE d.adrelid = c.oid AND a.attname = col),
       EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                WHERE i.indrelid = c.oid AND a.attname = col),
       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'tenant_guard_truncate_guard'),
       (SELECT format('%s via %s%s', p.tenant_column, p.protected_via,
                      COALESCE(' of ' || p.parent::text, ''))
          FROM tenant_guard.protected_tables p WHERE p.relid = c.oid)
  FROM pg_class c WHERE c.oid = tbl
$$;
