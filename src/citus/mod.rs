//! Citus: what tenant_guard needs to know about a database that Citus distributes, and the one
//! supported way to distribute a protected table.
//!
//! Citus refuses sub-selects in the policies of a distributed table, so a distributed table's
//! policies take the flat shape (`expected::Shape::Flat`), chosen here: a table is distributed
//! when Citus's own catalog (`pg_dist_partition`, writable by superusers only) says so, or while
//! [`distribute_table`] converts it. On a node that is not the coordinator, the shards and the
//! shell tables are Citus's: they come with the coordinator's policies, so auto-protection
//! leaves them alone. That is decided by Citus's catalogs (`relation_is_a_known_shard`,
//! `citus_is_coordinator`), never by a setting a session can choose (such as
//! `application_name`, which decides Citus's own "internal backend" status).
//!
//! Nothing here runs when the citus extension is not installed in the database.

pub mod carrier;
mod ffi;
mod libpq;
pub mod origin;
pub mod routing;
mod sockets;

use crate::catalog;
use crate::error::{self, Result};
use crate::guard::OwnDdl;
use crate::gucs;
use crate::policy;
use crate::privilege;
use crate::sqltypes::RegClass;
use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    static PREVIOUS_PLANNER: Cell<pg_sys::planner_hook_type> = const { Cell::new(None) };
    static PREVIOUS_EXECUTOR_START: Cell<pg_sys::ExecutorStart_hook_type> = const { Cell::new(None) };
}

/// From `_PG_init`: the planner hook (it runs before Citus's, which is loaded first) and the
/// carriers' origins in shared memory.
pub fn init() {
    origin::init();
    routing::init();
    unsafe {
        PREVIOUS_PLANNER.set(pg_sys::planner_hook);
        pg_sys::planner_hook = Some(planner);
        PREVIOUS_EXECUTOR_START.set(pg_sys::ExecutorStart_hook);
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

/// A plan Citus cached (a prepared statement) runs without planning again: the carrier is
/// issued before every execution as well.
#[pg_guard]
unsafe extern "C-unwind" fn executor_start(
    query_desc: *mut pg_sys::QueryDesc,
    eflags: std::ffi::c_int,
) {
    if ffi::active() && plan_uses_distributed_tables((*query_desc).plannedstmt) {
        if let Err(report) = carrier::issue() {
            error::raise(report);
        }
    }
    match PREVIOUS_EXECUTOR_START.get() {
        Some(previous) => previous(query_desc, eflags),
        None => pg_sys::standard_ExecutorStart(query_desc, eflags),
    }
}

unsafe fn plan_uses_distributed_tables(plan: *mut pg_sys::PlannedStmt) -> bool {
    if plan.is_null() {
        return false;
    }
    pgrx::PgList::<pg_sys::RangeTblEntry>::from_pg((*plan).rtable)
        .iter_ptr()
        .any(|rte| {
            (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION && ffi::is_citus_table((*rte).relid)
        })
}

#[pg_guard]
unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: std::ffi::c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    if ffi::active() && uses_distributed_tables(parse) {
        if let Err(report) = carrier::issue() {
            error::raise(report);
        }
        routing::add_tenant_constants(parse);
    }
    match PREVIOUS_PLANNER.get() {
        Some(previous) => previous(parse, query_string, cursor_options, bound_params),
        None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
    }
}

/// Whether a query (with its sub-queries and CTEs) reads or writes a Citus table.
unsafe fn uses_distributed_tables(parse: *mut pg_sys::Query) -> bool {
    unsafe extern "C-unwind" fn walk(
        node: *mut pg_sys::Node,
        found: *mut std::ffi::c_void,
    ) -> bool {
        if node.is_null() {
            return false;
        }
        if pgrx::is_a(node, pg_sys::NodeTag::T_RangeTblEntry) {
            let rte = &*(node as *mut pg_sys::RangeTblEntry);
            if rte.rtekind == pg_sys::RTEKind::RTE_RELATION && ffi::is_citus_table(rte.relid) {
                *(found as *mut bool) = true;
                return true;
            }
            return false;
        }
        if pgrx::is_a(node, pg_sys::NodeTag::T_Query) {
            return pg_sys::query_tree_walker(
                node as *mut pg_sys::Query,
                Some(walk),
                found,
                pg_sys::QTW_EXAMINE_RTES_BEFORE as i32,
            );
        }
        pg_sys::expression_tree_walker(node, Some(walk), found)
    }
    let mut found = false;
    walk(
        parse as *mut pg_sys::Node,
        &mut found as *mut bool as *mut std::ffi::c_void,
    );
    found
}

thread_local! {
    /// Set while `distribute_table` converts a table: its policies take the flat shape before
    /// Citus's catalog says the table is distributed.
    static DISTRIBUTING: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

/// Whether the citus extension is installed in this database.
pub fn installed() -> bool {
    unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::InvalidOid }
}

/// Whether Citus distributes `relid` (a distributed or reference table, or a partition of one),
/// or `distribute_table` is converting it now.
pub fn is_distributed(relid: pg_sys::Oid) -> bool {
    let converting = DISTRIBUTING.get();
    (converting != pg_sys::InvalidOid
        && (relid == converting
            || crate::catalog::Registry::Protection
                .root_of(relid)
                .is_some_and(|root| root.oid == converting)))
        || in_catalog(relid)
}

/// Whether Citus's catalog says it distributes `relid`.
pub fn in_catalog(relid: pg_sys::Oid) -> bool {
    // Citus's own cache of pg_dist_partition, as the planner hook asks it.
    ffi::active() && ffi::is_citus_table(relid)
}

/// Whether this is a Citus worker: a node of a cluster that is not its coordinator. Tables
/// created on a worker are Citus's shards and shells (a shard is created before the worker's
/// catalog knows it as one), protected by what the coordinator propagates.
pub fn on_worker() -> bool {
    // The node's group in Citus's own catalog (superuser-written): 0 is the coordinator's,
    // also before any node was added (citus_is_coordinator() is false then).
    installed()
        && catalog::select_value::<i32>("SELECT groupid FROM pg_catalog.pg_dist_local_group", &[])
            .is_some_and(|group| group != 0)
}

/// Whether `relid` is Citus's on this node rather than the user's: a shard, or (on a node that
/// is not the coordinator) the shell of a distributed table. Their protection comes from the
/// coordinator, through Citus.
pub fn owns_relation(relid: pg_sys::Oid) -> bool {
    installed()
        && catalog::select_value::<bool>(
            "SELECT pg_catalog.relation_is_a_known_shard($1::pg_catalog.oid::pg_catalog.regclass)
                 OR (NOT pg_catalog.citus_is_coordinator()
                     AND EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                                  WHERE logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass))",
            &[relid.into()],
        )
        .unwrap_or(false)
}

/// Whether `relid` is Citus's (a shard, or a shell on a worker) and carries tenant_guard's
/// protection as propagated (its fence policy).
fn protected_by_propagation(relid: pg_sys::Oid) -> bool {
    owns_relation(relid) && fenced(relid)
}

/// Whether a relation has tenant_guard's fence policy (yes, when that cannot be read).
fn fenced(relid: pg_sys::Oid) -> bool {
    catalog::select_value::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_policy
                         WHERE polrelid OPERATOR(pg_catalog.=) $1
                           AND polname OPERATOR(pg_catalog.=) $2::pg_catalog.name)",
        &[relid.into(), crate::expected::FENCE_POLICY.into()],
    )
    .unwrap_or(true)
}

