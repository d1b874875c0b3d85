"""pg_dump / pg_restore of a database using the extension keeps the protected tables' policies,
the registry, the exclusions, the audit settings, the audit log and its hash chain, without
the event trigger protecting anything twice: the tamper guard tells the restore's re-creation of
exactly what tenant_guard generated apart from tampering, and still refuses tampering after."""

import subprocess

import pytest
from psycopg import errors

SOURCE_SQL = """
CREATE EXTENSION tenant_guard;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO tg_app;
CREATE SCHEMA shop AUTHORIZATION tg_owner;
GRANT USAGE ON SCHEMA shop TO tg_app;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA shop GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tg_app;
ALTER DEFAULT PRIVILEGES FOR ROLE tg_owner IN SCHEMA shop GRANT USAGE ON SEQUENCES TO tg_app;
SET ROLE tg_owner;
CREATE TABLE shop.orders (id bigserial PRIMARY KEY, tenant_id text NOT NULL, item text);
CREATE TABLE shop.events (tenant_id bigint NOT NULL, at date NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE shop.events_2026 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE shop.scratch (id int, tenant_id text);
CREATE TABLE shop.orders_archive (archived_at date) INHERITS (shop.orders);
RESET ROLE;
SELECT tenant_guard.exclude_table('shop.scratch');
SET tenant_guard.auto_protect = off;
CREATE TABLE shop.members (id int, org uuid);
SELECT tenant_guard.enable_tenant_rls('shop.members', 'org', to_roles => ARRAY['tg_app']::regrole[]);
RESET tenant_guard.auto_protect;
SELECT tenant_guard.enable_tenant_audit('shop.orders', redact_columns => '{item}');
ALTER TABLE shop.events ADD PRIMARY KEY (tenant_id, at);
SELECT tenant_guard.enable_tenant_audit('shop.events', hash_chain => false);
SELECT tenant_guard.set_table_permissions('shop.events', 'viewer', '{SELECT}');
SELECT tenant_guard.set_table_permissions('shop.events', 'admin', '{ALL}');
SET ROLE tg_owner;
CREATE TABLE shop.notes (id bigserial PRIMARY KEY, tenant_id text NOT NULL, owner_id text NOT NULL, body text);
RESET ROLE;
SELECT tenant_guard.enable_user_private_rows('shop.notes', 'owner_id', '{admin}');
SELECT tenant_guard.add_action('notes:write');
SELECT tenant_guard.grant_action('notes:write', tenant_role => 'member');
SELECT tenant_guard.require_action_for_writes('shop.notes', 'notes:write');
"""

STATE_QUERIES = {
    "policies": """SELECT c.oid::regclass::text, p.polname, p.polpermissive, p.polroles::regrole[]::text,
                          pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
                     FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
                    WHERE c.relnamespace = 'shop'::regnamespace ORDER BY 1, 2""",
    "rls": """SELECT oid::regclass::text, relrowsecurity, relforcerowsecurity FROM pg_class
               WHERE relnamespace = 'shop'::regnamespace AND relkind IN ('r', 'p') ORDER BY 1""",
    "defaults": """SELECT adrelid::regclass::text, pg_get_expr(adbin, adrelid) FROM pg_attrdef
                    WHERE adrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'shop'::regnamespace)
                    ORDER BY 1, 2""",
    "triggers": """SELECT tgrelid::regclass::text, tgname FROM pg_trigger
                    WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'shop'::regnamespace)
                    ORDER BY 1, 2""",
    "registry": """SELECT relid::text, tenant_column, tenant_type::text, to_roles::text, parent::text, protected_via,
                          user_column, user_all_rows, previous_user_default, write_action
                     FROM tenant_guard.protected_tables ORDER BY 1""",
    "action_rules": "SELECT action, effect, tenant_role FROM tenant_guard.action_rules ORDER BY id",
    "permissions": "SELECT relid::text, tenant_role, commands FROM tenant_guard.table_permissions ORDER BY 1, 2",
    "notes": "SELECT tenant_id, owner_id, body FROM shop.notes ORDER BY id",
    "excluded": "SELECT relid::text FROM tenant_guard.excluded_tables ORDER BY 1",
    "audited": """SELECT relid::text, exclude_columns, redact_columns, hash_chain, parent::text
                    FROM tenant_guard.audited_tables ORDER BY 1""",
    "audit_log": """SELECT id, occurred_at, txid::text, tenant_id, user_id, op, pk, old_row, new_row,
                           chain_seq, chain_prev, chain_hash FROM tenant_guard.audit_log ORDER BY id""",
    "chain_heads": "SELECT * FROM tenant_guard.audit_chain_heads ORDER BY 1",
}


def state(cluster, dbname):
    with cluster.connect(user="postgres", dbname=dbname) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in STATE_QUERIES.items()}


