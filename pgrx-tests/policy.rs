//! What enable_tenant_rls generates, and cross-tenant isolation through the normal path.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{as_app_role, set_context};
    use pgrx::prelude::*;

    #[pg_test]
    fn generated_policies_have_the_contract_shape() {
        Spi::run(
            "SET LOCAL tenant_guard.auto_protect = off;
             CREATE SCHEMA tg_shape;
             CREATE TABLE tg_shape.t (id int, org integer);
             CREATE ROLE tg_shape_app;
             SELECT tenant_guard.enable_tenant_rls('tg_shape.t', 'org', to_roles => ARRAY['tg_shape_app']::regrole[]);",
        )
        .unwrap();
        let (rls, force) = Spi::get_two::<bool, bool>(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'tg_shape.t'::regclass",
        )
        .unwrap();
        assert_eq!((rls, force), (Some(true), Some(true)));
        let policies = Spi::get_one::<String>(
            "SELECT string_agg(format('%s|%s|%s|%s', polname, polpermissive,
                                      (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END, ',')
                                         FROM unnest(polroles) r),
                                      pg_get_expr(polqual, polrelid) = pg_get_expr(polwithcheck, polrelid)),
                               ';' ORDER BY polname)
               FROM pg_policy WHERE polrelid = 'tg_shape.t'::regclass",
        )
        .unwrap();
        assert_eq!(
            policies.as_deref(),
            Some("tenant_guard_fence|f|public|t;tenant_guard_isolation|t|tg_shape_app|t")
        );
        let qual = Spi::get_one::<String>(
            "SELECT pg_get_expr(polqual, polrelid) FROM pg_policy
              WHERE polrelid = 'tg_shape.t'::regclass AND polname = 'tenant_guard_fence'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            qual,
            "(org = ( SELECT tenant_guard.required_tenant_id('tg_shape.t'::regclass, NULL::integer) AS required_tenant_id))"
        );
    }

    /// One test is one transaction, and a transaction acts for one tenant: tenant A's row is
    /// written by the superuser here (the regress and client suites write it as tenant A).
    #[pg_test]
    fn tenant_b_sees_nothing_of_tenant_a() {
        Spi::run(
            "CREATE SCHEMA tg_iso;
             CREATE TABLE tg_iso.items (id int PRIMARY KEY, tenant_id uuid NOT NULL, name text);
             INSERT INTO tg_iso.items VALUES (1, '11111111-1111-1111-1111-111111111111', 'a-secret');",
        )
        .unwrap();
        as_app_role("tg_iso_app", "tg_iso");
        set_context("22222222-2222-2222-2222-222222222222");
        let count = |sql: &str| Spi::get_one::<i64>(sql).unwrap();
        assert_eq!(count("SELECT count(*) FROM tg_iso.items"), Some(0));
        assert_eq!(
            count("SELECT count(*) FROM tg_iso.items WHERE id = 1"),
            Some(0)
        );
        assert_eq!(
            count(
                "WITH u AS (UPDATE tg_iso.items SET name = 'x' RETURNING 1) SELECT count(*) FROM u"
            ),
            Some(0)
        );
        assert_eq!(
            count("WITH d AS (DELETE FROM tg_iso.items RETURNING 1) SELECT count(*) FROM d"),
            Some(0)
        );
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(
            Spi::get_one::<String>("SELECT name FROM tg_iso.items WHERE id = 1")
                .unwrap()
                .as_deref(),
            Some("a-secret"),
            "tenant A's row is intact"
        );
    }

    #[pg_test(error = "new row violates row-level security policy for table \"items\"")]
    fn tenant_b_cannot_insert_for_tenant_a() {
        Spi::run("CREATE SCHEMA tg_ins; CREATE TABLE tg_ins.items (id int, tenant_id bigint);")
            .unwrap();
        as_app_role("tg_ins_app", "tg_ins");
        set_context("2");
        Spi::run("INSERT INTO tg_ins.items (id, tenant_id) VALUES (1, 1)").unwrap();
    }

    #[pg_test(
        error = "tenant_guard: no tenant context is set; tg_nocontext.items is tenant-protected"
    )]
    fn no_context_fails_closed() {
        Spi::run(
            "CREATE SCHEMA tg_nocontext; CREATE TABLE tg_nocontext.items (id int, tenant_id text);",
        )
        .unwrap();
        as_app_role("tg_nocontext_app", "tg_nocontext");
        Spi::run("SELECT count(*) FROM tg_nocontext.items").unwrap();
    }
}
