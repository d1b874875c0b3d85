//! What the audit trigger knows about one audited table: its columns with their renderers and
//! audit options, its primary key, its tenant column and whether its rows are chained; and the
//! jsonb images it makes of a row.

use super::render::Render;
use crate::jsonb::Builder;
use pgrx::pg_sys;
use std::ffi::CString;

pub const REDACTED: &str = "[redacted]";

/// How a column appears in the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    Clear,
    Redacted,
    Excluded,
}

pub struct Column {
    name: CString,
    /// Position in the relation's tuple descriptor (attnum - 1).
    index: usize,
    render: Render,
    logged: Logged,
    len: i16,
    byval: bool,
}

/// A table's audit description, built from the relation and the registry by `config`.
pub struct AuditedTable {
    /// Holds the output functions' caches; deleted with the description.
    memory: pg_sys::MemoryContext,
    /// In jsonb's key order (shorter names first, then bytewise): the builder gets every
    /// object's keys sorted, and jsonb's sort of them finds nothing to do.
    columns: Vec<Column>,
    /// Indexes into `columns`.
    primary_key: Vec<usize>,
    tenant: Option<usize>,
    pub chained: bool,
}

impl Drop for AuditedTable {
    fn drop(&mut self) {
        unsafe { pg_sys::MemoryContextDelete(self.memory) };
    }
}

/// One row of a tuple, as the slot deforms it.
pub struct Tuple<'t> {
    pub values: &'t [pg_sys::Datum],
    pub nulls: &'t [bool],
}

impl AuditedTable {
    /// Describe `relation` (whose tuple descriptor the transition tuples share) with the audit
    /// options `logged` (by column name), its primary key and tenant column (by name).
    pub unsafe fn new(
        relation: &pg_sys::RelationData,
        logged: impl Fn(&str) -> Logged,
        primary_key: &[String],
        tenant_column: Option<&str>,
        chained: bool,
    ) -> AuditedTable {
        let memory = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"tenant_guard audited table".as_ptr(),
            pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
            pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
            pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
        );
        let desc = relation.rd_att;
        let mut columns = Vec::new();
        for index in 0..(*desc).natts as usize {
            let attribute = &*(*desc).attrs.as_ptr().add(index);
            if attribute.attisdropped {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(attribute.attname.data.as_ptr());
            columns.push(Column {
                name: name.to_owned(),
                index,
                render: Render::for_type(attribute.atttypid, memory),
                logged: logged(&name.to_string_lossy()),
                len: attribute.attlen,
                byval: attribute.attbyval,
            });
        }
        columns.sort_by(|a, b| {
            let (a, b) = (a.name.to_bytes(), b.name.to_bytes());
            (a.len(), a).cmp(&(b.len(), b))
        });
        let position = |wanted: &str| {
            columns
                .iter()
                .position(|c| c.name.to_bytes() == wanted.as_bytes())
        };
        let mut primary_key: Vec<usize> = primary_key.iter().filter_map(|c| position(c)).collect();
        primary_key.sort_unstable();
        AuditedTable {
            primary_key,
            tenant: tenant_column.and_then(position),
            memory,
            columns,
            chained,
        }
    }

    /// The number of attributes the transition tuples must be deformed up to.
    pub fn natts(&self) -> usize {
        self.columns.iter().map(|c| c.index + 1).max().unwrap_or(0)
    }

    /// How many attributes must be deformed to read the tenant column (None: it has none).
    pub fn tenant_natts(&self) -> Option<usize> {
        self.tenant.map(|i| self.columns[i].index + 1)
    }

    /// The tenant a row belongs to: its tenant column as text (None for unprotected tables,
    /// where the context tenant is recorded instead, or a NULL tenant column).
    pub unsafe fn tenant(&self, row: &Tuple) -> Option<Option<String>> {
        let column = &self.columns[self.tenant?];
        Some((!row.nulls[column.index]).then(|| column.render.text(row.values[column.index])))
    }

    /// `{"pk column": value, ...}`, never redacted.
    pub unsafe fn primary_key(&self, row: &Tuple) -> pg_sys::Datum {
        let mut builder = Builder::new();
        builder.begin_object();
        for &i in &self.primary_key {
            self.push_column(&mut builder, &self.columns[i], row, false);
        }
        builder.end_object();
        builder.finish()
    }

    /// The images below are built and serialised in the current memory context.
    ///
    /// The row without its excluded columns, redacted columns as the marker (present whether
    /// the value is NULL or not: nothing about it leaks).
    pub unsafe fn image(&self, row: &Tuple) -> pg_sys::Datum {
        let mut builder = Builder::new();
        builder.begin_object();
        for column in &self.columns {
            if column.logged != Logged::Excluded {
                self.push_column(&mut builder, column, row, true);
            }
        }
        builder.end_object();
        builder.finish()
    }

    /// The logged columns whose stored value an UPDATE changed (byte for byte: PostgreSQL's
    /// `datum_image_eq`), as (old, new) images; None when nothing logged changed.
    pub unsafe fn changes(
        &self,
        old: &Tuple,
        new: &Tuple,
    ) -> Option<(pg_sys::Datum, pg_sys::Datum)> {
        let changed: Vec<&Column> = self
            .columns
            .iter()
            .filter(|c| c.logged != Logged::Excluded && c.changed(old, new))
            .collect();
        if changed.is_empty() {
            return None;
        }
        let image = |row: &Tuple| {
            let mut builder = Builder::new();
            builder.begin_object();
            for column in &changed {
                self.push_column(&mut builder, column, row, true);
            }
            builder.end_object();
            builder.finish()
        };
        Some((image(old), image(new)))
    }

    unsafe fn push_column(
        &self,
        builder: &mut Builder<'_>,
        column: &Column,
        row: &Tuple,
        redact: bool,
    ) {
        // The key borrows the description, which outlives the builder.
        let key: &[u8] =
            std::slice::from_raw_parts(column.name.as_ptr().cast(), column.name.as_bytes().len());
        builder.key(key);
        if redact && column.logged == Logged::Redacted {
            builder.string(REDACTED.as_bytes());
        } else if row.nulls[column.index] {
            builder.null();
        } else {
            column.render.push(builder, row.values[column.index]);
        }
    }
}

unsafe extern "C-unwind" {
    /// utils/datum.h (not in pgrx's bindings): whether two values are stored identically,
    /// detoasting as needed. Called through `pg_guard_ffi_boundary` (it may raise an error).
    fn datum_image_eq(
        value1: pg_sys::Datum,
        value2: pg_sys::Datum,
        typ_by_val: bool,
        typ_len: i32,
    ) -> bool;
}

impl Column {
    unsafe fn changed(&self, old: &Tuple, new: &Tuple) -> bool {
        let i = self.index;
        match (old.nulls[i], new.nulls[i]) {
            (true, true) => false,
            (false, false) => !pg_sys::ffi::pg_guard_ffi_boundary(|| {
                datum_image_eq(old.values[i], new.values[i], self.byval, self.len as i32)
            }),
            _ => true,
        }
    }
}
