//! Which tables are audited and how: enable_tenant_audit, disable_tenant_audit, the options the
//! trigger reads, and what DDL on an audited table must respect.

use super::statements::{AuditedTable, Op};
use crate::catalog::{self, select_column, select_row, Column, Registry, Table};
use crate::error::{self, Result};
use crate::policy;
use crate::sqltypes::{Name, RegClass};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

pub const TRIGGERS: [(&str, Op); 4] = [
    ("tenant_guard_audit_insert", Op::Insert),
    ("tenant_guard_audit_update", Op::Update),
    ("tenant_guard_audit_delete", Op::Delete),
    ("tenant_guard_audit_truncate", Op::Truncate),
];

/// The options stored for an audited table.
struct Options {
    exclude: Vec<String>,
    redact: Vec<String>,
    parent: Option<pg_sys::Oid>,
}

fn options(relid: pg_sys::Oid) -> Option<Options> {
    select_row(
        "SELECT exclude_columns::text[], redact_columns::text[], parent::oid
           FROM tenant_guard.audit_config WHERE relid = $1::oid::regclass",
        &[relid.into()],
        |row| {
            Ok(Options {
                exclude: row.get::<Vec<String>>(1)?.unwrap_or_default(),
                redact: row.get::<Vec<String>>(2)?.unwrap_or_default(),
                parent: row.get(3)?,
            })
        },
    )
}

fn primary_key(relid: pg_sys::Oid) -> Vec<String> {
    select_column(
        "SELECT a.attname::text
           FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
          WHERE i.indrelid = $1 AND i.indisprimary
          ORDER BY pg_catalog.array_position(i.indkey::pg_catalog.int2[], a.attnum)",
        &[relid.into()],
    )
}

/// What the trigger generates its statements from, or None if the table is not audited.
pub fn audited_table(relid: pg_sys::Oid) -> Option<AuditedTable> {
    let options = options(relid)?;
    Some(AuditedTable {
        columns: select_column(
            "SELECT attname::text FROM pg_catalog.pg_attribute
              WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[relid.into()],
        ),
        primary_key: primary_key(relid),
        tenant_column: policy::registered(relid).map(|entry| entry.column),
        exclude: options.exclude,
        redact: options.redact,
    })
}

/// Column names from a `name[]` argument: not NULL, no NULL element, each a column of the
/// table, duplicates dropped.
fn column_list(
    table: &Table,
    argument: &str,
    names: Option<Vec<Option<Name>>>,
) -> Result<Vec<String>> {
    let Some(names) = names else {
        return Err(error::malformed(
            format!("tenant_guard: {argument} must not be NULL"),
            "Pass '{}' for none.",
        ));
    };
    let mut columns: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let Some(Name(name)) = name else {
            return Err(error::malformed(
                format!("tenant_guard: {argument} must not contain NULL"),
                "Remove the NULL element.",
            ));
        };
        if Column::lookup(table.oid, &name).is_none() {
            return Err(error::undefined_column(
                format!(
                    "tenant_guard: column {} of {} does not exist ({argument})",
                    quote_identifier(&name),
                    table.qualified()
                ),
                "Name existing columns of the table.",
            ));
        }
        if !columns.contains(&name) {
            columns.push(name);
        }
    }
    Ok(columns)
}

/// Create (or replace) the four audit triggers on one table.
fn create_triggers(table: &Table) -> Result<()> {
    let name = table.qualified();
    let ddl: String = TRIGGERS
        .iter()
        .map(|(trigger, op)| {
            let (event, transition) = match op {
                Op::Insert => ("INSERT", "REFERENCING NEW TABLE AS tenant_guard_new"),
                Op::Update => (
                    "UPDATE",
                    "REFERENCING OLD TABLE AS tenant_guard_old NEW TABLE AS tenant_guard_new",
                ),
                Op::Delete => ("DELETE", "REFERENCING OLD TABLE AS tenant_guard_old"),
                Op::Truncate => ("TRUNCATE", ""),
            };
            format!(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER {event} ON {name} {transition}
                     FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.audit_trigger();"
            )
        })
        .collect();
    Spi::run(&ddl).map_err(error::internal)
}

fn drop_triggers(table: &Table) -> Result<()> {
    let existing = select_column::<String>(
        "SELECT tgname::text FROM pg_catalog.pg_trigger
          WHERE tgrelid = $1 AND tgname::text LIKE 'tenant_guard\\_audit\\_%'",
        &[table.oid.into()],
    );
    let ddl: String = existing
        .iter()
        .map(|trigger| {
            format!(
                "DROP TRIGGER {} ON {};",
                quote_identifier(trigger),
                table.qualified()
            )
        })
        .collect();
    if ddl.is_empty() {
        return Ok(());
    }
    Spi::run(&ddl).map_err(error::internal)
}

