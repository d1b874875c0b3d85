"""tenant_guard on a real Citus cluster: a coordinator and two workers on loopback, each a
throwaway PostgreSQL 15 cluster run by an unprivileged OS user, with citus and tenant_guard
preloaded. Run with `make test-citus` (scripts/test citus), which builds Citus from its vendored
source first.

What is proved here: a protected table distributes through tenant_guard.distribute_table with
its protection on every shard; tenants are isolated across nodes whatever the placement; the
context reaches workers only as a carrier the coordinator signed for the distributed
transaction (forged, tampered, foreign, expired and replayed carriers get nothing, 42501);
a tenant query runs one task; cached plans follow the tenant; what is not supported is refused.
"""

import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import tempfile
import time

import psycopg
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "cluster"
SECRET = "citus-test-cluster-secret-0123456789abcdef"
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]


class Node:
    def __init__(self, directory, name):
        self.directory = directory / name
        # The secret in a file only the server's OS user reads (a setting would be readable by
        # pg_read_all_settings).
        secret_file = directory / f"{name}.secret"
        secret_file.write_text(SECRET + "\n")
        secret_file.chmod(0o600)
        shutil.chown(secret_file, user="postgres")
        conf = [
            "shared_preload_libraries = 'citus,tenant_guard'",
            "max_prepared_transactions = 100",
            f"tenant_guard.cluster_secret_file = '{secret_file}'",
        ]
        args = [str(CLUSTER), "start", str(self.directory)]
        for line in conf:
            args += ["--conf", line]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        env = (self.directory / "env").read_text().split()[1:]
        env = dict(item.split("=", 1) for item in env)
        self.host, self.port = env["PGHOST"], int(env["PGPORT"])
        with self.connect(user="postgres") as conn:
            conn.execute("CREATE EXTENSION citus")

    def connect(self, user="tg_app", autocommit=True):
        dsn = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in
                       dict(host=self.host, port=self.port, user=user, dbname="postgres").items())
        return psycopg.connect(dsn, autocommit=autocommit, prepare_threshold=None)

    def stop(self):
        subprocess.run([str(CLUSTER), "stop", str(self.directory), "--remove"], check=False)


@pytest.fixture(scope="module")
def cluster():
    base = os.environ.get("TENANT_GUARD_WORK") or tempfile.gettempdir()
    directory = pathlib.Path(tempfile.mkdtemp(prefix="citus-", dir=base))
    directory.chmod(0o755)
    nodes = []
    try:
        for name in ("coordinator", "worker1", "worker2"):
            nodes.append(Node(directory, name))
        coordinator, *workers = nodes
        with coordinator.connect(user="postgres") as conn:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (coordinator.host, coordinator.port))
            for worker in workers:
                conn.execute("SELECT citus_add_node(%s, %s)", (worker.host, worker.port))
            conn.execute("""
                CREATE EXTENSION tenant_guard;
                CREATE ROLE tg_app LOGIN NOSUPERUSER NOBYPASSRLS;
                CREATE ROLE tg_admin LOGIN NOSUPERUSER BYPASSRLS;
                GRANT EXECUTE ON FUNCTION
                    tenant_guard.set_tenant_context(text, text, text, text, text, boolean),
                    tenant_guard.set_tenant_context_api_key(text, boolean),
                    tenant_guard.enable_tenant_rls(regclass, name, boolean, regrole[]),
                    tenant_guard.distribute_table(regclass, integer, text),
                    tenant_guard.reapply_protection(regclass),
                    tenant_guard.disable_tenant_rls(regclass)
                  TO tg_app, tg_admin;
                CREATE SCHEMA app AUTHORIZATION tg_app;
                GRANT USAGE, CREATE ON SCHEMA app TO tg_admin;
                ALTER DEFAULT PRIVILEGES FOR ROLE tg_app IN SCHEMA app GRANT SELECT ON TABLES TO tg_admin;
            """)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def as_tenant(conn, tenant, **kwargs):
    conn.execute("SELECT tenant_guard.set_tenant_context(%s, is_local => false)", (tenant,))


