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


# Session state that outlives a transaction: nothing one tenant leaves on a server connection is
# readable by the next client's transaction, whether it acts for another tenant or for none.

def test_a_transaction_local_context_leaves_no_session_state(pgbouncer):
    with pgbouncer.connect() as first:
        pid = backend_pid(first)
        with first.transaction():
            first.execute("SELECT tenant_guard.set_tenant_context('acme')")
            first.execute("INSERT INTO app.orders (item) VALUES ('pooled-secret')")
            for statement in (
                "DECLARE leak CURSOR WITH HOLD FOR SELECT item FROM app.orders",
                "CREATE TEMP TABLE leak AS SELECT item FROM app.orders",
                "SELECT item INTO TEMP leak FROM app.orders",
                "LISTEN acme_events",
            ):
                with pytest.raises(errors.InsufficientPrivilege) as excinfo, first.transaction():
                    first.execute(statement)
                assert "transaction-local" in excinfo.value.diag.message_primary
            # What ends with the transaction is fine.
            first.execute("CREATE TEMP TABLE scratch ON COMMIT DROP AS SELECT item FROM app.orders")
    with pgbouncer.connect() as second:
        assert backend_pid(second) == pid
        assert second.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)
        assert second.execute("SELECT to_regclass('pg_temp.leak'), to_regclass('pg_temp.scratch')").fetchone() == (None, None)
        assert second.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)


def test_state_left_on_the_connection_refuses_the_next_tenant(pgbouncer):
    with pgbouncer.connect() as first:
        pid = backend_pid(first)
        first.execute("CREATE TEMP TABLE left_behind (item text)")  # no context: allowed
    with pgbouncer.connect() as second:
        assert backend_pid(second) == pid
        # Filled under acme, it would be readable by whoever comes next: refused.
        with pytest.raises(errors.InsufficientPrivilege) as excinfo, second.transaction():
            second.execute("SELECT tenant_guard.set_tenant_context('acme')")
        assert "temporary tables" in excinfo.value.diag.message_primary
        # clear_tenant_context() drops what the connection holds (as DISCARD ALL would).
        second.execute("SELECT tenant_guard.clear_tenant_context()")
        with second.transaction():
            second.execute("SELECT tenant_guard.set_tenant_context('acme')")
            assert second.execute("SELECT to_regclass('pg_temp.left_behind')").fetchone() == (None,)


def test_a_session_tenant_takes_its_state_along_when_it_leaves(pgbouncer):
    with pgbouncer.connect() as first:
        pid = backend_pid(first)
        first.execute("SELECT tenant_guard.set_tenant_context('acme', is_local => false)")
        first.execute("INSERT INTO app.orders (item) VALUES ('session-secret')")
        first.execute("DECLARE held CURSOR WITH HOLD FOR SELECT item FROM app.orders")
        first.execute("CREATE TEMP TABLE copied AS SELECT item FROM app.orders")
        first.execute("LISTEN acme_events")
        first.execute("SELECT tenant_guard.clear_tenant_context()")
    with pgbouncer.connect() as second:
        assert backend_pid(second) == pid
        assert second.execute("SELECT tenant_guard.current_tenant_id()").fetchone() == (None,)
        with pytest.raises(errors.InvalidCursorName):
            second.execute("FETCH ALL FROM held")
        assert second.execute("SELECT to_regclass('pg_temp.copied')").fetchone() == (None,)
        assert second.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)


def test_a_transaction_stays_with_its_tenant_across_savepoints(pgbouncer):
    with pgbouncer.connect() as conn:
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context('acme')")
            conn.execute("INSERT INTO app.orders (item) VALUES ('savepoint-secret')")
        with conn.transaction():
            # Read as acme inside a savepoint, roll the savepoint (and the context) back ...
            with conn.transaction(force_rollback=True):
                conn.execute("SELECT tenant_guard.set_tenant_context('acme')")
                read = conn.execute("SELECT item FROM app.orders WHERE item = 'savepoint-secret'").fetchall()
                assert read == [("savepoint-secret",)]
            assert conn.execute("SELECT tenant_guard.current_tenant_id()").fetchone() == (None,)
            # ... the transaction still cannot write as another tenant.
            with pytest.raises(errors.ObjectNotInPrerequisiteState):
                conn.execute("SELECT tenant_guard.set_tenant_context('globex')")
