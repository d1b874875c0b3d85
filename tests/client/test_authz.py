"""Authorization over real sockets: a changed grant reaches a running transaction in another
session at its next statement; denials reach the audit log although their transaction rolls
back (and none is lost when a client provokes them in a loop); user-private rows hold through
PgBouncer's transaction pooling."""

import time
import uuid

import psycopg
import pytest
from psycopg import errors

SETUP_SQL = """
SELECT tenant_guard.add_tenant('acme', 'pro');
SELECT tenant_guard.add_tenant('globex', 'free');
SELECT tenant_guard.add_action('tool:client_mail', 'client test: send mail');
SELECT tenant_guard.add_action('tool:client_refund', 'client test: refund');
SELECT tenant_guard.grant_action('tool:client_mail', tenant_role => 'member');
SELECT tenant_guard.grant_action('tool:client_refund', tenant_role => 'admin', plan => 'pro');
SET ROLE tg_owner;
CREATE TABLE app.memories (id bigserial PRIMARY KEY, tenant_id text NOT NULL,
                           owner_id text NOT NULL, fact text NOT NULL);
RESET ROLE;
SELECT tenant_guard.enable_user_private_rows('app.memories', 'owner_id', ARRAY['admin']);
"""


def prepare(cluster):
    """Tenants, actions, rules and a user-private table, once per cluster."""
    if not getattr(cluster, "authz_ready", False):
        with cluster.connect(user="postgres") as admin:
            admin.execute(SETUP_SQL)
        cluster.authz_ready = True
    return cluster


def set_context(conn, tenant, user=None, role=None, trace=None):
    conn.execute(
        "SELECT tenant_guard.set_tenant_context(%s, %s, %s, %s)", (tenant, user, role, trace)
    )


def denials(admin, trace):
    return admin.execute(
        "SELECT tenant_id, user_id, tenant_role, trace_id, pk ->> 'action', new_row ->> 'reason'"
        "  FROM tenant_guard.audit_log WHERE op = 'DENIED' AND trace_id = %s ORDER BY id",
        (trace,),
    ).fetchall()


def wait_for_denials(admin, trace, count, timeout=10.0):
    deadline = time.time() + timeout
    while True:
        rows = denials(admin, trace)
        if len(rows) >= count or time.time() > deadline:
            return rows
        time.sleep(0.05)


def test_a_changed_rule_holds_from_the_next_statement_of_a_running_transaction(cluster):
    prepare(cluster)
    with cluster.connect() as app, cluster.connect(user="postgres") as admin:
        with app.transaction():
            set_context(app, "acme", "meg", "member")
            ask = "SELECT tenant_guard.authorize('tool:client_mail')"
            assert app.execute(ask).fetchone()[0] is True
            # Another session denies it and commits: this transaction's next statement sees it.
            rule = admin.execute(
                "SELECT tenant_guard.deny_action('tool:client_mail', tenant_id => 'acme')"
            ).fetchone()[0]
            assert app.execute(ask).fetchone()[0] is False
            # And lifts it again.
            admin.execute("SELECT tenant_guard.remove_action_rule(%s)", (rule,))
            assert app.execute(ask).fetchone()[0] is True
            # A revoked grant: the same.
            admin.execute("SELECT tenant_guard.revoke_action('tool:client_mail', tenant_role => 'member')")
            assert app.execute(ask).fetchone()[0] is False
            admin.execute("SELECT tenant_guard.grant_action('tool:client_mail', tenant_role => 'member')")
            assert app.execute(ask).fetchone()[0] is True
        # A change of the tenant's plan counts too (refunds need plan 'pro').
        try:
            with app.transaction():
                set_context(app, "acme", "ada", "admin")
                refund = "SELECT tenant_guard.authorize('tool:client_refund')"
                assert app.execute(refund).fetchone()[0] is True
                admin.execute("SELECT tenant_guard.add_tenant('acme', 'free')")
                assert app.execute(refund).fetchone()[0] is False
                admin.execute("SELECT tenant_guard.add_tenant('acme', 'pro')")
                assert app.execute(refund).fetchone()[0] is True
        finally:
            admin.execute("SELECT tenant_guard.add_tenant('acme', 'pro')")
        # A superuser's direct DML reaches the caches too (a trigger on the rule tables).
        try:
            with app.transaction():
                set_context(app, "acme", "meg", "member")
                assert app.execute(ask).fetchone()[0] is True
                admin.execute("DELETE FROM tenant_guard.action_rules WHERE action = 'tool:client_mail'")
                assert app.execute(ask).fetchone()[0] is False
        finally:
            admin.execute("SELECT tenant_guard.grant_action('tool:client_mail', tenant_role => 'member')")


