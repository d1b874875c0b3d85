"""Forging a context, from a fresh connection, with and without shared_preload_libraries."""

import psycopg
import pytest
from psycopg import errors


def notices(conn):
    seen = []
    conn.add_notice_handler(lambda diag: seen.append((diag.severity, diag.message_primary)))
    return seen


def test_forged_set_as_first_statement(cluster):
    with cluster.connect() as conn:
        seen = notices(conn)
        if cluster.preload:
            # Preloaded: the variable is defined before the first statement; SET fails loudly.
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("SET tenant_guard.tenant_id = 'globex'")
        else:
            # Loaded on first use: SET makes a placeholder, which PostgreSQL discards (WARNING)
            # when the library defines the superuser-only variable.
            conn.execute("SET tenant_guard.tenant_id = 'globex'")
        assert conn.execute("SELECT tenant_guard.current_tenant_id()").fetchone() == (None,)
        if not cluster.preload:
            assert ("WARNING", 'permission denied to set parameter "tenant_guard.tenant_id"') in seen
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM app.orders")


def test_forged_set_config_inside_a_transaction(cluster):
    with cluster.connect() as conn:
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            try:
                conn.execute("SELECT set_config('tenant_guard.tenant_id', 'globex', true)")
            except errors.InsufficientPrivilege:
                assert cluster.preload, "only a preloaded library refuses the set_config itself"
                raise
            # Not preloaded: the protected query loads the library, which drops the placeholder;
            # the query then fails closed.
            conn.execute("SELECT count(*) FROM app.orders")


def test_forged_startup_option(cluster):
    dsn = cluster.dsn(options="-c tenant_guard.tenant_id=globex")
    if cluster.preload:
        with pytest.raises(psycopg.OperationalError, match="permission denied to set parameter"):
            psycopg.connect(dsn)
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT tenant_guard.current_tenant_id()").fetchone() == (None,)


def test_forged_role_setting_cannot_be_stored(cluster):
    with cluster.connect() as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("ALTER ROLE tg_app SET tenant_guard.tenant_id = 'globex'")
    with cluster.connect(user="postgres") as admin:
        stored = admin.execute(
            "SELECT count(*) FROM pg_db_role_setting WHERE setconfig::text LIKE '%tenant_guard.tenant_id%'"
        ).fetchone()
        assert stored == (0,)
