"""make bench-citus: what single-shard routing buys on a Citus cluster.

Starts a coordinator and two workers (scripts/cluster, citus and tenant_guard preloaded),
distributes a protected table (32 shards) with BENCH_TENANTS tenants of BENCH_ROWS_PER_TENANT
rows, and runs two tenant workloads through pgbench as a non-superuser, each transaction setting
a random tenant's context first, with routing off (Citus alone: one task per shard) and on;
and, for reference, the same queries as a BYPASSRLS role that filters by tenant itself (no
tenant_guard in the path: no policies, no carrier, no origin check):

- point lookup: one row by primary key;
- tenant scan: count(*) and sum over the tenant's rows.

Prints the task count of each query and the median latency of ROUNDS rounds, side by side.
Settings (environment): BENCH_TENANTS (100), BENCH_ROWS_PER_TENANT (100), BENCH_SECONDS (5),
BENCH_ROUNDS (3), BENCH_CLIENTS (2). Needs Citus installed (scripts/build-citus).
"""

import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
CLUSTER = REPO / "scripts" / "cluster"
PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")
SECRET = "bench-cluster-secret-0123456789abcdef0123"

TENANTS = int(os.environ.get("BENCH_TENANTS", 100))
ROWS = int(os.environ.get("BENCH_ROWS_PER_TENANT", 100))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", 2))

# (under tenant_guard's policies, with the application's own tenant filter)
WORKLOADS = {
    "point lookup": ("SELECT body FROM app.notes WHERE id = :id;",
                     "SELECT body FROM app.notes WHERE tenant_id = 'tenant-' || :t AND id = :id;"),
    "tenant scan": ("SELECT count(*), sum(length(body)) FROM app.notes;",
                    "SELECT count(*), sum(length(body)) FROM app.notes WHERE tenant_id = 'tenant-' || :t;"),
}


def start(directory, name):
    path = directory / name
    secret = directory / f"{name}.secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(secret, user="postgres")
    subprocess.run([str(CLUSTER), "start", str(path),
                    "--conf", "shared_preload_libraries = 'citus,tenant_guard'",
                    "--conf", "max_prepared_transactions = 100",
                    "--conf", f"tenant_guard.cluster_secret_file = '{secret}'"],
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(item.split("=", 1) for item in (path / "env").read_text().split()[1:])
    return path, int(env["PGPORT"])


def psql(port, sql, user="postgres"):
    return subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                           "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "postgres", "-c", sql],
                          check=True, capture_output=True, text=True).stdout