def load(coordinator, table, rows_per_tenant=5):
    with coordinator.connect() as conn:
        for tenant in TENANTS:
            as_tenant(conn, tenant)
            # Multi-row VALUES: Citus runs INSERT ... SELECT through COPY, which row level
            # security refuses (README, "Citus").
            values = ", ".join(["(%s)"] * rows_per_tenant)
            conn.execute(f"INSERT INTO {table} (body) VALUES {values}",
                         [f"{tenant} {i}" for i in range(rows_per_tenant)])
        conn.execute("SELECT tenant_guard.clear_tenant_context()")


@pytest.fixture(scope="module")
def notes(cluster):
    coordinator = cluster[0]
    with coordinator.connect() as conn:
        conn.execute("CREATE TABLE app.notes (id bigserial, tenant_id text NOT NULL, body text,"
                     " PRIMARY KEY (tenant_id, id))")
        conn.execute("SELECT tenant_guard.distribute_table('app.notes')")
    load(coordinator, "app.notes")
    return "app.notes"


def sqlstate(excinfo):
    return excinfo.value.sqlstate


def refused(conn, sql, state):
    """`sql` fails with SQLSTATE `state`."""
    with pytest.raises(psycopg.Error) as excinfo:
        conn.execute(sql)
    assert sqlstate(excinfo) == state, (sql, excinfo.value)


def test_protection_on_every_shard(cluster, notes):
    coordinator = cluster[0]
    with coordinator.connect(user="postgres") as conn:
        shards = conn.execute("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'app.notes'::regclass").fetchone()[0]
        assert shards == 32
        per_shard = conn.execute("""
            SELECT result FROM run_command_on_shards('app.notes', $$
                SELECT (SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = '%1$s'::regclass)
                       || ',' || (SELECT count(*) FROM pg_policy WHERE polrelid = '%1$s'::regclass
                                   AND polname IN ('tenant_guard_isolation', 'tenant_guard_fence')
                                   AND pg_get_expr(polqual, polrelid) = '(tenant_id = tenant_guard.required_tenant_id(NULL::regclass, NULL::text))')
                       || ',' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = '%1$s'::regclass
                                   AND tgname LIKE 'tenant_guard_truncate_guard%%')
            $$)""").fetchall()
        assert len(per_shard) == 32
        assert {row[0] for row in per_shard} == {"true,2,1"}
        # The shell on the coordinator: the flat shape, from the same generator, and no drift.
        quals = {row[0] for row in conn.execute(
            "SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'app.notes'::regclass")}
        assert quals == {"(tenant_id = tenant_guard.required_tenant_id(NULL::regclass, NULL::text))"}
        findings = conn.execute("SELECT code, object FROM tenant_guard.check() WHERE code IN ('TG001', 'TG002', 'TG015')").fetchall()
        assert findings == []
    # Workers protected none of the shards themselves (no registry entries there).
    for worker in cluster[1:]:
        with worker.connect(user="postgres") as conn:
            assert conn.execute("SELECT count(*) FROM tenant_guard.protected_tables").fetchone()[0] == 0


