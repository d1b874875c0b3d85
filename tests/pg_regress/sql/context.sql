-- The tenant context: accessors, scope, switching, bad input. Run as the app role.
\c - tg_app

-- Unset: every accessor is NULL (never '').
SELECT tenant_guard.current_tenant_id() IS NULL AS tenant_unset,
       tenant_guard.current_user_id() IS NULL AS user_unset,
       tenant_guard.current_tenant_role() IS NULL AS role_unset,
       tenant_guard.current_trace_id() IS NULL AS trace_unset;
SELECT tenant_guard.tenant_context();

-- Transaction-local by default: gone after COMMIT ...
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'alice', 'admin', '4bf92f3577b34da6a3ce929d0e0e4736');
SELECT tenant_guard.current_tenant_id(), tenant_guard.current_user_id(),
       tenant_guard.current_tenant_role(), tenant_guard.current_trace_id();
SELECT tenant_guard.tenant_context();
COMMIT;
SELECT tenant_guard.current_tenant_id() IS NULL AS gone_after_commit, tenant_guard.tenant_context();

-- ... and after ROLLBACK.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
ROLLBACK;
SELECT tenant_guard.current_tenant_id() IS NULL AS gone_after_rollback;

-- A savepoint rollback restores the earlier context.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'alice') IS NOT NULL AS set;
SAVEPOINT s1;
SELECT tenant_guard.set_tenant_context('acme', 'bob') IS NOT NULL AS same_tenant_other_user;
SELECT tenant_guard.current_user_id();
ROLLBACK TO SAVEPOINT s1;
SELECT tenant_guard.current_tenant_id(), tenant_guard.current_user_id();
COMMIT;

-- ... including to no context at all; but the transaction stays bound to the tenant it acted
-- for: ROLLBACK TO SAVEPOINT undoes the context, not the binding, so a transaction cannot read as
-- one tenant and then write as another.
BEGIN;
SAVEPOINT s1;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
ROLLBACK TO SAVEPOINT s1;
SELECT tenant_guard.current_tenant_id() IS NULL AS restored_to_none;
SELECT tenant_guard.set_tenant_context('globex') IS NOT NULL AS other_tenant_after_rollback_to;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SAVEPOINT s1;
ROLLBACK TO SAVEPOINT s1;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS same_tenant_again;
SELECT tenant_guard.set_tenant_context('globex');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- The same through a PL/pgSQL exception block, which is a subtransaction too.
DO $$
BEGIN
    BEGIN
        PERFORM tenant_guard.set_tenant_context('acme');
        RAISE EXCEPTION 'undo the context';
    EXCEPTION WHEN raise_exception THEN
        RAISE NOTICE 'context after the block: %', tenant_guard.current_tenant_id();
    END;
    PERFORM tenant_guard.set_tenant_context('globex');
END
$$;
\echo :LAST_ERROR_SQLSTATE
-- A transaction that read through a session context inherited from an earlier transaction is
-- bound to that tenant too: clearing it does not let the transaction write as another.
\c - tg_owner
CREATE TABLE app.context_notes (id bigserial PRIMARY KEY, tenant_id text NOT NULL, body text);
\c - tg_app
SELECT tenant_guard.set_tenant_context('acme', is_local => false) IS NOT NULL AS set;
BEGIN;
SELECT count(*) AS read_as_acme FROM app.context_notes;
SELECT tenant_guard.clear_tenant_context();
SELECT tenant_guard.set_tenant_context('globex');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- (Before anything was read, the inherited session context can be cleared and replaced.)
BEGIN;
SELECT tenant_guard.clear_tenant_context();
SELECT tenant_guard.set_tenant_context('globex') IS NOT NULL AS nothing_read_yet;
ROLLBACK;
SELECT tenant_guard.clear_tenant_context();
-- The binding ends with the transaction.
BEGIN;
SELECT tenant_guard.set_tenant_context('globex') IS NOT NULL AS next_transaction_is_free;
COMMIT;

-- Session scope on request: survives transactions ...
SELECT tenant_guard.set_tenant_context('acme', 'alice', is_local => false);
BEGIN;
SELECT tenant_guard.current_tenant_id() AS in_next_transaction;
COMMIT;
SELECT tenant_guard.current_tenant_id() AS still_set;
-- ... until clear_tenant_context() ...
SELECT tenant_guard.clear_tenant_context();
SELECT tenant_guard.tenant_context();
-- ... or DISCARD ALL ...
SELECT tenant_guard.set_tenant_context('acme', is_local => false) IS NOT NULL AS set;
DISCARD ALL;
SELECT tenant_guard.current_tenant_id() IS NULL AS gone_after_discard_all;
-- ... or RESET ALL.
SELECT tenant_guard.set_tenant_context('acme', is_local => false) IS NOT NULL AS set;
RESET ALL;
SELECT tenant_guard.current_tenant_id() IS NULL AS gone_after_reset_all;
-- A rolled-back session-scope call is undone, like SET.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', is_local => false) IS NOT NULL AS set;
ROLLBACK;
SELECT tenant_guard.current_tenant_id() IS NULL AS session_set_rolled_back;

