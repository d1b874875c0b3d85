//! Authorization inside the server: permissions and private rows in parallel plans (checked once
//! per query, in the leader, with the workers returning exactly the allowed rows), and a rule
//! change seen by the next statement of the same transaction. 100,000 rows over 100 tenants.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::{as_app_role, explain, plan_nodes};
    use pgrx::prelude::*;

    /// A protected table with per-role permissions and rows private to 10 users per tenant,
    /// planned as a parallel sequential scan.
    fn setup(role: &str) {
        Spi::run(&format!(
            "CREATE SCHEMA {role}_s;
             CREATE TABLE {role}_s.memories (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL,
                                             owner_id text NOT NULL, fact text);
             INSERT INTO {role}_s.memories (tenant_id, owner_id, fact)
                  SELECT g % 100, 'user-' || (g % 10), md5(g::text) FROM generate_series(1, 100000) g;
             SELECT tenant_guard.set_table_permissions('{role}_s.memories', 'viewer', '{{SELECT}}');
             SELECT tenant_guard.enable_user_private_rows('{role}_s.memories', 'owner_id', '{{admin}}');
             ANALYZE {role}_s.memories;
             SET LOCAL parallel_setup_cost = 0;
             SET LOCAL parallel_tuple_cost = 0;
             SET LOCAL min_parallel_table_scan_size = 0;
             SET LOCAL max_parallel_workers_per_gather = 2;
             SET LOCAL enable_indexscan = off;
             SET LOCAL enable_bitmapscan = off;"
        ))
        .expect("load 100k rows");
        as_app_role(role, &format!("{role}_s"));
    }

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).expect("count").expect("not null")
    }

    #[pg_test]
    fn a_parallel_scan_checks_permissions_once_and_returns_the_users_rows() {
        setup("tg_authz_parallel");
        Spi::run("SELECT tenant_guard.set_tenant_context('42', 'user-2', 'viewer')")
            .expect("context");
        let query = "SELECT count(*) FROM tg_authz_parallel_s.memories";
        let plan = explain(query);
        let nodes = plan_nodes(&plan);
        assert!(
            nodes.iter().any(|n| n["Node Type"] == "Gather"),
            "a parallel plan expected: {plan:#}"
        );
        let initplans = nodes
            .iter()
            .filter(|n| n["Parent Relationship"] == "InitPlan")
            .count();
        // The tenant, the permission, the user and the all-rows role: once each, per query.
        assert_eq!(initplans, 4, "{plan:#}");
        // 1,000 rows of tenant 42, of which user-2 owns those with g % 10 = 2: all of them
        // (42 % 10 = 2), and none of another user.
        assert_eq!(count(query), 1000);
        assert_eq!(
            count("SELECT count(*) FROM tg_authz_parallel_s.memories WHERE owner_id <> 'user-2'"),
            0
        );
    }

    #[pg_test(
        error = "tenant_guard: tenant role \"guest\" may not SELECT on tg_authz_denied_s.memories"
    )]
    fn a_parallel_scan_refuses_a_role_without_the_permission() {
        setup("tg_authz_denied");
        Spi::run("SELECT tenant_guard.set_tenant_context('42', 'user-2', 'guest')")
            .expect("context");
        count("SELECT count(*) FROM tg_authz_denied_s.memories");
    }

    #[pg_test]
    fn a_rule_change_counts_from_the_next_statement() {
        Spi::run(
            "SELECT tenant_guard.add_action('tg_authz.next_statement');
             SELECT tenant_guard.grant_action('tg_authz.next_statement', tenant_role => 'member');
             SELECT tenant_guard.set_tenant_context('tg-authz', 'u', 'member');",
        )
        .expect("setup");
        let ask = "SELECT tenant_guard.authorize('tg_authz.next_statement')";
        assert_eq!(Spi::get_one::<bool>(ask), Ok(Some(true)));
        Spi::run(
            "SELECT tenant_guard.deny_action('tg_authz.next_statement', tenant_id => 'tg-authz')",
        )
        .expect("deny");
        assert_eq!(Spi::get_one::<bool>(ask), Ok(Some(false)));
        Spi::run("SELECT tenant_guard.remove_action('tg_authz.next_statement')").expect("remove");
        assert_eq!(Spi::get_one::<bool>(ask), Ok(Some(false)));
    }
}
