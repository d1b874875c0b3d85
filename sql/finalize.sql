-- tenant_guard: privileges and event triggers. Runs after all generated SQL.

-- Forget dropped tables (protection, exclusion, audit settings; the audit rows stay). Runs as
-- the extension owner: the dropping role may not write the registry. It only deletes rows of
-- objects this very command dropped.
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
    DELETE FROM tenant_guard.audit_config c
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0
       AND c.relid::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid;
END
$$;

CREATE EVENT TRIGGER tenant_guard_protect_new_tables ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE')
    EXECUTE FUNCTION tenant_guard.on_ddl_command_end();

CREATE EVENT TRIGGER tenant_guard_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION tenant_guard.on_sql_drop();

-- Privileges. Functions that set a context or change protection are revoked from PUBLIC and
-- granted deliberately (see README), e.g.
--   GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, boolean) TO app;
-- The others (accessors, clear_tenant_context, required_tenant_id, truncate_guard) keep the
-- default ACL, EXECUTE for PUBLIC: they only read the caller's own context or fail closed, and
-- every role that queries a protected table must be able to run required_tenant_id. Leaving the
-- ACL at its default (NULL) also keeps the EXECUTE check that runs at every executor start cheap.
-- tests/pg_regress/sql/setup.sql lists who can execute what: a new function shows up there.
GRANT USAGE ON SCHEMA tenant_guard TO PUBLIC;
REVOKE EXECUTE ON FUNCTION
    tenant_guard.set_tenant_context(text, text, text, text, boolean),
    tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[]),
    tenant_guard.disable_tenant_rls(regclass),
    tenant_guard.exclude_table(regclass),
    tenant_guard.protect_tenant_tables(name),
    tenant_guard.on_ddl_command_end(),
    tenant_guard.on_sql_drop()
FROM PUBLIC;
REVOKE ALL ON tenant_guard.protected_tables, tenant_guard.excluded_tables FROM PUBLIC;
GRANT SELECT ON tenant_guard.protected_tables, tenant_guard.excluded_tables TO PUBLIC;

-- The audit log: tenants read their own rows; only tenant_guard's trigger (as the extension
-- owner) writes; UPDATE, DELETE and TRUNCATE are refused to everyone but the extension owner.
ALTER TABLE tenant_guard.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads_own_audit_rows ON tenant_guard.audit_log FOR SELECT TO PUBLIC
    USING (tenant_id = (SELECT tenant_guard.required_tenant_id('tenant_guard.audit_log'::pg_catalog.regclass, NULL::pg_catalog.text)));
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON tenant_guard.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.audit_log_guard();
REVOKE ALL ON tenant_guard.audit_log, tenant_guard.audit_config, tenant_guard.audit_chain_heads FROM PUBLIC;
GRANT SELECT ON tenant_guard.audit_log, tenant_guard.audit_config TO PUBLIC;
REVOKE EXECUTE ON FUNCTION
    tenant_guard.enable_tenant_audit(regclass, name[], name[]),
    tenant_guard.disable_tenant_audit(regclass),
    tenant_guard.verify_audit_chain(text)
FROM PUBLIC;

-- Audited tables and their options, with the primary key their audit rows identify rows by.
CREATE VIEW tenant_guard.audited_tables AS
SELECT c.relid, c.exclude_columns, c.redact_columns,
       ARRAY(SELECT a.attname
               FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
              WHERE i.indrelid = c.relid AND i.indisprimary
              ORDER BY pg_catalog.array_position(i.indkey::pg_catalog.int2[], a.attnum)) AS primary_key,
       c.parent, c.enabled_by, c.enabled_at
  FROM tenant_guard.audit_config c;
GRANT SELECT ON tenant_guard.audited_tables TO PUBLIC;
