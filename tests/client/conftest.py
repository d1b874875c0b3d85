"""Out-of-process tests: a real driver (psycopg 3) over real sockets to throwaway clusters that
scripts/cluster starts as an unprivileged OS user, and a real PgBouncer in front of one.

Run them with `scripts/test client` (or `make test`); they expect the extension to be installed
(`cargo pgrx install`).
"""

import os
import pathlib
import shlex
import shutil
import subprocess
import tempfile
import time

import psycopg
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "cluster"
PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")

SCHEMA_SQL = """
CREATE ROLE tg_app LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE tg_owner LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE EXTENSION tenant_guard;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO tg_app, tg_owner;
CREATE SCHEMA app AUTHORIZATION tg_owner;
GRANT USAGE ON SCHEMA app TO tg_app;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA app GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tg_app;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA app GRANT USAGE ON SEQUENCES TO tg_app;
SET ROLE tg_owner;
CREATE TABLE app.orders (id bigserial PRIMARY KEY, tenant_id text NOT NULL, item text NOT NULL);
CREATE TABLE app.accounts (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL, name text NOT NULL);
RESET ROLE;
"""


class Cluster:
    """A running throwaway cluster with the extension, two roles and two protected tables."""

    def __init__(self, directory: pathlib.Path, preload: bool):
        self.directory = directory
        self.preload = preload
        args = [str(CLUSTER), "start", str(directory)] + (["--preload"] if preload else [])
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        env = (directory / "env").read_text().split()[1:]
        self.env = dict(item.split("=", 1) for item in env)
        self.host, self.port = self.env["PGHOST"], int(self.env["PGPORT"])
        self.dbname = "tg_client"
        with self.connect(user="postgres", dbname="postgres") as conn:
            conn.execute(f"CREATE DATABASE {self.dbname}")
        with self.connect(user="postgres") as conn:
            conn.execute(SCHEMA_SQL)

    def dsn(self, user="tg_app", dbname=None, port=None, **extra):
        parts = dict(host=self.host, port=port or self.port, user=user, dbname=dbname or self.dbname)
        parts.update(extra)
        return " ".join(f"{k}={shlex.quote(str(v))}" for k, v in parts.items())

    def connect(self, user="tg_app", dbname=None, port=None, autocommit=True, **extra):
        return psycopg.connect(
            self.dsn(user=user, dbname=dbname, port=port, **extra),
            autocommit=autocommit,
            prepare_threshold=None,
        )

    def run_bin(self, name, *args, **kwargs):
        env = dict(os.environ, **self.env)
        return subprocess.run([str(PG_BIN / name), *args], env=env, check=True, **kwargs)

    def stop(self):
        subprocess.run([str(CLUSTER), "stop", str(self.directory), "--remove"], check=False)


def _workdir():
    base = os.environ.get("TENANT_GUARD_WORK") or tempfile.gettempdir()
    path = pathlib.Path(tempfile.mkdtemp(prefix="client-", dir=base))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session", params=["loaded-on-first-use", "preloaded"])
def cluster(request):
    """Every test that takes `cluster` runs twice: without and with shared_preload_libraries."""
    c = Cluster(_workdir() / "pg", preload=request.param == "preloaded")
    yield c
    c.stop()


@pytest.fixture(scope="session")
def plain_cluster():
    c = Cluster(_workdir() / "pg", preload=False)
    yield c
    c.stop()


class PgBouncer:
    """A real PgBouncer in transaction pooling mode with one server connection per pool, so
    consecutive clients are served by the same PostgreSQL backend."""

    def __init__(self, cluster: Cluster, pool_mode="transaction"):
        if shutil.which("pgbouncer") is None and not pathlib.Path("/usr/sbin/pgbouncer").exists():
            pytest.skip("pgbouncer is not installed (scripts/setup installs it)")
        self.directory = _workdir() / "pgbouncer"
        self.directory.mkdir()
        self.port = int(subprocess.check_output(["python3", "-c", (
            "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")]))
        (self.directory / "userlist.txt").write_text('"tg_app" ""\n"tg_owner" ""\n"postgres" ""\n')
        (self.directory / "pgbouncer.ini").write_text(f"""
[databases]
{cluster.dbname} = host={cluster.host} port={cluster.port} dbname={cluster.dbname}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.directory}/userlist.txt
pool_mode = {pool_mode}
default_pool_size = 1
max_client_conn = 20
server_reset_query = DISCARD ALL
logfile = {self.directory}/pgbouncer.log
pidfile = {self.directory}/pgbouncer.pid
""")
        subprocess.run(["chown", "-R", "postgres", str(self.directory)], check=False)
        command = ["pgbouncer", "-d", str(self.directory / "pgbouncer.ini")]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            command = ["runuser", "-u", "postgres", "--"] + command
        subprocess.run(command, check=True)
        self.cluster = cluster
        deadline = time.time() + 10
        while True:
            try:
                with self.connect():
                    break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def connect(self, user="tg_app"):
        return self.cluster.connect(user=user, port=self.port)

    def stop(self):
        pid_file = self.directory / "pgbouncer.pid"
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], check=False)


@pytest.fixture
def pgbouncer(plain_cluster):
    bouncer = PgBouncer(plain_cluster)
    yield bouncer
    bouncer.stop()


@pytest.fixture
def session_pgbouncer(plain_cluster):
    bouncer = PgBouncer(plain_cluster, pool_mode="session")
    yield bouncer
    bouncer.stop()


def sqlstate(excinfo) -> str:
    return excinfo.value.sqlstate
