//! The audit row of a denied action.
//!
//! `require_action` raises 42501, which rolls back everything its transaction wrote, so a
//! denial cannot be written in that transaction. It is handed to a short-lived background
//! worker instead, which writes it in a transaction of its own, as the extension owner, through
//! the audit log's one writer (`audit::write`), on the tenant's hash chain:
//! `op = 'DENIED'`, table `tenant_guard.actions`, `pk = {"action": ...}`,
//! `new_row = {"action", "resource", "reason", "rule"}`, and the context's tenant, user, role and
//! trace. A tenant reads its own denials (everyone may SELECT `tenant_guard.actions`).
//!
//! The denial travels in a dynamic shared memory segment (a random tag, the length, the JSON),
//! pinned until the worker has read it; the worker reads and unpins it before anything else,
//! and from then on logs the denial on any exit that did not write it. Limits:
//!
//! - at most one writer per backend: the next denial waits up to a second for it (which
//!   throttles a client that provokes denials in a loop), and is logged if it is still running;
//! - at most `MAX_WRITERS` writers in the cluster (counted in `pg_stat_activity`), so that
//!   denials cannot crowd out parallel query or replication workers;
//! - denials without a tenant context (anyone can provoke those) are logged, never written.
//!
//! Logged denials are one server log line each, in a fixed format
//! (`tenant_guard: action denied, not in the audit log (<why>): <json>`): never lost silently.
//! The writer overrides the settings that could stop it or hold it (read-only and
//! serializable defaults, `lock_timeout` on the tenant's chain head, the search path) and may
//! connect to a database that does not allow connections.

