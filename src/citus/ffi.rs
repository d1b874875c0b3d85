//! The few functions of Citus's library that tenant_guard calls, found by name at first use.
//!
//! They are exported by citus.so 13.x (`nm -D`); the signatures are those of its headers
//! (`distributed/transaction_identifier.h`, `transaction_management.h`, `commands.h`,
//! `metadata_cache.h`). Citus is only ever looked up when `shared_preload_libraries` loaded it
//! (it refuses to be loaded any other way).

use pgrx::pg_sys;
use std::ffi::{c_char, CStr, CString};
use std::sync::OnceLock;

/// `DistributedTransactionId` (transaction_identifier.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistributedTransactionId {
    pub initiator_node_identifier: i32,
    pub transaction_originator: bool,
    pub transaction_number: u64,
    pub timestamp: pg_sys::TimestampTz,
}

struct Functions {
    citus_has_been_loaded: unsafe extern "C-unwind" fn() -> bool,
    is_citus_table: unsafe extern "C-unwind" fn(pg_sys::Oid) -> bool,
    use_coordinated_transaction: unsafe extern "C-unwind" fn(),
    current_transaction_id: unsafe extern "C-unwind" fn() -> *mut DistributedTransactionId,
    propagate_set: unsafe extern "C-unwind" fn(*mut pg_sys::VariableSetStmt, *const c_char),
    local_group_id: unsafe extern "C-unwind" fn() -> i32,
    primary_node_for_group: unsafe extern "C-unwind" fn(i32, *mut bool) -> *const WorkerNode,
    authinfo: unsafe extern "C-unwind" fn(*const c_char, i32, *const c_char) -> *const c_char,
}

/// The leading fields of `WorkerNode` (worker_manager.h), the only ones read.
#[repr(C)]
pub struct WorkerNode {
    _node_id: u32,
    worker_port: u32,
    worker_name: [c_char; 256],
}

static FUNCTIONS: OnceLock<Option<Functions>> = OnceLock::new();

/// Whether `shared_preload_libraries` names citus.
fn preloaded() -> bool {
    crate::gucs::value_of(c"shared_preload_libraries")
        .split(',')
        .any(|name| name.trim().trim_matches('"') == "citus")
}

unsafe fn symbol(name: &CStr) -> *const std::ffi::c_void {
    let function = pg_sys::load_external_function(
        c"$libdir/citus".as_ptr(),
        name.as_ptr(),
        true,
        std::ptr::null_mut(),
    );
    function.cast_const()
}

fn functions() -> Option<&'static Functions> {
    FUNCTIONS
        .get_or_init(|| {
            if !preloaded() {
                return None;
            }
            unsafe {
                Some(Functions {
                    citus_has_been_loaded: std::mem::transmute::<
                        *const std::ffi::c_void,
                        unsafe extern "C-unwind" fn() -> bool,
                    >(symbol(c"CitusHasBeenLoaded")),
                    is_citus_table: std::mem::transmute::<
                        *const std::ffi::c_void,
                        unsafe extern "C-unwind" fn(pg_sys::Oid) -> bool,
                    >(symbol(c"IsCitusTable")),
                    use_coordinated_transaction: std::mem::transmute::<
                        *const std::ffi::c_void,
                        unsafe extern "C-unwind" fn(),
                    >(symbol(
                        c"UseCoordinatedTransaction",
                    )),
                    current_transaction_id: std::mem::transmute::<
                        *const std::ffi::c_void,
                        unsafe extern "C-unwind" fn() -> *mut DistributedTransactionId,
                    >(symbol(
                        c"GetCurrentDistributedTransactionId",
                    )),
                    propagate_set: std::mem::transmute::<
                        *const std::ffi::c_void,
                        unsafe extern "C-unwind" fn(*mut pg_sys::VariableSetStmt, *const c_char),
                    >(symbol(c"PostprocessVariableSetStmt")),
                    local_group_id: std::mem::transmute::<
                        *const std::ffi::c_void,
                        unsafe extern "C-unwind" fn() -> i32,
                    >(symbol(c"GetLocalGroupId")),
                    primary_node_for_group: std::mem::transmute::<
                        *const std::ffi::c_void,
                        unsafe extern "C-unwind" fn(i32, *mut bool) -> *const WorkerNode,
                    >(symbol(c"PrimaryNodeForGroup")),
                    authinfo: std::mem::transmute::<
                        *const std::ffi::c_void,
                        unsafe extern "C-unwind" fn(
                            *const c_char,
                            i32,
                            *const c_char,
                        ) -> *const c_char,
                    >(symbol(c"GetAuthinfo")),
                })
            }
        })
        .as_ref()
}

