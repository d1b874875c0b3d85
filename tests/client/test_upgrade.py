"""Upgrade from a released version, as a DBA does it on a running server with the library preloaded.

The released version's library and install script are built from the commit sql/released/VERSIONS
names (scripts/build-released); the current version's package is what `make install` ships. The
server starts on the released version and holds protected, audited data and every credential kind.
Then the new files are installed over the running server, the server restarts, and each database
runs ALTER EXTENSION tenant_guard UPDATE. Isolation, the audit chains and the data hold at every
step, and the upgraded extension equals a fresh install of the current version, object for object.

Run by `scripts/test upgrade` (`make test-proof`, which CI runs), which sets TENANT_GUARD_RELEASED
("<version>=<package dir> ...") and TENANT_GUARD_CURRENT (a package dir)."""

import os
import pathlib
import re
import shutil
import subprocess
import uuid

import pytest
from psycopg import errors

from conftest import REPO, Cluster, _workdir
from test_auth import HS_SECRET, token
from test_dump_restore import CREDENTIALS_SQL, SOURCE_SQL, state

RELEASED = dict(item.split("=", 1) for item in os.environ.get("TENANT_GUARD_RELEASED", "").split())
CURRENT = os.environ.get("TENANT_GUARD_CURRENT")
CURRENT_VERSION = re.search(r'^version = "(.+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
EXTENSION_DIR = pathlib.Path("/usr/share/postgresql/15/extension")

# Everything the released version could do, in one database: protected tables with partitions and
# inheritance, an excluded table, audit with redaction and hash chains, permissions, private rows,
# the action gate, token keys, a revoked token, API keys, tenants and memberships.
SETUP_SQL = SOURCE_SQL + CREDENTIALS_SQL.replace("CREATE EXTENSION tenant_guard;", "")


def install_package(package: pathlib.Path):
    """Install a `cargo pgrx package` directory as `make install` does: each file is unlinked
    first, so a running server keeps the library it mapped."""
    for source in sorted(p for p in package.rglob("*") if p.is_file()):
        target = pathlib.Path("/") / source.relative_to(package)
        target.unlink(missing_ok=True)
        shutil.copy2(source, target)


def extension_objects(cluster, dbname):
    """Every object of the extension, as pg_dump --binary-upgrade writes them one by one, without
    what differs between any two databases: OIDs, frozen transaction ids, the dump's own key."""
    dump = cluster.run_bin("pg_dump", "--binary-upgrade", "--schema-only", "-U", "postgres", "-d", dbname,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    volatile = [
        (r"^SELECT pg_catalog\.binary_upgrade_set_next_.*", ""),
        (r"^\\(un)?restrict .*", ""),
        (r"^(SELECT pg_catalog\.binary_upgrade_create_empty_extension\(.*)'\{\d+(,\d+)*\}'", r"\1'{oids}'"),
        (r"^SET relfrozenxid = '\d+', relminmxid = '\d+'$", "SET relfrozenxid = 'xid', relminmxid = 'mxid'"),
        (r"^WHERE oid = '\d+';$", "WHERE oid = 'oid';"),
    ]
    for pattern, replacement in volatile:
        dump = re.sub(pattern, replacement, dump, flags=re.M)
    return dump.splitlines()


def write_as_each_tenant(cluster, dbname, label, api_key):
    """One audited write per tenant and entry point: plain context, API key, token."""
    with cluster.connect(dbname=dbname) as app:
        for tenant in ("acme", "globex"):
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context(%s)", (tenant,))
                app.execute("INSERT INTO shop.orders (item) VALUES (%s)", (f"{tenant}-{label}",))
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context(%s, 'alice', 'member')", (tenant,))
                app.execute("INSERT INTO shop.notes (body) VALUES (%s)", (f"{tenant}: alice {label}",))
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (api_key,))
            app.execute("INSERT INTO cred.notes (body) VALUES (%s)", (f"acme {label}",))
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (token("globex", jti=f"jti-{label}"),))
            app.execute("INSERT INTO cred.notes (body) VALUES (%s)", (f"globex {label}",))


