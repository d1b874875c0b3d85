//! Catalog lookups shared by policy generation and the event trigger.

use crate::error::{self, Result};
use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::spi::{
    quote_identifier, quote_literal, quote_qualified_identifier, Spi, SpiError, SpiResult,
    SpiTupleTable,
};

/// The first column of every row `sql` returns (NULLs skipped). An SPI error is raised: a
/// failed lookup must never read as "nothing to protect".
pub fn select_column<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Vec<T> {
    Spi::connect(|client| {
        client
            .select(sql, None, args)?
            .filter_map(|row| row.get::<T>(1).transpose())
            .collect::<SpiResult<Vec<T>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

/// The value of a query that returns at most one row and one column; `None` for no row or NULL.
pub fn select_value<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    match Spi::get_one_with_args::<T>(sql, args) {
        Ok(value) => value,
        Err(SpiError::InvalidPosition) => None,
        Err(e) => error::raise(error::internal(e)),
    }
}

/// Whether `SELECT EXISTS (...)` is true.
pub fn select_exists(sql: &str, args: &[DatumWithOid<'_>]) -> bool {
    select_value::<bool>(sql, args).unwrap_or(false)
}

/// Read the first row of `sql` with `read`; `None` when there is no row.
pub fn select_row<R>(
    sql: &str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(&SpiTupleTable) -> SpiResult<R>,
) -> Option<R> {
    Spi::connect(|client| {
        let rows = client.select(sql, Some(1), args)?;
        if rows.is_empty() {
            return Ok(None);
        }
        read(&rows.first()).map(Some)
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

/// A relation as the catalog describes it at the time of the lookup.
#[derive(Debug, Clone)]
pub struct Table {
    pub oid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    pub relkind: char,
    pub temporary: bool,
    pub is_partition: bool,
    /// The current user has the privileges of the table's owner.
    pub owned: bool,
    /// A typed table (`CREATE TABLE ... OF type`): its columns are renamed through the type.
    pub typed: bool,
    /// The table belongs to an extension (is created by its script).
    pub extension_member: bool,
}

/// Schemas whose tables tenant_guard never protects.
pub fn is_system_schema(schema: &str) -> bool {
    matches!(schema, "pg_catalog" | "information_schema" | "tenant_guard")
        || schema.starts_with("pg_toast")
        || schema.starts_with("pg_temp")
}

impl Table {
    pub fn lookup(oid: pg_sys::Oid) -> Option<Table> {
        select_row(
            "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
                    c.relkind::pg_catalog.text, c.relpersistence OPERATOR(pg_catalog.=) 't',
                    c.relispartition, pg_catalog.pg_has_role(c.relowner, 'USAGE'),
                    c.reloftype OPERATOR(pg_catalog.<>) 0,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                             WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                               AND d.objid OPERATOR(pg_catalog.=) c.oid
                               AND d.deptype OPERATOR(pg_catalog.=) 'e')
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              WHERE c.oid OPERATOR(pg_catalog.=) $1",
            &[oid.into()],
            |row| {
                Ok(Table {
                    oid,
                    schema: row.get::<String>(1)?.unwrap_or_default(),
                    name: row.get::<String>(2)?.unwrap_or_default(),
                    relkind: row
                        .get::<String>(3)?
                        .and_then(|k| k.chars().next())
                        .unwrap_or('?'),
                    temporary: row.get::<bool>(4)?.unwrap_or(false),
                    is_partition: row.get::<bool>(5)?.unwrap_or(false),
                    owned: row.get::<bool>(6)?.unwrap_or(false),
                    typed: row.get::<bool>(7)?.unwrap_or(false),
                    extension_member: row.get::<bool>(8)?.unwrap_or(false),
                })
            },
        )
    }

    /// A `regclass` argument: not NULL (22023), existing (42P01).
    pub fn from_argument(tbl: Option<crate::sqltypes::RegClass>) -> Result<Table> {
        let Some(tbl) = tbl else {
            return Err(error::malformed(
                "tenant_guard: tbl must not be NULL",
                "Pass a table, e.g. 'app.orders'.",
            ));
        };
        Table::require(tbl.0)
    }

    /// The table, or 42P01 naming the OID.
    pub fn require(oid: pg_sys::Oid) -> Result<Table> {
        Table::lookup(oid).ok_or_else(|| {
            error::undefined_table(format!("relation with OID {} does not exist", oid.to_u32()))
        })
    }

    /// Schema-qualified, quoted: safe to splice into SQL.
    pub fn qualified(&self) -> String {
        quote_qualified_identifier(&self.schema, &self.name)
    }

    /// `'schema.table'::regclass`, quoted: safe to splice into SQL.
    pub fn regclass_literal(&self) -> String {
        format!("{}::pg_catalog.regclass", quote_literal(self.qualified()))
    }

    pub fn is_table(&self) -> bool {
        matches!(self.relkind, 'r' | 'p')
    }

    /// The tables below this one at any depth, partitions and inheritance children alike,
    /// parents before their children.
    pub fn descendants(&self) -> Vec<pg_sys::Oid> {
        select_column(
            "WITH RECURSIVE tree(relid, level) AS (
                 SELECT i.inhrelid, 1 FROM pg_catalog.pg_inherits i
                  WHERE i.inhparent OPERATOR(pg_catalog.=) $1
               UNION ALL
                 SELECT i.inhrelid, t.level OPERATOR(pg_catalog.+) 1
                   FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent OPERATOR(pg_catalog.=) t.relid)
             SELECT relid FROM tree GROUP BY relid ORDER BY pg_catalog.max(level), relid",
            &[self.oid.into()],
        )
    }

    /// The tables this one inherits from directly (its partitioned parent, or its INHERITS
    /// parents).
    pub fn parents(&self) -> Vec<pg_sys::Oid> {
        select_column(
            "SELECT inhparent FROM pg_catalog.pg_inherits
              WHERE inhrelid OPERATOR(pg_catalog.=) $1 ORDER BY inhseqno",
            &[self.oid.into()],
        )
    }

    pub fn kind_name(&self) -> &'static str {
        match self.relkind {
            'r' => "table",
            'p' => "partitioned table",
            'v' => "view",
            'm' => "materialized view",
            'f' => "foreign table",
            'S' => "sequence",
            'i' | 'I' => "index",
            'c' => "composite type",
            't' => "TOAST table",
            _ => "relation",
        }
    }
}

/// A column of a table: its number and its type as SQL can spell it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub attnum: i16,
    pub type_oid: pg_sys::Oid,
    pub type_sql: String,
    /// Its collation compares bytes for equality (every collation but a nondeterministic one).
    pub deterministic: bool,
}

impl Column {
    pub fn lookup(table: pg_sys::Oid, name: &str) -> Option<Column> {
        select_row(
            "SELECT a.attnum, a.atttypid, pg_catalog.format_type(a.atttypid, NULL),
                    COALESCE((SELECT c.collisdeterministic FROM pg_catalog.pg_collation c
                               WHERE c.oid OPERATOR(pg_catalog.=) a.attcollation), true)
               FROM pg_catalog.pg_attribute a
              WHERE a.attrelid OPERATOR(pg_catalog.=) $1
                AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name
                AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
            &[table.into(), name.into()],
            |row| {
                Ok(Column {
                    name: name.to_string(),
                    attnum: row.get::<i16>(1)?.unwrap_or_default(),
                    type_oid: row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
                    type_sql: row.get::<String>(3)?.unwrap_or_default(),
                    deterministic: row.get::<bool>(4)?.unwrap_or(true),
                })
            },
        )
    }

    pub fn quoted(&self) -> String {
        quote_identifier(&self.name)
    }
}

thread_local! {
    /// (extension OID, its owner): looked up once per backend and extension. Every audited
    /// statement needs it; an SPI query each time cost more than the audit insert itself.
    static OWNER: std::cell::Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { std::cell::Cell::new(None) };
}

/// The role that owns the extension: registry and audit writes run as this role. Cached per
/// backend; the audit trigger's relcache callback forgets it (`forget_extension_owner`), which
/// covers DROP and CREATE EXTENSION.
pub fn extension_owner() -> pg_sys::Oid {
    if let Some((_, owner)) = OWNER.get() {
        return owner;
    }
    let extension = unsafe { pg_sys::get_extension_oid(c"tenant_guard".as_ptr(), true) };
    let owner = select_value::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE oid OPERATOR(pg_catalog.=) $1",
        &[extension.into()],
    )
    .unwrap_or(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID));
    OWNER.set(Some((extension, owner)));
    owner
}

