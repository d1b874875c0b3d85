//! The event triggers: the tamper guard and automatic protection.
//!
//! `ddl_command_end` (`CREATE TABLE`, `CREATE TABLE AS`, `SELECT INTO`, `ALTER TABLE`,
//! `CREATE`/`ALTER POLICY`, `CREATE`/`ALTER TRIGGER`, `CREATE RULE`) first has every collected
//! command judged by `guard` (which refuses what would weaken a protected or audited table),
//! then follows up:
//! - the registry follows renamed tenant columns, and detached partitions and children that left
//!   their parent stay protected and audited on their own;
//! - new partitions and inheritance children of protected (audited) tables are protected
//!   (audited) like their parent, whatever `row_security` says;
//! - tables that now have the tenant column `tenant_guard.tenant_column` are protected when
//!   `tenant_guard.auto_protect` is on and the table is not excluded;
//! - a protected table must not inherit from a table that is not protected the same way;
//! - foreign keys between protected tables that leave out the tenant column are reported.
//!
//! Skipped: temporary tables, tables in system schemas, tables created by extension scripts,
//! and automatic protection of new tables while `row_security` is off for a role that bypasses
//! row level security anyway (that is how `pg_dump` output runs: a restore brings its policies).
//!
//! `sql_drop` refuses the drop of a protected table's policies and of tenant_guard's triggers
//! (unless their table goes too), and forgets dropped tables in the registry.

use crate::audit;
use crate::catalog::{self, Registry, Table};
use crate::citus;
use crate::error::{self, Result};
use crate::guard::{self, OwnDdl};
use crate::gucs;
use crate::policy::{self, Protection, Via};
use crate::privilege;
use pgrx::prelude::*;
use std::ffi::CStr;

/// What a DDL command changed, as the event trigger needs it.
enum Change {
    /// An ALTER TABLE subcommand on `relid`.
    AlterTable {
        relid: pg_sys::Oid,
        command: *mut pg_sys::AlterTableCmd,
        address: pg_sys::ObjectAddress,
    },
    /// Any other command, with the object it created or changed and its parse tree.
    Simple {
        address: pg_sys::ObjectAddress,
        parsetree: *mut pg_sys::Node,
    },
}

/// The commands of the current `ddl_command_end` event. The pointers stay valid until the
/// event trigger returns.
unsafe fn changes() -> Vec<Change> {
    let mut commands = Vec::new();
    if pg_sys::SPI_connect() < 0 {
        error::raise(error::internal("SPI_connect failed"));
    }
    let status = pg_sys::SPI_execute(
        c"SELECT command FROM pg_catalog.pg_event_trigger_ddl_commands()".as_ptr(),
        true,
        0,
    );
    if status < 0 {
        error::raise(error::internal(format!(
            "pg_event_trigger_ddl_commands failed (SPI result {status})"
        )));
    }
    let table = pg_sys::SPI_tuptable;
    for i in 0..pg_sys::SPI_processed as usize {
        let mut isnull = false;
        let datum = pg_sys::SPI_getbinval(*(*table).vals.add(i), (*table).tupdesc, 1, &mut isnull);
        if !isnull {
            commands.push(datum.cast_mut_ptr::<pg_sys::CollectedCommand>());
        }
    }
    pg_sys::SPI_finish();

    let mut changes = Vec::new();
    for command in commands {
        let command = &*command;
        match command.type_ {
            pg_sys::CollectedCommandType::SCT_Simple => changes.push(Change::Simple {
                address: command.d.simple.address,
                parsetree: command.parsetree,
            }),
            pg_sys::CollectedCommandType::SCT_AlterTable => {
                let alter = command.d.alterTable;
                let subcommands = pgrx::PgList::<pg_sys::CollectedATSubcmd>::from_pg(alter.subcmds);
                for subcommand in subcommands.iter_ptr() {
                    let subcommand = &*subcommand;
                    changes.push(Change::AlterTable {
                        relid: alter.objectId,
                        command: subcommand.parsetree as *mut pg_sys::AlterTableCmd,
                        address: subcommand.address,
                    });
                }
            }
            _ => {}
        }
    }
    changes
}

unsafe fn node_is(node: *mut pg_sys::Node, tag: pg_sys::NodeTag) -> bool {
    !node.is_null() && (*node).type_ == tag
}