/// Refuse (42501) inheritance between `child` and `parent` when one of them carries
/// tenant_guard's protection as propagated by Citus and the other has no fence of its own,
/// unless a superuser asks.
pub fn refuse_mixed_inheritance(child: pg_sys::Oid, parent: pg_sys::Oid) -> Result<()> {
    let (child_shard, parent_shard) = (
        protected_by_propagation(child),
        protected_by_propagation(parent),
    );
    if !(child_shard || parent_shard)
        || (fenced(child) && fenced(parent))
        || unsafe { pg_sys::superuser() }
    {
        return Ok(());
    }
    Err(error::forbidden(
        "tenant_guard: a shard of a protected distributed table cannot inherit from, or be \
         inherited by, a table without the same protection",
        "Partitions and children of a distributed table are made on the coordinator, through \
         Citus and tenant_guard.",
    ))
}

/// On a worker: refuse (42501) what would weaken `relid` when it is a shard or shell carrying
/// tenant_guard's protection (`dropping_ours`: one of tenant_guard's policies or triggers is
/// being dropped from it), unless a superuser asks. tenant_guard itself never weakens a shard:
/// on a distributed table it only creates the generated policies that are missing.
pub fn refuse_weakening_shard(relid: pg_sys::Oid, dropping_ours: bool) -> Result<()> {
    let protected = if dropping_ours {
        owns_relation(relid)
    } else {
        protected_by_propagation(relid)
    };
    if !protected || unsafe { pg_sys::superuser() } {
        return Ok(());
    }
    // By the syscache: Citus hides shards from catalog queries.
    let name = unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            format!("relation {}", relid.to_u32())
        } else {
            pgrx::spi::quote_identifier(std::ffi::CStr::from_ptr(name).to_string_lossy().as_ref())
        }
    };
    Err(error::forbidden(
        format!(
            "tenant_guard: {name} is a shard (or the shell) of a distributed table that tenant_guard \
             protects; its protection changes only from the coordinator"
        ),
        "Change the distributed table on the Citus coordinator, through tenant_guard's functions.",
    ))
}

struct Distributing;

impl Distributing {
    fn start(relid: pg_sys::Oid) -> Distributing {
        DISTRIBUTING.set(relid);
        Distributing
    }
}

