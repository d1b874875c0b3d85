//! Automatic protection: the `ddl_command_end` event trigger.
//!
//! After `CREATE TABLE`, `CREATE TABLE AS`, `SELECT INTO` and `ALTER TABLE` (`ADD COLUMN`,
//! `ATTACH PARTITION`), it protects
//! - new partitions of protected tables (always: a partition shares its parent's protection);
//! - tables that now have the tenant column `tenant_guard.tenant_column`, when
//!   `tenant_guard.auto_protect` is on and the table is not excluded.
//!
//! For audited tables it refuses to rename or drop an excluded or redacted column, and audits
//! new partitions of audited tables (see `audit::config::after_ddl`).
//!
//! It skips temporary tables, tables in system schemas, tables created by extension scripts,
//! partitions of unprotected tables, and everything while `row_security` is off: that is how
//! `pg_dump` scripts run, and a restore brings the dumped policies with it.

use crate::audit;
use crate::catalog::{self, Table};
use crate::error;
use crate::gucs;
use crate::policy::{self, Protection, Via};
use pgrx::prelude::*;

#[pg_extern(sql = r#"
CREATE FUNCTION tenant_guard.on_ddl_command_end() RETURNS event_trigger
    LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn on_ddl_command_end() {
    if unsafe { pg_sys::creating_extension } {
        return;
    }
    let relations = catalog::select_column::<pg_sys::Oid>(
        "SELECT DISTINCT objid FROM pg_catalog.pg_event_trigger_ddl_commands()
          WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass",
        &[],
    );
    for oid in relations {
        let Some(table) = Table::lookup(oid) else {
            continue;
        };
        if !table.is_table()
            || table.temporary
            || table.extension_member
            || catalog::is_system_schema(&table.schema)
        {
            continue;
        }
        if let Err(report) =
            protect_if_needed(&table).and_then(|_| audit::config::after_ddl(&table))
        {
            error::raise(report);
        }
    }
}

fn protect_if_needed(table: &Table) -> error::Result<()> {
    if let Some(entry) = policy::registered(table.oid) {
        // ATTACH PARTITION on a protected table: protect what was attached.
        if table.is_partitioned() && entry.parent.is_none() {
            policy::protect_partitions(table, &protection_of(&entry), true)?;
        }
        return Ok(());
    }
    if !row_security_on() {
        error::notice(format!(
            "tenant_guard: {} not protected automatically: row_security is off (as in a restore)",
            table.qualified()
        ));
        return Ok(());
    }
    if table.is_partition {
        // A partition is protected through its protected root, or not at all.
        if let Some(root) = catalog::Registry::Protection.root_of(table.oid) {
            if let Some(entry) = policy::registered(root.oid) {
                policy::protect_partitions(&root, &protection_of(&entry), true)?;
            }
        }
        return Ok(());
    }
    if !gucs::AUTO_PROTECT.get() || policy::is_excluded(table.oid) {
        return Ok(());
    }
    let column = policy::configured_tenant_column()?;
    if catalog::Column::lookup(table.oid, &column).is_none() {
        return Ok(());
    }
    policy::protect(
        table,
        &Protection {
            column,
            create_index: true,
            to_roles: None,
            via: Via::AutoProtect,
        },
    )
}

fn protection_of(entry: &policy::Registered) -> Protection {
    Protection {
        column: entry.column.clone(),
        create_index: false,
        to_roles: entry.to_roles.clone(),
        via: Via::Partition,
    }
}

fn row_security_on() -> bool {
    unsafe { pg_sys::row_security }
}
