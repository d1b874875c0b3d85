//! The SQL an audit trigger runs: one set-based statement per audited statement, over the
//! trigger's transition tables (`tenant_guard_old`, `tenant_guard_new`).
//!
//! Generated once per table and operation from the table's columns and audit options, prepared
//! and cached by the trigger (see `trigger.rs`). Every identifier is quoted and every function,
//! type, table and operator is schema-qualified (`OPERATOR(pg_catalog.=)`): PostgreSQL re-parses
//! a cached statement under the caller's search_path when it differs from the one it was
//! prepared under, and the statement must mean the same under any path. Parameters: $1 context
//! tenant, $2 user, $3 role, $4 trace, $5 db role, $6 schema, $7 table, $8 table oid.

use pgrx::pg_sys;
use pgrx::spi::{quote_identifier, quote_literal};

pub const OLD_TABLE: &str = "tenant_guard_old";
pub const NEW_TABLE: &str = "tenant_guard_new";
pub const REDACTED: &str = "[redacted]";

/// The audit log's columns, in the order every generated SELECT produces them.
pub const LOG_COLUMNS: &str =
    "occurred_at, txid, tenant_id, user_id, tenant_role, trace_id, db_role, \
                               schema_name, table_name, table_oid, op, pk, old_row, new_row";

/// The select list shared by every operation: `LOG_COLUMNS`, then `tg_pos`. The context comes
/// from the parameters, time and transaction from the server.
fn log_columns(tenant: &str, op: Op, pk: &str, old: &str, new: &str, position: &str) -> String {
    format!(
        "pg_catalog.statement_timestamp() AS occurred_at, pg_catalog.pg_current_xact_id() AS txid,
         {tenant} AS tenant_id, $2 AS user_id, $3 AS tenant_role, $4 AS trace_id,
         $5::pg_catalog.name AS db_role, $6::pg_catalog.name AS schema_name,
         $7::pg_catalog.name AS table_name, $8 AS table_oid, '{op}'::pg_catalog.text AS op,
         ({pk})::pg_catalog.jsonb AS pk, ({old})::pg_catalog.jsonb AS old_row,
         ({new})::pg_catalog.jsonb AS new_row, ({position})::pg_catalog.int8 AS tg_pos",
        op = op.as_str()
    )
}

/// The parameter types of every generated statement ($1..$8).
pub fn parameter_types() -> [pg_sys::Oid; 8] {
    let text = pg_sys::TEXTOID;
    [text, text, text, text, text, text, text, pg_sys::OIDOID]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Truncate => "TRUNCATE",
        }
    }
}

/// What the statements are generated from.
#[derive(Clone, Debug)]
pub struct AuditedTable {
    /// The table's columns, in order (the statements list them explicitly when some are
    /// excluded or redacted: one jsonb_build_object instead of to_jsonb, minus, concat).
    pub columns: Vec<String>,
    pub primary_key: Vec<String>,
    /// The tenant column, when the table is protected: the audit row's tenant is the row's.
    pub tenant_column: Option<String>,
    pub exclude: Vec<String>,
    pub redact: Vec<String>,
}

fn text_array(names: &[String]) -> String {
    let items: Vec<String> = names.iter().map(quote_literal).collect();
    format!("ARRAY[{}]::pg_catalog.text[]", items.join(", "))
}

impl AuditedTable {
    /// `{"pk column": value, ...}` of row `alias`.
    fn pk_json(&self, alias: &str) -> String {
        let pairs: Vec<String> = self
            .primary_key
            .iter()
            .map(|c| format!("{}, {alias}.{}", quote_literal(c), quote_identifier(c)))
            .collect();
        format!("pg_catalog.jsonb_build_object({})", pairs.join(", "))
    }

