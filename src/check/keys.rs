//! TG004 and TG005: keys and references that cross tenants.
//!
//! A PRIMARY KEY, UNIQUE or EXCLUDE constraint (or a unique index) without the tenant column is
//! checked over every tenant's rows: an insert that collides tells one tenant that another's row
//! exists, and two tenants cannot use the same value. A foreign key between protected tables
//! without the tenant column is checked without row level security: one tenant can reference
//! (and so learn of) another's rows, and ON DELETE CASCADE deletes across tenants. The fix of
//! both makes them composite, led by the tenant column.

use super::{Finding, Severity};
use crate::error;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiHeapTupleData, SpiResult};

/// A foreign key as the catalog describes it.
struct ForeignKey {
    name: String,
    table: String,
    referenced: String,
    columns: Vec<String>,
    referenced_columns: Vec<String>,
    /// The tenant columns of both tables, when both are protected.
    tenant_column: Option<String>,
    referenced_tenant_column: Option<String>,
    on_update: String,
    on_delete: String,
    match_full: bool,
    deferrable: bool,
    deferred: bool,
    validated: bool,
}

const FOREIGN_KEY_COLUMNS: &str = "fk.conname::text, fk.conrelid::regclass::text,
    fk.confrelid::regclass::text,
    ARRAY(SELECT quote_ident(a.attname) FROM unnest(fk.conkey) WITH ORDINALITY k(attnum, n)
            JOIN pg_attribute a ON a.attrelid = fk.conrelid AND a.attnum = k.attnum ORDER BY k.n),
    ARRAY(SELECT quote_ident(a.attname) FROM unnest(fk.confkey) WITH ORDINALITY k(attnum, n)
            JOIN pg_attribute a ON a.attrelid = fk.confrelid AND a.attnum = k.attnum ORDER BY k.n),
    pc.tenant_column::text, pp.tenant_column::text, fk.confupdtype::text, fk.confdeltype::text,
    fk.confmatchtype = 'f', fk.condeferrable, fk.condeferred, fk.convalidated";

const FOREIGN_KEY_FROM: &str = "pg_constraint fk
    LEFT JOIN tenant_guard.protected_tables pc ON pc.relid::oid = fk.conrelid
    LEFT JOIN tenant_guard.protected_tables pp ON pp.relid::oid = fk.confrelid";

impl ForeignKey {
    /// From `FOREIGN_KEY_COLUMNS` starting at column `at`.
    fn read(row: &SpiHeapTupleData, at: usize) -> SpiResult<ForeignKey> {
        let text =
            |n: usize| -> SpiResult<String> { Ok(row.get::<String>(at + n)?.unwrap_or_default()) };
        Ok(ForeignKey {
            name: text(0)?,
            table: text(1)?,
            referenced: text(2)?,
            columns: row.get::<Vec<String>>(at + 3)?.unwrap_or_default(),
            referenced_columns: row.get::<Vec<String>>(at + 4)?.unwrap_or_default(),
            tenant_column: row.get::<String>(at + 5)?,
            referenced_tenant_column: row.get::<String>(at + 6)?,
            on_update: text(7)?,
            on_delete: text(8)?,
            match_full: row.get::<bool>(at + 9)?.unwrap_or(false),
            deferrable: row.get::<bool>(at + 10)?.unwrap_or(false),
            deferred: row.get::<bool>(at + 11)?.unwrap_or(false),
            validated: row.get::<bool>(at + 12)?.unwrap_or(true),
        })
    }

