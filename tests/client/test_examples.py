"""The example app (examples/agent_memory: an agent's memory) in psql, Python (psycopg_pool and
SQLAlchemy), Node.js (pg.Pool) and Rust (tokio-postgres with deadpool-postgres), each run against
a database of its own with a tenant API key per tenant: tenant A saves "case-123", tenant B lists
"case-123" and gets nothing, tenant A gets its fact. Each program asserts that itself and exits
non-zero otherwise."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

APP = REPO / "examples" / "agent_memory"
RUST_TARGET = REPO / "target" / "examples-rust"  # shared with test_user_suites.py
PROOF = "ok: tenant-b lists nothing for case-123"


@pytest.fixture(scope="module")
def app(plain_cluster):
    with plain_cluster.connect(user="postgres", dbname="postgres") as conn:
        conn.execute("CREATE DATABASE agent_memory")
    with plain_cluster.connect(user="postgres", dbname="agent_memory") as conn:
        conn.execute((APP / "schema.sql").read_text())
        keys = [conn.execute("SELECT tenant_guard.issue_api_key(%s, 'agent', '1 day', 'example')",
                             (tenant,)).fetchone()[0] for tenant in ("tenant-a", "tenant-b")]
    env = dict(os.environ, PGHOST=plain_cluster.host, PGPORT=str(plain_cluster.port),
               PGDATABASE="agent_memory", PGUSER="memory_app", TG_API_KEY_A=keys[0], TG_API_KEY_B=keys[1])
    return env


def run(command, env, cwd=REPO, timeout=600):
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert PROOF in output, output
    return output


def test_psql(app):
    run(["/usr/lib/postgresql/15/bin/psql", "-X", "-v", f"key_a={app['TG_API_KEY_A']}",
         "-v", f"key_b={app['TG_API_KEY_B']}", "-f", str(APP / "psql" / "memory.sql")], app)


def test_python(app):
    run([sys.executable, str(APP / "python" / "memory.py")], app)


def test_node(app):
    if shutil.which("npm") is None:
        pytest.fail("npm is missing: scripts/setup installs nodejs and npm")
    node = APP / "node"
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=node, check=True, timeout=600)
    run(["node", "memory.js"], app, cwd=node)


def test_rust(app):
    run(["cargo", "run", "--quiet"], dict(app, CARGO_TARGET_DIR=str(RUST_TARGET)), cwd=APP / "rust", timeout=900)
