//! TG002 and TG015: tables whose protection or audit triggers differ from what the registry
//! says tenant_guard generated (`expected.rs`). The tamper guard refuses such changes through
//! DDL; what is left is a superuser's work with the event triggers off (or
//! `session_replication_role = replica`), and a restore that went wrong.

use super::{Finding, Severity};
use crate::catalog::Table;
use crate::expected::{self, Actual};
use pgrx::pg_sys;
use pgrx::spi::quote_literal;

pub fn findings() -> Vec<Finding> {
    // Each registered table with the top table its settings come from (a regclass printed under
    // the pinned search_path: schema-qualified and quoted).
    let tables = pgrx::spi::Spi::connect(|client| {
        client
            .select(
                "SELECT p.relid::pg_catalog.oid, COALESCE(p.parent, p.relid)::pg_catalog.text
                   FROM tenant_guard.protected_tables p
                 UNION
                 SELECT a.relid::pg_catalog.oid, COALESCE(a.parent, a.relid)::pg_catalog.text
                   FROM tenant_guard.audit_config a
                  WHERE NOT EXISTS (SELECT 1 FROM tenant_guard.protected_tables p
                                     WHERE p.relid OPERATOR(pg_catalog.=) a.relid)",
                None,
                &[],
            )?
            .map(|row| Ok((row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?)))
            .collect::<pgrx::spi::SpiResult<Vec<_>>>()
    })
    .unwrap_or_default();
    let relids: Vec<pg_sys::Oid> = tables.iter().filter_map(|(relid, _)| *relid).collect();
    let actual = Actual::of_tables(&relids);
    let mut found = Vec::new();
    for (relid, top) in tables {
        let (Some(table), Some(top)) = (relid.and_then(Table::lookup), top) else {
            continue;
        };
        let Some(state) = actual.get(&table.oid) else {
            continue;
        };
        let fix = format!(
            "SELECT tenant_guard.reapply_protection({});",
            quote_literal(top)
        );
        for difference in expected::of(&table).compare(&table, state) {
            found.push(Finding {
                severity: Severity::Error,
                code: if difference.audit { "TG015" } else { "TG002" },
                object: format!("table {}", table.qualified()),
                message: difference.text,
                fix: fix.clone(),
            });
        }
    }
    found
}
