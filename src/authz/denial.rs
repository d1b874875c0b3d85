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
//! The denial travels in a dynamic shared memory segment, pinned until the worker has read it.
//! A backend keeps at most one writer in flight: the next denial waits up to a second for the
//! previous writer (which throttles a client that provokes denials in a loop). When no worker
//! can be started (`max_worker_processes` reached, hot standby), the denial goes to the server
//! log instead, in a fixed format, and is never lost silently.

use crate::audit::trigger::{AuditRow, Statement, StatementMemory};
use crate::audit::{write, Op};
use crate::catalog;
use crate::context;
use crate::error;
use crate::jsonb::ObjectBuilder;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    DynamicBackgroundWorker, SignalWakeFlags,
};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::cell::RefCell;

/// What was denied, to whom (the rest of the context is read here).
pub struct Denied<'a> {
    pub tenant: Option<&'a str>,
    pub role: Option<&'a str>,
    pub action: &'a str,
    pub resource: Option<&'a str>,
    pub reason: &'a str,
    pub rule: Option<i64>,
}

thread_local! {
    /// This backend's writer in flight (its handle lives in TopMemoryContext).
    static IN_FLIGHT: RefCell<Option<DynamicBackgroundWorker>> = const { RefCell::new(None) };
}

/// How long a denial waits for the backend's previous writer, in milliseconds.
const WAIT_MS: u32 = 1000;

/// Record a denial: hand it to a background worker, or (when none can start) log it.
pub fn record(denied: &Denied<'_>) {
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
    if let Err(why) = unsafe { hand_over(&payload) } {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("tenant_guard: action denied, not in the audit log ({why}): {payload}"),
            "tenant_guard",
        )
        .report(pgrx::PgLogLevel::LOG);
    }
}

fn wait_for_previous() {
    IN_FLIGHT.with(|slot| {
        let mut slot = slot.borrow_mut();
        if let Some(worker) = slot.as_ref() {
            for _ in 0..WAIT_MS {
                match worker.pid() {
                    Err(BackgroundWorkerStatus::Stopped)
                    | Err(BackgroundWorkerStatus::PostmasterDied) => break,
                    _ => unsafe {
                        pg_sys::pg_usleep(1000);
                        pg_sys::check_for_interrupts!();
                    },
                }
            }
        }
        *slot = None;
    });
}

unsafe fn hand_over(payload: &str) -> Result<(), &'static str> {
    if pg_sys::RecoveryInProgress() {
        return Err("hot standby");
    }
    wait_for_previous();
    let bytes = payload.as_bytes();
    let segment = pg_sys::dsm_create(
        std::mem::size_of::<u64>() + bytes.len(),
        pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32,
    );
    if segment.is_null() {
        return Err("no shared memory segment");
    }
    let address = pg_sys::dsm_segment_address(segment) as *mut u8;
    std::ptr::copy_nonoverlapping(
        (bytes.len() as u64).to_ne_bytes().as_ptr(),
        address,
        std::mem::size_of::<u64>(),
    );
    std::ptr::copy_nonoverlapping(
        bytes.as_ptr(),
        address.add(std::mem::size_of::<u64>()),
        bytes.len(),
    );
    let handle = pg_sys::dsm_segment_handle(segment);
    // Outlives this backend's mapping until the worker unpins it.
    pg_sys::dsm_pin_segment(segment);
    let extra = format!(
        "{} {}",
        pg_sys::MyDatabaseId.to_u32(),
        catalog::extension_owner().to_u32()
    );
    let launched = {
        let _top = crate::memory::InContext::switch(pg_sys::TopMemoryContext);
        BackgroundWorkerBuilder::new("tenant_guard denial writer")
            .set_type("tenant_guard denial writer")
            .set_library("tenant_guard")
            .set_function("tenant_guard_denial_writer")
            .set_argument(Some(pg_sys::Datum::from(handle)))
            .set_extra(&extra)
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .set_notify_pid(pg_sys::MyProcPid)
            .load_dynamic()
    };
    let result = match launched {
        Ok(worker) => {
            IN_FLIGHT.with(|slot| *slot.borrow_mut() = Some(worker));
            Ok(())
        }
        Err(_) => {
            pg_sys::dsm_unpin_segment(handle);
            Err("no background worker slot")
        }
    };
    pg_sys::dsm_detach(segment);
    result
}

/// The worker: read the denial, unpin its segment, write the audit row.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn tenant_guard_denial_writer(argument: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let extra: Vec<u32> = BackgroundWorker::get_extra()
        .split(' ')
        .filter_map(|n| n.parse().ok())
        .collect();
    let [database, owner] = extra.as_slice() else {
        error::raise(error::internal(
            "the denial writer was started without its database",
        ));
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(pg_sys::Oid::from(*database)),
        Some(pg_sys::Oid::from(*owner)),
    );
    let handle = argument.value() as pg_sys::dsm_handle;
    let payload = unsafe {
        let segment = pg_sys::dsm_attach(handle);
        if segment.is_null() {
            error::raise(error::internal("the denial to record is gone"));
        }
        let address = pg_sys::dsm_segment_address(segment) as *const u8;
        let mut length = [0u8; 8];
        std::ptr::copy_nonoverlapping(address, length.as_mut_ptr(), 8);
        let bytes = std::slice::from_raw_parts(address.add(8), u64::from_ne_bytes(length) as usize);
        let payload = String::from_utf8_lossy(bytes).into_owned();
        pg_sys::dsm_unpin_segment(handle);
        pg_sys::dsm_detach(segment);
        payload
    };
    let denial: Value = serde_json::from_str(&payload)
        .unwrap_or_else(|e| error::raise(error::internal(format!("malformed denial: {e}"))));
    BackgroundWorker::transaction(|| write_row(&denial));
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
    let row = memory.scratch(|keep| {
        let _in = crate::memory::InContext::switch(keep);
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
    });
    write::write(true, &statement, &[row], &memory);
}