def test_dump_and_restore_keep_the_protection(plain_cluster, tmp_path):
    with plain_cluster.connect(user="postgres", dbname="postgres") as admin:
        admin.execute("CREATE DATABASE tg_dump_src")
        admin.execute("CREATE DATABASE tg_dump_dst")
    with plain_cluster.connect(user="postgres", dbname="tg_dump_src") as conn:
        conn.execute(SOURCE_SQL)
    with plain_cluster.connect(dbname="tg_dump_src") as app:
        for tenant in ("acme", "globex"):
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context(%s)", (tenant,))
                app.execute("INSERT INTO shop.orders (item) VALUES (%s), (%s)", (f"{tenant}-1", f"{tenant}-2"))
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context(%s, 'alice', 'member')", (tenant,))
                app.execute("INSERT INTO shop.notes (body) VALUES (%s)", (f"{tenant}: alice's note",))
    with plain_cluster.connect(user="postgres", dbname="tg_dump_src") as admin:
        anchors = {tenant: admin.execute("SELECT * FROM tenant_guard.audit_chain_head(%s)", (tenant,)).fetchone()
                   for tenant in ("acme", "globex")}
    before = state(plain_cluster, "tg_dump_src")
    # orders, orders_archive, events, events_2026, members, notes: 2 each; the events tables 4
    # permission policies each; notes its private-rows policy and 3 write-action policies.
    assert len(before["policies"]) == 2 * 6 + 2 * 4 + 1 + 3
    assert len(before["permissions"]) == 2 and len(before["notes"]) == 2
    assert before["excluded"] == [("shop.scratch",)]
    assert len(before["audit_log"]) == 4 and all(row[9] is not None for row in before["audit_log"])
    assert "acme-1" not in str(before["audit_log"])  # item is redacted

    dump = tmp_path / "src.dump"
    plain_cluster.run_bin("pg_dump", "-Fc", "-U", "postgres", "-d", "tg_dump_src", "-f", str(dump))
    restore = plain_cluster.run_bin(
        "pg_restore", "--exit-on-error", "-U", "postgres", "-d", "tg_dump_dst", str(dump),
        stderr=subprocess.PIPE, text=True,
    )
    assert restore.stderr == "", restore.stderr

    after = state(plain_cluster, "tg_dump_dst")
    assert after == before
    with plain_cluster.connect(user="postgres", dbname="tg_dump_dst") as admin:
        for tenant in ("acme", "globex"):
            assert admin.execute("SELECT * FROM tenant_guard.verify_audit_chain(%s)", (tenant,)).fetchall() == []
            # The anchor exported before the dump still holds after the restore.
            seq, digest = anchors[tenant]
            assert admin.execute("SELECT * FROM tenant_guard.verify_audit_chain(%s, %s, %s)",
                                 (tenant, seq, digest)).fetchall() == []

    with plain_cluster.connect(dbname="tg_dump_dst") as app:
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context('acme')")
            assert app.execute("SELECT tenant_id, item FROM shop.orders ORDER BY item").fetchall() == [
                ("acme", "acme-1"), ("acme", "acme-2")]
    # Permissions and private rows hold after the restore.
    with plain_cluster.connect(dbname="tg_dump_dst") as app:
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context('acme', 'bob', 'member')")
            assert app.execute("SELECT count(*) FROM shop.notes").fetchone() == (0,)
        with pytest.raises(errors.InsufficientPrivilege):
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context('7', 'vic', 'viewer')")
                app.execute("INSERT INTO shop.events (at, v) VALUES ('2026-03-01', 1)")
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context('acme', 'alice', 'member')")
            assert app.execute("SELECT body FROM shop.notes").fetchall() == [("acme: alice's note",)]
        # Writes to notes still need the action: a viewer has no grant.
        with pytest.raises(errors.InsufficientPrivilege):
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context('acme', 'alice', 'viewer')")
                app.execute("INSERT INTO shop.notes (body) VALUES ('no grant')")
    # The restored database audits (and chains) again, after the restored rows.
    with plain_cluster.connect(dbname="tg_dump_dst") as app:
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context('acme')")
            app.execute("INSERT INTO shop.orders (item) VALUES ('acme-3')")
            assert app.execute("SELECT count(*) FROM tenant_guard.audit_log WHERE schema_name = 'shop'").fetchone() == (3,)
    # The restored database protects new tables again, and its guard refuses tampering again.
    with plain_cluster.connect(user="tg_owner", dbname="tg_dump_dst") as owner:
        owner.execute("CREATE TABLE shop.after_restore (tenant_id text)")
        assert owner.execute(
            "SELECT protected_via FROM tenant_guard.protected_tables WHERE relid = 'shop.after_restore'::regclass"
        ).fetchone() == ("auto_protect",)
        for tampering in ("ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY",
                          "DROP POLICY tenant_guard_fence ON shop.orders_archive",
                          "ALTER TABLE shop.events_2026 DISABLE TRIGGER ALL"):
            with pytest.raises(errors.InsufficientPrivilege):
                owner.execute(tampering)


@pytest.fixture(autouse=True)
def _drop_databases(plain_cluster):
    yield
    with plain_cluster.connect(user="postgres", dbname="postgres") as admin:
        for db in ("tg_dump_src", "tg_dump_dst"):
            admin.execute(f"DROP DATABASE IF EXISTS {db}")