def assert_isolated(cluster, dbname, api_key, labels):
    """Each tenant sees exactly its own rows through every entry point, and nothing else holds."""
    with cluster.connect(dbname=dbname) as app:
        for tenant in ("acme", "globex"):
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context(%s)", (tenant,))
                items = [row[0] for row in app.execute("SELECT item FROM shop.orders ORDER BY id")]
                assert items == [f"{tenant}-1", f"{tenant}-2"] + [f"{tenant}-{label}" for label in labels]
                with pytest.raises(errors.InsufficientPrivilege):  # another tenant's row is refused
                    with app.transaction():
                        other = "globex" if tenant == "acme" else "acme"
                        app.execute("INSERT INTO shop.orders (tenant_id, item) VALUES (%s, 'smuggled')", (other,))
            with app.transaction():  # private rows: bob sees none of alice's notes
                app.execute("SELECT tenant_guard.set_tenant_context(%s, 'bob', 'member')", (tenant,))
                assert app.execute("SELECT count(*) FROM shop.notes").fetchone() == (0,)
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (api_key,))
            assert {row[0] for row in app.execute("SELECT tenant_id FROM cred.notes")} == {"acme"}
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (token("globex", jti=f"read-{uuid.uuid4()}"),))
            assert {row[0] for row in app.execute("SELECT tenant_id FROM cred.notes")} == {"globex"}
        with pytest.raises(errors.InsufficientPrivilege):  # no context: fails closed
            with app.transaction():
                app.execute("SELECT count(*) FROM shop.orders")
        with pytest.raises(errors.InsufficientPrivilege):  # the permission rule: viewers only read
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context('7', 'vic', 'viewer')")
                app.execute("INSERT INTO shop.events (at, v) VALUES ('2026-03-01', 1)")
    with cluster.connect(user="tg_owner", dbname=dbname) as owner:
        for tampering in ("ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY",
                          "DROP POLICY tenant_guard_fence ON shop.orders_archive"):
            with pytest.raises(errors.InsufficientPrivilege):
                owner.execute(tampering)
    with cluster.connect(user="postgres", dbname=dbname) as admin:
        for tenant in ("acme", "globex"):
            assert admin.execute("SELECT * FROM tenant_guard.verify_audit_chain(%s)", (tenant,)).fetchall() == []


def extension_version(cluster, dbname):
    with cluster.connect(user="postgres", dbname=dbname) as admin:
        return admin.execute("SELECT extversion FROM pg_extension WHERE extname = 'tenant_guard'").fetchone()[0]


def restart(cluster):
    subprocess.run([str(REPO / "scripts" / "cluster"), "restart", str(cluster.directory), "--preload"],
                   check=True, stdout=subprocess.DEVNULL)


@pytest.fixture
def packages():
    if not CURRENT or not RELEASED:
        pytest.fail("run through `scripts/test upgrade`: it builds the released and current packages")
    yield
    install_package(pathlib.Path(CURRENT))  # whatever happened, leave the current version installed
    for version in RELEASED:
        (EXTENSION_DIR / f"tenant_guard--{version}.sql").unlink(missing_ok=True)


@pytest.mark.parametrize("released", sorted(RELEASED) or ["(none)"])
def test_upgrade_of_a_running_server_keeps_isolation_audit_and_data(released, packages):
    install_package(pathlib.Path(RELEASED[released]))
    cluster = Cluster(_workdir() / "pg", preload=True)  # tg_client: the released version
    try:
        run_upgrade(cluster, released)
    finally:
        cluster.stop()


def create_databases(cluster, empty, with_setup):
    """Two databases under whichever version is installed: `empty` with the extension alone,
    `with_setup` with SETUP_SQL."""
    with cluster.connect(user="postgres", dbname="postgres") as admin:
        for db in (empty, with_setup):
            admin.execute(f"CREATE DATABASE {db}")
    with cluster.connect(user="postgres", dbname=empty) as admin:
        admin.execute("CREATE EXTENSION tenant_guard")
    with cluster.connect(user="postgres", dbname=with_setup) as admin:
        admin.execute(SETUP_SQL.replace("{hs}", HS_SECRET.hex()))