def test_isolation_across_nodes(cluster, notes):
    coordinator = cluster[0]
    with coordinator.connect() as conn:
        for tenant in TENANTS:
            as_tenant(conn, tenant)
            rows = conn.execute("SELECT DISTINCT tenant_id FROM app.notes").fetchall()
            assert rows == [(tenant,)]
            assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 5
            other = next(t for t in TENANTS if t != tenant)
            # Asking for another tenant's rows by name gets nothing, on whichever node they are.
            assert conn.execute("SELECT count(*) FROM app.notes WHERE tenant_id = %s", (other,)).fetchone()[0] == 0
            assert conn.execute("UPDATE app.notes SET body = 'x' WHERE tenant_id = %s", (other,)).rowcount == 0
            assert conn.execute("DELETE FROM app.notes WHERE tenant_id = %s", (other,)).rowcount == 0
            with pytest.raises(psycopg.Error) as excinfo:
                conn.execute("INSERT INTO app.notes (tenant_id, body) VALUES (%s, 'planted')", (other,))
            assert sqlstate(excinfo) == "42501"
        # Transaction-local context, as a pooled application sets it.
        conn.execute("SELECT tenant_guard.clear_tenant_context()")
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context('globex')")
            assert conn.execute("SELECT count(*), min(tenant_id) FROM app.notes").fetchone() == (5, "globex")
        # A savepoint rolled back takes the carrier sent inside it along (Citus forgets its
        # SET LOCAL): the next query sends it again.
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context('initech')")
            conn.execute("SAVEPOINT s")
            assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 5
            conn.execute("ROLLBACK TO SAVEPOINT s")
            assert conn.execute("SELECT count(*), min(tenant_id) FROM app.notes").fetchone() == (5, "initech")
            assert conn.execute("SELECT count(*) FROM app.notes n JOIN app.notes m USING (tenant_id, id)").fetchone()[0] == 5
        # Without a context: refused, on the workers too.
        refused(conn, "SELECT count(*) FROM app.notes", "42501")
    with coordinator.connect(user="tg_admin") as conn:
        assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 5 * len(TENANTS)


def test_results_do_not_depend_on_placement(cluster):
    coordinator = cluster[0]
    with coordinator.connect(user="postgres") as conn:
        conn.execute("SELECT citus_set_node_property(%s, %s, 'shouldhaveshards', true)",
                     (coordinator.host, coordinator.port))
    try:
        with coordinator.connect() as conn:
            conn.execute("CREATE TABLE app.placed (id bigserial, tenant_id text NOT NULL, body text,"
                         " PRIMARY KEY (tenant_id, id))")
            conn.execute("SELECT tenant_guard.distribute_table('app.placed', shard_count => 6, colocate_with => 'none')")
        with coordinator.connect(user="postgres") as conn:
            candidates = [f"tenant-{i}" for i in range(60)]
            placement = dict(conn.execute("""
                SELECT t.tenant, s.nodeport FROM unnest(%s::text[]) t(tenant),
                       LATERAL (SELECT nodeport FROM citus_shards
                                 WHERE shardid = get_shard_id_for_distribution_column('app.placed', t.tenant)) s""",
                (candidates,)).fetchall())
        local = [t for t in candidates if placement[t] == coordinator.port][:2]
        remote = [t for t in candidates if placement[t] != coordinator.port][:3]
        assert len(local) == 2 and len(remote) == 3, placement
        with coordinator.connect() as conn:
            for tenant in local + remote:
                as_tenant(conn, tenant)
                conn.execute("INSERT INTO app.placed (body) VALUES ('row 1'), ('row 2'), ('row 3')")
            # A shard on the coordinator is guarded like one on a worker.
            with coordinator.connect(user="postgres") as admin:
                local_shard = admin.execute(
                    "SELECT shard_name FROM citus_shards WHERE table_name = 'app.placed'::regclass AND nodeport = %s"
                    " LIMIT 1", (coordinator.port,)).fetchone()[0]
            for sql in (f"ALTER TABLE {local_shard} NO FORCE ROW LEVEL SECURITY",
                        f"DROP POLICY tenant_guard_fence ON {local_shard}"):
                refused(conn, sql, "42501")
            for tenant in local + remote:
                as_tenant(conn, tenant)
                assert conn.execute("SELECT count(*), min(tenant_id), max(tenant_id) FROM app.placed").fetchone() \
                    == (3, tenant, tenant), (tenant, placement[tenant])
    finally:
        with coordinator.connect(user="postgres") as conn:
            conn.execute("SELECT citus_set_node_property(%s, %s, 'shouldhaveshards', false)",
                         (coordinator.host, coordinator.port))