CREDENTIALS_SQL = """
CREATE EXTENSION tenant_guard;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_token(text, boolean),
                          tenant_guard.set_tenant_context_api_key(text, boolean) TO tg_app;
CREATE SCHEMA cred AUTHORIZATION tg_owner;
GRANT USAGE ON SCHEMA cred TO tg_app;
SET ROLE tg_owner;
CREATE TABLE cred.notes (tenant_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, body text,
                         PRIMARY KEY (tenant_id, id));
GRANT SELECT, INSERT ON cred.notes TO tg_app;
RESET ROLE;
SELECT tenant_guard.enable_tenant_audit('cred.notes');
SELECT tenant_guard.add_tenant('acme'), tenant_guard.add_tenant('globex', 'pro');
SELECT tenant_guard.add_token_key('hs-client', 'HS256', '\\x{hs}');
SELECT tenant_guard.revoke_token('revoked-jti');
SELECT tenant_guard.add_member('acme', 'alice', 'member');
"""


def test_credentials_and_chains_survive_a_dump_into_a_fresh_cluster(plain_cluster, tmp_path):
    """Every credential kind (token keys, revoked tokens, API keys and their revocation,
    tenants, memberships) and the audit chain, dumped and restored into another cluster."""
    from conftest import Cluster, _workdir
    from test_auth import HS_SECRET, token

    with plain_cluster.connect(user="postgres", dbname="postgres") as admin:
        admin.execute("CREATE DATABASE tg_cred_src")
    with plain_cluster.connect(user="postgres", dbname="tg_cred_src") as admin:
        admin.execute(CREDENTIALS_SQL.replace("{hs}", HS_SECRET.hex()))
        key_acme = admin.execute("SELECT tenant_guard.issue_api_key('acme', 'agent', '1 day', 'dump')").fetchone()[0]
        key_revoked = admin.execute("SELECT tenant_guard.issue_api_key('acme', 'agent', '1 day', 'gone')").fetchone()[0]
        admin.execute("SELECT tenant_guard.revoke_api_key(%s)", (key_revoked.split("_")[1],))
    with plain_cluster.connect(dbname="tg_cred_src") as app:
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (key_acme,))
            app.execute("INSERT INTO cred.notes (body) VALUES ('acme before the dump')")
        with app.transaction():
            app.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (token("globex", jti="t-1"),))
            app.execute("INSERT INTO cred.notes (body) VALUES ('globex before the dump')")
    dump = tmp_path / "cred.dump"
    plain_cluster.run_bin("pg_dump", "-Fc", "-U", "postgres", "-d", "tg_cred_src", "-f", str(dump))

    fresh = Cluster(_workdir() / "pg", preload=True)  # its own roles: tg_app, tg_owner
    try:
        with fresh.connect(user="postgres", dbname="postgres") as admin:
            admin.execute("CREATE DATABASE tg_cred_dst")
        restore = fresh.run_bin("pg_restore", "--exit-on-error", "-U", "postgres", "-d", "tg_cred_dst", str(dump),
                                stderr=subprocess.PIPE, text=True)
        assert restore.stderr == "", restore.stderr
        with fresh.connect(dbname="tg_cred_dst") as app:
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (key_acme,))
                assert app.execute("SELECT tenant_id, body FROM cred.notes").fetchall() == [
                    ("acme", "acme before the dump")]
                app.execute("INSERT INTO cred.notes (body) VALUES ('acme after the restore')")
            with app.transaction():
                app.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (token("globex", jti="t-2"),))
                assert app.execute("SELECT tenant_id, body FROM cred.notes").fetchall() == [
                    ("globex", "globex before the dump")]
            with pytest.raises(errors.InvalidPassword):  # 28P01: the revocation came along
                with app.transaction():
                    app.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (key_revoked,))
            with pytest.raises(errors.InvalidAuthorizationSpecification):  # 28000: so did the token's
                with app.transaction():
                    app.execute("SELECT tenant_guard.set_tenant_context_token(%s)",
                                (token("acme", jti="revoked-jti"),))
        with fresh.connect(user="postgres", dbname="tg_cred_dst") as admin:
            assert admin.execute("SELECT tenant_id, user_id, role FROM tenant_guard.memberships").fetchall() == [
                ("acme", "alice", "member")]
            assert admin.execute("SELECT tenant_id, plan FROM tenant_guard.tenants ORDER BY 1").fetchall() == [
                ("acme", None), ("globex", "pro")]
            for tenant in ("acme", "globex"):
                assert admin.execute("SELECT * FROM tenant_guard.verify_audit_chain(%s)", (tenant,)).fetchall() == []
            assert admin.execute("SELECT count(*) FROM tenant_guard.audit_log").fetchone() == (3,)
            # Nothing about the restored database defeats isolation.
            assert admin.execute("SELECT code, object FROM tenant_guard.check()").fetchall() == []
    finally:
        fresh.stop()
        with plain_cluster.connect(user="postgres", dbname="postgres") as admin:
            admin.execute("DROP DATABASE IF EXISTS tg_cred_src")
