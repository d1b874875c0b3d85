"""The isolation test as users write it in their own suites (examples/testing): a psql script, a
pgTAP file run by pg_prove, a pytest test with psycopg and a Rust test with tokio-postgres. Each
is the same test (tenant A writes, tenant B reads through the normal path and gets nothing, then
assert_tenant_isolation), run as the CI role against examples/testing/schema.sql. Each must pass
on that schema and fail on copies where a superuser opened a leak: one for reads (the plain test
catches it) and one for writes only (only assert_tenant_isolation does), so each test really
asserts."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

TESTING = REPO / "examples" / "testing"
RUST_TARGET = REPO / "target" / "examples-rust"  # shared with test_examples.py

LEAKS = {  # event triggers off: the tamper guard does not see these
    "agent_read_leak": """
        SET session_replication_role = replica;
        DROP POLICY tenant_guard_fence ON memory.facts;
        CREATE POLICY open_reads ON memory.facts FOR SELECT TO agent_app USING (true);
        RESET session_replication_role;""",
    "agent_write_leak": """
        SET session_replication_role = replica;
        DROP POLICY tenant_guard_fence ON memory.facts;
        CREATE POLICY open_inserts ON memory.facts FOR INSERT TO agent_app WITH CHECK (true);
        RESET session_replication_role;""",
}
DATABASES = ["agent_ok", *LEAKS]


@pytest.fixture(scope="module")
def databases(plain_cluster):
    with plain_cluster.connect(user="postgres", dbname="postgres") as conn:
        for name in DATABASES:
            conn.execute(f"CREATE DATABASE {name}")
    for name in DATABASES:
        with plain_cluster.connect(user="postgres", dbname=name) as conn:
            conn.execute((TESTING / "schema.sql").read_text())
            conn.execute("CREATE EXTENSION pgtap")
            if name in LEAKS:
                conn.execute(LEAKS[name])
    return plain_cluster


def environment(cluster, dbname):
    return dict(os.environ, PGHOST=cluster.host, PGPORT=str(cluster.port), PGDATABASE=dbname,
                PGUSER="agent_ci", PGAPPNAME="user-suite")


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
    "rust": "test result: ok. 1 passed",
}
FAILURE = {  # what each prints when a leak is there
    "agent_read_leak": {"psql": "tenant-b sees", "pgtap": "tenant-b sees none of tenant-a's facts",
                        "pytest": "tenant-b sees", "rust": "tenant-b sees"},
    "agent_write_leak": {suite: "INSERT of a row for tenant" for suite in ("psql", "pgtap", "pytest", "rust")},
}


@pytest.mark.parametrize("suite", list(SUITES))
def test_suite_passes_on_an_isolated_schema(databases, suite):
    result = SUITES[suite](databases, "agent_ok")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert PROOF[suite] in output, output


@pytest.mark.parametrize("leak", list(LEAKS))
@pytest.mark.parametrize("suite", list(SUITES))
def test_suite_fails_on_a_leak(databases, suite, leak):
    result = SUITES[suite](databases, leak)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert FAILURE[leak][suite] in output, output