/// Whether Citus is loaded and its extension is installed in this database.
pub fn active() -> bool {
    functions().is_some_and(|f| unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| (f.citus_has_been_loaded)())
    })
}

/// Whether Citus distributes `relid` (any Citus table). Only when [`active`].
pub fn is_citus_table(relid: pg_sys::Oid) -> bool {
    functions().is_some_and(|f| unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| (f.is_citus_table)(relid))
    })
}

/// Make Citus run this transaction's remote work in transaction blocks, which begin with the
/// propagated `SET LOCAL`s, and give it a distributed transaction id. Only when [`active`].
pub fn use_coordinated_transaction() {
    if let Some(f) = functions() {
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| (f.use_coordinated_transaction)()) }
    }
}

/// This node's group in the Citus cluster (0: the coordinator).
pub fn local_group_id() -> Option<i32> {
    let f = functions()?;
    Some(unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| (f.local_group_id)()) })
}

/// This backend's distributed transaction id (all zero when it has none).
pub fn current_transaction_id() -> Option<DistributedTransactionId> {
    let f = functions()?;
    let id = unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| (f.current_transaction_id)()) };
    (!id.is_null()).then(|| unsafe { *id })
}

/// Send `SET LOCAL <name> TO <value>` to every node this transaction works on, now and later,
/// as Citus sends a `SET LOCAL` a client typed (`citus.propagate_set_commands = 'local'`).
pub fn propagate_set_local(name: &CStr, sql: &CStr) {
    let Some(f) = functions() else {
        return;
    };
    unsafe {
        let stmt = pg_sys::palloc0(std::mem::size_of::<pg_sys::VariableSetStmt>())
            as *mut pg_sys::VariableSetStmt;
        (*stmt).type_ = pg_sys::NodeTag::T_VariableSetStmt;
        (*stmt).kind = pg_sys::VariableSetKind::VAR_SET_VALUE;
        (*stmt).name = name.as_ptr().cast_mut();
        (*stmt).is_local = true;
        pg_sys::ffi::pg_guard_ffi_boundary(|| (f.propagate_set)(stmt, sql.as_ptr()));
    }
}

/// The coordinator's host and port, as `pg_dist_node` names them (group 0).
pub fn coordinator() -> Option<(String, i32)> {
    let f = functions()?;
    let mut in_group = false;
    let node = unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| (f.primary_node_for_group)(0, &mut in_group))
    };
    if node.is_null() {
        return None;
    }
    let node = unsafe { &*node };
    let name = unsafe { CStr::from_ptr(node.worker_name.as_ptr()) };
    Some((name.to_string_lossy().into_owned(), node.worker_port as i32))
}

/// What `pg_dist_authinfo` gives `user` to connect to `host`:`port` (a connection string
/// fragment, often empty).
pub fn authinfo(host: &str, port: i32, user: &str) -> String {
    let (Some(f), Ok(host), Ok(user)) = (functions(), CString::new(host), CString::new(user))
    else {
        return String::new();
    };
    unsafe {
        let info =
            pg_sys::ffi::pg_guard_ffi_boundary(|| (f.authinfo)(host.as_ptr(), port, user.as_ptr()));
        crate::catalog::c_string(info).unwrap_or_default()
    }
}