/// Refuse what weakens a protected or audited table (see `guard`).
unsafe fn judge(changes: &[Change]) -> Result<()> {
    for change in changes {
        match change {
            Change::AlterTable {
                relid,
                command,
                address,
            } => guard::judge_alter_table(*relid, &**command, address)?,
            Change::Simple { address, parsetree } => {
                let class = address.classId;
                if class == guard::POLICY_CLASS {
                    let created = node_is(*parsetree, pg_sys::NodeTag::T_CreatePolicyStmt);
                    guard::judge_policy(address.objectId, created)?;
                } else if class == pg_sys::TriggerRelationId {
                    let change = if node_is(*parsetree, pg_sys::NodeTag::T_RenameStmt) {
                        let subname = (*(*parsetree as *mut pg_sys::RenameStmt)).subname;
                        guard::TriggerChange::Renamed {
                            from: if subname.is_null() {
                                String::new()
                            } else {
                                CStr::from_ptr(subname).to_string_lossy().into_owned()
                            },
                        }
                    } else if node_is(*parsetree, pg_sys::NodeTag::T_AlterObjectDependsStmt) {
                        guard::TriggerChange::MadeDependent
                    } else {
                        guard::TriggerChange::Created
                    };
                    guard::judge_trigger(address.objectId, change)?;
                } else if class == guard::REWRITE_CLASS {
                    let relid = catalog::select_value::<pg_sys::Oid>(
                        "SELECT ev_class FROM pg_catalog.pg_rewrite WHERE oid OPERATOR(pg_catalog.=) $1",
                        &[address.objectId.into()],
                    );
                    if let Some(relid) = relid {
                        guard::judge_rule(relid)?;
                    }
                }
            }
        }
    }
    Ok(())
}