def worker_shard(coordinator, tenant):
    """The worker port and shard table that hold `tenant`'s rows of app.notes."""
    with coordinator.connect(user="postgres") as conn:
        return conn.execute("""
            SELECT s.nodeport, s.shard_name FROM citus_shards s
             WHERE s.shardid = get_shard_id_for_distribution_column('app.notes', %s::text)""", (tenant,)).fetchone()


def worker_at(cluster, port):
    return next(node for node in cluster if node.port == port)


def seal(payload, secret=SECRET):
    raw = json.dumps(payload, separators=(",", ":")).encode()
    tag = hmac.new(secret.encode(), b"tenant_guard carrier v1\0" + raw, hashlib.sha256).digest()
    b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
    return f"v1.{b64(raw)}.{b64(tag)}"


def try_carrier(worker, shard, carrier, assign=None):
    with worker.connect() as conn:
        with pytest.raises(psycopg.Error) as excinfo:
            with conn.transaction():
                conn.execute("SELECT set_config('tenant_guard.carrier', %s, true)", (carrier,))
                if assign:
                    conn.execute("SELECT assign_distributed_transaction_id(%s::int, %s::bigint, %s::timestamptz)", assign)
                conn.execute(f"SELECT count(*) FROM {shard}").fetchone()
        return excinfo


def test_forgery_on_a_worker(cluster, notes):
    coordinator = cluster[0]
    port, shard = worker_shard(coordinator, "acme")
    worker = worker_at(cluster, port)
    assert worker is not coordinator
    with worker.connect() as conn:
        refused(conn, "SET tenant_guard.tenant_id = 'acme'", "42501")
        refused(conn, "SELECT tenant_guard.set_tenant_context('acme')", "42501")
        refused(conn, f"SELECT count(*) FROM {shard}", "42501")
    now = int(time.time())
    stamp = "2026-01-01 00:00:00+00"
    micros = (datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
              - datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)
    payload = {"k": "context", "d": "postgres", "t": "acme", "u": None, "r": None, "x": None, "l": None, "n": 0, "q": "424242",
               "s": micros, "i": now}
    cases = [
        ("garbage", None, "malformed"),
        ("v1." + "A" * 9000, None, "malformed"),
        (seal(payload, secret="a guess at the secret that is long enough"), ("0", "424242", stamp), "signature"),
        # Signed with the real secret (as if it leaked from a log line) but for another
        # distributed transaction than the one this backend takes part in.
        (seal(payload), ("0", "424243", stamp), "another distributed transaction"),
        (seal(payload), None, "another distributed transaction"),
        (seal(dict(payload, i=now - 3600)), ("0", "424242", stamp), "too old"),
        # An approval of DDL (right secret, right transaction) is not a context.
        (seal({"k": "approval", "n": 0, "q": "424242", "s": micros, "i": now}), ("0", "424242", stamp), "malformed"),
    ]
    for carrier, assign, reason in cases:
        excinfo = try_carrier(worker, shard, carrier, assign)
        assert sqlstate(excinfo) == "42501", (reason, excinfo.value)
        assert reason in str(excinfo.value), (reason, excinfo.value)
    # The payload altered under a valid MAC.
    good = seal(payload).split(".")
    evil = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(good[1] + "==").replace(b"acme", b"hool")).decode().rstrip("=")
    excinfo = try_carrier(worker, shard, f"v1.{evil}.{good[2]}", ("0", "424242", stamp))
    assert "signature" in str(excinfo.value)


@contextlib.contextmanager
def victim_transaction(coordinator):
    """acme's transaction as tg_app on the coordinator, after it read its 5 rows, open while
    the block runs. Yields the connection, the carrier Citus sent and the distributed
    transaction id it claimed: what the same role can read in a worker's pg_stat_activity while
    Citus sends it (captured here from citus.log_remote_commands)."""
    issued = []
    with coordinator.connect(user="postgres") as conn:
        conn.add_notice_handler(lambda diag: issued.append(diag.message_primary or ""))
        conn.execute("SET citus.log_remote_commands = on")
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context('acme')")
            conn.execute("SET LOCAL ROLE tg_app")
            assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 5
            text = "\n".join(issued)
            carrier = re.search(r"SET LOCAL tenant_guard\.carrier TO '([A-Za-z0-9_.-]+)'", text).group(1)
            ids = re.search(r"assign_distributed_transaction_id\((\d+), (\d+), '([^']+)'\)", text).groups()
            yield conn, carrier, ids


