"""Authenticated context over a real socket: tokens (HS256 and EdDSA, signed here with the
standard library and `cryptography`), API keys and memberships, seen from several sessions;
secrets kept out of the server log and pg_stat_activity; a token context through PgBouncer."""

import base64
import hashlib
import hmac
import json
import threading
import time

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import errors

HS_SECRET = b"client-tests-hs256-secret-0123456789"
ED_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ED_PUBLIC = ED_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

SETUP_SQL = """
CREATE ROLE tenant_guard_admin NOLOGIN;
CREATE ROLE tg_agent LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE tg_quiet LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE tg_chatty LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE tg_member LOGIN NOSUPERUSER NOBYPASSRLS;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_token(text, boolean),
                          tenant_guard.set_tenant_context_api_key(text, boolean)
   TO tg_agent, tg_quiet, tg_chatty, tg_member, tg_app;
GRANT USAGE ON SCHEMA app TO tg_agent, tg_quiet, tg_chatty, tg_member;
GRANT SELECT, INSERT ON app.orders TO tg_agent, tg_quiet, tg_chatty, tg_member;
GRANT USAGE ON SEQUENCE app.orders_id_seq TO tg_agent, tg_member;
-- The logging a careful DBA sets: statements and durations logged, bind parameters not.
ALTER ROLE tg_agent SET log_statement = 'all';
ALTER ROLE tg_agent SET log_min_duration_statement = 0;
ALTER ROLE tg_agent SET log_parameter_max_length = 0;
-- The default logging of errors (log_min_error_statement = error logs the failing statement).
ALTER ROLE tg_quiet SET log_statement = 'none';
-- The hazard: durations logged with bind parameters in full (the default length, -1).
ALTER ROLE tg_chatty SET log_min_duration_statement = 0;
ALTER ROLE tg_member SET tenant_guard.require_membership = on;
SELECT tenant_guard.add_tenant('acme');
SELECT tenant_guard.add_tenant('globex');
SELECT tenant_guard.add_token_key('hs-client', 'HS256', '\\x{hs}');
SELECT tenant_guard.add_token_key('ed-client', 'EdDSA', '\\x{ed}');
SELECT tenant_guard.add_member('acme', 'alice', 'viewer');
"""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(tenant, user="alice", alg="HS256", lifetime=600, **claims):
    header = {"alg": alg, "kid": "hs-client" if alg == "HS256" else "ed-client", "typ": "JWT"}
    body = {"tid": tenant, "sub": user, "exp": int(time.time()) + lifetime, **claims}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    if alg == "HS256":
        signature = hmac.new(HS_SECRET, signing_input.encode(), hashlib.sha256).digest()
    else:
        signature = ED_KEY.sign(signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def with_checksum(body: str) -> str:
    """An API key body with its checksum (six base62 digits of its SHA-256): well-formed."""
    value = int.from_bytes(hashlib.sha256(body.encode()).digest()[:4], "big")
    digits = ""
    for _ in range(6):
        digits += BASE62[value % 62]
        value //= 62
    return body + digits


def prepare(cluster):
    """The roles, tenants and keys above, once per cluster."""
    if not getattr(cluster, "auth_ready", False):
        with cluster.connect(user="postgres") as admin:
            admin.execute(SETUP_SQL.replace("{hs}", HS_SECRET.hex()).replace("{ed}", ED_PUBLIC.hex()))
        cluster.auth_ready = True
    return cluster


def issue_key(cluster, tenant, role="agent"):
    with cluster.connect(user="postgres") as admin:
        return admin.execute(
            "SELECT tenant_guard.issue_api_key(%s, %s, '1 day', 'client test')", (tenant, role)
        ).fetchone()[0]


def server_log(cluster) -> str:
    return (cluster.directory / "server.log").read_text(errors="replace")


def test_tokens_of_both_algorithms_and_api_keys_keep_tenants_apart(cluster):
    prepare(cluster)
    acme_key = issue_key(cluster, "acme")
    with cluster.connect(user="tg_agent") as conn:
        with conn.transaction():
            context = conn.execute(
                "SELECT tenant_guard.set_tenant_context_token(%s)", (token("acme", alg="EdDSA"),)
            ).fetchone()[0]
            assert (context["tenant_id"], context["user_id"]) == ("acme", "alice")
            conn.execute("INSERT INTO app.orders (item) VALUES ('acme via EdDSA')")
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (acme_key,))
            conn.execute("INSERT INTO app.orders (item) VALUES ('acme via API key')")
            items = {row[0] for row in conn.execute("SELECT item FROM app.orders")}
            assert {"acme via EdDSA", "acme via API key"} <= items
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (token("globex", "hank"),))
            rows = conn.execute("SELECT tenant_id, item FROM app.orders WHERE item LIKE 'acme via%'").fetchall()
            assert rows == [], "globex must not read acme's rows"
            assert conn.execute("SELECT DISTINCT tenant_id FROM app.orders").fetchall() in ([], [("globex",)])