def run_upgrade(cluster, released):
    create_databases(cluster, "tg_upgrade_empty", "tg_upgrade")
    with cluster.connect(user="postgres", dbname="tg_upgrade") as admin:
        api_key = admin.execute("SELECT tenant_guard.issue_api_key('acme', 'agent', '1 day', 'upgrade')").fetchone()[0]
    assert extension_version(cluster, "tg_upgrade") == released
    for label in ("1", "2"):
        write_as_each_tenant(cluster, "tg_upgrade", label, api_key)
    labels = []
    assert_isolated(cluster, "tg_upgrade", api_key, labels)

    # The new files go in under the running server: a session that is open keeps working.
    with cluster.connect(dbname="tg_upgrade") as open_session:
        install_package(pathlib.Path(CURRENT))
        with open_session.transaction():
            open_session.execute("SELECT tenant_guard.set_tenant_context('acme')")
            assert open_session.execute("SELECT count(*) FROM shop.orders").fetchone() == (2,)
    # Before the restart every backend still runs the preloaded released library, which lacks the
    # new version's functions: the update fails and changes nothing.
    with cluster.connect(user="postgres", dbname="tg_upgrade_empty") as admin:
        with pytest.raises(errors.UndefinedFunction):
            admin.execute("ALTER EXTENSION tenant_guard UPDATE")
    assert extension_version(cluster, "tg_upgrade_empty") == released

    # Restarted: the new library serves the released version's SQL objects until the update.
    restart(cluster)
    assert extension_version(cluster, "tg_upgrade") == released
    assert_isolated(cluster, "tg_upgrade", api_key, labels)
    write_as_each_tenant(cluster, "tg_upgrade", "between", api_key)
    labels.append("between")
    assert_isolated(cluster, "tg_upgrade", api_key, labels)

    before = state(cluster, "tg_upgrade")
    for db in ("tg_upgrade", "tg_upgrade_empty", cluster.dbname):
        with cluster.connect(user="postgres", dbname=db) as admin:
            admin.execute("ALTER EXTENSION tenant_guard UPDATE")
        assert extension_version(cluster, db) == CURRENT_VERSION
    assert state(cluster, "tg_upgrade") == before  # the update touched no data, policy or registry row

    assert_isolated(cluster, "tg_upgrade", api_key, labels)
    write_as_each_tenant(cluster, "tg_upgrade", "after", api_key)
    labels.append("after")
    assert_isolated(cluster, "tg_upgrade", api_key, labels)
    with cluster.connect(user="postgres", dbname="tg_upgrade") as admin:
        # The audit log holds every write of every phase, chained across the upgrade.
        assert admin.execute("SELECT count(*) FROM tenant_guard.audit_log").fetchone() == (4 * 4,)
        for table in ("shop.orders", "shop.notes", "cred.notes"):
            verdict = admin.execute("SELECT tenant_guard.assert_tenant_isolation(%s, 'tg_app', 'member', 'alice')",
                                    (table,)).fetchone()[0]
            assert verdict.startswith("isolated"), (table, verdict)
        upgraded_findings = admin.execute("SELECT severity, code, object FROM tenant_guard.check()").fetchall()

    # The upgraded extension is a fresh install of the current version, object for object, and
    # the same setup made on a fresh install gets the same findings.
    create_databases(cluster, "tg_fresh", "tg_fresh_setup")
    with cluster.connect(user="postgres", dbname="tg_fresh_setup") as admin:
        fresh_findings = admin.execute("SELECT severity, code, object FROM tenant_guard.check()").fetchall()
    assert upgraded_findings == fresh_findings
    assert not [f for f in upgraded_findings if f[1] in ("TG002", "TG015")]  # nothing drifted
    fresh, upgraded = extension_objects(cluster, "tg_fresh"), extension_objects(cluster, "tg_upgrade_empty")
    assert len(fresh) > 1000
    if fresh != upgraded:
        import difflib
        pytest.fail("the upgrade script misses what a fresh install has:\n" + "\n".join(
            difflib.unified_diff(upgraded, fresh, "upgraded", "fresh", lineterm="", n=2)))


def test_an_edited_released_script_fails_the_check(tmp_path):
    """scripts/check-released, in a clone: editing a released install script, an upgrade script
    of a release, or dropping a released version is caught; a new upgrade script is not."""
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    if subprocess.run(["git", "-C", str(clone), "rev-parse", "--is-shallow-repository"],
                      capture_output=True, text=True).stdout.strip() != "false":
        pytest.skip("no full git history")
    # The working tree's released files and the check itself, as if committed.
    for path in ("scripts/check-released", "scripts/lib.sh", "sql/released"):
        source, target = REPO / path, clone / path
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]

    def commit(message):
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", message], check=True)

    def check():
        return subprocess.run([str(clone / "scripts" / "check-released")], capture_output=True, text=True)

    commit("released files as in the working tree")
    assert check().returncode == 0, check().stderr
    clean = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()

    (clone / "sql" / "tenant_guard--9.9.8--9.9.9.sql").write_text("-- not released: may change\n")
    commit("an upgrade script to an unreleased version")
    assert check().returncode == 0, check().stderr

    install = clone / "sql" / "released" / "tenant_guard--0.1.0.sql"
    original = install.read_text()
    install.write_text(original + "\n-- a quiet fix\n")
    assert check().returncode == 1 and "edited after it was released" in check().stderr  # uncommitted
    commit("edit a released script")
    assert check().returncode == 1 and "tenant_guard--0.1.0.sql: edited after it was released" in check().stderr
    install.write_text(original)
    commit("and put it back")  # the content is the released one again
    assert check().returncode == 1, "a released script was touched after its release"

    subprocess.run(git + ["reset", "-q", "--hard", clean], check=True)
    assert check().returncode == 0, check().stderr
    versions = clone / "sql" / "released" / "VERSIONS"
    text = versions.read_text()
    versions.write_text("\n".join(line for line in text.splitlines() if not line.startswith("0.1.0")) + "\n")
    commit("unrelease 0.1.0")
    result = check()
    assert result.returncode == 1 and "released versions removed or changed" in result.stderr, result.stderr