pub fn forget_extension_owner() {
    OWNER.set(None);
}

/// The name of the role running the current command (before any switch).
pub fn current_role_name() -> String {
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false);
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

/// A C string PostgreSQL (or a library) returned, copied; `None` for a null pointer.
///
/// # Safety
/// `text` is null or points to a NUL-terminated string.
pub unsafe fn c_string(text: *const std::ffi::c_char) -> Option<String> {
    (!text.is_null()).then(|| {
        std::ffi::CStr::from_ptr(text)
            .to_string_lossy()
            .into_owned()
    })
}

/// The name of this backend's database ('' while it has none).
pub fn current_database_name() -> String {
    unsafe { c_string(pg_sys::get_database_name(pg_sys::MyDatabaseId)) }.unwrap_or_default()
}

/// Every table `relid` inherits from, at any depth (partitioned parents and INHERITS parents).
pub fn ancestors(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    select_column(
        "WITH RECURSIVE up(relid) AS (
             SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid OPERATOR(pg_catalog.=) $1
           UNION
             SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid OPERATOR(pg_catalog.=) up.relid)
         SELECT relid FROM up",
        &[relid.into()],
    )
}

/// A registry whose entries partitions inherit from their parent: protection or audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registry {
    Protection,
    Audit,
}

impl Registry {
    /// The registry table (a constant: safe to splice into SQL).
    fn table(self) -> &'static str {
        match self {
            Registry::Protection => "tenant_guard.protected_tables",
            Registry::Audit => "tenant_guard.audit_config",
        }
    }

    /// The registered ancestor a partition or inheritance child inherits its entry from: the
    /// top of the nearest registered ancestor's chain.
    pub fn root_of(self, child: pg_sys::Oid) -> Option<Table> {
        let oid = select_value::<pg_sys::Oid>(
            &format!(
                "WITH RECURSIVE up(relid, depth) AS (
                     SELECT i.inhparent, 1 FROM pg_catalog.pg_inherits i
                      WHERE i.inhrelid OPERATOR(pg_catalog.=) $1
                   UNION ALL
                     SELECT i.inhparent, u.depth OPERATOR(pg_catalog.+) 1
                       FROM pg_catalog.pg_inherits i JOIN up u ON i.inhrelid OPERATOR(pg_catalog.=) u.relid)
                 SELECT COALESCE(r.parent, r.relid)::pg_catalog.oid
                   FROM up JOIN {} r ON r.relid::pg_catalog.oid OPERATOR(pg_catalog.=) up.relid
                  ORDER BY up.depth LIMIT 1",
                self.table()
            ),
            &[child.into()],
        )?;
        Table::lookup(oid)
    }

    /// Entries whose parent is no longer one of their ancestors (a partition was detached, a
    /// child left its parent with NO INHERIT).
    pub fn orphans(self) -> Vec<pg_sys::Oid> {
        let entries: Vec<(pg_sys::Oid, pg_sys::Oid)> = Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT relid::pg_catalog.oid, parent::pg_catalog.oid FROM {}
                          WHERE parent IS NOT NULL",
                        self.table()
                    ),
                    None,
                    &[],
                )?
                .map(|row| {
                    Ok((
                        row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                        row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
                    ))
                })
                .collect::<SpiResult<Vec<_>>>()
        })
        .unwrap_or_else(|e| error::raise(error::internal(e)));
        entries
            .into_iter()
            .filter(|(relid, parent)| !ancestors(*relid).contains(parent))
            .map(|(relid, _)| relid)
            .collect()
    }

    /// Record the table an entry is registered through (None: on its own).
    pub fn set_parent(self, relid: pg_sys::Oid, parent: Option<pg_sys::Oid>) -> Result<()> {
        crate::privilege::as_extension_owner(|| {
            Spi::run_with_args(
                &format!(
                    "UPDATE {} SET parent = $2::pg_catalog.oid::pg_catalog.regclass
                      WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass",
                    self.table()
                ),
                &[relid.into(), parent.into()],
            )
        })
        .map_err(error::internal)
    }

    /// The tables registered through `parent` (its partitions and inheritance children).
    pub fn children(self, parent: pg_sys::Oid) -> Vec<pg_sys::Oid> {
        select_column(
            &format!(
                "SELECT relid::pg_catalog.oid FROM {}
                  WHERE parent OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass",
                self.table()
            ),
            &[parent.into()],
        )
    }

    /// 55000 for a partition (or inheritance child) registered through `parent`: it cannot be
    /// changed on its own.
    pub fn partition_error(self, table: &Table, parent: pg_sys::Oid) -> ErrorReport {
        let (adjective, settings, them) = match self {
            Registry::Protection => ("protected", "protection", "it"),
            Registry::Audit => ("audited", "audit settings", "them"),
        };
        let (relation, children) = if table.is_partition {
            ("is a partition of", "Partitions")
        } else {
            ("inherits from", "Inheritance children")
        };
        let parent = Table::lookup(parent)
            .map(|t| t.qualified())
            .unwrap_or_default();
        error::invalid_state(
            format!(
                "tenant_guard: {} {relation} {adjective} table {parent}",
                table.qualified()
            ),
            format!(
                "{children} share their parent's {settings}: change or remove {them} on {parent}."
            ),
        )
    }
}

