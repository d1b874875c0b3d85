//! A worker's one question to the coordinator (see `origin`), over libpq.
//!
//! libpq is Citus's own dependency (citus.so links libpq.so.5), so it is found at run time: a
//! server without Citus never loads it. The worker connects as Citus connects between nodes:
//! to the coordinator of `pg_dist_node`, as the current role, to this database, with
//! `citus.node_conninfo` and the role's `pg_dist_authinfo` entry. The connection is kept for
//! the backend's life (Citus closes its own at the end of every transaction in a backend that
//! serves the coordinator). Connecting and asking never block: the backend waits on its latch
//! and the socket, answers interrupts (a cancel, a statement timeout, a terminate), and gives up
//! after 5 seconds to connect and 5 to be answered (a kept connection the coordinator closed
//! costs one more try; the host name's lookup, libpq's `getaddrinfo`, cannot be interrupted:
//! name the nodes by address where that matters).

use super::ffi;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

extern "C" {
    fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
}
const RTLD_NOW: c_int = 2;
const CONNECTION_BAD: c_int = 1;
const PGRES_TUPLES_OK: c_int = 2;
const PGRES_FATAL_ERROR: c_int = 7;
const PGRES_POLLING_FAILED: c_int = 0;
const PGRES_POLLING_READING: c_int = 1;
const PGRES_POLLING_WRITING: c_int = 2;
const PGRES_POLLING_OK: c_int = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

type PgConn = *mut c_void;
type PgResult = *mut c_void;

struct Libpq {
    connect_start: unsafe extern "C" fn(*const c_char) -> PgConn,
    connect_poll: unsafe extern "C" fn(PgConn) -> c_int,
    socket: unsafe extern "C" fn(PgConn) -> c_int,
    status: unsafe extern "C" fn(PgConn) -> c_int,
    error_message: unsafe extern "C" fn(PgConn) -> *const c_char,
    finish: unsafe extern "C" fn(PgConn),
    set_nonblocking: unsafe extern "C" fn(PgConn, c_int) -> c_int,
    send_query: unsafe extern "C" fn(PgConn, *const c_char) -> c_int,
    flush: unsafe extern "C" fn(PgConn) -> c_int,
    consume_input: unsafe extern "C" fn(PgConn) -> c_int,
    is_busy: unsafe extern "C" fn(PgConn) -> c_int,
    get_result: unsafe extern "C" fn(PgConn) -> PgResult,
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
                connect_start: symbol!(c"PQconnectStart"),
                connect_poll: symbol!(c"PQconnectPoll"),
                socket: symbol!(c"PQsocket"),
                status: symbol!(c"PQstatus"),
                error_message: symbol!(c"PQerrorMessage"),
                finish: symbol!(c"PQfinish"),
                set_nonblocking: symbol!(c"PQsetnonblocking"),
                send_query: symbol!(c"PQsendQuery"),
                flush: symbol!(c"PQflush"),
                consume_input: symbol!(c"PQconsumeInput"),
                is_busy: symbol!(c"PQisBusy"),
                get_result: symbol!(c"PQgetResult"),
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

/// libpq's message (or value) without its trailing newline.
fn text(pointer: *const c_char) -> String {
    unsafe { crate::catalog::c_string(pointer) }
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A value of a connection string, quoted.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// How this backend connects to the coordinator, as Citus would.
fn connection_string() -> Result<String, String> {
    let (host, port) = ffi::coordinator().ok_or("pg_dist_node names no coordinator")?;
    let user = crate::catalog::current_role_name();
    let database = crate::catalog::current_database_name();
    let authinfo = ffi::authinfo(&host, port, &user);
    // The caller's keywords come last: libpq takes the last of a repeated keyword.
    Ok(format!(
        "{} {} host={} port={port} dbname={} user={} tcp_user_timeout=10000 \
         keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3 \
         application_name='tenant_guard carrier check' \
         options='-c statement_timeout=5000 -c idle_session_timeout=0 \
         -c idle_in_transaction_session_timeout=0'",
        crate::gucs::value_of(c"citus.node_conninfo"),
        authinfo,
        quoted(&host),
        quoted(&database),
        quoted(&user),
    ))
}

/// A connection this function owns: closed when dropped (an error, an interrupt), unless it
/// is kept.
struct Owned<'a>(&'a Libpq, PgConn);

impl Owned<'_> {
    fn keep(self, conninfo: &str) {
        if !CLOSE_AT_EXIT.replace(true) {
            unsafe { pg_sys::on_proc_exit(Some(close_at_exit), pg_sys::Datum::from(0)) };
        }
        CONNECTION
            .with(|cached| *cached.borrow_mut() = Some((conninfo.to_string(), self.1 as usize)));
        std::mem::forget(self);
    }

    fn message(&self) -> String {
        text(unsafe { (self.0.error_message)(self.1) })
    }
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        unsafe { (self.0.finish)(self.1) };
    }
}

/// Wait until `socket` is ready for `events` or the latch is set, answering interrupts (which
/// raise); an error once `deadline` passed.
fn wait(socket: c_int, events: u32, deadline: Instant) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("no answer within 5 seconds".into());
    }
    let ready = unsafe {
        pg_sys::WaitLatchOrSocket(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | events | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                as c_int,
            socket,
            left.as_millis().max(1) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        )
    };
    if ready & pg_sys::WL_LATCH_SET as c_int != 0 {
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
    }
    pgrx::check_for_interrupts!();
    Ok(())
}