def test_secrets_never_reach_the_server_log(cluster):
    prepare(cluster)
    good_token = token("acme", jti="log-test-good")
    forged_token = good_token[:-6] + ("AAAAAA" if not good_token.endswith("AAAAAA") else "BBBBBB")
    expired_token = token("acme", lifetime=-300, jti="log-test-expired")
    good_key = issue_key(cluster, "acme")
    assert with_checksum(good_key[:-6]) == good_key
    typo_key = good_key[:20] + ("a" if good_key[20] != "a" else "b") + good_key[21:]
    wrong_key = with_checksum(typo_key[:-6])  # well-formed, wrong secret
    secrets = [good_token, forged_token, expired_token, good_key, typo_key, wrong_key,
               good_token.rsplit(".", 1)[1], good_key[17:49], wrong_key[17:49]]

    with cluster.connect(user="tg_agent") as conn:  # everything logged, parameters not
        assert conn.execute("SHOW log_parameter_max_length").fetchone() == ("0",)
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (good_token,))
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (good_key,))
        for bad in (forged_token, expired_token):
            with pytest.raises(errors.InvalidAuthorizationSpecification) as excinfo:
                conn.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (bad,))
            assert bad not in str(excinfo.value)
        for bad in (typo_key, wrong_key):
            with pytest.raises(errors.InvalidPassword) as excinfo:
                conn.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (bad,))
            assert bad not in str(excinfo.value)
    with cluster.connect(user="tg_quiet") as conn:  # a literal in a failing statement
        seen = []
        conn.add_notice_handler(lambda diag: seen.append(diag.message_primary))
        conn.execute("SET client_min_messages = log")
        with pytest.raises(errors.InvalidAuthorizationSpecification):
            conn.execute(f"SELECT tenant_guard.set_tenant_context_token('{forged_token}')")
        with pytest.raises(errors.InvalidPassword):
            conn.execute(f"SELECT tenant_guard.set_tenant_context_api_key('{wrong_key}')")
        # Errors after a credential verified keep the statement out of the log too.
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute(f"SELECT tenant_guard.set_tenant_context_token('{good_token}', NULL)")
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute(f"SELECT tenant_guard.set_tenant_context_api_key('{good_key}', NULL)")
        # The failure line is for the server log only: the client learns no reason or key id.
        assert not [m for m in seen if "authentication failed" in m], seen

    log = server_log(cluster)
    for secret in secrets:
        assert secret not in log, "a secret reached the server log"
    # What the log does say: one fixed-format line per failure, with the key id, never a secret.
    assert "authentication failed: method=token reason=bad signature key=hs-client tenant=-" in log
    assert "authentication failed: method=token reason=expired key=hs-client tenant=-" in log
    key_id = good_key.split("_")[1]
    assert "authentication failed: method=api_key reason=bad checksum key=- tenant=-" in log
    assert f"authentication failed: method=api_key reason=wrong secret key={key_id} tenant=-" in log
    assert "execute <unnamed>: SELECT tenant_guard.set_tenant_context_token($1)" in log

    # The hazard the settings exist for: slow-query logging prints bind parameters in full.
    leaked = token("acme", jti="log-test-leaked")
    with cluster.connect(user="tg_chatty") as conn:
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (leaked,))
    assert leaked in server_log(cluster), "log_parameter_max_length = -1 logs bind parameters"


def test_pg_stat_activity_shows_no_secret(cluster):
    prepare(cluster)
    secret = token("acme", jti="activity-test")
    with cluster.connect(user="tg_agent") as victim, cluster.connect(user="tg_agent") as snoop:
        pid = victim.info.backend_pid
        worker = threading.Thread(target=lambda: victim.execute(
            "SELECT tenant_guard.set_tenant_context_token(%s, false), pg_sleep(1.5)", (secret,)))
        worker.start()
        seen = []
        while worker.is_alive():
            row = snoop.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            seen.append(row)
            time.sleep(0.05)
        worker.join()
        assert ("active", "SELECT tenant_guard.set_tenant_context_token($1, false), pg_sleep(1.5)") in seen
        assert all(secret not in (query or "") for _, query in seen)
        idle = snoop.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]
        assert secret not in idle


def revoked_in_another_session(cluster, user, set_sql, credential, revoke_sql, revoke_args, expected):
    with cluster.connect(user=user) as conn, cluster.connect(user="postgres") as admin:
        conn.execute(set_sql, (credential,))
        assert conn.execute("SELECT count(*) FROM app.orders").fetchone()[0] >= 0
        admin.execute(revoke_sql, revoke_args)
        with pytest.raises(expected):
            conn.execute("SELECT count(*) FROM app.orders")
        with pytest.raises(expected):  # and it stays refused
            conn.execute("SELECT count(*) FROM app.orders")


