"""Crash safety (issue 11): `kill -9` of a backend, then of the postmaster, in the middle of
audited write transactions. After the restart, data and audit log agree exactly (every row has
its INSERT and UPDATE audit rows, and no audit row names a row that is not there) and every
tenant's hash chain verifies. The cluster is this module's own: it is killed."""

import os
import pathlib
import signal
import subprocess
import threading
import time

import psycopg
import pytest

from conftest import Cluster, _workdir

TENANTS = ["crash-a", "crash-b", "crash-c"]
WRITERS = 4


def as_pg_user(*command):
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + list(command), capture_output=True, text=True)


def writer(cluster, number, stop, counts):
    """Audited write transactions until `stop`, reconnecting after every crash."""
    i = 0
    while not stop.is_set():
        try:
            with cluster.connect(application_name="crash-writer") as conn:
                while not stop.is_set():
                    tenant = TENANTS[(number + i) % len(TENANTS)]
                    i += 1
                    with conn.transaction():
                        conn.execute("SELECT tenant_guard.set_tenant_context(%s)", (tenant,))
                        row_id = conn.execute("INSERT INTO app.ledger (amount) VALUES (%s) RETURNING id",
                                              (i,)).fetchone()[0]
                        conn.execute("UPDATE app.ledger SET amount = amount + 1 WHERE id = %s", (row_id,))
                    counts[number] += 1
        except psycopg.Error:
            time.sleep(0.2)  # the server is restarting


def backend_pids(cluster):
    with cluster.connect(user="postgres") as conn:
        return [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'crash-writer'")]


def wait_until_up(cluster, seconds=60):
    deadline = time.time() + seconds
    while True:
        try:
            with cluster.connect(user="postgres") as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


def start_postmaster(cluster, seconds=60):
    """pg_ctl start, retried until the killed postmaster's backends have gone."""
    data = cluster.directory / "data"
    deadline = time.time() + seconds
    while True:
        result = as_pg_user("/usr/lib/postgresql/15/bin/pg_ctl", "-D", str(data), "-l",
                            str(cluster.directory / "server.log"), "-w", "-t", "60", "start")
        if result.returncode == 0:
            return
        if time.time() > deadline:
            raise AssertionError(result.stdout + result.stderr)
        time.sleep(1)


@pytest.fixture(scope="module")
def crash_cluster():
    c = Cluster(_workdir() / "pg", preload=True)
    with c.connect(user="postgres") as conn:
        # The throwaway clusters run with synchronous_commit = off, which may lose acknowledged
        # commits in a crash by design; this test counts them.
        conn.execute("ALTER SYSTEM SET synchronous_commit = on")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("SET ROLE tg_owner")
        conn.execute("CREATE TABLE app.ledger (tenant_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,"
                     " amount int NOT NULL, PRIMARY KEY (tenant_id, id))")
        conn.execute("RESET ROLE")
        conn.execute("SELECT tenant_guard.enable_tenant_audit('app.ledger')")
    yield c
    c.stop()


def test_kill_9_of_a_backend_and_of_the_postmaster_keeps_data_and_audit_in_step(crash_cluster):
    stop = threading.Event()
    counts = [0] * WRITERS
    threads = [threading.Thread(target=writer, args=(crash_cluster, n, stop, counts)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        victims = backend_pids(crash_cluster)
        assert victims, "no writer is connected"
        os.kill(victims[0], signal.SIGKILL)  # the postmaster restarts every backend
        wait_until_up(crash_cluster)
        time.sleep(1.5)
        postmaster = int((crash_cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        time.sleep(0.5)
        start_postmaster(crash_cluster)
        wait_until_up(crash_cluster)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    committed = sum(counts)
    assert committed > 0
    with crash_cluster.connect(user="postgres") as conn:
        rows = conn.execute("SELECT tenant_id, id::text, amount FROM app.ledger").fetchall()
        audit = conn.execute(
            "SELECT tenant_id, pk->>'id', op, count(*) FROM tenant_guard.audit_log"
            " WHERE table_name = 'ledger' GROUP BY 1, 2, 3").fetchall()
        broken = {t: conn.execute("SELECT * FROM tenant_guard.verify_audit_chain(%s)", (t,)).fetchall()
                  for t in TENANTS}
    in_table = {(t, i) for t, i, _ in rows}
    inserts = {(t, i): n for t, i, op, n in audit if op == "INSERT"}
    updates = {(t, i): n for t, i, op, n in audit if op == "UPDATE"}
    print(f"\ncrash: {committed:,} transactions acknowledged, {len(rows):,} rows after two kill -9, "
          f"{sum(inserts.values()) + sum(updates.values()):,} audit rows, chains of {len(TENANTS)} tenants verified")
    assert len(rows) >= committed  # a commit may land before its acknowledgement is read
    assert set(inserts) == in_table and set(updates) == in_table, "a change without its audit row, or the reverse"
    assert set(inserts.values()) == {1} and set(updates.values()) == {1}
    assert broken == {t: [] for t in TENANTS}