    fn drop_sql(&self) -> String {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT {};",
            self.table,
            quote_identifier(&self.name)
        )
    }

    /// `ADD CONSTRAINT` of the same reference led by both tenant columns.
    fn scoped_add(&self) -> Option<String> {
        self.scoped_definition().map(|definition| {
            format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {definition};",
                self.table,
                quote_identifier(&self.name)
            )
        })
    }

    /// The same reference led by both tenant columns (both tables are protected), with its
    /// actions; SET NULL and SET DEFAULT on delete leave the tenant column alone.
    fn scoped_definition(&self) -> Option<String> {
        let (Some(mine), Some(theirs)) = (&self.tenant_column, &self.referenced_tenant_column)
        else {
            return None;
        };
        let action = |code: &str| -> &'static str {
            match code {
                "c" => " CASCADE",
                "n" => " SET NULL",
                "d" => " SET DEFAULT",
                "r" => " RESTRICT",
                _ => "",
            }
        };
        let mut sql = format!(
            "FOREIGN KEY ({}, {}) REFERENCES {} ({}, {})",
            quote_identifier(mine),
            self.columns.join(", "),
            self.referenced,
            quote_identifier(theirs),
            self.referenced_columns.join(", ")
        );
        if self.match_full {
            sql.push_str(" MATCH FULL");
        }
        let on_update = action(&self.on_update);
        if !on_update.is_empty() {
            sql.push_str(&format!(" ON UPDATE{on_update}"));
        }
        let on_delete = action(&self.on_delete);
        if !on_delete.is_empty() {
            sql.push_str(&format!(" ON DELETE{on_delete}"));
            if matches!(self.on_delete.as_str(), "n" | "d") {
                sql.push_str(&format!(" ({})", self.columns.join(", ")));
            }
        }
        if self.deferrable {
            sql.push_str(" DEFERRABLE");
            if self.deferred {
                sql.push_str(" INITIALLY DEFERRED");
            }
        }
        if !self.validated {
            sql.push_str(" NOT VALID");
        }
        Some(sql)
    }
}