def pgbench(port, script, directory, user="bench_app"):
    file = directory / "workload.sql"
    file.write_text(script)
    file.chmod(0o644)
    done = subprocess.run([str(PG_BIN / "pgbench"), "-n", "-M", "prepared", "-c", str(CLIENTS),
                           "-j", str(CLIENTS), "-T", str(SECONDS), "-h", "127.0.0.1", "-p", str(port),
                           "-U", user, "-f", str(file), "postgres"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    return float(re.search(r"latency average = ([\d.]+) ms", done.stdout).group(1))


def main():
    if not pathlib.Path("/usr/share/postgresql/15/extension/citus.control").exists():
        print("bench-citus: skipped, Citus is not installed (scripts/build-citus needs CITUS_SRC)")
        return 0
    directory = pathlib.Path(tempfile.mkdtemp(prefix="bench-citus-"))
    directory.chmod(0o755)
    nodes = []
    try:
        for name in ("coordinator", "worker1", "worker2"):
            nodes.append(start(directory, name))
        for _, port in nodes:
            psql(port, "CREATE EXTENSION citus")
        coordinator = nodes[0][1]
        psql(coordinator, f"SELECT citus_set_coordinator_host('127.0.0.1', {coordinator})")
        for _, port in nodes[1:]:
            psql(coordinator, f"SELECT citus_add_node('127.0.0.1', {port})")
        psql(coordinator, """
            CREATE EXTENSION tenant_guard;
            CREATE ROLE bench_app LOGIN;
            CREATE ROLE bench_direct LOGIN BYPASSRLS;
            GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean),
                                      tenant_guard.distribute_table(regclass, integer, text) TO bench_app;
            CREATE SCHEMA app AUTHORIZATION bench_app;""")
        psql(coordinator, """
            CREATE TABLE app.notes (id bigserial, tenant_id text NOT NULL, body text, PRIMARY KEY (tenant_id, id));
            SELECT tenant_guard.distribute_table('app.notes');
            GRANT USAGE ON SCHEMA app TO bench_direct;
            GRANT SELECT ON app.notes TO bench_direct;""", user="bench_app")
        values = ", ".join(f"('row {i} of a tenant note')" for i in range(ROWS))
        load = "".join(f"BEGIN; SELECT tenant_guard.set_tenant_context('tenant-{t}'); "
                       f"INSERT INTO app.notes (body) VALUES {values}; COMMIT; " for t in range(TENANTS))
        subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-p", str(coordinator), "-U", "bench_app", "-d", "postgres"],
                       input=load, check=True, text=True, stdout=subprocess.DEVNULL)
        ids = int(psql(coordinator, "SELECT max(id) FROM app.notes"))
        results = []
        for name, (query, direct) in WORKLOADS.items():
            script = (f"\\set t random(0, {TENANTS - 1})\n\\set id random(1, {ids})\n"
                      "BEGIN;\nSELECT tenant_guard.set_tenant_context('tenant-' || :t);\n"
                      f"{query}\nCOMMIT;\n")
            explain = query.replace(":id", "1")
            direct_script = (f"\\set t random(0, {TENANTS - 1})\n\\set id random(1, {ids})\n"
                             f"BEGIN;\n{direct}\nCOMMIT;\n")
            row = {"workload": name}
            plan = psql(coordinator, "EXPLAIN (COSTS OFF) " + direct.replace(":t", "1").replace(":id", "1"),
                        user="bench_direct")
            row["tasks_direct"] = int(re.search(r"Task Count: (\d+)", plan).group(1))
            row["ms_direct"] = []
            for routed in ("off", "on"):
                psql(coordinator, f"ALTER ROLE bench_app SET tenant_guard.route_tenant_queries = {routed}")
                plan = psql(coordinator, f"BEGIN; SELECT tenant_guard.set_tenant_context('tenant-1'); "
                                         f"EXPLAIN (COSTS OFF) {explain} COMMIT;", user="bench_app")
                row[f"tasks_{routed}"] = int(re.search(r"Task Count: (\d+)", plan).group(1))
                row[f"ms_{routed}"] = []
            for _ in range(ROUNDS):
                for routed in ("off", "on"):
                    psql(coordinator, f"ALTER ROLE bench_app SET tenant_guard.route_tenant_queries = {routed}")
                    row[f"ms_{routed}"].append(pgbench(coordinator, script, directory))
                row["ms_direct"].append(pgbench(coordinator, direct_script, directory, user="bench_direct"))
            results.append(row)
        print(f"Citus 13.2: coordinator + 2 workers on one machine ({os.cpu_count()} cores), 32 shards, "
              f"{TENANTS} tenants x {ROWS} rows; pgbench -M prepared -c {CLIENTS} -T {SECONDS}, {ROUNDS} rounds, "
              "each transaction: set a random tenant's context, the query, commit. Latency: median of the rounds' "
              "average transaction latency.\n")
        print("| workload | tasks, Citus alone | tasks, routed | ms, Citus alone | ms, routed | speed-up "
              "| tasks, own filter | ms, own filter | routed / own filter |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in results:
            off, on = statistics.median(row["ms_off"]), statistics.median(row["ms_on"])
            own = statistics.median(row["ms_direct"])
            print(f"| {row['workload']} | {row['tasks_off']} | {row['tasks_on']} | {off:.2f} | {on:.2f} "
                  f"| {off / on:.1f}x | {row['tasks_direct']} | {own:.2f} | {on / own:.2f} |")
        print("\nown filter: a BYPASSRLS role adds WHERE tenant_id = ... itself; no tenant_guard in the path.")
    finally:
        for path, _ in nodes:
            subprocess.run([str(CLUSTER), "stop", str(path), "--remove"], check=False)


if __name__ == "__main__":
    sys.exit(main())
