//! Helpers shared by the in-database tests.

use pgrx::prelude::*;

/// Create a role that is neither superuser nor BYPASSRLS, allowed to set a context and use
/// `schema`, and switch to it for the rest of the test transaction. Role names are per test:
/// tests run concurrently and roles are cluster-wide.
pub fn as_app_role(role: &str, schema: &str) {
    Spi::run(&format!(
        "CREATE ROLE {role} NOSUPERUSER NOBYPASSRLS;
         GRANT EXECUTE ON FUNCTION tenant_guard.set_tenant_context(text, text, text, text, text, boolean) TO {role};
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
         SET LOCAL ROLE {role};"
    ))
    .expect("switch to the app role");
    let (superuser, bypass) = Spi::get_two::<bool, bool>(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .expect("role attributes");
    assert_eq!(
        (superuser, bypass),
        (Some(false), Some(false)),
        "RLS must apply to the test role"
    );
}

pub fn set_context(tenant: &str) {
    Spi::run(&format!(
        "SELECT tenant_guard.set_tenant_context({})",
        pgrx::spi::quote_literal(tenant)
    ))
    .expect("set_tenant_context");
}

/// Every node of an EXPLAIN (FORMAT JSON) plan, depth first.
pub fn plan_nodes(plan: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut nodes = vec![plan];
    if let Some(children) = plan.get("Plans").and_then(|p| p.as_array()) {
        for child in children {
            nodes.extend(plan_nodes(child));
        }
    }
    nodes
}

pub fn explain(sql: &str) -> serde_json::Value {
    let pgrx::Json(json) = Spi::explain(sql).expect("EXPLAIN");
    json[0]["Plan"].clone()
}