def test_a_denial_is_audited_although_its_transaction_rolls_back(cluster):
    prepare(cluster)
    trace = f"trace-{uuid.uuid4()}"
    with cluster.connect() as app, cluster.connect(user="postgres") as admin:
        with pytest.raises(errors.InsufficientPrivilege) as denied:
            with app.transaction():
                set_context(app, "globex", "gil", "admin", trace)
                app.execute("INSERT INTO app.orders (item) VALUES ('rolled back with the denial')")
                app.execute("SELECT tenant_guard.require_action('tool:client_refund')")
        message = str(denied.value)
        assert '"tool:client_refund"' in message and '"admin"' in message and '"globex"' in message
        rows = wait_for_denials(admin, trace, 1)
        assert rows == [
            ("globex", "gil", "admin", trace, "tool:client_refund", "no grant matches (deny by default)")
        ]
        # The transaction's own write is gone; the denial is not.
        assert admin.execute(
            "SELECT count(*) FROM app.orders WHERE item = 'rolled back with the denial'"
        ).fetchone()[0] == 0
        assert admin.execute("SELECT count(*) FROM tenant_guard.verify_audit_chain('globex')").fetchone()[0] == 0
        # Tenant-scoped: globex reads its denial, acme does not.
        for tenant, visible in (("globex", 1), ("acme", 0)):
            with app.transaction():
                set_context(app, tenant, "someone", "admin")
                assert app.execute(
                    "SELECT count(*) FROM tenant_guard.audit_log WHERE trace_id = %s", (trace,)
                ).fetchone()[0] == visible


def test_denials_in_a_loop_are_all_audited(cluster):
    """One writer in flight per backend: the next denial waits for the previous writer, so a
    client that provokes denials as fast as it can loses none of them."""
    prepare(cluster)
    trace = f"loop-{uuid.uuid4()}"
    count = 40
    with cluster.connect() as app, cluster.connect(user="postgres") as admin:
        started = time.perf_counter()
        for _ in range(count):
            with pytest.raises(errors.InsufficientPrivilege):
                with app.transaction():
                    set_context(app, "acme", "meg", "member", trace)
                    app.execute("SELECT tenant_guard.require_action('tool:client_refund')")
        elapsed = time.perf_counter() - started
        rows = wait_for_denials(admin, trace, count)
        print(f"{count} denials in {elapsed * 1000:.0f} ms ({elapsed / count * 1000:.1f} ms each)")
        assert len(rows) == count
        assert admin.execute("SELECT count(*) FROM tenant_guard.verify_audit_chain('acme')").fetchone()[0] == 0


def test_user_private_rows_through_pgbouncer(plain_cluster, pgbouncer):
    """Transaction pooling, one server connection: alice, bob and the tenant's admin take turns
    on the same backend; bob never reads alice's memory, the admin reads both."""
    prepare(plain_cluster)
    marker = f"case-{uuid.uuid4()}"
    with pgbouncer.connect() as alice, pgbouncer.connect() as bob, pgbouncer.connect() as admin:
        with alice.transaction():
            set_context(alice, "acme", "alice", "member")
            alice.execute("INSERT INTO app.memories (fact) VALUES (%s)", (marker,))
        with bob.transaction():
            set_context(bob, "acme", "bob", "member")
            assert bob.execute("SELECT fact FROM app.memories WHERE fact = %s", (marker,)).fetchall() == []
            bob.execute("INSERT INTO app.memories (fact) VALUES (%s)", (marker + "-bob",))
        with bob.transaction():
            # A transaction that forgets its context gets the missing-context error, never alice's.
            with pytest.raises(errors.InsufficientPrivilege):
                bob.execute("SELECT fact FROM app.memories")
        with admin.transaction():
            set_context(admin, "acme", None, "admin")
            owners = admin.execute(
                "SELECT owner_id FROM app.memories WHERE fact LIKE %s ORDER BY owner_id", (marker + "%",)
            ).fetchall()
            assert owners == [("alice",), ("bob",)]
        with alice.transaction():
            set_context(alice, "globex", "alice", "admin")
            assert alice.execute(
                "SELECT count(*) FROM app.memories WHERE fact LIKE %s", (marker + "%",)
            ).fetchone()[0] == 0