#[allow(non_upper_case_globals)] // PostgreSQL's AlterTableType names
/// The other table an ALTER TABLE subcommand names: the partition attached or detached, the
/// parent inherited from or left.
unsafe fn other_table(command: &pg_sys::AlterTableCmd) -> Option<pg_sys::Oid> {
    use pg_sys::AlterTableType::*;
    let range_var = match command.subtype {
        AT_AttachPartition | AT_DetachPartition | AT_DetachPartitionFinalize
            if node_is(command.def, pg_sys::NodeTag::T_PartitionCmd) =>
        {
            (*(command.def as *mut pg_sys::PartitionCmd)).name
        }
        AT_AddInherit | AT_DropInherit if node_is(command.def, pg_sys::NodeTag::T_RangeVar) => {
            command.def as *mut pg_sys::RangeVar
        }
        _ => return None,
    };
    let oid = pg_sys::RangeVarGetRelidExtended(
        range_var,
        pg_sys::NoLock as pg_sys::LOCKMODE,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    );
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The relation a change is on, if any.
fn relation_of(change: &Change) -> Option<pg_sys::Oid> {
    let (class, object) = match change {
        Change::AlterTable { relid, .. } => return Some(*relid),
        Change::Simple { address, .. } => (address.classId, address.objectId),
    };
    let query = match class {
        c if c == pg_sys::RelationRelationId => return Some(object),
        c if c == guard::POLICY_CLASS => {
            "SELECT polrelid FROM pg_catalog.pg_policy WHERE oid OPERATOR(pg_catalog.=) $1"
        }
        c if c == pg_sys::TriggerRelationId => {
            "SELECT tgrelid FROM pg_catalog.pg_trigger WHERE oid OPERATOR(pg_catalog.=) $1"
        }
        c if c == guard::REWRITE_CLASS => {
            "SELECT ev_class FROM pg_catalog.pg_rewrite WHERE oid OPERATOR(pg_catalog.=) $1"
        }
        _ => return None,
    };
    catalog::select_value::<pg_sys::Oid>(query, &[object.into()])
}

/// Citus's shards (on any node) and shells (on workers) that carry tenant_guard's protection as
/// the coordinator propagated it are not registered, so the guard judges them by their shape
/// (`citus::refuse_weakening_shard`): what would weaken them (NO FORCE, DISABLE ROW LEVEL
/// SECURITY, changing or renaming a policy, disabling or renaming tenant_guard's triggers, a
/// rule) is refused (42501) unless a superuser asks, and so is inheritance between such a
/// relation and one without that protection, either way round (a child's rows appear in the
/// parent's results; a parent shows a child's rows under its own policies). The coordinator's
/// guard judged whatever Citus propagates, and tenant_guard never weakens a shard.
#[allow(non_upper_case_globals)] // PostgreSQL's AlterTableType names
unsafe fn judge_citus_relations(changes: &[Change]) -> Result<()> {
    use pg_sys::AlterTableType::*;
    for change in changes {
        let weakens = match change {
            Change::AlterTable { relid, command, .. } => {
                let command = &**command;
                match command.subtype {
                    AT_AddInherit | AT_AttachPartition => {
                        if let Some(other) = other_table(command) {
                            citus::refuse_mixed_inheritance(*relid, other)?;
                        }
                        false
                    }
                    AT_DisableRowSecurity
                    | AT_NoForceRowSecurity
                    | AT_DisableTrigAll
                    | AT_DisableTrigUser => true,
                    AT_DisableTrig | AT_EnableAlwaysTrig | AT_EnableReplicaTrig => {
                        !command.name.is_null()
                            && CStr::from_ptr(command.name)
                                .to_string_lossy()
                                .starts_with(crate::expected::PREFIX)
                    }
                    _ => false,
                }
            }
            Change::Simple { address, parsetree } => {
                let class = address.classId;
                if class == pg_sys::RelationRelationId {
                    if let Some(table) = Table::lookup(address.objectId) {
                        for parent in table.parents() {
                            citus::refuse_mixed_inheritance(address.objectId, parent)?;
                        }
                    }
                }
                (class == guard::POLICY_CLASS
                    && !node_is(*parsetree, pg_sys::NodeTag::T_CreatePolicyStmt))
                    || (class == pg_sys::TriggerRelationId
                        && node_is(*parsetree, pg_sys::NodeTag::T_RenameStmt))
                    || class == guard::REWRITE_CLASS
            }
        };
        if !weakens {
            continue;
        }
        let Some(relid) = relation_of(change) else {
            continue;
        };
        citus::refuse_weakening_shard(relid, false)?;
    }
    Ok(())
}

/// The relations the commands touched, in order, once each.
fn relations(changes: &[Change]) -> Vec<pg_sys::Oid> {
    let mut relations = Vec::new();
    let mut add = |oid: pg_sys::Oid| {
        if oid != pg_sys::InvalidOid && !relations.contains(&oid) {
            relations.push(oid);
        }
    };
    for change in changes {
        match change {
            Change::AlterTable {
                relid,
                address,
                command,
            } => {
                add(*relid);
                if address.classId == pg_sys::RelationRelationId {
                    add(address.objectId);
                }
                if let Some(other) = unsafe { other_table(&**command) } {
                    add(other);
                }
            }
            Change::Simple { address, .. } if address.classId == pg_sys::RelationRelationId => {
                add(address.objectId)
            }
            Change::Simple { .. } => {}
        }
    }
    relations
}

/// A renamed column: the registry names tenant and user columns (names survive pg_dump), so it
/// follows.
unsafe fn follow_renamed_column(change: &Change) -> Result<()> {
    let Change::Simple { address, parsetree } = change else {
        return Ok(());
    };
    if address.classId != pg_sys::RelationRelationId
        || !node_is(*parsetree, pg_sys::NodeTag::T_RenameStmt)
    {
        return Ok(());
    }
    let stmt = &*(*parsetree as *mut pg_sys::RenameStmt);
    if stmt.renameType != pg_sys::ObjectType::OBJECT_COLUMN
        || stmt.subname.is_null()
        || stmt.newname.is_null()
    {
        return Ok(());
    }
    let (old, new) = (
        CStr::from_ptr(stmt.subname).to_string_lossy().into_owned(),
        CStr::from_ptr(stmt.newname).to_string_lossy().into_owned(),
    );
    let Some(table) = Table::lookup(address.objectId) else {
        return Ok(());
    };
    // The rename recursed to every partition and child.
    let tables: Vec<pg_sys::Oid> = std::iter::once(table.oid)
        .chain(table.descendants())
        .collect();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "UPDATE tenant_guard.protected_tables SET tenant_column = $3::pg_catalog.name
              WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
                AND tenant_column OPERATOR(pg_catalog.=) $2::pg_catalog.name",
            &[
                tables.clone().into(),
                old.as_str().into(),
                new.as_str().into(),
            ],
        )?;
        Spi::run_with_args(
            "UPDATE tenant_guard.protected_tables SET user_column = $3::pg_catalog.name
              WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
                AND user_column OPERATOR(pg_catalog.=) $2::pg_catalog.name",
            &[tables.into(), old.as_str().into(), new.as_str().into()],
        )
    })
    .map_err(error::internal)
}

