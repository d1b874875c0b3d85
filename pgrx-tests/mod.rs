//! In-database tests (`cargo pgrx test`), run with the library preloaded
//! (`shared_preload_libraries`, see `pg_test` in lib.rs). Each test runs in its own transaction,
//! which is rolled back, as the bootstrap superuser: tests that exercise row level security
//! switch to a role that is neither superuser nor BYPASSRLS first (`as_app_role`).
//!
//! Scope across COMMIT/ROLLBACK, multiple sessions and poolers are tested out of process
//! (tests/pg_regress, tests/client).

mod audit_render;
mod auth;
mod authz;
mod check;
mod context;
mod planner;
mod policy;
mod support;
