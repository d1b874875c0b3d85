//! Single-shard routing: a tenant's query on distributed tables runs on the tenant's shard
//! only, without the application writing `WHERE tenant_id = ...`.
//!
//! Citus prunes shards only on constants, and the policies compare the tenant column with a
//! function call, so by itself every tenant query runs one task per shard. Before Citus plans a
//! query, this adds `<tenant column> = '<context tenant>'` to each protected distributed table
//! of the query (the top level), as a security qual of its range table entry: at the same place
//! as the policies, which say exactly the same, so no result changes (outer joins included).
//!
//! A plan with the tenant in it must not serve another tenant: a cached generic plan is reused
//! without planning again. So the backend remembers the tenant it put into plans, and when a
//! context for another tenant is set (`context::apply`), it invalidates its cached plans
//! (`ResetPlanCache`). Without a context the policies still apply to such a plan, which then
//! fails closed. A worker never routes: the context it adopted from a carrier is the
//! coordinator's.

use super::ffi;
use crate::context;
use crate::policy;
use crate::tenant_type::TenantType;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;

/// How to compare a distributed table's tenant column with a constant.
#[derive(Clone, Copy)]
struct Route {
    attnum: i16,
    type_oid: pg_sys::Oid,
    typmod: i32,
    collation: pg_sys::Oid,
    kind: TenantType,
    equals: pg_sys::Oid,
}

thread_local! {
    /// Per table: its route, or None (not protected, or a type without its own `=`).
    static ROUTES: RefCell<HashMap<pg_sys::Oid, Option<Route>>> = RefCell::new(HashMap::new());
    /// The tenant this backend put into plans.
    static ROUTED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// From `_PG_init`.
pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget), pg_sys::Datum::from(0));
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    ROUTES.with(|routes| {
        let mut routes = routes.borrow_mut();
        if relid == pg_sys::InvalidOid {
            routes.clear();
        } else {
            routes.remove(&relid);
        }
    });
}

fn route(relid: pg_sys::Oid) -> Option<Route> {
    if let Some(known) = ROUTES.with(|routes| routes.borrow().get(&relid).copied()) {
        return known;
    }
    let route = find_route(relid);
    ROUTES.with(|routes| routes.borrow_mut().insert(relid, route));
    route
}

fn find_route(relid: pg_sys::Oid) -> Option<Route> {
    let entry = policy::registered(relid)?;
    let kind = TenantType::from_oid(entry.type_oid)?;
    let column = std::ffi::CString::new(entry.column).ok()?;
    unsafe {
        let attnum = pg_sys::get_attnum(relid, column.as_ptr());
        if attnum <= 0 {
            return None;
        }
        let (mut type_oid, mut typmod, mut collation) = (pg_sys::InvalidOid, 0, pg_sys::InvalidOid);
        pg_sys::get_atttypetypmodcoll(relid, attnum, &mut type_oid, &mut typmod, &mut collation);
        let cache = pg_sys::lookup_type_cache(type_oid, pg_sys::TYPECACHE_EQ_OPR as i32);
        let equals = (*cache).eq_opr;
        if equals == pg_sys::InvalidOid {
            return None;
        }
        // Only an `=` of the column's own type (varchar compares as text: left alone).
        let (mut left, mut right) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
        pg_sys::op_input_types(equals, &mut left, &mut right);
        (left == type_oid && right == type_oid).then_some(Route {
            attnum,
            type_oid,
            typmod,
            collation,
            kind,
            equals,
        })
    }
}

/// Before Citus plans `parse`: the context tenant as a constant for each protected distributed
/// table of its top level.
pub unsafe fn add_tenant_constants(parse: *mut pg_sys::Query) {
    if !crate::gucs::ROUTE_TENANT_QUERIES.get() || super::carrier::adopted() {
        return;
    }
    let Some(tenant) = context::current_tenant_id() else {
        return;
    };
    let rtable = pgrx::PgList::<pg_sys::RangeTblEntry>::from_pg((*parse).rtable);
    let merge_target =
        ((*parse).commandType == pg_sys::CmdType::CMD_MERGE).then_some((*parse).resultRelation);
    let mut routed = false;
    for (index, rte) in rtable.iter_ptr().enumerate() {
        let rte = &mut *rte;
        // Only where the policies apply (not for a role that bypasses them), beside them; not
        // on a MERGE target, whose policies are checks rather than filters.
        if rte.rtekind != pg_sys::RTEKind::RTE_RELATION
            || rte.securityQuals.is_null()
            || merge_target == Some((index + 1) as i32)
            || !ffi::is_citus_table(rte.relid)
        {
            continue;
        }
        let Some(route) = route(rte.relid) else {
            continue;
        };
        let Some(value) = route.kind.datum(&tenant) else {
            continue; // not a value of the column's type: the policies say so
        };
        let (mut length, mut by_value) = (0i16, false);
        pg_sys::get_typlenbyval(route.type_oid, &mut length, &mut by_value);
        let column = pg_sys::makeVar(
            (index + 1) as _,
            route.attnum,
            route.type_oid,
            route.typmod,
            route.collation,
            0,
        );
        let constant = pg_sys::makeConst(
            route.type_oid,
            -1,
            route.collation,
            length as i32,
            value,
            false,
            by_value,
        );
        let clause = pg_sys::make_opclause(
            route.equals,
            pg_sys::BOOLOID,
            false,
            column.cast(),
            constant.cast(),
            pg_sys::InvalidOid,
            route.collation,
        );
        rte.securityQuals = pg_sys::lappend(rte.securityQuals, clause.cast());
        routed = true;
    }
    if routed {
        ROUTED.with(|r| *r.borrow_mut() = Some(tenant));
    }
}

/// At the end of a transaction: an abort can bring back a session context of another tenant
/// without an entry point (`context_changed`) seeing it, so plans made in it go.
pub fn end_of_transaction(aborted: bool) {
    if aborted && ROUTED.with(|r| r.borrow().is_some()) {
        unsafe { pg_sys::ResetPlanCache() };
        ROUTED.with(|r| *r.borrow_mut() = None);
    }
}

/// A context for `tenant` is being set: plans made for another tenant go.
pub fn context_changed(tenant: &str) {
    let stale = ROUTED.with(|r| r.borrow().as_deref().is_some_and(|routed| routed != tenant));
    if stale {
        unsafe { pg_sys::ResetPlanCache() };
        ROUTED.with(|r| *r.borrow_mut() = None);
    }
}
