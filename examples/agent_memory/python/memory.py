"""The agent's memory from Python: psycopg 3 with psycopg_pool, and SQLAlchemy 2.

A pool has no per-transaction hook, so `tenant_transaction(pool, api_key)` opens the transaction
and sets the tenant's context first; the pool's `reset` callback drops any context a connection
comes back with. SQLAlchemy sets it in an `after_begin` event from the session's `info`.

    TG_API_KEY_A=tgk_... TG_API_KEY_B=tgk_... PGHOST=... PGDATABASE=... PGUSER=memory_app python memory.py
"""

import os
import sys
from contextlib import contextmanager

from psycopg_pool import ConnectionPool
from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session


def reset(conn):
    """On return to the pool: no context (and no session state) survives the request."""
    conn.execute("SELECT tenant_guard.clear_tenant_context()")


@contextmanager
def tenant_transaction(pool, api_key):
    """One request: a transaction acting for the tenant the API key belongs to."""
    with pool.connection() as conn:
        with conn.transaction():
            conn.execute("SELECT tenant_guard.set_tenant_context_api_key(%s)", (api_key,))
            yield conn


def save_fact(pool, api_key, subject, fact):
    with tenant_transaction(pool, api_key) as conn:
        conn.execute("INSERT INTO memory.facts (subject, fact) VALUES (%s, %s)", (subject, fact))


def list_facts(pool, api_key, subject):
    with tenant_transaction(pool, api_key) as conn:
        rows = conn.execute("SELECT fact FROM memory.facts WHERE subject = %s ORDER BY id", (subject,))
        return [fact for (fact,) in rows]


# SQLAlchemy 2: the context is set when the session's transaction begins, from session.info.
engine = create_engine("postgresql+psycopg://", pool_pre_ping=True)


@event.listens_for(Session, "after_begin")
def act_for_tenant(session, transaction, connection):
    api_key = session.info.get("tenant_api_key")
    if api_key is None:
        raise RuntimeError("no tenant API key in session.info: refusing to run without a tenant")
    connection.exec_driver_sql("SELECT tenant_guard.set_tenant_context_api_key(%s)", (api_key,))


def orm_list_facts(api_key, subject):
    with Session(engine, info={"tenant_api_key": api_key}) as session, session.begin():
        return session.scalars(text("SELECT fact FROM memory.facts WHERE subject = :s ORDER BY id"),
                               {"s": subject}).all()


def main():
    key_a, key_b = os.environ["TG_API_KEY_A"], os.environ["TG_API_KEY_B"]
    with ConnectionPool("", kwargs={"autocommit": True}, reset=reset, min_size=1, max_size=2) as pool:
        save_fact(pool, key_a, "case-123", "the customer prefers email")
        seen_by_b = list_facts(pool, key_b, "case-123")
        seen_by_a = list_facts(pool, key_a, "case-123")
    orm_seen_by_b = orm_list_facts(key_b, "case-123")
    orm_seen_by_a = orm_list_facts(key_a, "case-123")
    if seen_by_b or orm_seen_by_b or not seen_by_a or not orm_seen_by_a:
        sys.exit(f"FAIL: tenant-b sees {seen_by_b} (ORM {orm_seen_by_b}); tenant-a sees {len(seen_by_a)}")
    print(f"ok: tenant-b lists nothing for case-123 (psycopg_pool and SQLAlchemy); tenant-a lists {len(seen_by_a)}")


if __name__ == "__main__":
    main()
