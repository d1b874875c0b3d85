-- The benchmark data set. psql variables: rows, tenants, tenant (the fixed session tenant).
-- Tenants are interleaved (tenant_id = (id - 1) % tenants + 1), so one tenant's rows are spread
-- over the whole heap as in a table that many tenants write to at once.
\set ON_ERROR_STOP on
CREATE EXTENSION tenant_guard;

CREATE ROLE bench_owner NOSUPERUSER NOBYPASSRLS;
-- bench_app acts for one tenant for the whole session (a role default set by the superuser, so
-- the measured transactions contain nothing but the workload); bench_tx sets the context in
-- every transaction; bench_ops is the baseline that row level security does not apply to.
CREATE ROLE bench_app LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE bench_tx LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE bench_ops LOGIN NOSUPERUSER BYPASSRLS;
ALTER ROLE bench_app SET tenant_guard.tenant_id = :'tenant';
ALTER ROLE bench_app SET app.tenant_id = :'tenant';
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO bench_tx;
CREATE SCHEMA bench AUTHORIZATION bench_owner;
GRANT USAGE ON SCHEMA bench TO bench_app, bench_tx, bench_ops;
ALTER DEFAULT PRIVILEGES FOR ROLE bench_owner IN SCHEMA bench
    GRANT SELECT, INSERT ON TABLES TO bench_app, bench_tx, bench_ops;
ALTER DEFAULT PRIVILEGES FOR ROLE bench_owner IN SCHEMA bench
    GRANT USAGE ON SEQUENCES TO bench_app, bench_tx, bench_ops;

-- Rows 1, 2 and 4: the realistic table, protected automatically when it is created.
SET ROLE bench_owner;
CREATE TABLE bench.orders (
    id         bigint PRIMARY KEY,
    tenant_id  bigint NOT NULL,
    created_at timestamptz NOT NULL,
    status     text NOT NULL,
    amount     numeric(12, 2) NOT NULL,
    payload    text NOT NULL
);
RESET ROLE;
INSERT INTO bench.orders
SELECT g, (g - 1) % :tenants + 1, timestamptz '2026-01-01' + g * interval '1 second',
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[g % 4 + 1], (g % 100000) / 100.0,
       md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
  FROM generate_series(1, :rows) g;

-- Row 3: the same rows under a hand-written policy with an unwrapped current_setting(), and
-- under tenant_guard's policy, both without a tenant index, so the policy is evaluated per row.
SET tenant_guard.auto_protect = off;
CREATE TABLE bench.orders_handwritten AS SELECT * FROM bench.orders;
CREATE TABLE bench.orders_guarded_noindex AS SELECT * FROM bench.orders;
ALTER TABLE bench.orders_handwritten OWNER TO bench_owner, ADD PRIMARY KEY (id);
ALTER TABLE bench.orders_guarded_noindex OWNER TO bench_owner, ADD PRIMARY KEY (id);
GRANT SELECT ON bench.orders_handwritten, bench.orders_guarded_noindex TO bench_app;
ALTER TABLE bench.orders_handwritten ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY handwritten ON bench.orders_handwritten
    USING (tenant_id = current_setting('app.tenant_id')::bigint)
    WITH CHECK (tenant_id = current_setting('app.tenant_id')::bigint);
SELECT tenant_guard.enable_tenant_rls('bench.orders_guarded_noindex', create_index => false);

-- Row 5: two empty tables with the same columns and indexes; one plain, one protected.
SET ROLE bench_owner;
CREATE TABLE bench.inserts_plain (
    id bigserial PRIMARY KEY, tenant_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), amount numeric(12, 2) NOT NULL, payload text NOT NULL
);
CREATE INDEX ON bench.inserts_plain (tenant_id);
RESET ROLE;
RESET tenant_guard.auto_protect;
SET ROLE bench_owner;
CREATE TABLE bench.inserts_guarded (
    id bigserial PRIMARY KEY, tenant_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), amount numeric(12, 2) NOT NULL, payload text NOT NULL
);
RESET ROLE;

VACUUM ANALYZE;
SELECT relid::regclass AS protected FROM tenant_guard.protected_tables ORDER BY 1;