/// Whether `relid` or any of its partitions or inheritance children holds a row visible to the
/// transaction, read from the heap itself: no policy, no user code, whoever asks. A child that
/// is not a heap table (a foreign table) counts as holding rows.
pub fn has_rows(relid: pg_sys::Oid) -> Result<bool> {
    let tree = Spi::connect(|client| {
        client
            .select(
                "WITH RECURSIVE tree(relid) AS (
                     SELECT $1::pg_catalog.oid
                     UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                             JOIN tree ON i.inhparent OPERATOR(pg_catalog.=) tree.relid)
                 SELECT c.oid, c.relkind::pg_catalog.text FROM tree
                   JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) tree.relid",
                None,
                &[relid.into()],
            )?
            .map(|row| Ok((row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?)))
            .collect::<SpiResult<Vec<_>>>()
    })
    .map_err(error::internal)?;
    Ok(tree
        .into_iter()
        .any(|(oid, kind)| match (oid, kind.as_deref()) {
            (Some(oid), Some("r")) => unsafe { heap_has_rows(oid) },
            (_, Some("p")) => false,
            _ => true,
        }))
}

unsafe fn heap_has_rows(relid: pg_sys::Oid) -> bool {
    let relation = pg_sys::table_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    let slot = pg_sys::table_slot_create(relation, std::ptr::null_mut());
    let scan = pg_sys::table_beginscan(
        relation,
        pg_sys::GetActiveSnapshot(),
        0,
        std::ptr::null_mut(),
    );
    let found =
        pg_sys::table_scan_getnextslot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
    pg_sys::table_endscan(scan);
    pg_sys::ExecDropSingleTupleTableSlot(slot);
    pg_sys::table_close(relation, pg_sys::NoLock as pg_sys::LOCKMODE);
    found
}
