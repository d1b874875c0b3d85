-- tenant_guard 0.1.0 -> 0.2.0: the self-check and the test helpers (src/check, src/repair.rs).
-- One hop. Once 0.2.0 is released (sql/released/VERSIONS) this file is frozen: later changes go
-- into tenant_guard--0.2.0--<next>.sql. tests/client/test_upgrade.py proves that 0.1.0 plus this
-- script equals a fresh install of 0.2.0, object for object.

\echo Use "ALTER EXTENSION tenant_guard UPDATE" to load this file. \quit

CREATE FUNCTION tenant_guard."check"() RETURNS TABLE (
    "severity" TEXT,
    "code" TEXT,
    "object" TEXT,
    "message" TEXT,
    "fix" TEXT
)
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'check_wrapper';

CREATE FUNCTION tenant_guard."assert_no_findings"(
    "min_severity" TEXT DEFAULT 'warning'
) RETURNS VOID
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'assert_no_findings_wrapper';

CREATE FUNCTION tenant_guard."assert_tenant_isolation"(
    "tbl" regclass,
    "as_role" name,
    "tenant_role" TEXT DEFAULT NULL,
    "user_id" TEXT DEFAULT NULL
) RETURNS TEXT
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'assert_tenant_isolation_wrapper';

CREATE FUNCTION tenant_guard."reapply_protection"(
    "tbl" regclass
) RETURNS VOID
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'reapply_protection_wrapper';

CREATE FUNCTION tenant_guard."distribute_table"(
    "tbl" regclass,
    "shard_count" INT DEFAULT NULL,
    "colocate_with" TEXT DEFAULT 'default'
) RETURNS VOID
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'distribute_table_wrapper';

-- A worker asks the coordinator whether a carrier's origin holds (src/citus/origin.rs). It
-- keeps the default ACL: a worker asks as the role its connection runs as.
CREATE FUNCTION tenant_guard."confirm_carrier_origin"(
    "pid" INT,
    "slot" INT,
    "nonce" TEXT,
    "coordinator_address" TEXT,
    "coordinator_port" INT,
    "worker_address" TEXT,
    "worker_port" INT
) RETURNS bool
STRICT VOLATILE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'confirm_carrier_origin_wrapper';

-- Citus creates a distributed table's TRUNCATE guard on its shards as the table's owner.
GRANT EXECUTE ON FUNCTION tenant_guard.truncate_guard() TO PUBLIC;

-- As in finalize.sql: check() lists the configuration's weak points, for the DBA and the roles it
-- grants it to; the isolation assertion acts with any tenant's context; reapply_protection is
-- granted like enable_tenant_rls.
REVOKE EXECUTE ON FUNCTION
    tenant_guard.check(),
    tenant_guard.assert_no_findings(text),
    tenant_guard.assert_tenant_isolation(regclass, name, text, text),
    tenant_guard.reapply_protection(regclass),
    tenant_guard.distribute_table(regclass, integer, text)
FROM PUBLIC;
