//! Which tables are audited and how: enable_tenant_audit, disable_tenant_audit, the options the
//! trigger reads, and what DDL on an audited table must respect.

use super::table::{AuditedTable, Logged};
use super::trigger::Op;
use crate::catalog::{self, select_column, select_row, Column, Registry, Table};
use crate::error::{self, Result};
use crate::policy;
use crate::privilege;
use crate::sqltypes::{Name, RegClass};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// The audit triggers tenant_guard creates on an audited table (and only those), with the
/// transition tables each one declares: (name, operation, old table, new table).
pub const TRIGGERS: [(&str, Op, Option<&str>, Option<&str>); 4] = [
    (
        "tenant_guard_audit_insert",
        Op::Insert,
        None,
        Some("tenant_guard_new"),
    ),
    (
        "tenant_guard_audit_update",
        Op::Update,
        Some("tenant_guard_old"),
        Some("tenant_guard_new"),
    ),
    (
        "tenant_guard_audit_delete",
        Op::Delete,
        Some("tenant_guard_old"),
        None,
    ),
    ("tenant_guard_audit_truncate", Op::Truncate, None, None),
];

/// The options stored for an audited table.
pub struct Options {
    pub exclude: Vec<String>,
    pub redact: Vec<String>,
    pub parent: Option<pg_sys::Oid>,
    pub hash_chain: bool,
}

pub fn options(relid: pg_sys::Oid) -> Option<Options> {
    select_row(
        "SELECT exclude_columns::pg_catalog.text[], redact_columns::pg_catalog.text[],
                parent::pg_catalog.oid, hash_chain
           FROM tenant_guard.audit_config
          WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass",
        &[relid.into()],
        |row| {
            Ok(Options {
                exclude: row.get::<Vec<String>>(1)?.unwrap_or_default(),
                redact: row.get::<Vec<String>>(2)?.unwrap_or_default(),
                parent: row.get(3)?,
                hash_chain: row.get::<bool>(4)?.unwrap_or(true),
            })
        },
    )
}

fn primary_key(relid: pg_sys::Oid) -> Vec<String> {
    select_column(
        "SELECT a.attname::pg_catalog.text
           FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_attribute a
             ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
            AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::pg_catalog.int2[])
          WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisprimary
          ORDER BY pg_catalog.array_position(i.indkey::pg_catalog.int2[], a.attnum)",
        &[relid.into()],
    )
}