use crate::audit::trigger::{AuditRow, Statement, StatementMemory};
use crate::audit::{write, Op};
use crate::catalog;
use crate::context;
use crate::jsonb::ObjectBuilder;
use crate::privilege;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` without recording denials (`assert_tenant_isolation`'s probes, which are rolled
/// back; an error inside `f` aborts the transaction, which ends the probe too).
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    crate::scoped::while_set(&QUIET, f)
}

/// What was denied, to whom (the rest of the context is read here).
pub struct Denied<'a> {
    pub tenant: Option<&'a str>,
    pub role: Option<&'a str>,
    pub action: &'a str,
    pub resource: Option<&'a str>,
    pub reason: &'a str,
    pub rule: Option<i64>,
}

/// This backend's writer in flight.
struct InFlight {
    /// Allocated in TopMemoryContext; freed once the writer stopped.
    worker: *mut pg_sys::BackgroundWorkerHandle,
    segment: pg_sys::dsm_handle,
    /// The segment's tag: a handle alone may name a recycled segment.
    tag: u64,
    payload: String,
}

thread_local! {
    static IN_FLIGHT: RefCell<Option<InFlight>> = const { RefCell::new(None) };
    /// In the writer: the denial it holds, until written.
    static HELD: RefCell<Option<String>> = const { RefCell::new(None) };
    static WRITTEN: Cell<bool> = const { Cell::new(false) };
}

/// How long a denial waits for the backend's previous writer, in milliseconds.
const WAIT_MS: i64 = 1000;
/// Writers running at once in the cluster, at most.
const MAX_WRITERS: i64 = 4;
const WORKER_TYPE: &str = "tenant_guard denial writer";
/// The segment's header: the tag and the payload's length.
const HEADER: usize = 2 * std::mem::size_of::<u64>();

/// The server log line of a denial that is not in the audit log.
fn log_instead(why: &str, payload: &str) {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        format!("tenant_guard: action denied, not in the audit log ({why}): {payload}"),
        "tenant_guard",
    )
    .report(pgrx::PgLogLevel::LOG);
}

/// Record a denial: hand it to a background worker, or (when none can take it) log it.
pub fn record(denied: &Denied<'_>) {
    if QUIET.get() {
        // A probe of assert_tenant_isolation: it leaves no trace, and its denials are its own.
        return;
    }
    let payload = json!({
        "occurred_at": unsafe { pg_sys::GetCurrentStatementStartTimestamp() },
        "tenant": denied.tenant,
        "user": context::current_user_id(),
        "role": denied.role,
        "trace": context::current_trace_id(),
        "db_role": catalog::current_role_name(),
        "action": denied.action,
        "resource": denied.resource,
        "reason": denied.reason,
        "rule": denied.rule,
    })
    .to_string();
    if denied.tenant.is_none() {
        // Anyone can ask without a context: that costs a log line, not a worker.
        return log_instead("no tenant context", &payload);
    }
    // A cancel while waiting for the previous writer must not drop this denial unlogged.
    let outcome = PgTryBuilder::new(|| unsafe { hand_over(&payload) })
        .catch_others(|caught| {
            log_instead("interrupted", &payload);
            caught.rethrow()
        })
        .execute();
    if let Err(why) = outcome {
        log_instead(why, &payload);
    }
}

/// Whether this backend's previous writer is done, waiting up to `WAIT_MS` for it (it stays in
/// `IN_FLIGHT` while it runs, also if the wait is interrupted). A writer that stopped without
/// reading its segment (it never started) gets its denial logged.
unsafe fn previous_done() -> bool {
    let Some((worker, segment, tag)) = IN_FLIGHT.with(|slot| {
        slot.borrow()
            .as_ref()
            .map(|previous| (previous.worker, previous.segment, previous.tag))
    }) else {
        return true;
    };
    let deadline = pg_sys::GetCurrentTimestamp() + WAIT_MS * 1000;
    loop {
        let mut pid: pg_sys::pid_t = 0;
        let status = pg_sys::GetBackgroundWorkerPid(worker, &mut pid);
        if matches!(
            status,
            pg_sys::BgwHandleStatus::BGWH_STOPPED | pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED
        ) {
            break;
        }
        let left = (deadline - pg_sys::GetCurrentTimestamp()) / 1000;
        if left <= 0 {
            return false;
        }
        // The postmaster sets our latch when the writer stops (bgw_notify_pid).
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            left.min(100) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        pg_sys::check_for_interrupts!();
    }
    let previous = IN_FLIGHT
        .with(|slot| slot.borrow_mut().take())
        .expect("checked above");
    let unread = pg_sys::dsm_attach(segment);
    if !unread.is_null() {
        if segment_tag(unread) == tag {
            pg_sys::dsm_unpin_segment(segment);
            log_instead("its writer did not start", &previous.payload);
        }
        pg_sys::dsm_detach(unread);
    }
    pg_sys::pfree(worker.cast());
    true
}

unsafe fn segment_tag(segment: *mut pg_sys::dsm_segment) -> u64 {
    let mut tag = [0u8; 8];
    std::ptr::copy_nonoverlapping(
        pg_sys::dsm_segment_address(segment) as *const u8,
        tag.as_mut_ptr(),
        8,
    );
    u64::from_ne_bytes(tag)
}

/// Writers running in the cluster (read as the extension owner, who sees every backend).
fn writers_running() -> i64 {
    privilege::as_extension_owner(|| {
        catalog::select_value::<i64>(
            "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_get_activity(NULL)
              WHERE backend_type OPERATOR(pg_catalog.=) $1",
            &[WORKER_TYPE.into()],
        )
    })
    .unwrap_or(0)
}

unsafe fn hand_over(payload: &str) -> Result<(), &'static str> {
    if pg_sys::RecoveryInProgress() {
        return Err("hot standby");
    }
    if !previous_done() {
        return Err("the previous denial of this session is still being written");
    }
    if writers_running() >= MAX_WRITERS {
        return Err("the denial writers are busy");
    }
    let extra = format!(
        "{} {}",
        pg_sys::MyDatabaseId.to_u32(),
        catalog::extension_owner().to_u32()
    );
    let mut tag_bytes = [0u8; 8];
    if !pg_sys::pg_strong_random(tag_bytes.as_mut_ptr().cast(), tag_bytes.len()) {
        return Err("no random tag");
    }
    let tag = u64::from_ne_bytes(tag_bytes);
    let builder = BackgroundWorkerBuilder::new(WORKER_TYPE)
        .set_type(WORKER_TYPE)
        .set_library("tenant_guard")
        .set_function("tenant_guard_denial_writer")
        .set_extra(&extra)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .set_notify_pid(pg_sys::MyProcPid);
    let bytes = payload.as_bytes();
    let segment = pg_sys::dsm_create(
        HEADER + bytes.len(),
        pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32,
    );
    if segment.is_null() {
        return Err("no shared memory segment");
    }
    let address = pg_sys::dsm_segment_address(segment) as *mut u8;
    std::ptr::copy_nonoverlapping(tag.to_ne_bytes().as_ptr(), address, 8);
    std::ptr::copy_nonoverlapping(
        (bytes.len() as u64).to_ne_bytes().as_ptr(),
        address.add(8),
        8,
    );
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), address.add(HEADER), bytes.len());
    let handle = pg_sys::dsm_segment_handle(segment);
    let mut worker: pg_sys::BackgroundWorker =
        (&builder.set_argument(Some(pg_sys::Datum::from(handle)))).into();
    // Outlives this backend's mapping until the worker unpins it.
    pg_sys::dsm_pin_segment(segment);
    let mut registered: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
    let launched = {
        let _top = crate::memory::InContext::switch(pg_sys::TopMemoryContext);
        pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut registered)
    };
    let result = if launched {
        IN_FLIGHT.with(|slot| {
            *slot.borrow_mut() = Some(InFlight {
                worker: registered,
                segment: handle,
                tag,
                payload: payload.to_string(),
            })
        });
        Ok(())
    } else {
        pg_sys::dsm_unpin_segment(handle);
        Err("no background worker slot")
    };
    pg_sys::dsm_detach(segment);
    result
}

/// Read the denial out of its segment and unpin it (before anything can fail).
unsafe fn take_payload(handle: pg_sys::dsm_handle) -> Option<String> {
    let segment = pg_sys::dsm_attach(handle);
    if segment.is_null() {
        return None;
    }
    let address = pg_sys::dsm_segment_address(segment) as *const u8;
    let mut length = [0u8; 8];
    std::ptr::copy_nonoverlapping(address.add(8), length.as_mut_ptr(), 8);
    let bytes =
        std::slice::from_raw_parts(address.add(HEADER), u64::from_ne_bytes(length) as usize);
    let payload = String::from_utf8_lossy(bytes).into_owned();
    pg_sys::dsm_unpin_segment(handle);
    pg_sys::dsm_detach(segment);
    Some(payload)
}

/// On the writer's exit: log the denial it held unless it wrote it (a FATAL while connecting,
/// an error at commit).
#[pg_guard]
unsafe extern "C-unwind" fn log_if_unwritten(_code: i32, _arg: pg_sys::Datum) {
    if !WRITTEN.get() {
        if let Some(payload) = HELD.with(|held| held.borrow_mut().take()) {
            log_instead("the writer failed", &payload);
        }
    }
}

/// The worker: take the denial, connect as the extension owner, write the audit row.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn tenant_guard_denial_writer(argument: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let Some(payload) = (unsafe { take_payload(argument.value() as pg_sys::dsm_handle) }) else {
        return log_instead("its segment was gone", "{}");
    };
    HELD.with(|held| *held.borrow_mut() = Some(payload.clone()));
    unsafe { pg_sys::before_shmem_exit(Some(log_if_unwritten), pg_sys::Datum::from(0)) };
    let extra: Vec<u32> = BackgroundWorker::get_extra()
        .split(' ')
        .filter_map(|n| n.parse().ok())
        .collect();
    let [database, owner] = extra.as_slice() else {
        return;
    };
    // A database's or role's defaults must not stop the writer or change what it runs, nor a
    // lock (the tenant's chain head, held by a transaction left open) hold it for long.
    for (name, value) in [
        (c"default_transaction_read_only", c"off"),
        (c"default_transaction_isolation", c"read committed"),
        (c"lock_timeout", c"5s"),
        (c"search_path", c"pg_catalog, pg_temp"),
    ] {
        unsafe {
            pg_sys::SetConfigOption(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            )
        };
    }
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnectionByOid(
            pg_sys::Oid::from(*database),
            pg_sys::Oid::from(*owner),
            pg_sys::BGWORKER_BYPASS_ALLOWCONN,
        )
    };
    let Ok(denial) = serde_json::from_str::<Value>(&payload) else {
        return;
    };
    let denial = std::panic::AssertUnwindSafe(&denial);
    BackgroundWorker::transaction(move || write_row(&denial));
    WRITTEN.set(true);
}

fn write_row(denial: &Value) {
    let text = |key: &str| denial.get(key).and_then(Value::as_str).map(str::to_string);
    let table_oid = unsafe {
        let schema = pg_sys::get_namespace_oid(c"tenant_guard".as_ptr(), false);
        pg_sys::get_relname_relid(c"actions".as_ptr(), schema)
    };
    let statement = Statement {
        occurred_at: denial
            .get("occurred_at")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| unsafe { pg_sys::GetCurrentTimestamp() }),
        txid: unsafe { pg_sys::GetTopFullTransactionId().value },
        context_tenant: text("tenant"),
        user: text("user"),
        role: text("role"),
        trace: text("trace"),
        db_role: text("db_role").unwrap_or_default(),
        schema: "tenant_guard".to_string(),
        table: "actions".to_string(),
        table_oid,
        op: Op::Denied,
    };
    let memory = StatementMemory::new();
    let (action, resource, reason) = (text("action"), text("resource"), text("reason"));
    let rule = denial
        .get("rule")
        .and_then(Value::as_i64)
        .map(|id| id.to_string());
    let row = {
        let _in = crate::memory::InContext::switch(memory.statement.0);
        AuditRow {
            tenant: statement.context_tenant.clone(),
            pk: Some(
                ObjectBuilder::new()
                    .text("action", action.as_deref())
                    .finish()
                    .0,
            ),
            old: None,
            new: Some(
                ObjectBuilder::new()
                    .text("action", action.as_deref())
                    .text("resource", resource.as_deref())
                    .text("reason", reason.as_deref())
                    .text("rule", rule.as_deref())
                    .finish()
                    .0,
            ),
        }
    };
    write::write_rows(true, &statement, &[row], &memory);
}