/// TG004: keys without the tenant column, on protected tables (partitions' keys are the
/// partitioned table's), with the index of each.
fn unscoped_keys() -> Vec<(pg_sys::Oid, Finding)> {
    let keys = Spi::connect(|client| {
        let rows = client.select(
            "SELECT c.oid::regclass::text, p.tenant_column::text, i.indexrelid,
                    i.indexrelid::regclass::text, ic.relname::text, am.amname::text,
                    i.indnkeyatts::int4, i.indnullsnotdistinct, pg_get_expr(i.indpred, i.indrelid),
                    con.conname::text, con.contype::text, con.condeferrable, con.condeferred,
                    ARRAY(SELECT CASE WHEN k.attnum = 0
                                      THEN '(' || pg_get_indexdef(i.indexrelid, k.n::int4, true) || ')'
                                      ELSE quote_ident(a.attname) END
                            FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                           ORDER BY k.n),
                    ARRAY(SELECT format('OPERATOR(%I.%s)', n.nspname, o.oprname)
                            FROM unnest(con.conexclop) WITH ORDINALITY x(op, n)
                            JOIN pg_operator o ON o.oid = x.op
                            JOIN pg_namespace n ON n.oid = o.oprnamespace
                           ORDER BY x.n),
                    -- The key columns as an index element: with a collation other than the
                    -- column's, an operator class other than the default, and the ordering.
                    ARRAY(SELECT CASE WHEN k.attnum = 0
                                      THEN '(' || pg_get_indexdef(i.indexrelid, k.n::int4, true) || ')'
                                      ELSE quote_ident(a.attname) END
                                 || CASE WHEN co.oid IS NOT NULL
                                          AND co.oid <> CASE WHEN k.attnum = 0 THEN 100 ELSE a.attcollation END
                                         THEN format(' COLLATE %I.%I', con_ns.nspname, co.collname) ELSE '' END
                                 || CASE WHEN NOT opc.opcdefault
                                         THEN format(' %I.%I', opc_ns.nspname, opc.opcname) ELSE '' END
                                 || CASE WHEN k.opt & 1 = 1 AND k.opt & 2 = 0 THEN ' DESC NULLS LAST'
                                         WHEN k.opt & 1 = 1 THEN ' DESC'
                                         WHEN k.opt & 2 = 2 THEN ' NULLS FIRST' ELSE '' END
                            FROM ROWS FROM (unnest(i.indkey::int2[]), unnest(i.indcollation::oid[]),
                                            unnest(i.indclass::oid[]), unnest(i.indoption::int2[]))
                                 WITH ORDINALITY k(attnum, coll, class, opt, n)
                            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                            LEFT JOIN pg_collation co ON co.oid = k.coll
                            LEFT JOIN pg_namespace con_ns ON con_ns.oid = co.collnamespace
                            JOIN pg_opclass opc ON opc.oid = k.class
                            JOIN pg_namespace opc_ns ON opc_ns.oid = opc.opcnamespace
                           WHERE k.n <= i.indnkeyatts
                           ORDER BY k.n)
               FROM tenant_guard.protected_tables p
               JOIN pg_class c ON c.oid = p.relid::oid
               JOIN pg_attribute ta ON ta.attrelid = c.oid AND ta.attname = p.tenant_column
               JOIN pg_index i ON i.indrelid = c.oid AND (i.indisunique OR i.indisexclusion)
               JOIN pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_am am ON am.oid = ic.relam
               LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = c.oid
                                          AND con.contype IN ('p', 'u', 'x')
              WHERE ta.attnum <> ALL ((i.indkey::int2[])[0:i.indnkeyatts - 1])
                AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
              ORDER BY 1, 4",
            None,
            &[],
        )?;
        let mut keys = Vec::new();
        for row in rows {
            let text = |n: usize| -> SpiResult<String> { Ok(row.get::<String>(n)?.unwrap_or_default()) };
            keys.push(Key {
                table: text(1)?,
                tenant_column: text(2)?,
                index: row.get::<pg_sys::Oid>(3)?.unwrap_or(pg_sys::InvalidOid),
                index_qualified: text(4)?,
                index_name: text(5)?,
                method: text(6)?,
                key_count: row.get::<i32>(7)?.unwrap_or(0) as usize,
                nulls_not_distinct: row.get::<bool>(8)?.unwrap_or(false),
                predicate: row.get::<String>(9)?,
                constraint: row.get::<String>(10)?,
                kind: text(11)?,
                deferrable: row.get::<bool>(12)?.unwrap_or(false),
                deferred: row.get::<bool>(13)?.unwrap_or(false),
                columns: row.get::<Vec<String>>(14)?.unwrap_or_default(),
                operators: row.get::<Vec<String>>(15)?.unwrap_or_default(),
                elements: row.get::<Vec<String>>(16)?.unwrap_or_default(),
            });
        }
        Ok::<_, pgrx::spi::SpiError>(keys)
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)));
    keys.iter().map(|key| (key.index, key.finding())).collect()
}

struct Key {
    table: String,
    tenant_column: String,
    index: pg_sys::Oid,
    index_qualified: String,
    index_name: String,
    method: String,
    key_count: usize,
    nulls_not_distinct: bool,
    predicate: Option<String>,
    constraint: Option<String>,
    /// p, u or x for a constraint.
    kind: String,
    deferrable: bool,
    deferred: bool,
    columns: Vec<String>,
    operators: Vec<String>,
    /// The key columns as index elements (collation, operator class, ordering).
    elements: Vec<String>,
}

