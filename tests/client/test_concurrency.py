"""Many sessions, many tenants, at the same time: each sees exactly its own rows."""

import threading

from conftest import Cluster

TENANTS = 8
ROUNDS = 40


def worker(cluster: Cluster, tenant: str, failures: list):
    try:
        with cluster.connect() as conn:
            for round_ in range(ROUNDS):
                with conn.transaction():
                    conn.execute("SELECT tenant_guard.set_tenant_context(%s, %s)", (tenant, f"user-{round_}"))
                    conn.execute("INSERT INTO app.orders (item) VALUES (%s)", (f"{tenant}-{round_}",))
                    seen = conn.execute(
                        "SELECT count(*), count(*) FILTER (WHERE tenant_id <> %s) FROM app.orders", (tenant,)
                    ).fetchone()
                    if seen != (round_ + 1, 0):
                        failures.append((tenant, round_, seen))
    except Exception as exc:  # reported by the main thread
        failures.append((tenant, "exception", repr(exc)))


def test_concurrent_tenants_stay_isolated(plain_cluster):
    failures = []
    threads = [
        threading.Thread(target=worker, args=(plain_cluster, f"concurrent-{i}", failures))
        for i in range(TENANTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with plain_cluster.connect(user="postgres") as admin:
        per_tenant = admin.execute(
            "SELECT count(DISTINCT tenant_id), min(n), max(n) FROM "
            "(SELECT tenant_id, count(*) AS n FROM app.orders WHERE tenant_id LIKE 'concurrent-%' GROUP BY 1) s"
        ).fetchone()
        assert per_tenant == (TENANTS, ROUNDS, ROUNDS)
