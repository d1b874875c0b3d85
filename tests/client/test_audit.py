"""Audit over real sockets: concurrent writers of one tenant keep its hash chain valid (audited
tables chain by default), and the audit log stays tenant-scoped for the normal app role."""

import threading

from conftest import Cluster

WRITERS = 6
STATEMENTS = 15

SETUP = """
SET ROLE tg_owner;
CREATE TABLE app.transfers (id bigserial PRIMARY KEY, tenant_id text NOT NULL, amount int NOT NULL, iban text);
RESET ROLE;
SELECT tenant_guard.enable_tenant_audit('app.transfers', redact_columns => '{iban}');
"""


def writer(cluster: Cluster, tenant: str, number: int, failures: list):
    try:
        with cluster.connect() as conn:
            for statement in range(STATEMENTS):
                with conn.transaction():
                    conn.execute("SELECT tenant_guard.set_tenant_context(%s, %s)", (tenant, f"writer-{number}"))
                    # Several rows per statement, and an UPDATE: each appends to the same chain.
                    conn.execute(
                        "INSERT INTO app.transfers (amount, iban) SELECT g, 'DE89370400440532013000' "
                        "FROM generate_series(1, 3) g"
                    )
                    conn.execute("UPDATE app.transfers SET amount = amount + 1 WHERE id = "
                                 "(SELECT max(id) FROM app.transfers)")
    except Exception as exc:  # reported by the main thread
        failures.append((number, repr(exc)))


def test_concurrent_writers_of_one_tenant_keep_the_chain_valid(plain_cluster):
    with plain_cluster.connect(user="postgres") as admin:
        admin.execute(SETUP)
    failures = []
    threads = [threading.Thread(target=writer, args=(plain_cluster, "chained", i, failures)) for i in range(WRITERS)]
    threads += [threading.Thread(target=writer, args=(plain_cluster, "other", WRITERS, failures))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []

    with plain_cluster.connect(user="postgres") as admin:
        for tenant, writers in (("chained", WRITERS), ("other", 1)):
            expected = writers * STATEMENTS * 4  # 3 inserted rows + 1 updated row per transaction
            seqs = admin.execute(
                "SELECT count(*), min(chain_seq), max(chain_seq), count(DISTINCT chain_seq) "
                "FROM tenant_guard.audit_log WHERE tenant_id = %s", (tenant,)
            ).fetchone()
            assert seqs == (expected, 1, expected, expected)
            assert admin.execute("SELECT * FROM tenant_guard.verify_audit_chain(%s)", (tenant,)).fetchall() == []
        leaked = admin.execute(
            "SELECT count(*) FROM tenant_guard.audit_log WHERE audit_log::text LIKE '%DE89370400440532013000%'"
        ).fetchone()
        assert leaked == (0,)

    # Tenant-scoped through the normal path: each tenant sees only its own audit rows.
    with plain_cluster.connect() as app:
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context('other')")
            seen = app.execute("SELECT DISTINCT tenant_id FROM tenant_guard.audit_log").fetchall()
            assert seen == [("other",)]