impl Drop for Distributing {
    fn drop(&mut self) {
        DISTRIBUTING.set(pg_sys::InvalidOid);
    }
}

/// At the end of a transaction (the marker also unwinds with an error).
pub fn end_of_transaction() {
    DISTRIBUTING.set(pg_sys::InvalidOid);
    carrier::end_of_transaction();
    origin::end_of_transaction();
}

/// Distribute a protected table by its tenant column with Citus (`create_distributed_table`),
/// keeping its protection: the generated policies take the flat shape Citus accepts, and the
/// TRUNCATE guard is created on every shard. Idempotent. The caller must own the table.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn distribute_table(
    tbl: Option<RegClass>,
    shard_count: default!(Option<i32>, "NULL"),
    colocate_with: default!(Option<String>, "'default'"),
) -> Result<()> {
    let (table, entry) = policy::protected_top(tbl)?;
    if !installed() {
        return Err(error::invalid_state(
            "tenant_guard: the citus extension is not installed in this database",
            "CREATE EXTENSION citus first (citus must come first in shared_preload_libraries).",
        ));
    }
    if !catalog::select_value::<bool>("SELECT pg_catalog.citus_is_coordinator()", &[])
        .unwrap_or(false)
    {
        return Err(error::invalid_state(
            "tenant_guard: tables are distributed on the Citus coordinator",
            "Connect to the coordinator and call tenant_guard.distribute_table there.",
        ));
    }
    if shard_count.is_some_and(|count| !(1..=64000).contains(&count)) {
        return Err(error::malformed(
            "tenant_guard: shard_count must be between 1 and 64000",
            "Pass NULL for citus.shard_count's value.",
        ));
    }
    let Some(colocate_with) = colocate_with.filter(|c| !c.is_empty()) else {
        return Err(error::malformed(
            "tenant_guard: colocate_with must not be NULL or empty",
            "Pass 'default', 'none' or a distributed table's name.",
        ));
    };
    if table.relkind == 'p' || !table.parents().is_empty() {
        return Err(error::not_supported(
            format!(
                "tenant_guard: {} is partitioned or inherits; only plain tables are distributed yet",
                table.qualified()
            ),
            "Distribute a plain table, or keep this one local.",
        ));
    }
    if crate::audit::config::options(table.oid).is_some() {
        return Err(error::not_supported(
            format!("tenant_guard: {} is audited; audited tables are not distributed yet", table.qualified()),
            "Call tenant_guard.disable_tenant_audit() first; README, \"Citus\", says what audit covers on a cluster.",
        ));
    }
    if is_distributed(table.oid) {
        error::notice(format!(
            "tenant_guard: {} is distributed already; nothing to do",
            table.qualified()
        ));
        return Ok(());
    }
    // Citus copies the rows into the shards by reading the table as the caller, whom the
    // policies show one tenant at most. (Locked first: no row arrives between look and copy.)
    unsafe {
        pg_sys::LockRelationOid(table.oid, pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE)
    };
    if !privilege::bypasses_rls() && catalog::has_rows(table.oid)? {
        return Err(error::invalid_state(
            format!(
                "tenant_guard: {} has rows, which its owner cannot read across tenants",
                table.qualified()
            ),
            "Distribute it while it is empty and load it afterwards, or call this as a role \
             with BYPASSRLS that owns the table.",
        ));
    }
    let _distributing = Distributing::start(table.oid);
    {
        // The flat policies, from the one generator, while the table is still local.
        let _ours = OwnDdl::start();
        policy::reprotect(&table, |_| {})?;
    }
    {
        // As the caller: Citus creates the shards, with the table's policies and its TRUNCATE
        // guard (a trigger: Citus copies it only when told that triggers are safe, and the
        // caller can create it because truncate_guard() is executable by PUBLIC: it only
        // refuses), and copies the rows, as the role that asks. Its own queries of the table
        // run under the policies, and the planner evaluates the flat shape's call to estimate
        // it: without a context that is NULL (no row) here, not an error. The table is empty,
        // or the caller bypasses row level security.
        let unsafe_triggers = || {
            gucs::with_setting(
                c"citus.enable_unsafe_triggers",
                c"on",
                pg_sys::GucContext::PGC_SUSET,
                || {
                    Spi::run_with_args(
                    "SELECT pg_catalog.create_distributed_table(
                             $1::pg_catalog.oid::pg_catalog.regclass, $2::pg_catalog.text,
                             colocate_with => $3::pg_catalog.text, shard_count => $4::pg_catalog.int4)",
                    &[
                        table.oid.into(),
                        entry.column.as_str().into(),
                        colocate_with.as_str().into(),
                        shard_count.into(),
                    ],
                )
                },
            )
        };
        gucs::with_setting(
            c"tenant_guard.require_context",
            c"off",
            pg_sys::GucContext::PGC_SUSET,
            unsafe_triggers,
        )
        .map_err(error::internal)?;
    }
    Ok(())
}
