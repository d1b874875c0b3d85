-- tenant_guard: privileges and event triggers. Runs after all generated SQL.

-- Forget dropped tables. Runs as the extension owner: the dropping role may not write the
-- registry. It only deletes rows of objects this very command dropped.
CREATE FUNCTION tenant_guard.on_sql_drop() RETURNS event_trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM tenant_guard.protected_tables p
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0
       AND p.relid::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid;
    DELETE FROM tenant_guard.excluded_tables e
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0
       AND e.relid::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid;
END
$$;

CREATE EVENT TRIGGER tenant_guard_protect_new_tables ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE')
    EXECUTE FUNCTION tenant_guard.on_ddl_command_end();

CREATE EVENT TRIGGER tenant_guard_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION tenant_guard.on_sql_drop();

-- Privileges. Nothing is executable by PUBLIC unless it can only read the caller's own
-- context or only fail closed. Grant the rest deliberately (see README):
--   GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, boolean) TO app;
GRANT USAGE ON SCHEMA tenant_guard TO PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tenant_guard FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    tenant_guard.current_tenant_id(),
    tenant_guard.current_user_id(),
    tenant_guard.current_tenant_role(),
    tenant_guard.current_trace_id(),
    tenant_guard.tenant_context(),
    tenant_guard.required_tenant_id(regclass, anyelement),
    tenant_guard.clear_tenant_context(),
    tenant_guard.truncate_guard()
TO PUBLIC;
REVOKE ALL ON tenant_guard.protected_tables, tenant_guard.excluded_tables FROM PUBLIC;
GRANT SELECT ON tenant_guard.protected_tables, tenant_guard.excluded_tables TO PUBLIC;
