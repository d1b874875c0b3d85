//! The audit renderer against `to_jsonb()`: for every built-in type, NULLs, arrays, composites,
//! domains, enums, ranges, extreme values and random values, the audit row's image of a row is
//! the jsonb `to_jsonb()` makes of it, byte for byte. (No type here has a cast to json: such a
//! cast is what the renderer deliberately never calls; tests/pg_regress/sql/audit.sql proves
//! that.)

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Values of every built-in base type, as SQL expressions of that type: extremes first.
    /// Plain strings are literals of the type; `=` starts an expression.
    const SAMPLES: &[(&str, &[&str])] = &[
        ("bool", &["true", "false"]),
        ("int2", &["-32768", "32767", "0"]),
        ("int4", &["-2147483648", "2147483647", "0"]),
        ("int8", &["-9223372036854775808", "9223372036854775807", "0"]),
        (
            "numeric",
            &[
                "0",
                "1.50",
                "-0.000000000000000000001",
                "1e1000",
                "-123456789012345678901234567890.123456789",
                "NaN",
                "Infinity",
                "-Infinity",
            ],
        ),
        (
            "float4",
            &["0.1", "-0", "1.4e-45", "1.1754944e-38", "3.4028235e+38", "NaN", "Infinity", "-Infinity"],
        ),
        (
            "float8",
            &[
                "0.1",
                "-0",
                "5e-324",
                "2.2250738585072014e-308",
                "1.7976931348623157e+308",
                "NaN",
                "Infinity",
                "-Infinity",
            ],
        ),
        ("money", &["-92233720368547758.08", "92233720368547758.07", "0"]),
        ("char", &["a", ""]),
        ("name", &["a name", "", "=repeat('x', 63)::name"]),
        (
            "text",
            &["", "quote \" backslash \\ tab \t newline \n", "ü ✓ 😀", "=E'\\x01\\x1f'"],
        ),
        ("varchar", &["", "abc  "]),
        ("bpchar", &["", "ab  "]),
        ("bytea", &["\\xdeadbeef", "\\x"]),
        ("date", &["infinity", "-infinity", "4713-01-01 BC", "5874897-12-31", "2026-01-02"]),
        ("time", &["00:00", "23:59:59.999999", "24:00:00"]),
        ("timetz", &["00:00+15:59", "23:59:59.999999-15:59", "12:34:56+05:30"]),
        (
            "timestamp",
            &[
                "infinity",
                "-infinity",
                "4713-01-01 00:00 BC",
                "294276-12-31 23:59:59.999999",
                "2026-01-02 03:04:05.678",
            ],
        ),
        (
            "timestamptz",
            &[
                "infinity",
                "-infinity",
                "4713-01-01 00:00+00 BC",
                "294276-12-31 23:59:59.999999+00",
                "2026-01-02 03:04:05.678+05:30",
            ],
        ),
        (
            "interval",
            &["178000000 years", "-178000000 years", "1 day 2 hours -3 minutes 4.5 seconds", "0"],
        ),
        ("uuid", &["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]),
        (
            "json",
            &["null", "\"s\"", "{\"a\": [1, {\"b\": null}], \"a\": 2}", "  [ ]  ", "1e400", "-0.0"],
        ),
        ("jsonb", &["null", "{\"a\": {\"b\": [1, 2.50, \"x\", true, null]}}", "1e400", "{}"]),
        ("jsonpath", &["$.a[*] ? (@ > 1)"]),
        ("xml", &["<x a=\"1\">t</x>", ""]),
        ("bit", &["1", "0"]),
        ("varbit", &["", "1010101"]),
        ("inet", &["10.0.0.1/8", "::1"]),
        ("cidr", &["10.0.0.0/8", "2001:db8::/32"]),
        ("macaddr", &["08:00:2b:01:02:03"]),
        ("macaddr8", &["08:00:2b:01:02:03:04:05"]),
        ("point", &["(1.5,-2)", "(0,0)"]),
        ("line", &["{1,2,3}"]),
        ("lseg", &["[(0,0),(1,1)]"]),
        ("box", &["(1,1),(0,0)"]),
        ("path", &["[(0,0),(1,1)]", "((0,0),(1,1),(2,0))"]),
        ("polygon", &["((0,0),(1,0),(1,1))"]),
        ("circle", &["<(0,0),1>"]),
        ("tsvector", &["a:1A b:2 c", ""]),
        ("tsquery", &["a & !b | c:*"]),
        ("oid", &["0", "4294967295"]),
        ("xid", &["0", "4294967295"]),
        ("xid8", &["0", "18446744073709551615"]),
        ("cid", &["0", "4294967295"]),
        ("tid", &["(0,1)", "(4294967295,65535)"]),
        ("int2vector", &["1 2 3", ""]),
        ("oidvector", &["1 2 4294967295", ""]),
        ("regclass", &["pg_class", "-"]),
        ("regcollation", &["\"C\""]),
        ("regconfig", &["english"]),
        ("regdictionary", &["simple"]),
        ("regnamespace", &["pg_catalog"]),
        ("regoper", &["pg_catalog.||/"]),
        ("regoperator", &["+(int4,int4)"]),
        ("regproc", &["now", "-"]),
        ("regprocedure", &["abs(int4)"]),
        ("regrole", &["=current_user::regrole"]),
        ("regtype", &["int4", "\"char\""]),
        ("refcursor", &["cur"]),
        ("aclitem", &["=makeaclitem(0, 10, 'SELECT', true)"]),
        ("pg_lsn", &["0/0", "FFFFFFFF/FFFFFFFF"]),
        ("pg_snapshot", &["10:20:10,14,15"]),
        ("txid_snapshot", &["10:20:10,14,15"]),
        (
            "pg_node_tree",
            &["=(SELECT polqual FROM pg_catalog.pg_policy WHERE polqual IS NOT NULL LIMIT 1)"],
        ),
        (
            "pg_ndistinct",
            &["=(SELECT stxdndistinct FROM pg_catalog.pg_statistic_ext_data WHERE stxdndistinct IS NOT NULL LIMIT 1)"],
        ),
        (
            "pg_dependencies",
            &["=(SELECT stxddependencies FROM pg_catalog.pg_statistic_ext_data WHERE stxddependencies IS NOT NULL LIMIT 1)"],
        ),
        (
            "pg_mcv_list",
            &["=(SELECT stxdmcv FROM pg_catalog.pg_statistic_ext_data WHERE stxdmcv IS NOT NULL LIMIT 1)"],
        ),
        ("int4range", &["empty", "[1,10)", "(,5]", "(,)"]),
        ("int8range", &["[-9223372036854775808,9223372036854775807)"]),
        ("numrange", &["[1.5,Infinity]", "(-Infinity,0)"]),
        ("daterange", &["[2026-01-01,infinity)"]),
        ("tsrange", &["[2026-01-01 00:00,2026-01-02 00:00)"]),
        ("tstzrange", &["[2026-01-01 00:00+00,)"]),
        ("int4multirange", &["{}", "{[1,3), [5,7)}"]),
        ("int8multirange", &["{[1,2]}"]),
        ("nummultirange", &["{(,0), [1.5,2.5]}"]),
        ("datemultirange", &["{[2026-01-01,2026-02-01)}"]),
        ("tsmultirange", &["{[2026-01-01 00:00,)}"]),
        ("tstzmultirange", &["{[2026-01-01 00:00+00,2026-01-02 00:00+00]}"]),
    ];

    /// Base types no column can be given a value of: no input function and no way to make one
    /// outside an index's internals.
    const NO_VALUES: &[&str] = &[
        "gtsvector",
        "pg_brin_bloom_summary",
        "pg_brin_minmax_multi_summary",
    ];

    fn expression(type_name: &str, sample: &str) -> String {
        match sample.strip_prefix('=') {
            Some(expression) => format!("({expression})::pg_catalog.{type_name}"),
            None => format!("{}::pg_catalog.{type_name}", spi::quote_literal(sample)),
        }
    }

    /// Rows of `table` (with an `id` primary key) whose audit image differs from to_jsonb(), as
    /// text: jsonb's `=` would call 7 and 7.0 equal.
    fn mismatches(table: &str) -> Vec<String> {
        Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT format('id %s: audit %s, to_jsonb %s', whole_row.id, l.new_row, to_jsonb(whole_row))
                           FROM {table} whole_row
                           JOIN tenant_guard.audit_log l
                             ON l.table_oid = '{table}'::regclass AND l.op = 'INSERT'
                            AND (l.pk ->> 'id')::int = whole_row.id
                          WHERE l.new_row::text IS DISTINCT FROM to_jsonb(whole_row)::text
                          ORDER BY whole_row.id LIMIT 20"
                    ),
                    None,
                    &[],
                )?
                .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
                .collect::<pgrx::spi::SpiResult<Vec<_>>>()
        })
        .expect("compare with to_jsonb")
    }

    fn audited_rows(table: &str) -> i64 {
        Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM tenant_guard.audit_log WHERE table_oid = '{table}'::regclass"
        ))
        .expect("count")
        .unwrap_or(0)
    }

    #[pg_test]
    fn every_built_in_type_renders_as_to_jsonb_does() {
        // Extended statistics, so that pg_ndistinct, pg_dependencies and pg_mcv_list have values.
        Spi::run(
            "CREATE SCHEMA rnd;
             CREATE TABLE rnd.stats (a int, b int);
             INSERT INTO rnd.stats SELECT g % 7, g % 11 FROM generate_series(1, 500) g;
             CREATE STATISTICS rnd.stats_ab (ndistinct, dependencies, mcv) ON a, b FROM rnd.stats;
             ANALYZE rnd.stats;",
        )
        .expect("setup");
        // Every base type and every range and multirange of pg_catalog is covered.
        let uncovered: Vec<String> = Spi::connect(|client| {
            client
                .select(
                    "SELECT typname::text FROM pg_catalog.pg_type
                      WHERE typnamespace = 'pg_catalog'::regnamespace AND typtype IN ('b', 'r', 'm')
                        AND typisdefined AND typname !~ '^_' ORDER BY 1",
                    None,
                    &[],
                )?
                .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
                .collect::<pgrx::spi::SpiResult<Vec<_>>>()
        })
        .expect("types")
        .into_iter()
        .filter(|t| !NO_VALUES.contains(&t.as_str()) && !SAMPLES.iter().any(|(s, _)| s == t))
        .collect();
        assert_eq!(
            uncovered,
            Vec::<String>::new(),
            "built-in types without samples"
        );

        let mut failures = Vec::new();
        let mut rows = 0;
        for (type_name, samples) in SAMPLES {
            let table = format!("rnd.\"t_{type_name}\"");
            let has_array = Spi::get_one::<bool>(&format!(
                "SELECT typarray <> 0 FROM pg_catalog.pg_type
                  WHERE oid = 'pg_catalog.{type_name}'::regtype"
            ))
            .expect("typarray")
            .unwrap_or(false);
            let array_column = if has_array {
                format!(", a pg_catalog.{type_name}[]")
            } else {
                String::new()
            };
            Spi::run(&format!(
                "CREATE TABLE {table} (id int PRIMARY KEY, v pg_catalog.{type_name}{array_column});
                 SELECT tenant_guard.enable_tenant_audit('{table}', hash_chain => false);"
            ))
            .expect("audited table");
            let values: Vec<String> = samples.iter().map(|s| expression(type_name, s)).collect();
            let mut tuples: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if has_array {
                        format!("({i}, {v}, ARRAY[{v}])")
                    } else {
                        format!("({i}, {v})")
                    }
                })
                .collect();
            let n = values.len();
            if has_array {
                // A NULL, an array of every sample with a NULL element, an empty array.
                tuples.push(format!("({n}, NULL, ARRAY[{}, NULL])", values.join(", ")));
                tuples.push(format!(
                    "({}, NULL, '{{}}'::pg_catalog.{type_name}[])",
                    n + 1
                ));
            } else {
                tuples.push(format!("({n}, NULL)"));
            }
            Spi::run(&format!("INSERT INTO {table} VALUES {}", tuples.join(", ")))
                .unwrap_or_else(|e| panic!("insert into {table}: {e}"));
            assert_eq!(audited_rows(&table), tuples.len() as i64, "{table}");
            rows += tuples.len();
            failures.extend(
                mismatches(&table)
                    .into_iter()
                    .map(|m| format!("{type_name}: {m}")),
            );
        }
        assert!(rows > 300, "{rows} rows compared");
        assert_eq!(failures, Vec::<String>::new());
    }

    /// Composites (nested, with arrays), domains over scalars, arrays and composites, enums and
    /// arrays of each, multi-dimensional arrays and arrays with other lower bounds.
    #[pg_test]
    fn user_defined_types_render_as_to_jsonb_does() {
        Spi::run(
            r#"CREATE SCHEMA rnd;
             CREATE TYPE rnd.mood AS ENUM ('sad', 'ok', 'a "quoted" mood');
             CREATE DOMAIN rnd.positive AS int CHECK (VALUE > 0);
             CREATE DOMAIN rnd.tags AS text[];
             CREATE TYPE rnd.inner_pair AS (n numeric, t timestamptz);
             CREATE TYPE rnd.outer_pair AS (label text, inner_value rnd.inner_pair, moods rnd.mood[],
                                            nums float8[], j jsonb);
             CREATE DOMAIN rnd.outer_domain AS rnd.outer_pair;
             CREATE TABLE rnd.udt (id int PRIMARY KEY, m rnd.mood, ms rnd.mood[], p rnd.positive,
                                   ps rnd.positive[], tags rnd.tags, o rnd.outer_pair,
                                   os rnd.outer_pair[], od rnd.outer_domain, grid int[],
                                   shifted int[], r int4range, rs int4range[]);
             SELECT tenant_guard.enable_tenant_audit('rnd.udt', hash_chain => false);
             INSERT INTO rnd.udt VALUES
               (1, 'sad', '{ok,"a \"quoted\" mood",NULL}', 7, '{1,2}', '{a,"b c",NULL}',
                ROW('x', ROW(1.50, '2026-01-02 03:04:05+00'), '{sad,ok}', '{NaN,-Infinity,0.1}', '{"k": [1]}'),
                ARRAY[ROW('y', NULL, NULL, '{}', 'null')::rnd.outer_pair, NULL],
                ROW('z', ROW('NaN', 'infinity'), '{}', NULL, NULL),
                '{{1,2},{3,4}}', '[2:3]={5,6}', '[1,5)', '{empty,"[1,2)"}'),
               (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
               (3, 'ok', '{}', 1, '{}', '{}', ROW(NULL, NULL, NULL, NULL, NULL), '{}',
                ROW(NULL, ROW(NULL, NULL), NULL, NULL, NULL), '{{{1}},{{2}}}', '[-5:-4]={7,8}',
                'empty', '{}');"#,
        )
        .expect("user-defined types");
        assert_eq!(audited_rows("rnd.udt"), 3);
        assert_eq!(mismatches("rnd.udt"), Vec::<String>::new());
        // The comparison sees a difference jsonb's = does not: 7.0 for 7.
        Spi::run(
            "UPDATE tenant_guard.audit_log SET new_row = jsonb_set(new_row, '{p}', '7.0')
              WHERE table_oid = 'rnd.udt'::regclass AND pk ->> 'id' = '1'",
        )
        .expect("alter one audit row");
        assert_eq!(mismatches("rnd.udt").len(), 1);
    }

    /// Random values across each numeric and time type's whole range (seeded: a failure names
    /// the row and both renderings, and the same seed reproduces it).
    #[pg_test]
    fn random_values_render_as_to_jsonb_does() {
        Spi::run(
            "SELECT setseed(0.2026);
             CREATE SCHEMA rnd;
             CREATE TABLE rnd.random_values (id int PRIMARY KEY, i2 int2, i4 int4, i8 int8,
                 f4 float4, f8 float8, n numeric, n_scaled numeric(30, 10), d date, ts timestamp,
                 tstz timestamptz, iv interval, t time, tz timetz, arr float8[]);
             SELECT tenant_guard.enable_tenant_audit('rnd.random_values', hash_chain => false);
             INSERT INTO rnd.random_values
             SELECT g,
                    (random() * 65535 - 32768)::int2,
                    (random() * 4294967295 - 2147483648)::int4,
                    ((random() - 0.5) * 1.8e19)::int8,
                    ((random() - 0.5) * 10 ^ (random() * 70 - 35))::float4,
                    ((random() - 0.5) * 10 ^ (random() * 600 - 300))::float8,
                    round(((random() - 0.5) * 10 ^ (random() * 60 - 30))::numeric, (random() * 40)::int),
                    (random() * 1e19)::numeric(30, 10),
                    '4713-01-01 BC'::date + (random() * 2140000000)::int,
                    '4713-01-01 00:00 BC'::timestamp + random() * interval '298900 years',
                    '4713-01-01 00:00+00 BC'::timestamptz + random() * interval '298900 years',
                    (random() * 2 - 1) * interval '170000000 years' + random() * interval '1 day',
                    time '00:00' + random() * interval '24 hours',
                    (time '00:00' + random() * interval '24 hours')::timetz,
                    ARRAY[random(), -random() * 1e300, random() * 1e-300]
               FROM generate_series(1, 2000) g;",
        )
        .expect("random values");
        assert_eq!(audited_rows("rnd.random_values"), 2000);
        assert_eq!(mismatches("rnd.random_values"), Vec::<String>::new());
    }
}