-- Rows 6-11: audit. A realistic invoice table (primary key, tenant index, a unique invoice number
-- per tenant, two more indexes), protected, in four copies: plain, audited by tenant_guard without
-- and with the hash chain, and audited by a PL/pgSQL row trigger of the usual design
-- (to_jsonb(NEW) per row).
SET ROLE bench_owner;
CREATE TABLE bench.invoices_plain (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL,
    number      text NOT NULL,
    customer_id bigint NOT NULL,
    status      text NOT NULL,
    currency    text NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    tax         numeric(12, 2) NOT NULL,
    issued_at   timestamptz NOT NULL,
    due_at      timestamptz NOT NULL,
    card_number text,
    notes       text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ON bench.invoices_plain (tenant_id, number);
CREATE INDEX ON bench.invoices_plain (tenant_id, customer_id);
CREATE INDEX ON bench.invoices_plain (tenant_id, issued_at);
CREATE TABLE bench.invoices_audited (LIKE bench.invoices_plain INCLUDING INDEXES);
CREATE TABLE bench.invoices_chained (LIKE bench.invoices_plain INCLUDING INDEXES);
CREATE TABLE bench.invoices_rowtrigger (LIKE bench.invoices_plain INCLUDING INDEXES);
-- The row trigger's log has the same columns and indexes as tenant_guard.audit_log, and the
-- trigger writes the same information: the comparison is per-row trigger vs set-based, not
-- a narrower log vs a wider one.
CREATE TABLE bench.rowtrigger_log (LIKE tenant_guard.audit_log INCLUDING ALL);
CREATE SEQUENCE bench.invoice_numbers;
RESET ROLE;
-- LIKE copies no defaults: give the copies the plain table's id default and updated_at default.
ALTER TABLE bench.invoices_audited ALTER COLUMN id SET DEFAULT nextval('bench.invoices_plain_id_seq'),
    ALTER COLUMN updated_at SET DEFAULT now();
ALTER TABLE bench.invoices_chained ALTER COLUMN id SET DEFAULT nextval('bench.invoices_plain_id_seq'),
    ALTER COLUMN updated_at SET DEFAULT now();
ALTER TABLE bench.invoices_rowtrigger ALTER COLUMN id SET DEFAULT nextval('bench.invoices_plain_id_seq'),
    ALTER COLUMN updated_at SET DEFAULT now();
GRANT INSERT, UPDATE, DELETE ON bench.invoices_plain, bench.invoices_audited, bench.invoices_chained,
      bench.invoices_rowtrigger, bench.rowtrigger_log TO bench_app;
GRANT USAGE ON bench.invoices_plain_id_seq, bench.invoice_numbers TO bench_app;
SELECT tenant_guard.enable_tenant_audit('bench.invoices_audited', exclude_columns => '{updated_at}',
                                        redact_columns => '{card_number}', hash_chain => false);
SELECT tenant_guard.enable_tenant_audit('bench.invoices_chained', exclude_columns => '{updated_at}',
                                        redact_columns => '{card_number}');
CREATE FUNCTION bench.row_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench.rowtrigger_log (occurred_at, txid, tenant_id, user_id, tenant_role, trace_id, db_role,
                                      schema_name, table_name, table_oid, op, pk, old_row, new_row)
    VALUES (statement_timestamp(), pg_current_xact_id(), NEW.tenant_id::text, tenant_guard.current_user_id(),
            tenant_guard.current_tenant_role(), tenant_guard.current_trace_id(), current_user,
            TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_RELID, TG_OP, jsonb_build_object('id', NEW.id), NULL,
            to_jsonb(NEW) - 'updated_at' || '{"card_number": "[redacted]"}');
    RETURN NEW;
END
$$;
CREATE TRIGGER row_audit AFTER INSERT OR UPDATE OR DELETE ON bench.invoices_rowtrigger
    FOR EACH ROW EXECUTE FUNCTION bench.row_audit();
-- The floor: the audit rows one bulk insert writes, computed once, to be written directly.
-- (bench_app may insert them only in this throwaway cluster.)
CREATE TABLE bench.audit_rows_10k AS
SELECT statement_timestamp() AS occurred_at, pg_current_xact_id() AS txid, :'tenant'::text AS tenant_id,
       NULL::text AS user_id, NULL::text AS tenant_role, NULL::text AS trace_id, 'bench_app'::name AS db_role,
       'bench'::name AS schema_name, 'invoices_audited'::name AS table_name, 0::oid AS table_oid,
       'INSERT'::text AS op, jsonb_build_object('id', g) AS pk, NULL::jsonb AS old_row,
       jsonb_build_object('id', g, 'tenant_id', :tenant, 'number', 'INV-1-' || g, 'customer_id', g % 500,
                          'status', 'open', 'currency', 'EUR', 'amount', 100.00, 'tax', 19.00,
                          'issued_at', '2026-01-01T00:00:00+00:00', 'due_at', '2026-02-01T00:00:00+00:00',
                          'card_number', '[redacted]', 'notes', 'net 30') AS new_row
  FROM generate_series(1, 10000) g;
GRANT SELECT ON bench.audit_rows_10k TO bench_app;
GRANT INSERT ON tenant_guard.audit_log TO bench_app;
CREATE POLICY bench_floor_only ON tenant_guard.audit_log FOR INSERT TO bench_app WITH CHECK (true);
VACUUM ANALYZE bench.audit_rows_10k;

-- Rows 12-15: authenticated context. bench_tx sets it with a token or an API key per
-- transaction; bench_member sets it with set_tenant_context under require_membership. The
-- runner registers the keys and signs the tokens (bench/run.py, auth_variables).
CREATE ROLE bench_member LOGIN NOSUPERUSER NOBYPASSRLS;
ALTER ROLE bench_member SET tenant_guard.require_membership = on;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context_token(text, boolean),
                          tenant_guard.set_tenant_context_api_key(text, boolean) TO bench_tx;
GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO bench_member;
GRANT USAGE ON SCHEMA bench TO bench_member;
GRANT SELECT ON bench.orders TO bench_member;
SELECT tenant_guard.add_tenant(t::text) FROM generate_series(1, :tenants) t;
SELECT tenant_guard.add_member(:'tenant', 'bench-user', 'clerk');

-- Rows 16-17: authorization. bench.orders_permitted is bench.orders with per-role permissions
-- (clerk may SELECT, admin everything); bench_clerk acts for the session tenant as a clerk (role
-- defaults set by the superuser, like bench_app). The action catalogue holds 50 actions with a
-- grant by role and a deny by plan each, so a decision looks through a realistic rule set.
CREATE ROLE bench_clerk LOGIN NOSUPERUSER NOBYPASSRLS;
ALTER ROLE bench_clerk SET tenant_guard.tenant_id = :'tenant';
ALTER ROLE bench_clerk SET tenant_guard.tenant_role = 'clerk';
GRANT USAGE ON SCHEMA bench TO bench_clerk;
SET tenant_guard.auto_protect = off;
CREATE TABLE bench.orders_permitted AS SELECT * FROM bench.orders;
ALTER TABLE bench.orders_permitted OWNER TO bench_owner, ADD PRIMARY KEY (id);
RESET tenant_guard.auto_protect;
GRANT SELECT ON bench.orders_permitted TO bench_clerk;
GRANT SELECT ON bench.orders TO bench_clerk;
SELECT tenant_guard.enable_tenant_rls('bench.orders_permitted');
SELECT tenant_guard.set_table_permissions('bench.orders_permitted', 'clerk', ARRAY['SELECT']);
SELECT tenant_guard.set_table_permissions('bench.orders_permitted', 'admin', ARRAY['ALL']);
SELECT tenant_guard.add_action('bench.tool_' || n) FROM generate_series(1, 50) n;
SELECT tenant_guard.grant_action('bench.tool_' || n, tenant_role => 'clerk') FROM generate_series(1, 50) n;
SELECT tenant_guard.deny_action('bench.tool_' || n, plan => 'suspended-plan') FROM generate_series(1, 50) n;
VACUUM ANALYZE bench.orders_permitted;