    /// Row `alias` as jsonb without the excluded columns; redacted columns are the marker
    /// (present whether the value is NULL or not: nothing about it leaks) when `redacted`, in
    /// the clear otherwise (for comparing old and new values).
    fn json(&self, alias: &str, redacted: bool) -> String {
        let redact = redacted && !self.redact.is_empty();
        if self.exclude.is_empty() && !redact {
            return format!("pg_catalog.to_jsonb({alias})");
        }
        let pairs: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.exclude.contains(c))
            .map(|c| {
                let value = if redact && self.redact.contains(c) {
                    format!("{}::pg_catalog.text", quote_literal(REDACTED))
                } else {
                    format!("{alias}.{}", quote_identifier(c))
                };
                format!("{}, {value}", quote_literal(c))
            })
            .collect();
        format!("pg_catalog.jsonb_build_object({})", pairs.join(", "))
    }

    fn row_json(&self, alias: &str) -> String {
        self.json(alias, false)
    }

    fn logged_row_json(&self, alias: &str) -> String {
        self.json(alias, true)
    }

    /// The audit row's tenant for row `alias`.
    fn tenant(&self, alias: &str) -> String {
        match &self.tenant_column {
            Some(column) => format!("{alias}.{}::pg_catalog.text", quote_identifier(column)),
            None => "$1".to_string(),
        }
    }

    /// `SELECT` producing `LOG_COLUMNS` for op, plus `tg_pos`: the row's position in the
    /// transition table (stable across executions: the hash chain relies on it), or NULL when
    /// `positioned` is false (a window function per statement that the plain insert can skip).
    pub fn select(&self, op: Op, positioned: bool) -> String {
        let position = if positioned {
            "pg_catalog.row_number() OVER ()"
        } else {
            "NULL"
        };
        match op {
            Op::Insert => format!(
                "SELECT {columns} FROM {NEW_TABLE} n",
                columns = log_columns(
                    &self.tenant("n"),
                    op,
                    &self.pk_json("n"),
                    "NULL",
                    &self.logged_row_json("n"),
                    position,
                )
            ),
            Op::Delete => format!(
                "SELECT {columns} FROM {OLD_TABLE} o",
                columns = log_columns(
                    &self.tenant("o"),
                    op,
                    &self.pk_json("o"),
                    &self.logged_row_json("o"),
                    "NULL",
                    position,
                )
            ),
            Op::Update => {
                // Old and new rows are paired by position: PostgreSQL appends them to the two
                // transition tables together, one pair per updated row. Changed columns are
                // found on the real values, then redacted.
                let redact = text_array(&self.redact);
                let changed = |side: &str| {
                    format!(
                        "pg_catalog.jsonb_object_agg(k, CASE WHEN k OPERATOR(pg_catalog.=) ANY ({redact})
                                                        THEN pg_catalog.to_jsonb({marker}::pg_catalog.text)
                                                        ELSE {side}.j OPERATOR(pg_catalog.->) k END)",
                        marker = quote_literal(REDACTED),
                    )
                };
                format!(
                    "SELECT {columns}
                       FROM (SELECT pg_catalog.row_number() OVER () AS pos, {old_pk} AS pk, {old_json} AS j
                               FROM {OLD_TABLE} o) o
                       JOIN (SELECT pg_catalog.row_number() OVER () AS pos, {new_tenant} AS tenant,
                                    {new_json} AS j
                               FROM {NEW_TABLE} n) n ON n.pos OPERATOR(pg_catalog.=) o.pos
                      CROSS JOIN LATERAL (
                            SELECT {old_changed} AS old_row, {new_changed} AS new_row
                              FROM pg_catalog.jsonb_object_keys(n.j) AS k
                             WHERE ((o.j OPERATOR(pg_catalog.->) k)
                                    OPERATOR(pg_catalog.=) (n.j OPERATOR(pg_catalog.->) k)) IS NOT TRUE) d
                      WHERE d.new_row IS NOT NULL",
                    columns = log_columns("n.tenant", op, "o.pk", "d.old_row", "d.new_row", "o.pos"),
                    old_pk = self.pk_json("o"),
                    old_json = self.row_json("o"),
                    new_tenant = self.tenant("n"),
                    new_json = self.row_json("n"),
                    old_changed = changed("o"),
                    new_changed = changed("n"),
                )
            }
            Op::Truncate => format!(
                "SELECT {}",
                log_columns("$1", op, "NULL", "NULL", "NULL", "1")
            ),
        }
    }

    /// The statement that writes op's audit rows (no hash chain).
    pub fn insert(&self, op: Op) -> String {
        format!(
            "INSERT INTO tenant_guard.audit_log ({LOG_COLUMNS})
             SELECT {LOG_COLUMNS} FROM ({select}) s",
            select = self.select(op, false)
        )
    }

    /// With the hash chain, step 1: each row's position, tenant key and digest.
    pub fn chain_digests(&self, op: Op) -> String {
        format!(
            "SELECT s.tg_pos, COALESCE(s.tenant_id, ''),
                    tenant_guard.audit_digest({LOG_COLUMNS})
               FROM ({select}) s ORDER BY s.tg_pos",
            select = self.select(op, true)
        )
    }

    /// With the hash chain, step 2: the rows again, joined to the chain links computed from
    /// step 1 ($9 positions, $10 sequence numbers, $11 previous hashes, $12 hashes).
    pub fn chain_insert(&self, op: Op) -> String {
        format!(
            "INSERT INTO tenant_guard.audit_log ({LOG_COLUMNS}, chain_seq, chain_prev, chain_hash)
             SELECT {LOG_COLUMNS}, c.seq, c.prev, c.hash
               FROM ({select}) s
               JOIN ROWS FROM (pg_catalog.unnest($9::pg_catalog.int8[]), pg_catalog.unnest($10::pg_catalog.int8[]),
                               pg_catalog.unnest($11::pg_catalog.bytea[]), pg_catalog.unnest($12::pg_catalog.bytea[]))
                    AS c(pos, seq, prev, hash) ON c.pos OPERATOR(pg_catalog.=) s.tg_pos
              ORDER BY s.tg_pos",
            select = self.select(op, true)
        )
    }
}
