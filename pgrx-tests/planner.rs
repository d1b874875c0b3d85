//! The generated policies leave the planner free: a whole-tenant query uses the tenant index, a
//! filter on another column evaluates the context once per query (an InitPlan), and a parallel
//! sequential scan returns exactly the context tenant's rows. 100,000 rows over 100 tenants.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{as_app_role, explain, plan_nodes, set_context};
    use pgrx::prelude::*;

    fn big_table(role: &str) {
        Spi::run(&format!(
            "CREATE SCHEMA {role}_s;
             CREATE TABLE {role}_s.big (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, payload text);
             INSERT INTO {role}_s.big (tenant_id, payload)
                  SELECT g % 100, md5(g::text) FROM generate_series(1, 100000) g;
             ANALYZE {role}_s.big;"
        ))
        .expect("load 100k rows");
        as_app_role(role, &format!("{role}_s"));
        set_context("42");
    }

    #[pg_test]
    fn whole_tenant_query_uses_the_tenant_index() {
        big_table("tg_planner_index");
        let plan = explain("SELECT count(*) FROM tg_planner_index_s.big");
        let nodes = plan_nodes(&plan);
        let index_scan = nodes.iter().find(|n| {
            matches!(
                n["Node Type"].as_str(),
                Some("Index Scan" | "Index Only Scan" | "Bitmap Index Scan")
            )
        });
        let index_scan = index_scan.unwrap_or_else(|| panic!("no index scan in {plan:#}"));
        assert_eq!(index_scan["Index Name"], "big_tenant_id_idx", "{plan:#}");
        assert!(
            nodes.iter().all(|n| n["Node Type"] != "Seq Scan"),
            "no sequential scan expected: {plan:#}"
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM tg_planner_index_s.big").unwrap(),
            Some(1000)
        );
    }

    #[pg_test]
    fn context_is_evaluated_once_per_query() {
        big_table("tg_planner_initplan");
        let plan = explain("SELECT * FROM tg_planner_initplan_s.big WHERE payload LIKE 'ab%'");
        let initplans: Vec<_> = plan_nodes(&plan)
            .into_iter()
            .filter(|n| n["Parent Relationship"] == "InitPlan")
            .collect();
        // The permissive and restrictive quals are identical; PostgreSQL keeps one.
        assert_eq!(initplans.len(), 1, "one InitPlan expected: {plan:#}");
        assert!(
            plan.to_string().contains("tenant_id = $0"),
            "the scan compares with the InitPlan's parameter: {plan:#}"
        );
        let rows = Spi::get_one::<i64>(
            "SELECT count(*) FROM tg_planner_initplan_s.big WHERE payload LIKE 'ab%' AND tenant_id <> 42",
        )
        .unwrap();
        assert_eq!(rows, Some(0));
    }

    #[pg_test]
    fn parallel_scan_returns_exactly_the_context_tenants_rows() {
        big_table("tg_planner_parallel");
        let force = if cfg!(any(feature = "pg13", feature = "pg14", feature = "pg15")) {
            "force_parallel_mode"
        } else {
            "debug_parallel_query"
        };
        Spi::run(&format!(
            "SET LOCAL {force} = on; SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0;
             SET LOCAL min_parallel_table_scan_size = 0; SET LOCAL max_parallel_workers_per_gather = 2;
             SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off;"
        ))
        .unwrap();
        let query =
            "SELECT count(*), min(tenant_id), max(tenant_id) FROM tg_planner_parallel_s.big";
        let plan = explain(query);
        let nodes = plan_nodes(&plan);
        assert!(nodes.iter().any(|n| n["Node Type"] == "Gather"), "{plan:#}");
        assert!(
            nodes
                .iter()
                .any(|n| n["Node Type"] == "Seq Scan" && n["Parallel Aware"] == true),
            "{plan:#}"
        );
        let (count, min, max) = Spi::get_three::<i64, i64, i64>(query).unwrap();
        assert_eq!((count, min, max), (Some(1000), Some(42), Some(42)));
    }
}