-- A transaction-local call replaces the whole context for the transaction (fields it omits are
-- NULL), and the session context is back after it.
SELECT tenant_guard.set_tenant_context('acme', 'bob', 'viewer', is_local => false) IS NOT NULL AS set;
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', trace_id => 't-9') IS NOT NULL AS set;
SELECT tenant_guard.tenant_context() AS in_transaction;
COMMIT;
SELECT tenant_guard.tenant_context() AS after_commit;
SELECT tenant_guard.clear_tenant_context();

-- A transaction-local call outside a transaction block warns (25P01): it ends with the statement.
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
\set VERBOSITY sqlstate
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
\set VERBOSITY default
SELECT tenant_guard.current_tenant_id() IS NULL AS already_gone;

-- A transaction acts for one tenant.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT tenant_guard.set_tenant_context('globex');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Clearing does not lift the binding.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
SELECT tenant_guard.clear_tenant_context();
SELECT tenant_guard.set_tenant_context('globex');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Nor does RESET ALL.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS set;
RESET ALL;
SELECT tenant_guard.set_tenant_context('globex');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Within one statement too.
SELECT tenant_guard.set_tenant_context('acme', is_local => false), tenant_guard.set_tenant_context('globex', is_local => false);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant_guard.current_tenant_id() IS NULL AS nothing_set;
-- A session context inherited from an earlier transaction counts inside a transaction block ...
SELECT tenant_guard.set_tenant_context('acme', is_local => false) IS NOT NULL AS set;
BEGIN;
SELECT tenant_guard.set_tenant_context('globex');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- ... unless cleared explicitly first.
BEGIN;
SELECT tenant_guard.clear_tenant_context();
SELECT tenant_guard.set_tenant_context('globex') IS NOT NULL AS set;
SELECT tenant_guard.current_tenant_id();
COMMIT;
-- Outside a transaction block a connection may move to another tenant (a pool checkout).
SELECT tenant_guard.set_tenant_context('acme', is_local => false) IS NOT NULL AS set;
SELECT tenant_guard.set_tenant_context('globex', is_local => false) IS NOT NULL AS set;
SELECT tenant_guard.current_tenant_id();
SELECT tenant_guard.clear_tenant_context();

-- tenant_guard.allow_session_context = off refuses session scope (42501); local scope still works.
\c - postgres
ALTER ROLE tg_app SET tenant_guard.allow_session_context = off;
\c - tg_app
SELECT tenant_guard.set_tenant_context('acme', is_local => false);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT tenant_guard.set_tenant_context('acme') IS NOT NULL AS local_still_works;
COMMIT;
\c - postgres
ALTER ROLE tg_app RESET tenant_guard.allow_session_context;
\c - tg_app

-- Bad input: a clear error with SQLSTATE 22023, and the context is unchanged.
BEGIN;
SELECT tenant_guard.set_tenant_context('acme', 'alice', 'admin', 't-1') IS NOT NULL AS set;
SAVEPOINT s;
SELECT tenant_guard.set_tenant_context(NULL);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context('');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context(repeat('x', 10000));
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context(repeat('x', 256));
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context(E'acme\nglobex');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context(E'acme\u0007');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context(E'acme\u0085');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context(' acme');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context('acme', user_id => '');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context('acme', role => E'admin\r');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context('acme', trace_id => repeat('t', 10000));
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.set_tenant_context('acme', is_local => NULL);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
-- Wrong argument type: PostgreSQL's own resolution refuses it (42883).
SELECT tenant_guard.set_tenant_context(42);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tenant_guard.tenant_context() AS unchanged;
COMMIT;

-- One tenant, one spelling: a tenant id that reads as an integer or a UUID must be written the
-- way PostgreSQL prints it, so that a bigint column's 7 is the audit log's and the chain's '7'.
BEGIN;
SELECT tenant_guard.set_tenant_context('07');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('+7');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('-0');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('a0eebc999c0b4ef8bb6d6bb9bd380a11');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('7') ->> 'tenant_id' AS canonical_integer,
       tenant_guard.current_tenant_id() = '7' AS kept_as_written;
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('-42') ->> 'tenant_id' AS negative_integer;
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11') ->> 'tenant_id' AS canonical_uuid;
ROLLBACK;
BEGIN;
-- Not an integer or a UUID: any spelling is its own tenant.
SELECT tenant_guard.set_tenant_context('007-bond') ->> 'tenant_id' AS text_id,
       tenant_guard.set_tenant_context('007-bond', 'x') ->> 'tenant_id' AS same;
ROLLBACK;

-- The limits are inclusive: 255 bytes (multibyte characters count in bytes) and any printable text.
BEGIN;
SELECT length(tenant_guard.set_tenant_context(repeat('x', 255)) ->> 'tenant_id') AS accepted_255;
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context(repeat('é', 128));
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT tenant_guard.set_tenant_context('Robert''); DROP TABLE students;--', 'ユーザー') ->> 'tenant_id' AS hostile_but_printable;
ROLLBACK;

-- The accessors are readable by every role (policies call them); setting is not.
\c - tg_ops
SELECT tenant_guard.current_tenant_id() IS NULL AS readable;
SELECT tenant_guard.set_tenant_context('acme');
\echo :LAST_ERROR_SQLSTATE
