"""The self-check against the peer linter, pgrls (PyPI), run on the same schemas: everything
pgrls flags that is about tenant isolation, check() flags too; the setup README recommends is
clean for both (pgrls: no error; check(): nothing); and TG017's fix works after a restart."""

import json
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO, Cluster, _workdir

FIXTURES = REPO / "tests" / "fixtures"
PGRLS = pathlib.Path(sys.executable).parent / "pgrls"

# pgrls rules whose findings are about something other than tenant isolation here, and why
# (README, "The self-check", says the same).
NOT_TENANT_RELEVANT = {
    "SEC013": "tenant_guard's own triggers: the TRUNCATE guard and the audit triggers (C functions "
              "owned by the extension owner that read no rows); a user trigger that runs as an "
              "owner who bypasses row level security is TG010",
    "VIEW002": "security_barrier keeps leaky functions from running before a view's own WHERE; "
               "row level security quals always run first",
}
# Which check() codes cover each pgrls rule (the README's table).
COVERED_BY = {
    "SEC001": {"TG001"}, "SEC002": {"TG002"}, "SEC003": {"TG011", "TG014"}, "SEC005": {"TG011", "TG014"},
    "SEC006": {"TG011"}, "SEC007": {"TG002", "TG011"}, "SEC008": {"TG011"}, "SEC010": {"TG011"},
    "SEC011": {"TG011"}, "SEC014": {"TG010"}, "SEC015": {"TG010"}, "SEC016": {"TG008"},
    "SEC019": {"TG014"}, "SEC020": {"TG011"}, "SEC024": {"TG014"}, "SEC028": {"TG011"},
    "SEC031": {"TG011"}, "SEC032": {"TG001", "TG002"}, "SEC035": {"TG004"}, "SEC038": {"TG011"},
    "SEC040": {"TG011"}, "SEC041": {"TG012"}, "SEC042": {"TG010"}, "SEC043": {"TG012"},
    "SEC046": {"TG014"}, "SEC047": {"TG005"}, "SEC048": {"TG009", "TG002"}, "PERF001": {"TG014"},
    "PERF002": {"TG014"}, "PERF003": {"TG003"}, "VIEW001": {"TG006"}, "VIEW003": {"TG007"},
    "VIEW004": {"TG010"},
}


@pytest.fixture(scope="module")
def check_cluster():
    c = Cluster(_workdir() / "pg", preload=True)
    with c.connect(user="postgres") as conn:
        conn.execute("CREATE ROLE tg_reader LOGIN")
    yield c
    c.stop()


def create_database(cluster, name, *fixtures):
    with cluster.connect(user="postgres", dbname="postgres") as conn:
        conn.execute(f"CREATE DATABASE {name}")
    with cluster.connect(user="postgres", dbname=name) as conn:
        conn.execute("CREATE EXTENSION tenant_guard")
    for fixture in fixtures:
        cluster.run_bin("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", name,
                        "-f", str(FIXTURES / fixture), stdout=subprocess.DEVNULL)


def pgrls(cluster, dbname):
    url = f"postgresql://postgres@{cluster.host}:{cluster.port}/{dbname}"
    result = subprocess.run([str(PGRLS), "lint", "--database-url", url, "--schemas", "shop", "--format", "json"],
                            capture_output=True, text=True, timeout=300)
    assert result.stdout, result.stderr
    return json.loads(result.stdout)["violations"]


def findings(cluster, dbname):
    with cluster.connect(user="postgres", dbname=dbname) as conn:
        return conn.execute("SELECT severity, code, object, message, fix FROM tenant_guard.check()").fetchall()


def location(check_object):
    """check()'s object as pgrls names it: schema.table[.policy], schema.function, role."""
    kind, _, rest = check_object.partition(" ")
    if kind == "policy":
        name, _, table = rest.partition(" on table ")
        return f"{table}.{name}"
    if kind == "function":
        return rest.split("(")[0]
    if kind == "constraint":
        return rest.partition(" on table ")[2]
    if kind == "materialized":
        return rest.partition(" ")[2]
    return rest