impl Key {
    fn finding(&self) -> Finding {
        let tenant = quote_identifier(&self.tenant_column);
        let count = self.key_count.min(self.columns.len());
        let (keys, included) = self.columns.split_at(count);
        let include = if included.is_empty() {
            String::new()
        } else {
            format!(" INCLUDE ({})", included.join(", "))
        };
        let deferrable = match (self.deferrable, self.deferred) {
            (true, true) => " DEFERRABLE INITIALLY DEFERRED",
            (true, false) => " DEFERRABLE",
            _ => "",
        };
        let nulls = if self.nulls_not_distinct {
            " NULLS NOT DISTINCT"
        } else {
            ""
        };
        let predicate = |keyword: &str| {
            self.predicate
                .as_ref()
                .map(|p| format!(" {keyword} ({p})"))
                .unwrap_or_default()
        };
        let (object, what, replace) = match (&self.constraint, self.kind.as_str()) {
            (Some(name), "x") => {
                let elements: Vec<String> = self
                    .elements
                    .iter()
                    .zip(self.operators.iter())
                    .map(|(key, op)| format!("{key} WITH {op}"))
                    .collect();
                (
                    format!("constraint {} on table {}", quote_identifier(name), self.table),
                    "exclusion constraint",
                    format!(
                        "ALTER TABLE {} DROP CONSTRAINT {n}, ADD CONSTRAINT {n} EXCLUDE USING {} ({tenant} WITH OPERATOR(pg_catalog.=), {}){include}{}{deferrable};",
                        self.table,
                        quote_identifier(&self.method),
                        elements.join(", "),
                        predicate("WHERE"),
                        n = quote_identifier(name),
                    ),
                )
            }
            (Some(name), kind) => {
                let keyword = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
                (
                    format!("constraint {} on table {}", quote_identifier(name), self.table),
                    if kind == "p" { "primary key" } else { "unique constraint" },
                    format!(
                        "ALTER TABLE {} DROP CONSTRAINT {n}, ADD CONSTRAINT {n} {keyword}{nulls} ({tenant}, {}){include}{deferrable};",
                        self.table,
                        keys.join(", "),
                        n = quote_identifier(name),
                    ),
                )
            }
            (None, _) => (
                format!("index {}", self.index_qualified),
                "unique index",
                format!(
                    "DROP INDEX {}; CREATE UNIQUE INDEX {} ON {} USING {} ({tenant}, {}){include}{nulls}{};",
                    self.index_qualified,
                    quote_identifier(&self.index_name),
                    self.table,
                    quote_identifier(&self.method),
                    self.elements.join(", "),
                    predicate("WHERE"),
                ),
            ),
        };
        // References to this key from protected tables are rewritten around it.
        let dependents = referencing(self.index);
        let before: Vec<String> = dependents.iter().map(ForeignKey::drop_sql).collect();
        let after: Vec<String> = dependents
            .iter()
            .filter_map(ForeignKey::scoped_add)
            .collect();
        let gist = if self.kind == "x" && self.method == "gist" {
            " (a GiST exclusion on the tenant column needs the btree_gist extension)"
        } else {
            ""
        };
        Finding {
            severity: Severity::Warning,
            code: "TG004",
            object,
            message: format!(
                "{what} {} of {} does not include the tenant column {tenant}: a value another tenant already uses collides, which tells one tenant that another's row exists{gist}",
                self.constraint
                    .as_deref()
                    .map(quote_identifier)
                    .unwrap_or_else(|| quote_identifier(&self.index_name)),
                self.table
            ),
            fix: [before, vec![replace], after].concat().join(" "),
        }
    }
}

