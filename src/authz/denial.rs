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
//! The denial travels in a dynamic shared memory segment, pinned until the worker has read it
//! (the worker reads and unpins it before anything else, so a worker that fails to connect
//! leaks nothing). A backend keeps at most one writer in flight: the next denial waits up to a
//! second for it, which throttles a client that provokes denials in a loop; a writer still busy
//! after that, a segment no writer consumed, a denial without a tenant, a standby, or no free
//! worker slot send the denial to the server log instead, in a fixed format
//! (`tenant_guard: action denied, not in the audit log (<why>): <json>`): never lost silently,
//! and never more than one worker per backend. The writer sets its own `lock_timeout` and
//! `default_transaction_read_only`, so a database's settings or a transaction idling on the
//! tenant's chain head cannot stop it or hold it for long; if it fails, it logs the denial the
//! same way.

use crate::audit::trigger::{AuditRow, Statement, StatementMemory};
use crate::audit::{write, Op};
use crate::catalog;
use crate::context;
use crate::jsonb::ObjectBuilder;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
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

/// This backend's writer in flight.
struct InFlight {
    /// Allocated in TopMemoryContext; freed once the writer stopped.
    worker: *mut pg_sys::BackgroundWorkerHandle,
    segment: pg_sys::dsm_handle,
    payload: String,
}

thread_local! {
    static IN_FLIGHT: RefCell<Option<InFlight>> = const { RefCell::new(None) };
}

/// How long a denial waits for the backend's previous writer, in milliseconds.
const WAIT_MS: u32 = 1000;

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
    if let Err(why) = unsafe { hand_over(payload.clone()) } {
        log_instead(why, &payload);
    }
}

/// Whether this backend's previous writer is done (waiting up to `WAIT_MS` for it). A writer
/// that stopped without consuming its segment (it never started) gets its denial logged.
unsafe fn previous_done() -> bool {
    let Some(previous) = IN_FLIGHT.with(|slot| slot.borrow_mut().take()) else {
        return true;
    };
    let mut pid: pg_sys::pid_t = 0;
    let mut stopped = false;
    for _ in 0..WAIT_MS {
        let status = pg_sys::GetBackgroundWorkerPid(previous.worker, &mut pid);
        if matches!(
            status,
            pg_sys::BgwHandleStatus::BGWH_STOPPED | pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED
        ) {
            stopped = true;
            break;
        }
        pg_sys::pg_usleep(1000);
        pg_sys::check_for_interrupts!();
    }
    if !stopped {
        IN_FLIGHT.with(|slot| *slot.borrow_mut() = Some(previous));
        return false;
    }
    let unread = pg_sys::dsm_attach(previous.segment);
    if !unread.is_null() {
        pg_sys::dsm_unpin_segment(previous.segment);
        pg_sys::dsm_detach(unread);
        log_instead("its writer did not start", &previous.payload);
    }
    pg_sys::pfree(previous.worker.cast());
    true
}

unsafe fn hand_over(payload: String) -> Result<(), &'static str> {
    if pg_sys::RecoveryInProgress() {
        return Err("hot standby");
    }
    if !previous_done() {
        return Err("the previous denial of this session is still being written");
    }
    let extra = format!(
        "{} {}",
        pg_sys::MyDatabaseId.to_u32(),
        catalog::extension_owner().to_u32()
    );
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
    let builder = BackgroundWorkerBuilder::new("tenant_guard denial writer")
        .set_type("tenant_guard denial writer")
        .set_library("tenant_guard")
        .set_function("tenant_guard_denial_writer")
        .set_argument(Some(pg_sys::Datum::from(handle)))
        .set_extra(&extra)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .set_notify_pid(pg_sys::MyProcPid);
    let mut worker: pg_sys::BackgroundWorker = (&builder).into();
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
                payload,
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
    std::ptr::copy_nonoverlapping(address, length.as_mut_ptr(), 8);
    let bytes = std::slice::from_raw_parts(address.add(8), u64::from_ne_bytes(length) as usize);
    let payload = String::from_utf8_lossy(bytes).into_owned();
    pg_sys::dsm_unpin_segment(handle);
    pg_sys::dsm_detach(segment);
    Some(payload)
}

/// The worker: take the denial, connect as the extension owner, write the audit row.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn tenant_guard_denial_writer(argument: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let Some(payload) = (unsafe { take_payload(argument.value() as pg_sys::dsm_handle) }) else {
        return log_instead("its segment was gone", "{}");
    };
    let extra: Vec<u32> = BackgroundWorker::get_extra()
        .split(' ')
        .filter_map(|n| n.parse().ok())
        .collect();
    let [database, owner] = extra.as_slice() else {
        return log_instead("the writer was started without its database", &payload);
    };
    // A database's or role's defaults must not stop the writer, nor a lock (the tenant's chain
    // head, held by a transaction left open) hold it for long.
    for (name, value) in [
        (c"default_transaction_read_only", c"off"),
        (c"lock_timeout", c"5s"),
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
    BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(pg_sys::Oid::from(*database)),
        Some(pg_sys::Oid::from(*owner)),
    );
    let denial: Value = match serde_json::from_str(&payload) {
        Ok(denial) => denial,
        Err(_) => return log_instead("malformed", &payload),
    };
    let (denial, logged) = (
        std::panic::AssertUnwindSafe(&denial),
        std::panic::AssertUnwindSafe(&payload),
    );
    BackgroundWorker::transaction(move || {
        PgTryBuilder::new(|| write_row(&denial))
            .catch_others(|caught| {
                log_instead("the writer failed", &logged);
                caught.rethrow()
            })
            .execute()
    });
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
