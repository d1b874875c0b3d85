"""The isolation test as users write it in their own suites (examples/testing): a psql script, a
pgTAP file run by pg_prove, a pytest test with psycopg and a Rust test with tokio-postgres. Each
is the same test (tenant A writes, tenant B reads through the normal path and gets nothing, then
assert_tenant_isolation), run as the application role against examples/testing/schema.sql. Each
must pass on that schema and fail on a copy where a superuser opened a leak (so each test
really asserts)."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

TESTING = REPO / "examples" / "testing"
RUST_TARGET = REPO / "target" / "user-suite-rust"

LEAK = """
SET session_replication_role = replica;  -- event triggers off: the tamper guard does not see this
DROP POLICY tenant_guard_fence ON memory.facts;
CREATE POLICY open_reads ON memory.facts FOR SELECT TO agent_app USING (true);
RESET session_replication_role;
"""


@pytest.fixture(scope="module")
def databases(plain_cluster):
    with plain_cluster.connect(user="postgres", dbname="postgres") as conn:
        for name in ("agent_ok", "agent_leaky"):
            conn.execute(f"CREATE DATABASE {name}")
    for name in ("agent_ok", "agent_leaky"):
        with plain_cluster.connect(user="postgres", dbname=name) as conn:
            conn.execute((TESTING / "schema.sql").read_text())
            conn.execute("CREATE EXTENSION pgtap")
    with plain_cluster.connect(user="postgres", dbname="agent_leaky") as conn:
        conn.execute(LEAK)
    return plain_cluster


def environment(cluster, dbname):
    return dict(os.environ, PGHOST=cluster.host, PGPORT=str(cluster.port), PGDATABASE=dbname,
                PGUSER="agent_app", PGAPPNAME="user-suite")


def run(command, cluster, dbname, cwd=REPO):
    return subprocess.run(command, env=environment(cluster, dbname), cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def psql_suite(cluster, dbname):
    psql = str(pathlib.Path("/usr/lib/postgresql/15/bin/psql"))
    return run([psql, "-X", "-f", str(TESTING / "psql" / "isolation.sql")], cluster, dbname)


def pgtap_suite(cluster, dbname):
    if shutil.which("pg_prove") is None:
        pytest.fail("pg_prove is missing: scripts/setup installs libtap-parser-sourcehandler-pgtap-perl")
    return run(["pg_prove", str(TESTING / "pgtap" / "isolation.sql")], cluster, dbname)


def pytest_suite(cluster, dbname):
    return run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTING / "pytest")],
               cluster, dbname)


def rust_suite(cluster, dbname):
    env_target = {"CARGO_TARGET_DIR": str(RUST_TARGET)}
    result = subprocess.run(["cargo", "test", "--quiet"], cwd=TESTING / "rust", capture_output=True, text=True,
                            env=dict(environment(cluster, dbname), **env_target), timeout=900)
    return result


SUITES = {"psql": psql_suite, "pgtap": pgtap_suite, "pytest": pytest_suite, "rust": rust_suite}
PROOF = {  # what each prints when it passed
    "psql": "ok: tenant-b sees none of tenant-a's facts",
    "pgtap": "All tests successful.",
    "pytest": "2 passed",
    "rust": "test result: ok. 2 passed",
}
FAILURE = {  # what each prints when the leak is there
    "psql": "tenant-b sees",
    "pgtap": "tenant-b sees none of tenant-a's facts",
    "pytest": "tenant-b sees",
    "rust": "tenant-b sees",
}


@pytest.mark.parametrize("suite", list(SUITES))
def test_suite_passes_on_an_isolated_schema(databases, suite):
    result = SUITES[suite](databases, "agent_ok")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert PROOF[suite] in output, output


@pytest.mark.parametrize("suite", list(SUITES))
def test_suite_fails_on_a_leak(databases, suite):
    result = SUITES[suite](databases, "agent_leaky")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert FAILURE[suite] in output, output
