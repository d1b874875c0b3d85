//! User errors and their SQLSTATEs (DESIGN.md section 4).
//!
//! Every user error is an `ErrorReport` with a SQLSTATE, a message that names the object, and a
//! hint with the fix. Functions return `Result<T, ErrorReport>`; pgrx raises the report as is.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

pub type Result<T> = std::result::Result<T, ErrorReport>;

fn report(code: PgSqlErrorCode, message: String, hint: Option<String>) -> ErrorReport {
    let report = ErrorReport::new(code, message, "tenant_guard");
    match hint {
        Some(hint) => report.set_hint(hint),
        None => report,
    }
}

/// 42501: missing or forbidden context, or missing privilege.
pub fn forbidden(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        message.into(),
        Some(hint.into()),
    )
}

/// 22023: malformed argument.
pub fn malformed(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message.into(),
        Some(hint.into()),
    )
}

/// P0004: an assertion of a test helper failed (`assert_tenant_isolation`, `assert_no_findings`).
pub fn assertion_failed(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_ASSERT_FAILURE,
        message.into(),
        Some(hint.into()),
    )
}

/// 42P01: the table does not exist.
pub fn undefined_table(message: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
        message.into(),
        None,
    )
}

/// 42703: the column does not exist.
pub fn undefined_column(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
        message.into(),
        Some(hint.into()),
    )
}

/// 42704: the object (a tenant, a member, a key) does not exist.
pub fn undefined_object(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        message.into(),
        Some(hint.into()),
    )
}

/// 42710: the object (a key id) exists already.
pub fn duplicate_object(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
        message.into(),
        Some(hint.into()),
    )
}

/// 28000: a credential (a token) that does not verify.
pub fn invalid_credential(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        message.into(),
        Some(hint.into()),
    )
}

/// 28P01: an API key that does not verify (one message for every reason).
pub fn invalid_secret(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_INVALID_PASSWORD,
        message.into(),
        Some(hint.into()),
    )
}

/// 3F000: the schema does not exist.
pub fn undefined_schema(message: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
        message.into(),
        None,
    )
}

/// 55000: the call is not allowed in the current state (e.g. switching tenant mid-transaction).
pub fn invalid_state(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        message.into(),
        Some(hint.into()),
    )
}

/// 0A000: a combination tenant_guard does not support (yet).
pub fn not_supported(message: impl Into<String>, hint: impl Into<String>) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        message.into(),
        Some(hint.into()),
    )
}

/// XX000: an internal call failed in a way no user input explains (a bug, not bad input).
pub fn internal(error: impl std::fmt::Display) -> ErrorReport {
    report(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("tenant_guard: {error}"),
        None,
    )
}

/// Raise a report from code that cannot return a `Result` (triggers, event triggers).
pub fn raise(report: ErrorReport) -> ! {
    report.report(pgrx::PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Emit a WARNING with a SQLSTATE and a hint.
pub fn warn(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) {
    report(code, message.into(), Some(hint.into())).report(pgrx::PgLogLevel::WARNING);
}

/// Emit a NOTICE.
pub fn notice(message: impl Into<String>) {
    report(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        message.into(),
        None,
    )
    .report(pgrx::PgLogLevel::NOTICE);
}