def test_a_replayed_carrier_gets_nothing(cluster, notes):
    coordinator = cluster[0]
    port, shard = worker_shard(coordinator, "acme")
    worker = worker_at(cluster, port)
    with victim_transaction(coordinator) as (_, carrier, (node, number, stamp)):
        pass
    # The coordinator's transaction has ended: the same carrier, with the same transaction id
    # claimed through assign_distributed_transaction_id(), is a replay.
    excinfo = try_carrier(worker, shard, carrier, (node, number, stamp))
    assert sqlstate(excinfo) == "42501"
    assert "replay" in str(excinfo.value), excinfo.value
    # On the coordinator, which started that transaction, the carrier is never adopted.
    with coordinator.connect() as conn:
        with pytest.raises(psycopg.Error) as excinfo:
            with conn.transaction():
                conn.execute("SELECT assign_distributed_transaction_id(%s::int, %s::bigint, %s::timestamptz)",
                             (node, number, stamp))
                conn.execute("SELECT set_config('tenant_guard.carrier', %s, true)", (carrier,))
                conn.execute("SELECT count(*) FROM app.notes").fetchone()
        assert sqlstate(excinfo) == "42501"
        assert "started the distributed transaction" in str(excinfo.value)
        # Nor does a session hand it to Citus to forward to the workers.
        with pytest.raises(psycopg.Error) as excinfo:
            with conn.transaction():
                conn.execute("SET LOCAL citus.propagate_set_commands = 'local'")
                conn.execute(f"SET LOCAL tenant_guard.carrier TO '{carrier}'")
        assert sqlstate(excinfo) == "42501"


def test_a_carrier_replayed_while_its_transaction_is_open_gets_nothing(cluster, notes):
    """The victim's transaction is still open: its carrier, as the worker's pg_stat_activity
    shows it while Citus sends it, replayed on a connection of the attacker's own with the victim's
    distributed transaction claimed, on the worker the victim uses and on one it never touched,
    directly and through Citus's run_command_on_workers, gets nothing. The coordinator does not
    confirm it: the connection is not one of the issuing backend's."""
    coordinator = cluster[0]
    port, shard = worker_shard(coordinator, "acme")
    worker = worker_at(cluster, port)
    other = next(node for node in cluster[1:] if node is not worker)
    other_tenant = next(t for t in TENANTS if worker_shard(coordinator, t)[0] == other.port)
    other_shard = worker_shard(coordinator, other_tenant)[1]
    with victim_transaction(coordinator) as (victim, carrier, ids):
        for node, table in ((worker, shard), (other, other_shard)):
            excinfo = try_carrier(node, table, carrier, ids)
            assert sqlstate(excinfo) == "42501", excinfo.value
            assert "did not confirm" in str(excinfo.value), excinfo.value
        node_id, number, stamp = ids
        # One statement (run_command_on_workers reports the first result only), on the
        # shard each worker holds.
        replay = f"""DO $$ DECLARE n bigint; BEGIN
            PERFORM assign_distributed_transaction_id({node_id}, {number}, '{stamp}');
            PERFORM set_config('tenant_guard.carrier', '{carrier}', true);
            EXECUTE format('SELECT count(*) FROM %s',
                           coalesce(to_regclass('{shard}'), to_regclass('{other_shard}'))) INTO n;
            RAISE EXCEPTION 'adopted: % rows', n;
        END $$"""
        with coordinator.connect() as attacker:
            results = attacker.execute(
                "SELECT nodeport, success, result FROM run_command_on_workers(%s)", (replay,)).fetchall()
        assert len(results) == 2
        for port_, success, result in results:
            assert not success and "did not confirm" in result, results
        # The victim's own transaction goes on.
        assert victim.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 5
    # And after it ended.
    excinfo = try_carrier(worker, shard, carrier, ids)
    assert sqlstate(excinfo) == "42501" and "did not confirm" in str(excinfo.value)
    # A carrier made with the real secret (as if it leaked) for the right transaction, naming
    # a live backend as its origin but without that backend's nonce, is not confirmed either.
    with coordinator.connect() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with worker.connect() as direct:
            with pytest.raises(psycopg.Error) as excinfo:
                with direct.transaction():
                    direct.execute("SELECT assign_distributed_transaction_id(0, 31337, '2026-01-01 00:00:00+00')")
                    micros = (datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
                              - datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)
                    forged = seal({"k": "context", "d": "postgres", "t": "acme", "u": None, "r": None, "x": None,
                                   "l": None, "n": 0, "q": "31337", "s": micros, "i": int(time.time()),
                                   "p": pid, "b": 1, "o": "00" * 16})
                    direct.execute("SELECT set_config('tenant_guard.carrier', %s, true)", (forged,))
                    direct.execute(f"SELECT count(*) FROM {shard}").fetchone()
            assert sqlstate(excinfo) == "42501" and "did not confirm" in str(excinfo.value), excinfo.value