def test_a_revoked_token_ends_session_contexts_in_other_backends(cluster):
    prepare(cluster)
    revoked_in_another_session(
        cluster, "tg_agent", "SELECT tenant_guard.set_tenant_context_token(%s, false)",
        token("acme", jti="revoke-me"), "SELECT tenant_guard.revoke_token(%s)", ("revoke-me",),
        errors.InvalidAuthorizationSpecification)


def test_a_revoked_api_key_ends_session_contexts_in_other_backends(cluster):
    prepare(cluster)
    key = issue_key(cluster, "globex")
    revoked_in_another_session(
        cluster, "tg_agent", "SELECT tenant_guard.set_tenant_context_api_key(%s, false)", key,
        "SELECT tenant_guard.revoke_api_key(%s)", (key.split("_")[1],), errors.InvalidPassword)


def test_a_revocation_is_seen_under_an_older_snapshot(cluster):
    # REPEATABLE READ keeps the snapshot of the transaction's first query; the revocation
    # commits after it. The key must still be refused (the auth tables are read on the latest
    # committed state, not the transaction's snapshot).
    prepare(cluster)
    key = issue_key(cluster, "acme")
    with cluster.connect(user="tg_agent", autocommit=False) as conn, cluster.connect(user="postgres") as admin:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT 1")
        admin.execute("SELECT tenant_guard.revoke_api_key(%s)", (key.split("_")[1],))
        conn.execute("SELECT count(*) FROM pg_catalog.pg_description")
        with pytest.raises(errors.InvalidPassword):
            conn.execute("SELECT tenant_guard.set_tenant_context_api_key(%s, false)", (key,))
        conn.rollback()


def test_a_rotated_key_ends_session_contexts_when_the_grace_ends(cluster):
    prepare(cluster)
    key = issue_key(cluster, "acme")
    with cluster.connect(user="tg_agent") as conn, cluster.connect(user="postgres") as admin:
        conn.execute("SELECT tenant_guard.set_tenant_context_api_key(%s, false)", (key,))
        admin.execute("SELECT tenant_guard.rotate_api_key(%s, '1 second')", (key.split("_")[1],))
        conn.execute("SELECT count(*) FROM app.orders")  # within the grace
        time.sleep(1.2)
        with pytest.raises(errors.InvalidPassword):
            conn.execute("SELECT count(*) FROM app.orders")


def test_a_removed_member_loses_the_session_context_in_other_backends(cluster):
    prepare(cluster)
    with cluster.connect(user="postgres") as admin:
        admin.execute("SELECT tenant_guard.add_member('globex', 'gina', 'editor')")
    with cluster.connect(user="tg_member") as conn:
        assert conn.execute("SHOW tenant_guard.require_membership").fetchone() == ("on",)
        context = conn.execute("SELECT tenant_guard.set_tenant_context_token(%s, false)",
                               (token("globex", "gina", role="owner"),)).fetchone()[0]
        assert context["role"] == "editor", "the membership's role wins"
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (token("acme", "gina"),))
    revoked_in_another_session(
        cluster, "tg_member", "SELECT tenant_guard.set_tenant_context_token(%s, false)",
        token("globex", "gina"), "SELECT tenant_guard.add_member(%s, %s, 'viewer')", ("globex", "gina"),
        errors.InsufficientPrivilege)  # a changed role ends it too
    revoked_in_another_session(
        cluster, "tg_member", "SELECT tenant_guard.set_tenant_context_token(%s, false)",
        token("globex", "gina"), "SELECT tenant_guard.remove_member(%s, %s)", ("globex", "gina"),
        errors.InsufficientPrivilege)


def test_a_suspended_tenant_loses_its_contexts_in_other_backends(cluster):
    prepare(cluster)
    with cluster.connect(user="postgres") as admin:
        admin.execute("SELECT tenant_guard.add_tenant('umbrella')")
    try:
        revoked_in_another_session(
            cluster, "tg_agent", "SELECT tenant_guard.set_tenant_context_token(%s, false)",
            token("umbrella", "wesker"), "SELECT tenant_guard.set_tenant_status(%s, 'suspended')",
            ("umbrella",), errors.InsufficientPrivilege)
    finally:
        with cluster.connect(user="postgres") as admin:
            admin.execute("SELECT tenant_guard.set_tenant_status('umbrella', 'active')")


def test_a_token_context_per_transaction_through_pgbouncer(pgbouncer):
    prepare(pgbouncer.cluster)
    acme_key = issue_key(pgbouncer.cluster, "acme")
    with pgbouncer.connect() as first:
        pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]
        with first.transaction():
            first.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (acme_key,))
            first.execute("INSERT INTO app.orders (item) VALUES ('pooled acme key')")
    with pgbouncer.connect() as second:
        assert second.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        with pytest.raises(errors.InsufficientPrivilege):
            second.execute("SELECT count(*) FROM app.orders")
        with second.transaction():
            second.execute("SELECT tenant_guard.set_tenant_context_token(%s)", (token("globex", "hank"),))
            assert second.execute(
                "SELECT count(*) FROM app.orders WHERE item = 'pooled acme key'").fetchone() == (0,)
