//! tenant_guard: multi-tenant isolation as a property of the database.
//!
//! See docs/DESIGN.md for the design the code follows and README.md for the user guide.

// Functions return `Result<T, ErrorReport>`: pgrx raises the report with its own SQLSTATE only
// when the error type is `ErrorReport` itself (boxing it would turn every error into 22000).
// Errors are the cold path, so the size of the `Err` variant does not matter.
#![allow(clippy::result_large_err)]

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod audit;
mod auth;
mod authz;
mod catalog;
mod check;
mod citus;
mod context;
mod error;
mod event;
mod expected;
mod guard;
mod gucs;
mod jsonb;
mod memory;
mod policy;
mod privilege;
mod repair;
mod scoped;
mod session_state;
mod sqltypes;
mod tenant_type;
mod truncate_guard;

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    context::init();
    session_state::init();
    audit::init();
    auth::init();
    citus::init();
}

#[cfg(any(test, feature = "pg_test"))]
#[path = "../pgrx-tests/mod.rs"]
mod pgrx_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// The in-database tests run with the library preloaded; the pg_regress and client suites
    /// run without it (loaded on first use) and with it.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'tenant_guard'"]
    }
}