/// Partitions detached and children that left their parent (NO INHERIT) stay protected and
/// audited on their own: a registry entry whose parent is no longer its ancestor is re-parented
/// to the top of its nearest registered ancestor's chain, or made top-level.
fn reconcile_parents() -> Result<()> {
    for registry in [Registry::Protection, Registry::Audit] {
        // Shallowest first: a detached subtree's top is re-parented (and given its permissions)
        // before the tables under it look for their root.
        let mut orphans = registry.orphans();
        orphans.sort_by_key(|relid| catalog::ancestors(*relid).len());
        for relid in orphans {
            let root = registry.root_of(relid).map(|t| t.oid);
            let was = policy::registered(relid).and_then(|entry| entry.parent);
            registry.set_parent(relid, root)?;
            // On its own now, it keeps the permissions it had through its old top (its policies
            // carry them); under a root, it follows that root's.
            if registry == Registry::Protection {
                match (root, was) {
                    (None, Some(was)) => crate::authz::permissions::copy(was, relid)?,
                    (Some(_), _) => crate::authz::permissions::forget(&[relid])?,
                    (None, None) => {}
                }
            }
        }
    }
    Ok(())
}

fn protection_of(entry: &policy::Registered) -> Protection {
    Protection {
        via: Via::Partition,
        ..entry.protection()
    }
}

fn protect_if_needed(table: &Table) -> Result<()> {
    if citus::on_worker() {
        return Ok(());
    }
    if let Some(entry) = policy::registered(table.oid) {
        // ATTACH PARTITION, PARTITION OF, INHERITS, INHERIT: protect the new children.
        if entry.parent.is_none() {
            policy::protect_children(table, &protection_of(&entry), true)?;
        }
        // INHERIT, or ATTACH to a parent: not under a parent that is not protected the same way.
        return policy::check_parents(table);
    }
    // A new child of a protected table is protected through it, whatever row_security says.
    if let Some(root) = Registry::Protection.root_of(table.oid) {
        if let Some(entry) = policy::registered(root.oid) {
            return policy::protect_children(&root, &protection_of(&entry), true);
        }
    }
    if table.is_partition {
        return Ok(()); // a partition is protected through its parent, or not at all
    }
    if !gucs::AUTO_PROTECT.get() || policy::is_excluded(table.oid) {
        return Ok(());
    }
    let column = policy::configured_tenant_column()?;
    if catalog::Column::lookup(table.oid, &column).is_none() {
        return Ok(());
    }
    if !unsafe { pg_sys::row_security } && privilege::bypasses_rls() {
        error::notice(format!(
            "tenant_guard: {} not protected automatically: row_security is off (as in a restore)",
            table.qualified()
        ));
        return Ok(());
    }
    policy::protect(
        table,
        &Protection {
            column,
            create_index: true,
            to_roles: None,
            via: Via::AutoProtect,
            private: None,
            write_action: None,
        },
    )
}

/// What follows a command that the guard let through.
unsafe fn follow_up(changes: &[Change]) -> Result<()> {
    let _ours = OwnDdl::start();
    for change in changes {
        follow_renamed_column(change)?;
    }
    let reparented = changes.iter().any(|change| {
        matches!(change, Change::AlterTable { command, .. }
            if matches!((**command).subtype,
                pg_sys::AlterTableType::AT_DetachPartition
                | pg_sys::AlterTableType::AT_DetachPartitionFinalize
                | pg_sys::AlterTableType::AT_DropInherit))
    });
    if reparented {
        reconcile_parents()?;
    }
    for oid in relations(changes) {
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
        protect_if_needed(&table)?;
        audit::config::after_ddl(&table)?;
    }
    for change in changes {
        if let Change::AlterTable { relid, address, .. } = change {
            // ADD CONSTRAINT (AT_AddConstraint, or AT_AddConstraintRecurse before PostgreSQL 16)
            // reports the constraint it added; only foreign keys between protected tables match.
            if address.classId == guard::CONSTRAINT_CLASS {
                policy::warn_unscoped_foreign_keys(*relid, Some(address.objectId));
            }
        }
    }
    Ok(())
}

