"""Tenant A writes, tenant B reads through the normal path and gets nothing. pytest with
psycopg 3; the connection comes from the libpq environment (PGHOST, PGPORT, PGDATABASE, PGUSER):

    PGUSER=agent_ci pytest examples/testing/pytest
"""

import psycopg


def connect():
    return psycopg.connect("")


def act_for(conn, tenant):
    conn.execute("SELECT tenant_guard.set_tenant_context(%s)", (tenant,))


def test_tenant_b_never_sees_tenant_a():
    with connect() as conn:
        with conn.transaction():
            act_for(conn, "tenant-a")
            conn.execute("INSERT INTO memory.facts (subject, fact) VALUES ('case-123', 'prefers email')")
        with conn.transaction():
            act_for(conn, "tenant-b")
            conn.execute("INSERT INTO memory.facts (subject, fact) VALUES ('case-456', 'prefers phone')")
            leaked = conn.execute("SELECT count(*) FROM memory.facts WHERE subject = 'case-123'").fetchone()[0]
        assert leaked == 0, f"tenant-b sees {leaked} of tenant-a's facts"


def test_no_read_or_write_crosses_tenants():
    with connect() as conn:
        result = conn.execute(
            "SELECT tenant_guard.assert_tenant_isolation('memory.facts', 'agent_app')"
        ).fetchone()[0]
        assert result.startswith("isolated"), result
