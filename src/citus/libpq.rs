//! A worker's one question to the coordinator (see `origin`), over libpq.
//!
//! libpq is Citus's own dependency (citus.so links libpq.so.5), so it is found at run time: a
//! server without Citus never loads it. The worker connects as Citus connects between nodes:
//! to the coordinator of `pg_dist_node`, as the current role, to this database, with
//! `citus.node_conninfo` and the role's `pg_dist_authinfo` entry. The connection is kept for
//! the backend's life (Citus closes its own at the end of every transaction in a backend that
//! serves the coordinator). A question waits at most 5 seconds to connect and 5 to be answered.

use super::ffi;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

extern "C" {
    fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
}
const RTLD_NOW: c_int = 2;
const CONNECTION_OK: c_int = 0;
const PGRES_TUPLES_OK: c_int = 2;

type PgConn = *mut c_void;
type PgResult = *mut c_void;

struct Libpq {
    connectdb: unsafe extern "C" fn(*const c_char) -> PgConn,
    status: unsafe extern "C" fn(PgConn) -> c_int,
    error_message: unsafe extern "C" fn(PgConn) -> *const c_char,
    finish: unsafe extern "C" fn(PgConn),
    exec: unsafe extern "C" fn(PgConn, *const c_char) -> PgResult,
    result_status: unsafe extern "C" fn(PgResult) -> c_int,
    result_error_message: unsafe extern "C" fn(PgResult) -> *const c_char,
    ntuples: unsafe extern "C" fn(PgResult) -> c_int,
    getisnull: unsafe extern "C" fn(PgResult, c_int, c_int) -> c_int,
    getvalue: unsafe extern "C" fn(PgResult, c_int, c_int) -> *const c_char,
    clear: unsafe extern "C" fn(PgResult),
}

static LIBPQ: OnceLock<Option<Libpq>> = OnceLock::new();

// Each symbol is transmuted to the type of the field it fills, declared once in `Libpq`.
#[allow(clippy::missing_transmute_annotations)]
fn libpq() -> Option<&'static Libpq> {
    LIBPQ
        .get_or_init(|| unsafe {
            let handle = dlopen(c"libpq.so.5".as_ptr(), RTLD_NOW);
            if handle.is_null() {
                return None;
            }
            macro_rules! symbol {
                ($name:literal) => {{
                    let symbol = dlsym(handle, $name.as_ptr());
                    if symbol.is_null() {
                        return None;
                    }
                    std::mem::transmute::<*mut c_void, _>(symbol)
                }};
            }
            Some(Libpq {
                connectdb: symbol!(c"PQconnectdb"),
                status: symbol!(c"PQstatus"),
                error_message: symbol!(c"PQerrorMessage"),
                finish: symbol!(c"PQfinish"),
                exec: symbol!(c"PQexec"),
                result_status: symbol!(c"PQresultStatus"),
                result_error_message: symbol!(c"PQresultErrorMessage"),
                ntuples: symbol!(c"PQntuples"),
                getisnull: symbol!(c"PQgetisnull"),
                getvalue: symbol!(c"PQgetvalue"),
                clear: symbol!(c"PQclear"),
            })
        })
        .as_ref()
}

thread_local! {
    /// The connection to the coordinator, with the connection string it was opened with.
    static CONNECTION: RefCell<Option<(String, usize)>> = const { RefCell::new(None) };
}

thread_local! {
    static CLOSE_AT_EXIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// At the backend's exit: say goodbye to the coordinator instead of dropping the connection
/// (which it would log as an error).
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn close_at_exit(_code: c_int, _arg: pg_sys::Datum) {
    if let (Some(libpq), Some((_, connection))) = (
        libpq(),
        CONNECTION.with(|cached| cached.borrow_mut().take()),
    ) {
        unsafe { (libpq.finish)(connection as PgConn) };
    }
}

fn text(pointer: *const c_char) -> String {
    if pointer.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(pointer) }
        .to_string_lossy()
        .trim()
        .to_string()
}

/// A value of a connection string, quoted.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn setting(name: &CStr) -> String {
    let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    if value.is_null() {
        String::new()
    } else {
        text(value)
    }
}

/// How this backend connects to the coordinator, as Citus would.
fn connection_string() -> Result<String, String> {
    let (host, port) = ffi::coordinator().ok_or("pg_dist_node names no coordinator")?;
    let user = unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false);
        CStr::from_ptr(name).to_string_lossy().into_owned()
    };
    let database = super::carrier::database();
    let authinfo = ffi::authinfo(&host, port, &user);
    // The caller's keywords come last: libpq takes the last of a repeated keyword.
    Ok(format!(
        "{} {} host={} port={port} dbname={} user={} connect_timeout=5 tcp_user_timeout=10000 \
         keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3 \
         application_name='tenant_guard carrier check' \
         options='-c statement_timeout=5000 -c idle_session_timeout=0 \
         -c idle_in_transaction_session_timeout=0'",
        setting(c"citus.node_conninfo"),
        authinfo,
        quoted(&host),
        quoted(&database),
        quoted(&user),
    ))
}

/// Run `query` (one row, one column) on the coordinator: its value, or NULL; or why not. A
/// kept connection the coordinator closed meanwhile (a restart, a terminated backend) is
/// opened again, once.
pub fn ask_coordinator(query: &CStr) -> Result<Option<String>, String> {
    let libpq = libpq().ok_or("libpq.so.5 (Citus's client library) is missing")?;
    let conninfo = connection_string()?;
    let mut answer = Err(String::new());
    for _ in 0..2 {
        let connection = connection(libpq, &conninfo)?;
        answer = unsafe {
            let result = (libpq.exec)(connection, query.as_ptr());
            let answer = if (libpq.result_status)(result) != PGRES_TUPLES_OK {
                Err(text((libpq.result_error_message)(result)))
            } else if (libpq.ntuples)(result) != 1 || (libpq.getisnull)(result, 0, 0) != 0 {
                Ok(None)
            } else {
                Ok(Some(text((libpq.getvalue)(result, 0, 0))))
            };
            (libpq.clear)(result);
            answer
        };
        if answer.is_ok() || unsafe { (libpq.status)(connection) } == CONNECTION_OK {
            break;
        }
    }
    answer.map_err(|message| format!("it could not answer: {message}"))
}

/// The kept connection to the coordinator, opened when there is none or it broke.
fn connection(libpq: &Libpq, conninfo: &str) -> Result<PgConn, String> {
    CONNECTION.with(|cached| {
        let mut cached = cached.borrow_mut();
        if let Some((info, connection)) = cached.as_ref() {
            let connection = *connection as PgConn;
            if info == conninfo && unsafe { (libpq.status)(connection) } == CONNECTION_OK {
                return Ok(connection);
            }
            unsafe { (libpq.finish)(connection) };
            *cached = None;
        }
        let info = CString::new(conninfo).map_err(|_| "a NUL byte in a connection string")?;
        let connection = unsafe { (libpq.connectdb)(info.as_ptr()) };
        if connection.is_null() {
            return Err("libpq is out of memory".into());
        }
        if unsafe { (libpq.status)(connection) } != CONNECTION_OK {
            let message = text(unsafe { (libpq.error_message)(connection) });
            unsafe { (libpq.finish)(connection) };
            return Err(format!("cannot connect to it: {message}"));
        }
        if !CLOSE_AT_EXIT.replace(true) {
            unsafe { pg_sys::on_proc_exit(Some(close_at_exit), pg_sys::Datum::from(0)) };
        }
        *cached = Some((conninfo.to_string(), connection as usize));
        Ok(connection)
    })
}
