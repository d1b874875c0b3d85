"""Pool safety through a real PgBouncer whose pool has one server connection, so consecutive
clients are served by the same PostgreSQL backend (asserted, not assumed)."""

import pytest
from psycopg import errors

from conftest import PgBouncer


def backend_pid(conn):
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_transaction_local_context_does_not_reach_the_next_client(pgbouncer):
    with pgbouncer.connect() as first:
        pid = backend_pid(first)
        with first.transaction():
            first.execute("SELECT tenant_guard.set_tenant_context('acme', 'alice')")
            first.execute("INSERT INTO app.orders (item) VALUES ('pooled-acme')")
    with pgbouncer.connect() as second:
        assert backend_pid(second) == pid, "the pool must hand the same backend to the next client"
        assert second.execute("SELECT tenant_guard.tenant_context() ->> 'tenant_id'").fetchone() == (None,)
        with pytest.raises(errors.InsufficientPrivilege):
            second.execute("SELECT count(*) FROM app.orders")


def test_interleaved_clients_each_see_their_own_tenant(pgbouncer):
    with pgbouncer.connect() as acme, pgbouncer.connect() as globex:
        for round_ in range(5):
            for conn, tenant in ((acme, "acme"), (globex, "globex")):
                with conn.transaction():
                    conn.execute("SELECT tenant_guard.set_tenant_context(%s)", (tenant,))
                    conn.execute("INSERT INTO app.orders (item) VALUES (%s)", (f"{tenant}-{round_}",))
                    tenants = conn.execute("SELECT DISTINCT tenant_id FROM app.orders").fetchall()
                    assert tenants == [(tenant,)]
        assert backend_pid(acme) == backend_pid(globex)


def test_session_scope_leaks_through_a_transaction_pooler_unless_disabled(plain_cluster):
    # The hazard tenant_guard.allow_session_context exists for: session state outlives the client.
    bouncer = PgBouncer(plain_cluster)
    try:
        with bouncer.connect() as first:
            first.execute("SELECT tenant_guard.set_tenant_context('acme', is_local => false)")
        with bouncer.connect() as second:
            assert second.execute("SELECT tenant_guard.current_tenant_id()").fetchone() == ("acme",)
            second.execute("SELECT tenant_guard.clear_tenant_context()")
    finally:
        bouncer.stop()

    with plain_cluster.connect(user="postgres") as admin:
        admin.execute(f"ALTER DATABASE {plain_cluster.dbname} SET tenant_guard.allow_session_context = off")
    bouncer = PgBouncer(plain_cluster)  # new server connections pick up the database setting
    try:
        with bouncer.connect() as first:
            with pytest.raises(errors.InsufficientPrivilege) as excinfo:
                first.execute("SELECT tenant_guard.set_tenant_context('acme', is_local => false)")
            assert "allow_session_context" in excinfo.value.diag.message_hint
        with bouncer.connect() as second:
            assert second.execute("SELECT tenant_guard.current_tenant_id()").fetchone() == (None,)
            with second.transaction():
                second.execute("SELECT tenant_guard.set_tenant_context('globex')")
                assert second.execute("SELECT tenant_guard.current_tenant_id()").fetchone() == ("globex",)
    finally:
        bouncer.stop()
        with plain_cluster.connect(user="postgres") as admin:
            admin.execute(f"ALTER DATABASE {plain_cluster.dbname} RESET tenant_guard.allow_session_context")


def test_session_pooling_reset_query_discards_session_context(session_pgbouncer):
    with session_pgbouncer.connect() as first:
        pid = backend_pid(first)
        first.execute("SELECT tenant_guard.set_tenant_context('acme', is_local => false)")
        assert first.execute("SELECT tenant_guard.current_tenant_id()").fetchone() == ("acme",)
    with session_pgbouncer.connect() as second:
        assert backend_pid(second) == pid
        # server_reset_query = DISCARD ALL ran between the two clients.
        assert second.execute("SELECT tenant_guard.current_tenant_id()").fetchone() == (None,)
