-- The schema check() is timed on (bench/run.py): :tables protected tables, 70% plain tables,
-- 30% partitioned tables and their partitions (three each), a security_invoker
-- view and a function over every tenth plain table. Auto-protection protects them as they are
-- created.
SELECT pg_catalog.set_config('bench.tables', :'tables', false);
CREATE EXTENSION tenant_guard;
CREATE SCHEMA s;
DO $$
DECLARE
    total int := current_setting('bench.tables')::int;
    parents int := total * 3 / 40;
    plain int := total - 4 * parents;
BEGIN
    FOR i IN 1..plain LOOP
        EXECUTE format('CREATE TABLE s.t%s (tenant_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,
                                            v text, PRIMARY KEY (tenant_id, id))', i);
        IF i % 10 = 0 THEN
            EXECUTE format('CREATE VIEW s.v%s WITH (security_invoker = true) AS SELECT * FROM s.t%s', i, i);
            EXECUTE format('CREATE FUNCTION s.f%s() RETURNS bigint LANGUAGE sql STABLE
                                AS ''SELECT count(*) FROM s.t%s''', i, i);
        END IF;
    END LOOP;
    FOR i IN 1..parents LOOP
        EXECUTE format('CREATE TABLE s.p%s (tenant_id text NOT NULL, id bigint, PRIMARY KEY (tenant_id, id))
                            PARTITION BY LIST (tenant_id)', i);
        FOR j IN 1..3 LOOP
            EXECUTE format('CREATE TABLE s.p%s_%s PARTITION OF s.p%s FOR VALUES IN (%L)', i, j, i, 't' || j);
        END LOOP;
    END LOOP;
END $$;