/// The foreign keys from protected tables that reference a key's index (their top
/// constraints), which a fix must drop and re-create around it.
fn referencing(index: pg_sys::Oid) -> Vec<ForeignKey> {
    Spi::connect(|client| {
        client
            .select(
                &format!(
                    "SELECT {FOREIGN_KEY_COLUMNS} FROM {FOREIGN_KEY_FROM}
                      WHERE fk.contype = 'f' AND fk.conparentid = 0 AND fk.conindid = $1
                        AND pc.relid IS NOT NULL
                      ORDER BY 2, 1"
                ),
                None,
                &[index.into()],
            )?
            .map(|row| ForeignKey::read(&row, 1))
            .collect::<SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

/// TG005: foreign keys between protected tables that do not pair the tenant columns. The fix of
/// one that references a TG004 key is that key's (which rewrites the reference with it).
fn unscoped_references(keys: &[(pg_sys::Oid, Finding)]) -> Vec<Finding> {
    let rows = Spi::connect(|client| {
        client
            .select(
                &format!(
                    "SELECT {FOREIGN_KEY_COLUMNS},
                            EXISTS (SELECT 1 FROM pg_index i
                                     WHERE i.indrelid = fk.confrelid AND i.indisunique AND i.indpred IS NULL
                                       AND i.indnkeyatts = cardinality(fk.confkey) + 1
                                       AND (i.indkey::int2[])[0:i.indnkeyatts - 1] @> (fk.confkey || tb.attnum)
                                       AND (i.indkey::int2[])[0:i.indnkeyatts - 1] <@ (fk.confkey || tb.attnum)),
                            format('%s_%s_key', (SELECT relname FROM pg_class WHERE oid = fk.confrelid),
                                   array_to_string(tb.attname::text || ARRAY(SELECT a.attname::text FROM unnest(fk.confkey) WITH ORDINALITY k(attnum, n)
                                                       JOIN pg_attribute a ON a.attrelid = fk.confrelid AND a.attnum = k.attnum
                                                      ORDER BY k.n), '_')),
                            fk.conindid
                       FROM {FOREIGN_KEY_FROM}
                       JOIN pg_attribute ta ON ta.attrelid = fk.conrelid AND ta.attname = pc.tenant_column
                       JOIN pg_attribute tb ON tb.attrelid = fk.confrelid AND tb.attname = pp.tenant_column
                      WHERE fk.contype = 'f' AND fk.conparentid = 0
                        AND NOT EXISTS (SELECT 1 FROM ROWS FROM (unnest(fk.conkey), unnest(fk.confkey)) k(l, r)
                                         WHERE k.l = ta.attnum AND k.r = tb.attnum)
                      ORDER BY 2, 1"
                ),
                None,
                &[],
            )?
            .map(|row| {
                Ok((
                    ForeignKey::read(&row, 1)?,
                    row.get::<bool>(14)?.unwrap_or(false),
                    row.get::<String>(15)?.unwrap_or_default(),
                    row.get::<pg_sys::Oid>(16)?.unwrap_or(pg_sys::InvalidOid),
                ))
            })
            .collect::<SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)));
    rows.into_iter()
        .map(|(fk, scoped_key_exists, index_name, referenced_index)| {
            let referenced_tenant = fk.referenced_tenant_column.clone().unwrap_or_default();
            let index = if scoped_key_exists {
                String::new()
            } else {
                format!(
                    "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({}, {}); ",
                    quote_identifier(&index_name),
                    fk.referenced,
                    quote_identifier(&referenced_tenant),
                    fk.referenced_columns.join(", ")
                )
            };
            let rewrite = format!(
                "ALTER TABLE {} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} {};",
                fk.table,
                fk.scoped_definition().unwrap_or_default(),
                name = quote_identifier(&fk.name),
            );
            let fix = match keys.iter().find(|(index, _)| *index == referenced_index) {
                Some((_, key)) => key.fix.clone(),
                None => format!("{index}{rewrite}"),
            };
            Finding {
                severity: Severity::Error,
                code: "TG005",
                object: format!(
                    "constraint {} on table {}",
                    quote_identifier(&fk.name),
                    fk.table
                ),
                message: format!(
                    "foreign key {} from {} to {} does not include the tenant column: its check bypasses row level security, so one tenant can reference (and so learn of) another's rows, and cascades cross tenants",
                    quote_identifier(&fk.name),
                    fk.table,
                    fk.referenced
                ),
                fix,
            }
        })
        .collect()
}

pub fn findings() -> Vec<Finding> {
    let keys = unscoped_keys();
    let references = unscoped_references(&keys);
    keys.into_iter()
        .map(|(_, finding)| finding)
        .chain(references)
        .collect()
}
