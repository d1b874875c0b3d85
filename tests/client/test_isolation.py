"""Tenant A writes, tenant B reads through the normal path and gets nothing: over a real socket,
with the library loaded on first use and preloaded."""

import uuid

import psycopg
import pytest
from psycopg import errors


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_tenant_b_cannot_see_or_touch_tenant_a_rows(cluster):
    secret = unique("acme-secret")
    with cluster.connect() as a, cluster.connect() as b:
        with a.transaction():
            a.execute("SELECT tenant_guard.set_tenant_context('acme')")
            a.execute("INSERT INTO app.orders (item) VALUES (%s)", (secret,))
        with b.transaction():
            b.execute("SELECT tenant_guard.set_tenant_context('globex')")
            assert b.execute("SELECT count(*) FROM app.orders WHERE item = %s", (secret,)).fetchone() == (0,)
            assert b.execute("SELECT count(*) FROM app.orders WHERE tenant_id = 'acme'").fetchone() == (0,)
            assert b.execute("UPDATE app.orders SET item = 'x' WHERE item = %s", (secret,)).rowcount == 0
            assert b.execute("DELETE FROM app.orders WHERE item = %s", (secret,)).rowcount == 0
            with pytest.raises(errors.InsufficientPrivilege), b.transaction():
                b.execute("INSERT INTO app.orders (tenant_id, item) VALUES ('acme', 'planted')")
            own = unique("globex-own")
            b.execute("INSERT INTO app.orders (item) VALUES (%s)", (own,))
            with pytest.raises(errors.InsufficientPrivilege), b.transaction():
                b.execute("UPDATE app.orders SET tenant_id = 'acme' WHERE item = %s", (own,))
        with a.transaction():
            a.execute("SELECT tenant_guard.set_tenant_context('acme')")
            rows = a.execute("SELECT tenant_id, item FROM app.orders WHERE item = %s", (secret,)).fetchall()
            assert rows == [("acme", secret)]
            assert a.execute("SELECT count(*) FROM app.orders WHERE tenant_id <> 'acme'").fetchone() == (0,)


def test_missing_context_fails_closed_with_hint(cluster):
    with cluster.connect() as conn:
        with pytest.raises(errors.InsufficientPrivilege) as excinfo:
            conn.execute("SELECT count(*) FROM app.orders")
        assert "set_tenant_context" in excinfo.value.diag.message_hint
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("INSERT INTO app.orders (item) VALUES ('orphan')")


def test_context_is_gone_after_commit_on_the_same_connection(cluster):
    with cluster.connect() as conn:
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context('acme', 'alice')")
            assert conn.execute("SELECT tenant_guard.current_user_id()").fetchone() == ("alice",)
        assert conn.execute("SELECT tenant_guard.tenant_context() ->> 'tenant_id'").fetchone() == (None,)


def test_uuid_tenant_column_and_a_malformed_tenant_id(cluster):
    tenant = str(uuid.uuid4())
    with cluster.connect() as conn:
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context(%s)", (tenant,))
            conn.execute("INSERT INTO app.accounts (name) VALUES ('first')")
            assert conn.execute("SELECT tenant_id::text FROM app.accounts").fetchall() == [(tenant,)]
        with pytest.raises(errors.InvalidParameterValue) as excinfo, conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context('not-a-uuid')")
            conn.execute("SELECT * FROM app.accounts")
        assert "app.accounts" in excinfo.value.diag.message_primary


@pytest.mark.parametrize(
    "args, message",
    [
        ((None,), "tenant_id must not be NULL"),
        (("",), "tenant_id must not be empty"),
        (("x" * 10_000,), "is 10000 bytes long"),
        (("acme\x1b[31m",), "control character"),
        (("acme", "bob\n"), "user_id contains a control character"),
        (("acme", None, None, "t" * 300), "trace_id is 300 bytes long"),
    ],
)
def test_bad_input_is_22023_and_leaves_the_context(cluster, args, message):
    with cluster.connect() as conn:
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context('acme', 'alice')")
            with pytest.raises(errors.InvalidParameterValue) as excinfo, conn.transaction():
                placeholders = ", ".join(["%s"] * len(args))
                conn.execute(f"SELECT tenant_guard.set_tenant_context({placeholders})", args)
            assert message in excinfo.value.diag.message_primary
            assert conn.execute("SELECT tenant_guard.tenant_context() ->> 'user_id'").fetchone() == ("alice",)


def test_wrong_type_is_refused_by_the_driver_round_trip(cluster):
    with cluster.connect() as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("SELECT tenant_guard.set_tenant_context(%s)", (42,))