def test_the_origin_check_outlives_a_closed_connection(cluster, notes):
    """A worker keeps its connection to the coordinator for the carrier checks. The same role
    may end it (it runs as that role), and a restart would too: the next check opens a new one
    and the tenant's queries go on."""
    coordinator = cluster[0]
    with coordinator.connect() as conn, coordinator.connect() as other:
        as_tenant(conn, "acme")
        assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 5
        ended = other.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'tenant_guard carrier check' AND usename = current_user").fetchone()[0]
        assert ended >= 1
        for _ in range(3):
            assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 5


def test_shards_are_guarded_on_workers(cluster, notes):
    """The table's owner, connected to a worker directly, cannot weaken a shard.
    tenant_guard's own DDL from the coordinator (reapply_protection) never weakens one."""
    coordinator = cluster[0]
    port, shard = worker_shard(coordinator, "acme")
    worker = worker_at(cluster, port)
    attempts = [
        f"ALTER TABLE {shard} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {shard} DISABLE ROW LEVEL SECURITY",
        f"ALTER POLICY tenant_guard_fence ON {shard} USING (true)",
        f"ALTER POLICY tenant_guard_isolation ON {shard} RENAME TO mine",
        f"DROP POLICY tenant_guard_fence ON {shard}",
        f"ALTER TABLE {shard} DISABLE TRIGGER ALL",
        f"DROP TRIGGER tenant_guard_truncate_guard_{shard.rsplit('_', 1)[1]} ON {shard}",
        f"CREATE RULE leak AS ON UPDATE TO {shard} DO INSTEAD NOTHING",
        # Inheritance either way: a child's rows would show in the shard's results, and a parent
        # without policies would show the shard's rows.
        f"CREATE TABLE app.planted () INHERITS ({shard})",
        f"CREATE TABLE app.wide_open (LIKE {shard}); ALTER TABLE {shard} INHERIT app.wide_open",
    ]
    with worker.connect() as conn:
        for sql in attempts:
            with pytest.raises(psycopg.Error) as excinfo:
                with conn.transaction():
                    conn.execute(sql)
            assert sqlstate(excinfo) == "42501", (sql, excinfo.value)
            assert "tenant_guard" in str(excinfo.value), (sql, excinfo.value)
    with worker.connect(user="postgres") as conn:
        conn.execute("SET citus.show_shards_for_app_name_prefixes = '*'")
        forced, policies = conn.execute(
            "SELECT relforcerowsecurity, (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid)"
            " FROM pg_class c WHERE oid = %s::regclass", (shard,)).fetchone()
        assert (forced, policies) == (True, 2)
    # From the coordinator, through tenant_guard: the shards keep their policies.
    with coordinator.connect() as conn:
        conn.execute("SELECT tenant_guard.reapply_protection('app.notes')")
        refused(conn, "SELECT tenant_guard.disable_tenant_rls('app.notes')", "0A000")
        as_tenant(conn, "acme")
        assert conn.execute("SELECT count(*), min(tenant_id), max(tenant_id) FROM app.notes").fetchone() == (5, "acme", "acme")


