"""make soak (not part of make test): the pooled workload of test_load.py for SOAK_MINUTES
minutes (default 10) through a real PgBouncer in transaction pooling mode. Prints transactions,
leaks (foreign rows seen: must be 0), errors, and p50/p99 latency per transaction type."""

import os
import time

from test_load import POOLED_CLIENTS, create_table, expected, per_tenant, run_clients


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def test_soak(plain_cluster, pgbouncer):
    minutes = float(os.environ.get("SOAK_MINUTES", "10"))
    create_table(plain_cluster, "soak")
    stats, failures = run_clients(pgbouncer.connect, "soak", POOLED_CLIENTS, 10**12,
                                  deadline=time.monotonic() + minutes * 60)
    total = stats["transactions"] + stats["refused"]
    print(f"\nsoak: {minutes:g} min through PgBouncer (transaction pooling, 1 server connection), "
          f"{POOLED_CLIENTS} clients switching tenants every transaction")
    print(f"  transactions: {total:,} ({total / stats['seconds']:,.0f} per second)")
    print(f"  leaks (foreign rows seen): {stats['foreign_rows']}")
    print(f"  errors: {len(failures)}")
    print("  | transaction type | count | p50 ms | p99 ms |")
    print("  |---|---:|---:|---:|")
    for kind, values in stats["latency"].items():
        print(f"  | {kind} | {len(values):,} | {percentile(values, 0.5) * 1000:.2f} | "
              f"{percentile(values, 0.99) * 1000:.2f} |")
    assert failures == []
    assert stats["foreign_rows"] == 0
    assert per_tenant(plain_cluster, "soak") == expected(stats)