def test_recommended_setup_is_clean_for_both(check_cluster):
    create_database(check_cluster, "recommended", "check_recommended.sql")
    assert findings(check_cluster, "recommended") == []
    violations = pgrls(check_cluster, "recommended")
    errors = [v for v in violations if v["severity"] == "error"]
    assert errors == [], errors
    left = {v["rule_id"] for v in violations}
    assert left <= set(NOT_TENANT_RELEVANT), left
    print(f"pgrls on the recommended setup: 0 errors, {len(violations)} warnings ({', '.join(sorted(left))})")


def test_check_flags_everything_pgrls_flags_about_tenants(check_cluster):
    with check_cluster.connect(user="postgres") as conn:
        conn.execute("CREATE ROLE tg_ops LOGIN BYPASSRLS")
    try:
        create_database(check_cluster, "mistakes", "check_recommended.sql", "check_mistakes.sql")
        found = findings(check_cluster, "mistakes")
        with check_cluster.connect(user="postgres", dbname="mistakes") as conn:
            tenant_tables = {row[0] for row in conn.execute(
                "SELECT attrelid::regclass::text FROM pg_attribute WHERE attname = 'tenant_id' AND attnum > 0")}
        covered, skipped = [], []
        for v in pgrls(check_cluster, "mistakes"):
            rule, where = v["rule_id"], v["location"]
            table = ".".join(where.split(".")[:2])
            if rule in NOT_TENANT_RELEVANT or (where.count(".") >= 1 and table not in tenant_tables
                                               and rule not in {"SEC014", "SEC015", "SEC042", "VIEW001", "VIEW003", "VIEW004"}):
                skipped.append((rule, where))
                continue
            if rule == "SEC003" and where.split(".")[-1] == "tenant_guard_isolation":
                # The generated permissive policy TO PUBLIC: the restrictive fence holds every
                # role to the context's tenant (README; to_roles makes pgrls quiet).
                skipped.append((rule, where))
                continue
            assert rule in COVERED_BY, f"pgrls {rule} at {where} is not mapped to a check() code"
            codes = COVERED_BY[rule]
            match = [f for f in found if f[1] in codes
                     and (location(f[2]) == where or location(f[2]) == table or where.startswith(location(f[2]) + "."))]
            assert match, f"pgrls {rule} at {where}: check() reports none of {sorted(codes)}"
            covered.append((rule, where, match[0][1]))
        assert len(covered) >= 20, covered
        # And check() finds what pgrls cannot see from outside.
        only_check = {f[1] for f in found} - {code for _, _, code in covered}
        assert {"TG004", "TG005", "TG012", "TG013", "TG015", "TG016", "TG018"} <= only_check, only_check
        print(f"pgrls findings about tenants: {len(covered)}, all flagged by check(); skipped {len(skipped)}")
    finally:
        with check_cluster.connect(user="postgres") as conn:
            conn.execute("DROP DATABASE mistakes")
            conn.execute("DROP ROLE tg_ops")


def test_preload_finding_goes_away_after_restart():
    """TG017's fix keeps the libraries already preloaded (a list setting, one literal each)."""
    c = Cluster(_workdir() / "pg", preload=False)
    restart = [str(REPO / "scripts" / "cluster"), "restart", str(c.directory)]
    try:
        with c.connect(user="postgres") as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        subprocess.run(restart, check=True, stdout=subprocess.DEVNULL)
        tg017 = [f for f in findings(c, c.dbname) if f[1] == "TG017"]
        assert len(tg017) == 1, tg017
        assert "'pg_stat_statements', 'tenant_guard'" in tg017[0][4], tg017
        with c.connect(user="postgres") as conn:
            conn.execute(tg017[0][4])
        subprocess.run(restart, check=True, stdout=subprocess.DEVNULL)
        assert [f for f in findings(c, c.dbname) if f[1] == "TG017"] == []
        with c.connect(user="postgres") as conn:
            assert conn.execute("SHOW shared_preload_libraries").fetchone()[0] == "pg_stat_statements, tenant_guard"
    finally:
        c.stop()