def explain_task_count(conn, query, params=()):
    plan = "\n".join(row[0] for row in conn.execute("EXPLAIN (COSTS OFF) " + query, params))
    return int(re.search(r"Task Count: (\d+)", plan).group(1))


def test_tenant_queries_run_one_task(cluster, notes):
    coordinator = cluster[0]
    with coordinator.connect() as conn:
        as_tenant(conn, "acme")
        assert explain_task_count(conn, "SELECT * FROM app.notes") == 1
        assert explain_task_count(conn, "SELECT * FROM app.notes WHERE id = 1") == 1
        assert explain_task_count(conn, "UPDATE app.notes SET body = body") == 1
        assert explain_task_count(conn, "SELECT count(*) FROM app.notes n LEFT JOIN app.notes m ON m.id = n.id + 1000") == 1
    with coordinator.connect(user="postgres") as conn:
        conn.execute("SET tenant_guard.route_tenant_queries = off")
        conn.execute("SELECT tenant_guard.set_tenant_context('acme', is_local => false)")
        conn.execute("SET ROLE tg_app")
        assert explain_task_count(conn, "SELECT * FROM app.notes") == 32
        assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 5


def test_cached_plans_follow_the_tenant(cluster, notes):
    coordinator = cluster[0]
    with coordinator.connect() as conn:
        conn.execute("PREPARE mine AS SELECT count(*), min(tenant_id), max(tenant_id) FROM app.notes")
        conn.execute("PREPARE one(bigint) AS SELECT tenant_id FROM app.notes WHERE id = $1")
        for tenant in ["acme", "acme", "globex", "acme", "initech"]:
            as_tenant(conn, tenant)
            for _ in range(7):  # past the point where PostgreSQL settles on a generic plan
                assert conn.execute("EXECUTE mine").fetchone() == (5, tenant, tenant)
        ids = {}
        with coordinator.connect(user="tg_admin") as admin:
            for tenant, row_id in admin.execute("SELECT tenant_id, min(id) FROM app.notes GROUP BY 1"):
                ids[tenant] = row_id
        for tenant in ["hooli", "stark", "hooli"]:
            as_tenant(conn, tenant)
            for _ in range(7):
                assert conn.execute(f"EXECUTE one({int(ids[tenant])})").fetchone() == (tenant,)
                assert conn.execute(f"EXECUTE one({int(ids['acme'])})").fetchone() is None


def test_authenticated_context_crosses_nodes(cluster, notes):
    coordinator = cluster[0]
    with coordinator.connect(user="postgres") as conn:
        for tenant in ("acme", "globex"):
            conn.execute("SELECT tenant_guard.add_tenant(%s)", (tenant,))
        key = conn.execute("SELECT tenant_guard.issue_api_key('globex', 'member', '1 hour', 'citus test')").fetchone()[0]
    with coordinator.connect() as conn:
        conn.execute("SELECT tenant_guard.set_tenant_context_api_key(%s, is_local => false)", (key,))
        assert conn.execute("SELECT count(*), min(tenant_id), max(tenant_id) FROM app.notes").fetchone() == (5, "globex", "globex")
        assert conn.execute("SELECT count(*) FROM app.notes WHERE tenant_id = 'acme'").fetchone()[0] == 0


