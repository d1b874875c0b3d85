//! The self-check in the database the extension was just created in (preloaded, so TG017 does
//! not apply), and the policy rules' reading of expression trees.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn findings() -> Vec<(String, String, String)> {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT code, object, fix FROM tenant_guard.check()",
                    None,
                    &[],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<String>(3)?.unwrap_or_default(),
                    ))
                })
                .collect::<pgrx::spi::SpiResult<Vec<_>>>()
        })
        .expect("check()")
    }

    #[pg_test]
    fn a_fresh_database_has_no_findings() {
        assert_eq!(findings(), vec![]);
        Spi::run("SELECT tenant_guard.assert_no_findings()").expect("no findings");
    }

    /// current_setting() inside a sub-select, and the tenant column read only from inside one,
    /// are still found: the walk enters sub-queries and keeps track of their level.
    #[pg_test]
    fn policy_rules_read_inside_subqueries() {
        Spi::run(
            "CREATE SCHEMA chk;
             CREATE TABLE chk.t (tenant_id text NOT NULL, id int, PRIMARY KEY (tenant_id, id));
             CREATE TABLE chk.lookup (name text, tenant text);
             SET LOCAL session_replication_role = replica;
             CREATE POLICY nested ON chk.t AS RESTRICTIVE
                 USING (EXISTS (SELECT 1 FROM chk.lookup l
                                 WHERE l.tenant = t.tenant_id
                                   AND l.name = (SELECT current_setting('app.name'))));
             SET LOCAL session_replication_role = origin;",
        )
        .expect("fixture");
        let found = findings();
        let on_policy: Vec<&str> = found
            .iter()
            .filter(|(_, object, _)| object == "policy nested on table chk.t")
            .map(|(code, _, _)| code.as_str())
            .collect();
        // TG011: it reads the tenant column (from the sub-select) and compares it with a
        // lookup, not with the context; TG014: it calls current_setting().
        assert_eq!(on_policy, vec!["TG011", "TG014"], "{found:?}");
        // The fix drops it: reapply_protection removes what tenant_guard did not generate.
        Spi::run("SELECT tenant_guard.reapply_protection('chk.t')").expect("fix");
        assert_eq!(findings(), vec![]);
    }

    /// A partition's drift is fixed through the table its protection comes from.
    #[pg_test]
    fn partition_drift_names_the_top_table() {
        Spi::run(
            "CREATE SCHEMA chk2;
             CREATE TABLE chk2.events (tenant_id text NOT NULL, at int) PARTITION BY LIST (tenant_id);
             CREATE TABLE chk2.events_a PARTITION OF chk2.events FOR VALUES IN ('a');
             SET LOCAL session_replication_role = replica;
             ALTER TABLE chk2.events_a NO FORCE ROW LEVEL SECURITY;
             SET LOCAL session_replication_role = origin;",
        )
        .expect("fixture");
        assert_eq!(
            findings(),
            vec![(
                "TG002".to_string(),
                "table chk2.events_a".to_string(),
                "SELECT tenant_guard.reapply_protection('chk2.events');".to_string()
            )]
        );
        Spi::run("SELECT tenant_guard.reapply_protection('chk2.events')").expect("fix");
        assert_eq!(findings(), vec![]);
    }
}
