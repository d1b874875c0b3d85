//! The context contract as seen from inside the server, with the library preloaded.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::set_context;
    use pgrx::prelude::*;

    #[pg_test]
    fn library_is_preloaded_in_this_suite() {
        let preload = Spi::get_one::<String>("SHOW shared_preload_libraries")
            .unwrap()
            .unwrap();
        assert!(preload.contains("tenant_guard"), "{preload}");
    }

    #[pg_test]
    fn context_variables_are_superuser_only_and_not_settable_in_files() {
        let rows = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_settings
              WHERE name IN ('tenant_guard.tenant_id', 'tenant_guard.user_id',
                             'tenant_guard.tenant_role', 'tenant_guard.trace_id')
                AND context = 'superuser'",
        )
        .unwrap();
        assert_eq!(rows, Some(4));
    }

    /// With the library preloaded, a forged SET fails loudly from the first statement (42501).
    #[pg_test(error = "permission denied to set parameter \"tenant_guard.tenant_id\"")]
    fn preloaded_forged_set_fails_at_once() {
        Spi::run("CREATE ROLE tg_forger NOSUPERUSER NOBYPASSRLS; SET LOCAL ROLE tg_forger")
            .unwrap();
        Spi::run("SET tenant_guard.tenant_id = 'globex'").unwrap();
    }

    #[pg_test(error = "permission denied to set parameter \"tenant_guard.tenant_id\"")]
    fn preloaded_forged_set_config_fails_at_once() {
        Spi::run("CREATE ROLE tg_forger2 NOSUPERUSER NOBYPASSRLS; SET LOCAL ROLE tg_forger2")
            .unwrap();
        Spi::run("SELECT set_config('tenant_guard.tenant_id', 'globex', true)").unwrap();
    }

    #[pg_test]
    fn set_tenant_context_returns_the_context() {
        let json = Spi::get_one::<pgrx::JsonB>(
            "SELECT tenant_guard.set_tenant_context('acme', 'alice', 'admin', 'trace-1')",
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(
            json,
            serde_json::json!({"tenant_id": "acme", "user_id": "alice", "role": "admin",
                               "trace_id": "trace-1", "locale": null, "is_local": true})
        );
        let accessors = Spi::get_one::<String>(
            "SELECT concat_ws('|', tenant_guard.current_tenant_id(), tenant_guard.current_user_id(),
                              tenant_guard.current_tenant_role(), tenant_guard.current_trace_id())",
        )
        .unwrap();
        assert_eq!(accessors.as_deref(), Some("acme|alice|admin|trace-1"));
    }

    #[pg_test(error = "tenant_guard: cannot switch to another tenant inside a transaction")]
    fn switching_tenant_in_a_transaction_is_refused() {
        set_context("acme");
        set_context("globex");
    }

    #[pg_test]
    fn accessors_are_null_not_empty_when_unset() {
        let unset = Spi::get_one::<bool>(
            "SELECT tenant_guard.current_tenant_id() IS NULL AND tenant_guard.current_user_id() IS NULL
                AND tenant_guard.current_tenant_role() IS NULL AND tenant_guard.current_trace_id() IS NULL",
        )
        .unwrap();
        assert_eq!(unset, Some(true));
    }

    #[pg_test]
    fn validation_rules() {
        use crate::context::validate_value;
        assert!(validate_value("tenant_id", "acme").is_ok());
        assert!(validate_value("tenant_id", &"x".repeat(255)).is_ok());
        for bad in [
            "",
            " acme",
            "acme ",
            "ac\nme",
            "ac\u{0}me",
            "ac\u{85}me",
            &"x".repeat(256),
        ] {
            assert!(
                validate_value("tenant_id", bad).is_err(),
                "{bad:?} must be refused"
            );
        }
    }
}