def test_confirm_carrier_origin_answers_no_to_bad_questions(cluster):
    """Any role may ask the coordinator; bad questions get false (NULL for a NULL), never an
    error or a yes."""
    coordinator = cluster[0]
    with coordinator.connect() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        good = [pid, 1, "00" * 16, "127.0.0.1", 5432, "127.0.0.1", 5432]
        bad = {
            1: [0, -1, 10 ** 6, 2 ** 31 - 1],
            2: ["", "zz" * 16, "00" * 17, "0" * 10 ** 6, "é" * 16, "'; SELECT 1; --"],
            3: ["", "not an address", "999.1.1.1", "::zz", "127.0.0.1'; DROP TABLE app.notes; --", "x" * 10 ** 5],
            4: [-1, 0, 65536, 2 ** 31 - 1],
        }
        sql = "SELECT tenant_guard.confirm_carrier_origin(%s, %s, %s, %s, %s, %s, %s)"
        assert conn.execute(sql, good).fetchone()[0] is False
        for position, values in bad.items():
            for value in values:
                args = list(good)
                args[position] = value
                assert conn.execute(sql, args).fetchone()[0] is False, (position, value)
        assert conn.execute(sql, [None] + good[1:]).fetchone()[0] is None
        refused(conn, "SELECT tenant_guard.confirm_carrier_origin('x', 1, '', '', 1, '', 1)", "22P02")


def test_refusals(cluster, notes):
    coordinator = cluster[0]
    with coordinator.connect() as conn:
        as_tenant(conn, "acme")
        refused(conn, "TRUNCATE app.notes", "42501")
        conn.execute("CREATE TABLE app.loose (id bigserial PRIMARY KEY, body text)")
        cases = [
            ("SELECT tenant_guard.distribute_table(NULL)", "22023"),
            ("SELECT tenant_guard.distribute_table('app.loose')", "55000"),       # not protected
            ("SELECT tenant_guard.distribute_table('app.notes', shard_count => 0)", "22023"),
            ("SELECT tenant_guard.distribute_table('app.notes', colocate_with => NULL)", "22023"),
            ("SELECT tenant_guard.distribute_table('app.notes', colocate_with => '')", "22023"),
        ]
        for sql, state in cases:
            refused(conn, sql, state)
        # A table with rows: its owner cannot read them across tenants to copy them.
        conn.execute('CREATE TABLE app."we;ird ""name" (id bigserial, tenant_id text NOT NULL, PRIMARY KEY (tenant_id, id))')
        conn.execute('INSERT INTO app."we;ird ""name" DEFAULT VALUES')
        refused(conn, """SELECT tenant_guard.distribute_table('app."we;ird ""name"')""", "55000")
    # As a BYPASSRLS role that owns it, it is distributed, rows and hostile name included.
    with coordinator.connect(user="postgres") as conn:
        conn.execute('ALTER TABLE app."we;ird ""name" OWNER TO tg_admin')
    with coordinator.connect(user="tg_admin") as conn:
        conn.execute("""SELECT tenant_guard.distribute_table('app."we;ird ""name"')""")
        assert conn.execute('SELECT count(*) FROM app."we;ird ""name"').fetchone()[0] == 1
        notices = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
        conn.execute("""SELECT tenant_guard.distribute_table('app."we;ird ""name"')""")
        assert any("distributed already" in n for n in notices), notices
    with coordinator.connect(user="postgres") as conn:
        refused(conn, "SELECT tenant_guard.enable_tenant_audit('app.notes')", "0A000")
        refused(conn, "SELECT tenant_guard.set_table_permissions('app.notes', 'viewer', '{SELECT}')", "0A000")
    worker = cluster[1]
    with worker.connect(user="postgres") as conn:
        conn.execute("CREATE TABLE public.local_on_worker (id int, tenant_id text)")
        # Not the coordinator: nothing to distribute from here, and no auto-protection.
        assert conn.execute("SELECT count(*) FROM tenant_guard.protected_tables").fetchone()[0] == 0
        with pytest.raises(psycopg.Error) as excinfo:
            conn.execute("SELECT tenant_guard.enable_tenant_rls('public.local_on_worker')")
            conn.execute("SELECT tenant_guard.distribute_table('public.local_on_worker')")
        assert sqlstate(excinfo) == "55000"