#[pg_extern(sql = r#"
CREATE FUNCTION tenant_guard.on_ddl_command_end() RETURNS event_trigger
    LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn on_ddl_command_end() {
    if unsafe { pg_sys::creating_extension } || guard::own_ddl_running() {
        return;
    }
    let result = unsafe {
        let mut changes = changes();
        // Citus's shards (and shells on workers) carry the coordinator's protection. On a
        // worker, a shard is created before the worker's catalog knows it as one, and nothing
        // is registered: only registered tables are judged there.
        if citus::installed() {
            if let Err(report) = judge_citus_relations(&changes) {
                error::raise(report);
            }
            // What is registered is judged as everywhere; Citus's own shards (and, on a worker,
            // every table: shards exist there before the catalog knows them) are judged above.
            let worker = citus::on_worker();
            changes.retain(|change| {
                relation_of(change).is_none_or(|relid| {
                    policy::registered(relid).is_some()
                        || audit::config::options(relid).is_some()
                        || !(worker || citus::owns_relation(relid))
                })
            });
        }
        judge(&changes).and_then(|_| follow_up(&changes))
    };
    if let Err(report) = result {
        error::raise(report);
    }
}

/// One row of `pg_event_trigger_dropped_objects()`.
struct Dropped {
    class: pg_sys::Oid,
    object: pg_sys::Oid,
    sub_id: i32,
    object_type: String,
    /// For a policy or trigger: (schema, table, name).
    names: Vec<String>,
}

fn dropped_objects() -> Vec<Dropped> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT classid, objid, objsubid, object_type, address_names
                   FROM pg_catalog.pg_event_trigger_dropped_objects()",
                None,
                &[],
            )?
            .map(|row| {
                Ok(Dropped {
                    class: row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    object: row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
                    sub_id: row.get::<i32>(3)?.unwrap_or(0),
                    object_type: row.get::<String>(4)?.unwrap_or_default(),
                    names: row.get::<Vec<String>>(5)?.unwrap_or_default(),
                })
            })
            .collect::<pgrx::spi::SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

#[pg_extern(sql = r#"
CREATE FUNCTION tenant_guard.on_sql_drop() RETURNS event_trigger
    LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn on_sql_drop() {
    let dropped = dropped_objects();
    // DROP EXTENSION tenant_guard CASCADE takes the policies with it (they call its functions):
    // that fails closed, and only a superuser can do it. (Any other extension's drop is judged:
    // what depends on it goes with it.)
    let dropping_extension = dropped.iter().any(|d| {
        d.class == pg_sys::ExtensionRelationId
            && d.names.first().map(String::as_str) == Some("tenant_guard")
    });
    let dropped_tables: Vec<pg_sys::Oid> = dropped
        .iter()
        .filter(|d| d.class == pg_sys::RelationRelationId && d.sub_id == 0)
        .map(|d| d.object)
        .collect();
    if !guard::own_ddl_running() && !dropping_extension {
        for object in &dropped {
            let [schema, table, name] = object.names.as_slice() else {
                continue;
            };
            if !matches!(object.object_type.as_str(), "policy" | "trigger") {
                continue;
            }
            let relid = catalog::select_value::<pg_sys::Oid>(
                "SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1, $2))::pg_catalog.oid",
                &[schema.as_str().into(), table.as_str().into()],
            );
            if let Some(relid) = relid.filter(|r| !dropped_tables.contains(r)) {
                if let Err(report) = guard::judge_drop(relid, &object.object_type, name) {
                    error::raise(report);
                }
                // A shard's (on any node): judged by its shape, as in `judge_citus_relations`.
                if name.starts_with(crate::expected::PREFIX) && citus::installed() {
                    if let Err(report) = citus::refuse_weakening_shard(relid, true) {
                        error::raise(report);
                    }
                }
            }
        }
    }
    if dropped_tables.is_empty() || dropping_extension {
        return;
    }
    // Forget dropped tables (protection, exclusion, audit settings; the audit rows stay).
    privilege::as_extension_owner(|| {
        for registry in [
            "tenant_guard.protected_tables",
            "tenant_guard.excluded_tables",
            "tenant_guard.audit_config",
            "tenant_guard.table_permissions",
        ] {
            Spi::run_with_args(
                &format!(
                    "DELETE FROM {registry}
                      WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])"
                ),
                &[dropped_tables.clone().into()],
            )?;
        }
        Ok::<(), pgrx::spi::SpiError>(())
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)));
}