/// What the trigger renders a table's audit rows from, or None if the table is not audited.
pub fn audited_table(relation: &pg_sys::RelationData) -> Option<AuditedTable> {
    let relid = relation.rd_id;
    let options = options(relid)?;
    let logged = |column: &str| {
        if options.exclude.iter().any(|c| c == column) {
            Logged::Excluded
        } else if options.redact.iter().any(|c| c == column) {
            Logged::Redacted
        } else {
            Logged::Clear
        }
    };
    let tenant_column = policy::registered(relid).map(|entry| entry.column);
    Some(unsafe {
        AuditedTable::new(
            relation,
            logged,
            &primary_key(relid),
            tenant_column.as_deref(),
            options.hash_chain,
        )
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

/// Create (or replace) the four audit triggers on one table the caller owns, as the extension
/// owner: the trigger function is not executable by PUBLIC (see `privilege.rs`).
fn create_triggers(table: &Table) -> Result<()> {
    let name = table.qualified();
    let ddl: String = TRIGGERS
        .iter()
        .map(|(trigger, op, old, new)| {
            let mut transition = String::new();
            if let Some(old) = old {
                transition.push_str(&format!(" OLD TABLE AS {old}"));
            }
            if let Some(new) = new {
                transition.push_str(&format!(" NEW TABLE AS {new}"));
            }
            if !transition.is_empty() {
                transition.insert_str(0, "REFERENCING");
            }
            format!(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER {event} ON {name} {transition}
                     FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.audit_trigger();",
                event = op.as_str()
            )
        })
        .collect();
    privilege::as_extension_owner(|| Spi::run(&ddl)).map_err(error::internal)
}

fn drop_triggers(table: &Table) -> Result<()> {
    let existing = select_column::<String>(
        "SELECT tgname::pg_catalog.text FROM pg_catalog.pg_trigger
          WHERE tgrelid OPERATOR(pg_catalog.=) $1
            AND tgname::pg_catalog.text OPERATOR(pg_catalog.~~) 'tenant\\_guard\\_audit\\_%'",
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

/// Record the options and create the triggers on `table` (and, for a partitioned or inherited
/// table, on every child: a statement on a child fires only the child's statement triggers).
fn apply(table: &Table, options: &Options) -> Result<()> {
    policy::check_protectable(table)?;
    let enabled_by = catalog::current_role_name();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.audit_config
                    (relid, exclude_columns, redact_columns, hash_chain, parent, enabled_by)
             VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2::pg_catalog.text[]::pg_catalog.name[],
                     $3::pg_catalog.text[]::pg_catalog.name[], $4, $5::pg_catalog.oid::pg_catalog.regclass,
                     $6::pg_catalog.name)
             ON CONFLICT (relid) DO UPDATE
                SET exclude_columns = excluded.exclude_columns, redact_columns = excluded.redact_columns,
                    hash_chain = excluded.hash_chain, parent = excluded.parent,
                    enabled_by = excluded.enabled_by, enabled_at = pg_catalog.now()",
            &[
                table.oid.into(),
                options.exclude.clone().into(),
                options.redact.clone().into(),
                options.hash_chain.into(),
                options.parent.into(),
                enabled_by.as_str().into(),
            ],
        )
    })
    .map_err(error::internal)?;
    create_triggers(table)
}

/// Audit every child of an audited table (partitions and inheritance children, at any depth)
/// with its settings: all of them, or (`only_new`) those not audited through it yet.
pub fn audit_children(parent: &Table, only_new: bool) -> Result<()> {
    let Some(options) = options(parent.oid) else {
        return Ok(());
    };
    let child_options = Options {
        parent: Some(parent.oid),
        ..options
    };
    for oid in parent.descendants() {
        if only_new && self::options(oid).is_some_and(|o| o.parent == Some(parent.oid)) {
            continue;
        }
        apply(&Table::require(oid)?, &child_options)?;
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
    hash_chain: default!(Option<bool>, true),
) -> Result<()> {
    let table = Table::from_argument(tbl)?;
    policy::check_protectable(&table)?;
    if crate::citus::in_catalog(table.oid) {
        return Err(error::not_supported(
            format!(
                "tenant_guard: {} is distributed by Citus; audit of distributed tables is not supported yet",
                table.qualified()
            ),
            "Its changes run on the workers' shards, where a statement trigger would write each \
             worker's own log. README, \"Citus\", says what is audited on a cluster.",
        ));
    }
    let exclude = column_list(&table, "exclude_columns", exclude_columns)?;
    let redact = column_list(&table, "redact_columns", redact_columns)?;
    let Some(hash_chain) = hash_chain else {
        return Err(error::malformed(
            "tenant_guard: hash_chain must not be NULL",
            "Pass true (chain the table's audit rows, the default) or false.",
        ));
    };
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
    let _ours = crate::guard::OwnDdl::start();
    apply(
        &table,
        &Options {
            exclude,
            redact,
            parent: None,
            hash_chain,
        },
    )?;
    audit_children(&table, false)
}

/// Apply an audited top table's recorded settings again: its triggers and its children's, as
/// generated (`reapply_protection`).
pub fn reapply(table: &Table) -> Result<()> {
    let Some(options) = options(table.oid) else {
        return Ok(());
    };
    if let Some(parent) = options.parent {
        return Err(Registry::Audit.partition_error(table, parent));
    }
    unsafe {
        pg_sys::LockRelationOid(table.oid, pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE)
    };
    apply(table, &options)?;
    audit_children(table, false)
}

/// Stop auditing `tbl` (and the children audited through it). The audit rows stay.
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
    let _ours = crate::guard::OwnDdl::start();
    let audited_children = Registry::Audit.children(table.oid);
    for oid in std::iter::once(table.oid).chain(audited_children) {
        let target = Table::require(oid)?;
        policy::check_protectable(&target)?;
        drop_triggers(&target)?;
        privilege::as_extension_owner(|| {
            Spi::run_with_args(
                "DELETE FROM tenant_guard.audit_config
                  WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass",
                &[oid.into()],
            )
        })
        .map_err(error::internal)?;
    }
    Ok(())
}

/// After DDL on `table` (from the event trigger): an excluded or redacted column must still
/// exist under its name (fail closed: a renamed redacted column must not slip into the log),
/// and new partitions and inheritance children of an audited table are audited.
pub fn after_ddl(table: &Table) -> Result<()> {
    let Some(options) = options(table.oid) else {
        if let Some(parent) = Registry::Audit.root_of(table.oid) {
            audit_children(&parent, true)?;
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
    if options.parent.is_none() {
        audit_children(table, true)?;
    }
    Ok(())
}
