-- tenant_guard: privileges and event triggers. Runs after all generated SQL.

-- The tamper guard and automatic protection (src/event.rs). For every command: a table can be
-- created or changed by more of them than their tags say (CREATE SCHEMA ... CREATE TABLE,
-- CREATE FOREIGN TABLE ... PARTITION OF, ALTER TYPE ... RENAME ATTRIBUTE ... CASCADE).
CREATE EVENT TRIGGER tenant_guard_protect_new_tables ON ddl_command_end
    EXECUTE FUNCTION tenant_guard.on_ddl_command_end();

-- Refuses dropping a protected table's policies or tenant_guard's triggers; forgets dropped
-- tables in the registry (the audit rows stay).
CREATE EVENT TRIGGER tenant_guard_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION tenant_guard.on_sql_drop();

-- Privileges. Functions that set a context or change protection are revoked from PUBLIC and
-- granted deliberately (see README), e.g.
--   GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_token(text, boolean) TO app;
-- The trigger functions are not executable by PUBLIC either: attached by hand, an audit
-- trigger could forge audit rows. tenant_guard creates its triggers as the extension owner.
-- The others (accessors, clear_tenant_context, required_tenant_id, confirm_carrier_origin)
-- keep the default ACL, EXECUTE for PUBLIC: they only read the caller's own context, fail
-- closed, or answer yes or no to a carrier's holder; every role that queries a protected table
-- must be able to run required_tenant_id, and a Citus worker asks confirm_carrier_origin as the
-- role its connection runs as. Leaving the ACL at its
-- default (NULL) also keeps the EXECUTE check that runs at every executor start cheap.
-- tests/pg_regress/sql/setup.sql lists who can execute what: a new function shows up there.
GRANT USAGE ON SCHEMA tenant_guard TO PUBLIC;
REVOKE EXECUTE ON FUNCTION
    tenant_guard.set_tenant_context(text, text, text, text, text, boolean),
    tenant_guard.set_tenant_context_token(text, boolean),
    tenant_guard.set_tenant_context_api_key(text, boolean),
    tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[]),
    tenant_guard.disable_tenant_rls(regclass),
    tenant_guard.exclude_table(regclass),
    tenant_guard.protect_tenant_tables(name),
    tenant_guard.on_ddl_command_end(),
    tenant_guard.on_sql_drop(),
    tenant_guard.truncate_guard(),
    tenant_guard.audit_trigger(),
    tenant_guard.audit_log_guard()
FROM PUBLIC;
-- The TRUNCATE guard only refuses: attached by hand, it protects. Citus creates a distributed
-- table's copies of it on the shards as the table's owner (src/citus.rs), so that role must be
-- able to name it.
GRANT EXECUTE ON FUNCTION tenant_guard.truncate_guard() TO PUBLIC;
REVOKE ALL ON tenant_guard.protected_tables, tenant_guard.excluded_tables FROM PUBLIC;
GRANT SELECT ON tenant_guard.protected_tables, tenant_guard.excluded_tables TO PUBLIC;

-- The audit log: a role reads the rows of its context tenant, and only those of tables it may
-- SELECT (schema USAGE and table-level SELECT: a role with column privileges only sees none,
-- the log holds whole rows). The table is found by the name the row records, which survives pg_dump (OIDs do not);
-- rows of a dropped or renamed table are left to roles that bypass row level security. Only
-- tenant_guard's trigger (as the extension owner) writes; UPDATE, DELETE and TRUNCATE are
-- refused to everyone but the extension owner.
ALTER TABLE tenant_guard.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads_own_audit_rows ON tenant_guard.audit_log FOR SELECT TO PUBLIC
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT tenant_guard.required_tenant_id('tenant_guard.audit_log'::pg_catalog.regclass, NULL::pg_catalog.text))
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                         JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid
                        WHERE n.nspname OPERATOR(pg_catalog.=) schema_name
                          AND c.relname OPERATOR(pg_catalog.=) table_name
                          AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
                          AND pg_catalog.has_table_privilege(c.oid, 'SELECT')));
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON tenant_guard.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.audit_log_guard();
REVOKE ALL ON tenant_guard.audit_log, tenant_guard.audit_config, tenant_guard.audit_chain_heads FROM PUBLIC;
GRANT SELECT ON tenant_guard.audit_log, tenant_guard.audit_config TO PUBLIC;
REVOKE EXECUTE ON FUNCTION
    tenant_guard.enable_tenant_audit(regclass, name[], name[], boolean),
    tenant_guard.disable_tenant_audit(regclass),
    tenant_guard.verify_audit_chain(text, bigint, bytea),
    tenant_guard.audit_chain_head(text)
FROM PUBLIC;