/// Record the options and create the triggers on `table` (and, for a partitioned table, on
/// every partition: a statement on a partition fires only the partition's triggers).
fn apply(
    table: &Table,
    exclude: &[String],
    redact: &[String],
    parent: Option<pg_sys::Oid>,
) -> Result<()> {
    policy::check_protectable(table)?;
    let enabled_by = catalog::current_role_name();
    catalog::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.audit_config (relid, exclude_columns, redact_columns, parent, enabled_by)
             VALUES ($1::oid::regclass, $2::text[]::name[], $3::text[]::name[], $4::oid::regclass, $5::name)
             ON CONFLICT (relid) DO UPDATE
                SET exclude_columns = excluded.exclude_columns, redact_columns = excluded.redact_columns,
                    parent = excluded.parent, enabled_by = excluded.enabled_by,
                    enabled_at = pg_catalog.now()",
            &[
                table.oid.into(),
                exclude.to_vec().into(),
                redact.to_vec().into(),
                parent.into(),
                enabled_by.as_str().into(),
            ],
        )
    })
    .map_err(error::internal)?;
    create_triggers(table)
}

/// Audit every partition of an audited partitioned table that is not audited through it yet.
pub fn audit_partitions(parent: &Table, only_new: bool) -> Result<()> {
    let Some(options) = options(parent.oid) else {
        return Ok(());
    };
    for oid in parent.partitions() {
        if only_new && self::options(oid).is_some_and(|o| o.parent == Some(parent.oid)) {
            continue;
        }
        apply(
            &Table::require(oid)?,
            &options.exclude,
            &options.redact,
            Some(parent.oid),
        )?;
    }
    Ok(())
}

/// Start auditing `tbl`, or change its options. Idempotent.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn enable_tenant_audit(
    tbl: Option<RegClass>,
    exclude_columns: default!(Option<Vec<Option<Name>>>, "'{}'"),
    redact_columns: default!(Option<Vec<Option<Name>>>, "'{}'"),
) -> Result<()> {
    let table = Table::from_argument(tbl)?;
    policy::check_protectable(&table)?;
    let exclude = column_list(&table, "exclude_columns", exclude_columns)?;
    let redact = column_list(&table, "redact_columns", redact_columns)?;
    if let Some(both) = exclude.iter().find(|c| redact.contains(c)) {
        return Err(error::malformed(
            format!("tenant_guard: column {} is both excluded and redacted", quote_identifier(both)),
            "An excluded column is not logged at all; a redacted one is logged as a marker. Pick one.",
        ));
    }
    let primary_key = primary_key(table.oid);
    if primary_key.is_empty() {
        return Err(error::malformed(
            format!("tenant_guard: {} has no primary key", table.qualified()),
            "Audit rows identify the changed row by its primary key: add one (an identity column will do).",
        ));
    }
    if let Some(column) = redact.iter().find(|c| primary_key.contains(c)) {
        return Err(error::malformed(
            format!(
                "tenant_guard: column {} is part of the primary key",
                quote_identifier(column)
            ),
            "The primary key is logged in the clear to identify rows; it cannot be redacted.",
        ));
    }
    if let Some(parent) = options(table.oid).and_then(|o| o.parent) {
        return Err(Registry::Audit.partition_error(&table, parent));
    }
    unsafe {
        pg_sys::LockRelationOid(table.oid, pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE)
    };
    apply(&table, &exclude, &redact, None)?;
    if table.is_partitioned() {
        audit_partitions(&table, false)?;
    }
    Ok(())
}

/// Stop auditing `tbl` (and the partitions audited through it). The audit rows stay.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn disable_tenant_audit(tbl: Option<RegClass>) -> Result<()> {
    let table = Table::from_argument(tbl)?;
    policy::check_protectable(&table)?;
    let Some(options) = options(table.oid) else {
        error::notice(format!(
            "tenant_guard: {} is not audited; nothing to do",
            table.qualified()
        ));
        return Ok(());
    };
    if let Some(parent) = options.parent {
        return Err(Registry::Audit.partition_error(&table, parent));
    }
    let audited_partitions = Registry::Audit.children(table.oid);
    for oid in std::iter::once(table.oid).chain(audited_partitions) {
        let target = Table::require(oid)?;
        policy::check_protectable(&target)?;
        drop_triggers(&target)?;
        catalog::as_extension_owner(|| {
            Spi::run_with_args(
                "DELETE FROM tenant_guard.audit_config WHERE relid = $1::oid::regclass",
                &[oid.into()],
            )
        })
        .map_err(error::internal)?;
    }
    Ok(())
}

/// After DDL on `table` (from the event trigger): an excluded or redacted column must still
/// exist under its name (fail closed: a renamed redacted column must not slip into the log),
/// and new partitions of an audited table are audited.
pub fn after_ddl(table: &Table) -> Result<()> {
    let Some(options) = options(table.oid) else {
        if table.is_partition {
            if let Some(parent) = Registry::Audit.root_of(table.oid) {
                audit_partitions(&parent, true)?;
            }
        }
        return Ok(());
    };
    for column in options.exclude.iter().chain(&options.redact) {
        if Column::lookup(table.oid, column).is_none() {
            let role = if options.redact.contains(column) {
                "redacted"
            } else {
                "excluded"
            };
            return Err(error::invalid_state(
                format!(
                    "tenant_guard: column {} of {} is {role} by its audit settings and cannot be renamed or dropped",
                    quote_identifier(column),
                    table.qualified()
                ),
                "In one transaction: call enable_tenant_audit() without it, make the change, then call \
                 enable_tenant_audit() again with the new settings.",
            ));
        }
    }
    if table.is_partitioned() && options.parent.is_none() {
        audit_partitions(table, true)?;
    }
    Ok(())
}
