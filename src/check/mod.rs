//! The self-check: every configuration that silently defeats isolation, found in the catalogs
//! and the registry (never in the text of a policy or a function body), each with the SQL that
//! makes it go away.
//!
//! The catalog rules are queries in `sql/check/`; the rules that compare tables with what
//! tenant_guard generates (`drift`), the key rules (`keys`) and the policy rules, which read the
//! policies' expression trees (`policies`), are here. `isolation` proves a table's isolation by
//! trying to break it.

mod drift;
mod isolation;
mod keys;
mod policies;

use crate::error::{self, Result};
use crate::expected::GENERATED_POLICIES;
use crate::policy;
use pgrx::prelude::*;
use pgrx::spi::{quote_literal, SpiResult};

/// One finding: what is wrong, where, and the SQL that fixes it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    pub object: String,
    pub message: String,
    pub fix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }

    fn parse(text: &str) -> Option<Severity> {
        match text {
            "error" => Some(Severity::Error),
            "warning" => Some(Severity::Warning),
            _ => None,
        }
    }
}

/// The catalog rules, one query each (`sql/check/`): `$1` is the tenant column name, `$2` the
/// generated policies' names.
const CATALOG_RULES: [&str; 9] = [
    include_str!("../../sql/check/tg001_unprotected.sql"),
    include_str!("../../sql/check/tg003_tenant_index.sql"),
    include_str!("../../sql/check/tg006_tg007_views.sql"),
    include_str!("../../sql/check/tg008_tg009_roles.sql"),
    include_str!("../../sql/check/tg010_security_definer.sql"),
    include_str!("../../sql/check/tg012_children.sql"),
    include_str!("../../sql/check/tg013_context_entry.sql"),
    include_str!("../../sql/check/tg016_column_privileges.sql"),
    include_str!("../../sql/check/tg018_audit_log.sql"),
];

/// Every code a rule can report.
const CODES: [&str; 18] = [
    "TG001", "TG002", "TG003", "TG004", "TG005", "TG006", "TG007", "TG008", "TG009", "TG010",
    "TG011", "TG012", "TG013", "TG014", "TG015", "TG016", "TG017", "TG018",
];

fn catalog_rule(sql: &str, tenant_column: &str) -> Vec<Finding> {
    let generated: Vec<&str> = GENERATED_POLICIES.to_vec();
    Spi::connect(|client| {
        client
            .select(sql, None, &[tenant_column.into(), generated.into()])?
            .map(|row| {
                let text = |n: usize| -> SpiResult<String> {
                    Ok(row.get::<String>(n)?.unwrap_or_default())
                };
                let code = text(2)?;
                Ok(Finding {
                    severity: Severity::parse(&text(1)?).unwrap_or(Severity::Error),
                    code: CODES
                        .iter()
                        .find(|c| **c == code)
                        .copied()
                        .unwrap_or("TG000"),
                    object: text(3)?,
                    message: text(4)?,
                    fix: text(5)?,
                })
            })
            .collect::<SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

/// TG017: the library is not preloaded. Until a backend loads it, `SET tenant_guard.tenant_id`
/// creates a placeholder instead of failing (the policies never read it, but a forged SET goes
/// unnoticed), and the first use in each backend pays the load.
fn preload() -> Option<Finding> {
    // Read past its superuser-only flag: the list is no secret, and check() runs as its caller.
    let setting = crate::gucs::value_of(c"shared_preload_libraries");
    let libraries: Vec<String> = setting
        .split(',')
        .map(|l| l.trim().trim_matches('"').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let loaded = libraries
        .iter()
        .any(|l| l.rsplit('/').next() == Some("tenant_guard"));
    if loaded {
        return None;
    }
    // A list setting: one literal per library (a single 'a, b' would name one library "a, b").
    let mut wanted: Vec<String> = libraries.iter().map(quote_literal).collect();
    wanted.push("'tenant_guard'".to_string());
    Some(Finding {
        severity: Severity::Warning,
        code: "TG017",
        object: "parameter shared_preload_libraries".to_string(),
        message: "tenant_guard is not in shared_preload_libraries: until a backend first uses it, \
                  SET tenant_guard.tenant_id is accepted as a placeholder instead of failing \
                  (policies never read it, but the forgery goes unnoticed)"
            .to_string(),
        fix: format!(
            "ALTER SYSTEM SET shared_preload_libraries = {};  -- takes effect at the next server restart",
            wanted.join(", ")
        ),
    })
}

/// Every finding, errors first, then by code and object.
pub fn findings() -> Result<Vec<Finding>> {
    let tenant_column = policy::configured_tenant_column()?;
    let mut all: Vec<Finding> = CATALOG_RULES
        .iter()
        .flat_map(|sql| catalog_rule(sql, &tenant_column))
        .collect();
    all.extend(drift::findings());
    all.extend(keys::findings());
    all.extend(policies::findings());
    all.extend(preload());
    all.sort_by(|a, b| {
        (a.severity, a.code, &a.object, &a.message)
            .cmp(&(b.severity, b.code, &b.object, &b.message))
    });
    Ok(all)
}

/// Every configuration that silently defeats tenant isolation, one row per finding, with the
/// SQL that makes it go away; nothing when all is well.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn check() -> Result<
    TableIterator<
        'static,
        (
            name!(severity, String),
            name!(code, String),
            name!(object, String),
            name!(message, String),
            name!(fix, String),
        ),
    >,
> {
    let rows = findings()?.into_iter().map(|f| {
        (
            f.severity.as_str().to_string(),
            f.code.to_string(),
            f.object,
            f.message,
            f.fix,
        )
    });
    Ok(TableIterator::new(rows.collect::<Vec<_>>()))
}

/// Raise (P0004) unless `check()` finds nothing at `min_severity` or above ('warning', the
/// default, or 'error'): for a test suite that wants the configuration clean.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn assert_no_findings(min_severity: default!(Option<&str>, "'warning'")) -> Result<()> {
    let Some(min) = min_severity.and_then(Severity::parse) else {
        return Err(error::malformed(
            "tenant_guard: min_severity must be 'error' or 'warning'",
            "Pass 'warning' (every finding, the default) or 'error'.",
        ));
    };
    let found: Vec<Finding> = findings()?
        .into_iter()
        .filter(|f| f.severity <= min)
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = found
        .iter()
        .take(20)
        .map(|f| {
            format!(
                "{} {} {}: {}",
                f.code,
                f.severity.as_str(),
                f.object,
                f.message
            )
        })
        .collect();
    let more = found.len().saturating_sub(listed.len());
    Err(error::assertion_failed(
        format!(
            "tenant_guard: check() reports {} finding(s): {}{}",
            found.len(),
            listed.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ),
        "SELECT code, object, fix FROM tenant_guard.check(); lists the SQL that fixes each.",
    ))
}