/// A new connection to the coordinator.
fn connect<'a>(libpq: &'a Libpq, conninfo: &str) -> Result<Owned<'a>, String> {
    let info = CString::new(conninfo).map_err(|_| "a NUL byte in a connection string")?;
    let connection = unsafe { (libpq.connect_start)(info.as_ptr()) };
    if connection.is_null() {
        return Err("libpq is out of memory".into());
    }
    let owned = Owned(libpq, connection);
    let deadline = Instant::now() + TIMEOUT;
    // As PQconnectStart's contract says: wait to write first.
    let mut polled = if unsafe { (libpq.status)(connection) } == CONNECTION_BAD {
        PGRES_POLLING_FAILED
    } else {
        PGRES_POLLING_WRITING
    };
    loop {
        let events = match polled {
            PGRES_POLLING_OK => break,
            PGRES_POLLING_FAILED => {
                return Err(format!("cannot connect to it: {}", owned.message()))
            }
            PGRES_POLLING_READING => pg_sys::WL_SOCKET_READABLE,
            PGRES_POLLING_WRITING => pg_sys::WL_SOCKET_WRITEABLE,
            _ => return Err(format!("cannot connect to it: {}", owned.message())),
        };
        wait(unsafe { (libpq.socket)(connection) }, events, deadline)
            .map_err(|_| "cannot connect to it within 5 seconds".to_string())?;
        polled = unsafe { (libpq.connect_poll)(connection) };
    }
    if unsafe { (libpq.set_nonblocking)(connection, 1) } != 0 {
        return Err(owned.message());
    }
    Ok(owned)
}

/// Send `query` and read its one value (or NULL).
fn ask(owned: &Owned, query: &CStr) -> Result<Option<String>, String> {
    let (libpq, connection) = (owned.0, owned.1);
    let deadline = Instant::now() + TIMEOUT;
    let socket = unsafe { (libpq.socket)(connection) };
    if unsafe { (libpq.send_query)(connection, query.as_ptr()) } == 0 {
        return Err(owned.message());
    }
    loop {
        match unsafe { (libpq.flush)(connection) } {
            0 => break,
            1 => wait(
                socket,
                pg_sys::WL_SOCKET_READABLE | pg_sys::WL_SOCKET_WRITEABLE,
                deadline,
            )?,
            _ => return Err(owned.message()),
        }
        if unsafe { (libpq.consume_input)(connection) } == 0 {
            return Err(owned.message());
        }
    }
    let mut answer = Err("no result".to_string());
    loop {
        while unsafe { (libpq.is_busy)(connection) } != 0 {
            wait(socket, pg_sys::WL_SOCKET_READABLE, deadline)?;
            if unsafe { (libpq.consume_input)(connection) } == 0 {
                return Err(owned.message());
            }
        }
        let result = unsafe { (libpq.get_result)(connection) };
        if result.is_null() {
            return answer;
        }
        unsafe {
            let status = (libpq.result_status)(result);
            answer = if status != PGRES_TUPLES_OK {
                let message = text((libpq.result_error_message)(result));
                if status != PGRES_FATAL_ERROR {
                    // Never for this SELECT; a COPY state would not end by itself.
                    (libpq.clear)(result);
                    return Err(format!("an unexpected result (status {status})"));
                }
                Err(message)
            } else if (libpq.ntuples)(result) != 1 || (libpq.getisnull)(result, 0, 0) != 0 {
                Ok(None)
            } else {
                Ok(Some(text((libpq.getvalue)(result, 0, 0))))
            };
            (libpq.clear)(result);
        }
    }
}

/// Run `query` (one row, one column) on the coordinator: its value, or NULL; or why not. A
/// kept connection the coordinator closed meanwhile (a restart, a terminated backend) is
/// opened again, once.
pub fn ask_coordinator(query: &CStr) -> Result<Option<String>, String> {
    let libpq = libpq().ok_or("libpq.so.5 (Citus's client library) is missing")?;
    let conninfo = connection_string()?;
    // Owned first: a kept connection for another connection string (another role, a reloaded
    // setting) is closed, not forgotten.
    let kept = CONNECTION
        .with(|cached| cached.borrow_mut().take())
        .map(|(info, connection)| (info, Owned(libpq, connection as PgConn)))
        .and_then(|(info, owned)| (info == conninfo).then_some(owned));
    if let Some(owned) = kept {
        if unsafe { (libpq.status)(owned.1) } != CONNECTION_BAD {
            match ask(&owned, query) {
                Ok(answer) => {
                    owned.keep(&conninfo);
                    return Ok(answer);
                }
                // An answer that is an error, or none in time: not worth a second question.
                Err(message) if unsafe { (libpq.status)(owned.1) } != CONNECTION_BAD => {
                    return Err(format!("it could not answer: {message}"));
                }
                Err(_) => {}
            }
        }
        // Closed by the coordinator: dropped here, and a new one below.
    }
    let owned = connect(libpq, &conninfo)?;
    let answer = ask(&owned, query).map_err(|message| format!("it could not answer: {message}"))?;
    owned.keep(&conninfo);
    Ok(answer)
}