-- Audited tables and their options, with the primary key their audit rows identify rows by.
CREATE VIEW tenant_guard.audited_tables AS
SELECT c.relid, c.exclude_columns, c.redact_columns, c.hash_chain,
       ARRAY(SELECT a.attname
               FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
              WHERE i.indrelid = c.relid AND i.indisprimary
              ORDER BY pg_catalog.array_position(i.indkey::pg_catalog.int2[], a.attnum)) AS primary_key,
       c.parent, c.enabled_by, c.enabled_at
  FROM tenant_guard.audit_config c;
GRANT SELECT ON tenant_guard.audited_tables TO PUBLIC;

-- Authenticated context: the tables are the extension owner's alone (keys, secrets' hashes,
-- memberships); the management functions are revoked from PUBLIC and check inside that the
-- caller is a superuser or has the privileges of tenant_guard.admin_role (a DBA's
-- GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tenant_guard does not make anyone an administrator).
REVOKE ALL ON tenant_guard.tenants, tenant_guard.memberships, tenant_guard.token_keys,
              tenant_guard.revoked_tokens, tenant_guard.api_keys FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    tenant_guard.add_tenant(text, text),
    tenant_guard.set_tenant_status(text, text),
    tenant_guard.add_member(text, text, text),
    tenant_guard.remove_member(text, text),
    tenant_guard.add_token_key(text, text, bytea, timestamptz),
    tenant_guard.retire_token_key(text, interval),
    tenant_guard.revoke_token_key(text),
    tenant_guard.revoke_token(text),
    tenant_guard.list_token_keys(),
    tenant_guard.issue_api_key(text, text, interval, text, text[]),
    tenant_guard.revoke_api_key(text),
    tenant_guard.rotate_api_key(text, interval),
    tenant_guard.list_api_keys(text)
FROM PUBLIC;

-- Authorization (src/authz). The permissions registry and the action catalogue hold no tenant
-- data: everyone may read them (and so read the audit rows of their own denied actions, which
-- name tenant_guard.actions as their table). The rules name tenants: the extension owner's
-- alone, listed to administrators by list_action_rules(). Changing permissions and private
-- rows is for a table's owner, granted deliberately like enable_tenant_rls; the action
-- catalogue and its rules are for tenant_guard administrators (checked inside as well). The
-- questions a session asks about itself (authorize, require_action, allowed_actions) and the
-- functions the generated policies call keep EXECUTE for PUBLIC.
REVOKE ALL ON tenant_guard.table_permissions, tenant_guard.actions, tenant_guard.action_rules
    FROM PUBLIC;
GRANT SELECT ON tenant_guard.table_permissions, tenant_guard.actions TO PUBLIC;
REVOKE EXECUTE ON FUNCTION
    tenant_guard.set_table_permissions(regclass, text, text[]),
    tenant_guard.remove_table_permissions(regclass, text),
    tenant_guard.enable_user_private_rows(regclass, name, text[]),
    tenant_guard.disable_user_private_rows(regclass),
    tenant_guard.require_action_for_writes(regclass, text),
    tenant_guard.add_action(text, text),
    tenant_guard.remove_action(text),
    tenant_guard.grant_action(text, text, text, text, text, text),
    tenant_guard.deny_action(text, text, text, text, text, text),
    tenant_guard.revoke_action(text, text, text, text, text, text),
    tenant_guard.remove_action_rule(bigint),
    tenant_guard.list_action_rules(text)
FROM PUBLIC;

-- Every change to the tables the auth and authorization caches hold, whoever makes it (the
-- administration functions, a superuser's DML, a restore), reaches every backend's caches at its
-- next statement: a relcache invalidation per changed table (src/auth/mod.rs).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'memberships', 'token_keys', 'revoked_tokens', 'api_keys',
                             'actions', 'action_rules'] LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER auth_table_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant_guard.%I
                 FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.auth_table_changed()', t);
    END LOOP;
END $$;
REVOKE EXECUTE ON FUNCTION tenant_guard.auth_table_changed() FROM PUBLIC;

-- The self-check and the test helpers (src/check). check() lists the configuration's weak
-- points, a map for an attacker: for the DBA and the roles it grants it to (a CI role). The
-- isolation assertion acts with any tenant's context (it checks inside that its caller could do
-- the same). reapply_protection is for table owners, granted like enable_tenant_rls, and so is
-- distribute_table (src/citus.rs).
REVOKE EXECUTE ON FUNCTION
    tenant_guard.check(),
    tenant_guard.assert_no_findings(text),
    tenant_guard.assert_tenant_isolation(regclass, name, text, text),
    tenant_guard.reapply_protection(regclass),
    tenant_guard.distribute_table(regclass, integer, text)
FROM PUBLIC;
