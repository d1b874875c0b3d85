"""Isolation under load, through a real PgBouncer and without one (issue 11, "real-client proof").

Through PgBouncer (transaction pooling, one server connection, more clients than that): 20,000
transactions from clients that switch tenants every transaction. Each writes a client-unique
marker and reads back its markers of every tenant: it must see the one it just wrote and none of
another tenant's; every 100th transaction a client forgets its context and must get the
missing-context error (42501), never the previous tenant's rows. The statements are the same
texts for every tenant, sent as unnamed extended-protocol statements (psycopg's default for a
query with parameters; PgBouncer 1.18 does not carry named prepared statements). Without a
pooler: 4 x cores sessions doing the same. At the end, each tenant holds exactly the rows the
clients committed for it. The counts are printed."""

import os
import threading
import time

from psycopg import errors

TENANTS = [f"load-{n}" for n in range(7)]
POOLED_TRANSACTIONS = 20_000
POOLED_CLIENTS = 8
DIRECT_SESSIONS = 4 * (os.cpu_count() or 1)
DIRECT_TRANSACTIONS = 4_000


def create_table(cluster, name):
    with cluster.connect(user="postgres") as conn:
        conn.execute("SET ROLE tg_owner")
        conn.execute(f"CREATE TABLE app.{name} (tenant_id text NOT NULL, client int NOT NULL, "
                     f"marker text NOT NULL, PRIMARY KEY (tenant_id, marker))")
        conn.execute(f"CREATE INDEX ON app.{name} (marker)")


def client(connect, table, number, transactions, results, failures, deadline=None):
    """One client: `transactions` transactions (or until `deadline`, a time.monotonic()), a new
    tenant each time. Its counts and latencies go to `results` once it is done (no counter is
    shared between threads)."""
    stats = {"transactions": 0, "foreign_rows": 0, "refused": 0}
    latency = {"write and read back": [], "no context": []}
    committed = {}
    previous = None
    try:
        with connect() as conn:
            for i in range(transactions):
                if deadline is not None and time.monotonic() > deadline:
                    break
                started = time.monotonic()
                tenant = TENANTS[(number + i) % len(TENANTS)]
                if i % 100 == 99:
                    # A client that forgets its context gets the error, whatever the backend did
                    # for the client before it.
                    try:
                        conn.execute(f"SELECT count(*) FROM app.{table}")
                        failures.append((number, i, "no error without a context"))
                    except errors.InsufficientPrivilege:
                        stats["refused"] += 1
                    latency["no context"].append(time.monotonic() - started)
                    continue
                marker = f"{number}-{i}"
                with conn.transaction():
                    conn.execute("SELECT tenant_guard.set_tenant_context(%s)", (tenant,))
                    conn.execute(f"INSERT INTO app.{table} (client, marker) VALUES (%s, %s)", (number, marker))
                    wanted = [marker] + ([previous[1]] if previous else [])
                    rows = conn.execute(f"SELECT tenant_id, marker FROM app.{table} WHERE marker = ANY(%s)",
                                        (wanted,)).fetchall()
                foreign = [r for r in rows if r[0] != tenant]
                if foreign or (tenant, marker) not in rows:
                    failures.append((number, i, tenant, rows))
                latency["write and read back"].append(time.monotonic() - started)
                stats["transactions"] += 1
                stats["foreign_rows"] += len(foreign)
                committed[tenant] = committed.get(tenant, 0) + 1
                previous = (tenant, marker)
    except Exception as exc:  # reported by the main thread
        failures.append((number, "exception", repr(exc)))
    results.append((stats, committed, latency))


def run_clients(connect, table, clients, transactions_each, deadline=None):
    results, failures = [], []
    threads = [threading.Thread(target=client, args=(connect, table, n, transactions_each, results, failures, deadline))
               for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = {key: sum(r[0][key] for r in results) for key in ("transactions", "foreign_rows", "refused")}
    stats["committed"] = [r[1] for r in results]
    stats["latency"] = {kind: sorted(x for r in results for x in r[2][kind]) for kind in results[0][2]} if results else {}
    stats["seconds"] = time.monotonic() - started
    assert len(results) == clients, failures
    return stats, failures


def per_tenant(cluster, table):
    with cluster.connect(user="postgres") as conn:
        return dict(conn.execute(f"SELECT tenant_id, count(*) FROM app.{table} GROUP BY 1").fetchall())


def expected(stats):
    totals = {}
    for committed in stats["committed"]:
        for tenant, n in committed.items():
            totals[tenant] = totals.get(tenant, 0) + n
    return totals


def report(kind, clients, stats):
    print(f"\n{kind}: {clients} clients, {stats['transactions']:,} transactions committed, "
          f"{stats['refused']:,} without a context refused (42501), {stats['foreign_rows']} foreign rows seen, "
          f"{stats['seconds']:.1f} s ({stats['transactions'] / stats['seconds']:,.0f} tps)")


def test_pooled_clients_switching_tenants(plain_cluster, pgbouncer):
    create_table(plain_cluster, "load_pooled")
    each = POOLED_TRANSACTIONS // POOLED_CLIENTS
    stats, failures = run_clients(pgbouncer.connect, "load_pooled", POOLED_CLIENTS, each)
    report("through PgBouncer (transaction pooling, 1 server connection)", POOLED_CLIENTS, stats)
    assert failures == []
    assert stats["foreign_rows"] == 0
    assert stats["transactions"] + stats["refused"] == POOLED_TRANSACTIONS
    assert stats["refused"] == POOLED_TRANSACTIONS // 100
    assert per_tenant(plain_cluster, "load_pooled") == expected(stats)


def test_direct_sessions_switching_tenants(plain_cluster):
    create_table(plain_cluster, "load_direct")
    each = DIRECT_TRANSACTIONS // DIRECT_SESSIONS
    stats, failures = run_clients(plain_cluster.connect, "load_direct", DIRECT_SESSIONS, each)
    report("direct sessions", DIRECT_SESSIONS, stats)
    assert failures == []
    assert stats["foreign_rows"] == 0
    assert per_tenant(plain_cluster, "load_direct") == expected(stats)
