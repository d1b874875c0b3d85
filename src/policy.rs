//! Row level security generation: ENABLE + FORCE, the permissive policy and the restrictive
//! fence, the column default from the context, the tenant index, the TRUNCATE guard, and the
//! registry `tenant_guard.protected_tables`.
//!
//! Every entry point pins `search_path = pg_catalog, pg_temp`. DDL runs as the caller (so
//! PostgreSQL's ownership checks apply); registry writes and the creation of the TRUNCATE guard
//! run as the extension owner (see `privilege.rs`). Everything happens in the caller's
//! statement: an error anywhere leaves nothing half-applied. What the generated objects look
//! like is defined once, in `expected.rs`; `apply` checks its result against it.

use crate::authz::permissions;
use crate::catalog::{self, select_column, select_exists, select_row, Column, Registry, Table};
use crate::citus;
use crate::error::{self, Result};
use crate::expected::{self, GENERATED_POLICIES, TRUNCATE_TRIGGER, USER_DEFAULT_MARKER};
use crate::guard::OwnDdl;
use crate::gucs;
use crate::privilege;
use crate::sqltypes::{Name, RegClass, RegRole};
use crate::tenant_type::{self, TenantType};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// Marks a column default as ours: `tenant_guard.required_tenant_id(tbl, NULL::<type>)`.
const DEFAULT_MARKER: &str = "tenant_guard.required_tenant_id(";

/// How a table came to be protected (recorded in the registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    EnableTenantRls,
    AutoProtect,
    ProtectTenantTables,
    Partition,
    Inheritance,
}

impl Via {
    fn from_str(via: &str) -> Via {
        match via {
            "auto_protect" => Via::AutoProtect,
            "protect_tenant_tables" => Via::ProtectTenantTables,
            "partition" => Via::Partition,
            "inheritance" => Via::Inheritance,
            _ => Via::EnableTenantRls,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Via::EnableTenantRls => "enable_tenant_rls",
            Via::AutoProtect => "auto_protect",
            Via::ProtectTenantTables => "protect_tenant_tables",
            Via::Partition => "partition",
            Via::Inheritance => "inheritance",
        }
    }
}

/// User-private rows (`authz::private_rows`): the column naming each row's user, and the
/// tenant roles that see all rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateRows {
    pub column: String,
    pub all_rows: Vec<String>,
}

/// What to apply to one table.
#[derive(Clone, Debug)]
pub struct Protection {
    pub column: String,
    pub create_index: bool,
    /// Roles of the permissive policy; `None` is PUBLIC.
    pub to_roles: Option<Vec<pg_sys::Oid>>,
    pub via: Via,
    pub private: Option<PrivateRows>,
    /// The action every write needs (`authz::actions::require_action_for_writes`).
    pub write_action: Option<String>,
}

/// A registry row.
#[derive(Clone, Debug)]
pub struct Registered {
    pub column: String,
    pub type_oid: pg_sys::Oid,
    pub to_roles: Option<Vec<pg_sys::Oid>>,
    /// The protected ancestor a partition or inheritance child was protected through.
    pub parent: Option<pg_sys::Oid>,
    pub previous_default: Option<String>,
    pub via: Via,
    pub private: Option<PrivateRows>,
    pub previous_user_default: Option<String>,
    pub write_action: Option<String>,
}

impl Registered {
    /// The protection this entry records (to apply it again).
    pub fn protection(&self) -> Protection {
        Protection {
            column: self.column.clone(),
            create_index: false,
            to_roles: self.to_roles.clone(),
            via: self.via,
            private: self.private.clone(),
            write_action: self.write_action.clone(),
        }
    }
}

pub fn registered(relid: pg_sys::Oid) -> Option<Registered> {
    select_row(
        "SELECT tenant_column::pg_catalog.text, tenant_type::pg_catalog.oid,
                to_roles::pg_catalog.oid[], parent::pg_catalog.oid, previous_default,
                protected_via, user_column::pg_catalog.text, user_all_rows, previous_user_default,
                write_action
           FROM tenant_guard.protected_tables
          WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass",
        &[relid.into()],
        |row| {
            Ok(Registered {
                column: row.get::<String>(1)?.unwrap_or_default(),
                type_oid: row.get(2)?.unwrap_or(pg_sys::InvalidOid),
                to_roles: row.get(3)?,
                parent: row.get(4)?,
                previous_default: row.get(5)?,
                via: Via::from_str(&row.get::<String>(6)?.unwrap_or_default()),
                private: match row.get::<String>(7)? {
                    Some(column) => Some(PrivateRows {
                        column,
                        all_rows: row.get::<Vec<String>>(8)?.unwrap_or_default(),
                    }),
                    None => None,
                },
                previous_user_default: row.get(9)?,
                write_action: row.get(10)?,
            })
        },
    )
}

pub fn is_excluded(relid: pg_sys::Oid) -> bool {
    select_exists(
        "SELECT EXISTS (SELECT 1 FROM tenant_guard.excluded_tables
                         WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass)",
        &[relid.into()],
    )
}

/// The checks every protection path shares: a permanent, ordinary or partitioned table outside
/// the system schemas, owned by the caller.
pub fn check_protectable(table: &Table) -> Result<()> {
    if !table.is_table() {
        let hint = if table.relkind == 'v' {
            "Protect the tables it reads from, and set security_invoker = true on the view."
        } else {
            "Only ordinary and partitioned tables can be protected."
        };
        return Err(error::malformed(
            format!(
                "tenant_guard: {} is a {}, not a table",
                table.qualified(),
                table.kind_name()
            ),
            hint,
        ));
    }
    if table.temporary {
        return Err(error::malformed(
            format!(
                "tenant_guard: {} is a temporary table",
                quote_identifier(&table.name)
            ),
            "Temporary tables are private to one session and are not protected.",
        ));
    }
    if table.typed {
        return Err(error::malformed(
            format!("tenant_guard: {} is a typed table", table.qualified()),
            "Its columns can be renamed through its type, past tenant_guard's registry: make it \
             an ordinary table first (ALTER TABLE ... NOT OF).",
        ));
    }
    if catalog::is_system_schema(&table.schema) {
        return Err(error::malformed(
            format!("tenant_guard: {} is in a system schema", table.qualified()),
            "Only tables in user schemas can be protected.",
        ));
    }
    if !table.owned {
        return Err(error::forbidden(
            format!("tenant_guard: must be owner of table {}", table.qualified()),
            "Run it as the table owner (or a member of the owning role).",
        ));
    }
    Ok(())
}

/// The tenant column, which must exist and have a supported type.
pub fn tenant_column(table: &Table, name: &str) -> Result<Column> {
    if name.is_empty() {
        return Err(error::malformed(
            "tenant_guard: tenant_column must not be empty",
            "Pass the name of the table's tenant column.",
        ));
    }
    let column = Column::lookup(table.oid, name).ok_or_else(|| {
        error::undefined_column(
            format!(
                "tenant_guard: column {} of {} does not exist",
                quote_identifier(name),
                table.qualified()
            ),
            "Pass tenant_column => the name of the table's tenant column.",
        )
    })?;
    if TenantType::from_oid(column.type_oid).is_none() {
        return Err(error::malformed(
            format!(
                "tenant_guard: tenant column {} of {} has type {}",
                column.quoted(),
                table.qualified(),
                column.type_sql
            ),
            format!(
                "A tenant column must be of type {}.",
                tenant_type::SUPPORTED
            ),
        ));
    }
    if !column.deterministic {
        return Err(error::malformed(
            format!(
                "tenant_guard: tenant column {} of {} has a nondeterministic collation",
                column.quoted(),
                table.qualified()
            ),
            "Under it, different tenant ids (say 'acme' and 'ACME') would compare equal: give \
             the column a deterministic collation (COLLATE \"C\").",
        ));
    }
    Ok(column)
}

/// Protect a table and its partitions and inheritance children (present and future).
/// Idempotent: re-running replaces the generated objects with identical ones.
pub fn protect(table: &Table, protection: &Protection) -> Result<()> {
    check_protectable(table)?;
    if protection
        .private
        .as_ref()
        .is_some_and(|p| p.column == protection.column)
    {
        return Err(error::malformed(
            "tenant_guard: the tenant column cannot be the user column of private rows",
            "Pass the table's tenant column; the user column holds each row's user.",
        ));
    }
    let column = tenant_column(table, &protection.column)?;
    refuse_policies_and_rules(table)?;
    apply(table, &column, protection, None)?;
    check_parents(table)?;
    protect_children(table, protection, false)?;
    warn_unscoped_foreign_keys(table.oid, None);
    Ok(())
}

/// Protect the partitions and inheritance children of a protected table (at any depth) with its
/// settings: all of them, or (`only_new`) those not yet protected through it.
pub fn protect_children(parent: &Table, protection: &Protection, only_new: bool) -> Result<()> {
    let adopted = |oid: &pg_sys::Oid| {
        !(only_new && registered(*oid).is_some_and(|entry| entry.parent == Some(parent.oid)))
    };
    let descendants: Vec<pg_sys::Oid> = parent.descendants().into_iter().filter(adopted).collect();
    // Tables protected on their own (or through another parent) join only a parent that covers
    // their protection; all of them are judged before any is changed.
    for oid in &descendants {
        if registered(*oid).is_some_and(|entry| entry.parent != Some(parent.oid)) {
            require_covering_protection(&Table::require(*oid)?, parent.oid)?;
        }
    }
    for oid in descendants {
        let child = Table::require(oid)?;
        check_protectable(&child)?;
        let column = tenant_column(&child, &protection.column)?;
        refuse_policies_and_rules(&child)?;
        let child_protection = Protection {
            create_index: false,
            via: if child.is_partition {
                Via::Partition
            } else {
                Via::Inheritance
            },
            ..protection.clone()
        };
        apply(&child, &column, &child_protection, Some(parent.oid))?;
        // A child may have another parent too (INHERITS (a, b)).
        check_parents(&child)?;
    }
    Ok(())
}

/// A protected table's rows are read without its policies through a scan of a table it
/// inherits from (a parent's scan applies only the parent's policies). So every table a
/// protected table inherits from must be protected at least as strictly.
pub fn check_parents(table: &Table) -> Result<()> {
    if registered(table.oid).is_none() {
        return Ok(());
    }
    let parents = table.parents();
    for parent in &parents {
        require_covering_protection(table, *parent)?;
        // With several parents, the table is protected through one of them: it must also be
        // no less strict than each other one, or its rows would join that parent's scans
        // without that parent's write action, permissions or private rows.
        if parents.len() > 1 {
            let mutual = match (protection_key(table.oid), protection_key(*parent)) {
                (Some(child), Some(parent)) => child.covers(&parent),
                _ => false,
            };
            if !mutual {
                return Err(error::forbidden(
                    format!(
                        "tenant_guard: protected table {} inherits from tables protected differently",
                        table.qualified()
                    ),
                    "A table with several parents must be protected exactly as each of them \
                     (tenant column, roles, user-private rows, permissions, write action).",
                ));
            }
        }
    }
    Ok(())
}

/// Everything a registered table's protection decides.
struct ProtectionKey {
    column: String,
    type_oid: pg_sys::Oid,
    /// The permissive policy's roles; None is PUBLIC (the widest).
    to_roles: Option<Vec<pg_sys::Oid>>,
    private: Option<PrivateRows>,
    /// The permissions of the table it belongs to.
    permissions: Option<Vec<(&'static str, Vec<String>)>>,
    write_action: Option<String>,
}

fn protection_key(relid: pg_sys::Oid) -> Option<ProtectionKey> {
    let entry = registered(relid)?;
    let permissions = permissions::roles_by_command(entry.parent.unwrap_or(relid));
    Some(ProtectionKey {
        column: entry.column,
        type_oid: entry.type_oid,
        to_roles: entry.to_roles,
        private: entry.private,
        permissions,
        write_action: entry.write_action,
    })
}

impl ProtectionKey {
    /// Whether this (a parent's) protection is at least as strict as `child`'s: the same tenant
    /// column, the permissive policy for no role the child's leaves out, and the child's
    /// user-private rows and permissions, where it has them.
    fn covers(&self, child: &ProtectionKey) -> bool {
        let roles = match (&self.to_roles, &child.to_roles) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(theirs)) => mine.iter().all(|role| theirs.contains(role)),
        };
        self.column == child.column
            && self.type_oid == child.type_oid
            && roles
            && (child.private.is_none() || self.private == child.private)
            && (child.permissions.is_none() || self.permissions == child.permissions)
            && (child.write_action.is_none() || self.write_action == child.write_action)
    }
}

/// 42501 unless `parent` is protected at least as strictly as `table`: a scan of a parent
/// applies only the parent's policies, so a parent protected less strictly (not at all, another
/// tenant column, a wider permissive policy, no private rows, other permissions) reads around
/// the child's; and adopting a protected table as a partition or child (which gives it the
/// parent's protection) must not weaken it.
pub fn require_covering_protection(table: &Table, parent: pg_sys::Oid) -> Result<()> {
    let covered = match (protection_key(table.oid), protection_key(parent)) {
        (Some(child), Some(parent)) => parent.covers(&child),
        _ => false,
    };
    if covered {
        return Ok(());
    }
    let parent = Table::lookup(parent)
        .map(|t| t.qualified())
        .unwrap_or_else(|| format!("OID {}", parent.to_u32()));
    Err(error::forbidden(
        format!(
            "tenant_guard: protected table {} cannot inherit from {parent}, which is not protected at least as strictly",
            table.qualified()
        ),
        format!(
            "A scan of {parent} would read the rows of {} past their protection. Protect {parent} \
             at least as strictly first (tenant column, roles, user-private rows, table \
             permissions), or do not make it a parent.",
            table.qualified()
        ),
    ))
}

/// A protected table carries tenant_guard's policies only (any other policy could widen what the
/// generated ones allow, and would have to be re-created around them by every restore), and no
/// rules (a rule rewrites statements on the table into others, past its policies).
fn refuse_policies_and_rules(table: &Table) -> Result<()> {
    let foreign = policies_and_rules_of_its_own(table);
    if foreign.is_empty() {
        return Ok(());
    }
    Err(error::invalid_state(
        format!(
            "tenant_guard: {} has policies or rules of its own: {}",
            table.qualified(),
            foreign.join(", ")
        ),
        "Drop them first: tenant_guard's policies replace hand-written tenant policies, and a \
         protected table carries no others and no rules.",
    ))
}

/// The policies tenant_guard does not generate and the rules on a table, as `policy <name>` or
/// `rule <name>` with the name quoted.
pub fn policies_and_rules_of_its_own(table: &Table) -> Vec<String> {
    select_column::<String>(
        "SELECT 'policy ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(polname)
           FROM pg_catalog.pg_policy
          WHERE polrelid OPERATOR(pg_catalog.=) $1
            AND polname OPERATOR(pg_catalog.<>) ALL ($2::pg_catalog.name[])
         UNION ALL
         SELECT 'rule ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(rulename)
           FROM pg_catalog.pg_rewrite
          WHERE ev_class OPERATOR(pg_catalog.=) $1 AND rulename OPERATOR(pg_catalog.<>) '_RETURN'
          ORDER BY 1",
        &[table.oid.into(), GENERATED_POLICIES.to_vec().into()],
    )
}

/// Warn about foreign keys between protected tables that do not pair the tenant columns: a
/// reference check bypasses row level security, so tenant B could reference (and so learn of)
/// tenant A's rows, and A's ON DELETE CASCADE would delete B's. `constraint` limits the check
/// to one constraint.
pub fn warn_unscoped_foreign_keys(relid: pg_sys::Oid, constraint: Option<pg_sys::Oid>) {
    let unscoped = select_column::<String>(
        "SELECT pg_catalog.format('%I from %s to %s', c.conname, c.conrelid::pg_catalog.regclass,
                                  c.confrelid::pg_catalog.regclass)
           FROM pg_catalog.pg_constraint c
           JOIN tenant_guard.protected_tables a ON a.relid::pg_catalog.oid OPERATOR(pg_catalog.=) c.conrelid
           JOIN tenant_guard.protected_tables b ON b.relid::pg_catalog.oid OPERATOR(pg_catalog.=) c.confrelid
           JOIN pg_catalog.pg_attribute ta ON ta.attrelid OPERATOR(pg_catalog.=) c.conrelid
                                          AND ta.attname OPERATOR(pg_catalog.=) a.tenant_column
           JOIN pg_catalog.pg_attribute tb ON tb.attrelid OPERATOR(pg_catalog.=) c.confrelid
                                          AND tb.attname OPERATOR(pg_catalog.=) b.tenant_column
          WHERE c.contype OPERATOR(pg_catalog.=) 'f'
            AND c.conparentid OPERATOR(pg_catalog.=) 0
            AND (c.conrelid OPERATOR(pg_catalog.=) $1 OR c.confrelid OPERATOR(pg_catalog.=) $1)
            AND ($2::pg_catalog.oid IS NULL OR c.oid OPERATOR(pg_catalog.=) $2)
            AND NOT EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest(c.conkey), pg_catalog.unnest(c.confkey)) k(l, r)
                             WHERE k.l OPERATOR(pg_catalog.=) ta.attnum
                               AND k.r OPERATOR(pg_catalog.=) tb.attnum)
          ORDER BY c.conname",
        &[relid.into(), constraint.into()],
    );
    for constraint in unscoped {
        error::warn(
            PgSqlErrorCode::ERRCODE_WARNING,
            format!("tenant_guard: foreign key {constraint} does not include the tenant column"),
            "Its check bypasses row level security: one tenant can reference (and so learn of) \
             another tenant's rows, and ON DELETE CASCADE deletes across tenants. Make it \
             composite: FOREIGN KEY (tenant_id, ref_id) REFERENCES t (tenant_id, id), with \
             UNIQUE (tenant_id, id) on t.",
        );
    }
}

fn role_list(to_roles: &Option<Vec<pg_sys::Oid>>) -> String {
    match to_roles {
        None => "PUBLIC".to_string(),
        Some(roles) => roles
            .iter()
            .map(|oid| {
                let name =
                    unsafe { std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(*oid, false)) };
                quote_identifier(name.to_string_lossy())
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `DROP POLICY` for the generated policies that exist on the table.
fn drop_generated_policies(table: &Table) -> String {
    select_column::<String>(
        "SELECT polname::pg_catalog.text FROM pg_catalog.pg_policy
          WHERE polrelid OPERATOR(pg_catalog.=) $1
            AND polname OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.name[])",
        &[table.oid.into(), GENERATED_POLICIES.to_vec().into()],
    )
    .iter()
    .map(|policy| {
        format!(
            "DROP POLICY {} ON {};",
            quote_identifier(policy),
            table.qualified()
        )
    })
    .collect()
}

fn current_default(table: &Table, column: &Column) -> Option<String> {
    expected::column_default(table.oid, &column.name)
}

fn has_tenant_index(table: &Table, column: &Column) -> bool {
    select_exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index
                         WHERE indrelid OPERATOR(pg_catalog.=) $1
                           AND indkey[0] OPERATOR(pg_catalog.=) $2 AND indpred IS NULL)",
        &[table.oid.into(), column.attnum.into()],
    )
}

/// Create an index led by `columns` unless the table has one.
pub fn ensure_index(table: &Table, columns: &[&str]) -> Result<()> {
    let attnums: Vec<i16> = columns
        .iter()
        .filter_map(|name| Column::lookup(table.oid, name).map(|c| c.attnum))
        .collect();
    let exists = select_exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index
                         WHERE indrelid OPERATOR(pg_catalog.=) $1 AND indpred IS NULL
                           AND (indkey::pg_catalog.int2[])[0:$3] OPERATOR(pg_catalog.=) $2::pg_catalog.int2[])",
        &[
            table.oid.into(),
            attnums.clone().into(),
            (attnums.len() as i32 - 1).into(),
        ],
    );
    if exists {
        return Ok(());
    }
    let list: Vec<String> = columns.iter().map(quote_identifier).collect();
    Spi::run(&format!(
        "CREATE INDEX ON {} ({})",
        table.qualified(),
        list.join(", ")
    ))
    .map_err(error::internal)
}

/// The protected table whose settings (permissions) cover `table`: its parent, or itself.
fn top_of(table: &Table, parent: Option<pg_sys::Oid>) -> pg_sys::Oid {
    parent.unwrap_or(table.oid)
}

/// `ALTER COLUMN ... SET DEFAULT previous` or `DROP DEFAULT`, when the column's default is
/// tenant_guard's (`marker`).
fn restore_default(table: &Table, column: &str, marker: &str, previous: &Option<String>) -> String {
    let Some(column) = Column::lookup(table.oid, column) else {
        return String::new();
    };
    if !current_default(table, &column).is_some_and(|d| d.contains(marker)) {
        return String::new();
    }
    let (name, col) = (table.qualified(), column.quoted());
    match previous {
        Some(previous) => {
            format!("ALTER TABLE ONLY {name} ALTER COLUMN {col} SET DEFAULT {previous};")
        }
        None => format!("ALTER TABLE ONLY {name} ALTER COLUMN {col} DROP DEFAULT;"),
    }
}

/// Apply the generated objects to one table and record it. Column defaults are kept and
/// replayed as text (`pg_get_expr`), so both happen with `standard_conforming_strings = on`:
/// under a caller's `off`, a backslash in a stored default would end its literal early.
fn apply(
    table: &Table,
    column: &Column,
    protection: &Protection,
    parent: Option<pg_sys::Oid>,
) -> Result<()> {
    with_standard_strings(|| apply_as_standard(table, column, protection, parent))
}

/// Run generated DDL. On a distributed table (`table`) one statement at a time, since Citus
/// sends a statement it propagates with the text it came in and a worker refuses several
/// commands in one; and a policy the table has already is not created again.
fn run_ddl(ddl: &str, distributed: Option<&Table>) -> Result<()> {
    let Some(table) = distributed else {
        return Spi::run(ddl).map_err(error::internal);
    };
    let existing = select_column::<String>(
        "SELECT polname::pg_catalog.text FROM pg_catalog.pg_policy
          WHERE polrelid OPERATOR(pg_catalog.=) $1",
        &[table.oid.into()],
    );
    let text = std::ffi::CString::new(ddl).map_err(error::internal)?;
    let statements = unsafe {
        pgrx::PgList::<pg_sys::RawStmt>::from_pg(parse(&text))
            .iter_ptr()
            .filter(|&raw| {
                let stmt = (*raw).stmt;
                !(pgrx::is_a(stmt, pg_sys::NodeTag::T_CreatePolicyStmt) && {
                    let name = (*(stmt as *mut pg_sys::CreatePolicyStmt)).policy_name;
                    !name.is_null()
                        && existing
                            .iter()
                            .any(|e| e.as_bytes() == std::ffi::CStr::from_ptr(name).to_bytes())
                })
            })
            .map(|raw| {
                let start = (*raw).stmt_location.max(0) as usize;
                let end = match (*raw).stmt_len {
                    0 => ddl.len(),
                    len => start + len as usize,
                };
                ddl[start..end].to_string()
            })
            .collect::<Vec<_>>()
    };
    for statement in statements {
        Spi::run(&statement).map_err(error::internal)?;
    }
    Ok(())
}

#[cfg(feature = "pg13")]
unsafe fn parse(text: &std::ffi::CStr) -> *mut pg_sys::List {
    pg_sys::raw_parser(text.as_ptr())
}

#[cfg(not(feature = "pg13"))]
unsafe fn parse(text: &std::ffi::CStr) -> *mut pg_sys::List {
    pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT)
}

fn with_standard_strings<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    gucs::with_setting(
        c"standard_conforming_strings",
        c"on",
        pg_sys::GucContext::PGC_USERSET,
        f,
    )
}

fn apply_as_standard(
    table: &Table,
    column: &Column,
    protection: &Protection,
    parent: Option<pg_sys::Oid>,
) -> Result<()> {
    unsafe { pg_sys::LockRelationOid(table.oid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE) };
    // Re-read under the lock: the table may have changed while we waited.
    let table = &Table::require(table.oid)?;
    let column = &tenant_column(table, &column.name)?;
    let before = registered(table.oid);

    let previous_default = match current_default(table, column) {
        Some(expr) if expr.contains(DEFAULT_MARKER) => {
            before.as_ref().and_then(|r| r.previous_default.clone())
        }
        other => other,
    };
    let user_column = match &protection.private {
        Some(private) => Some(Column::lookup(table.oid, &private.column).ok_or_else(|| {
            error::undefined_column(
                format!(
                    "tenant_guard: user column {} of {} does not exist",
                    quote_identifier(&private.column),
                    table.qualified()
                ),
                "Every partition and child has the user column of the table it belongs to.",
            )
        })?),
        None => None,
    };
    let previous_user_default =
        user_column
            .as_ref()
            .and_then(|user| match current_default(table, user) {
                Some(expr) if expr.contains(USER_DEFAULT_MARKER) => before
                    .as_ref()
                    .filter(|b| b.private.as_ref().is_some_and(|p| p.column == user.name))
                    .and_then(|b| b.previous_user_default.clone()),
                other => other,
            });
    // Record first: the DDL below fires the event trigger, which skips registered tables.
    let protected_by = catalog::current_role_name();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.protected_tables AS p
                    (relid, tenant_column, tenant_type, to_roles, parent, protected_via,
                     previous_default, protected_by, user_column, user_all_rows,
                     previous_user_default, write_action)
             VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2::pg_catalog.name,
                     $3::pg_catalog.oid::pg_catalog.regtype,
                     $4::pg_catalog.oid[]::pg_catalog.regrole[],
                     $5::pg_catalog.oid::pg_catalog.regclass, $6, $7, $8::pg_catalog.name,
                     $9::pg_catalog.name, $10, $11, $12)
             ON CONFLICT (relid) DO UPDATE
                SET tenant_column = excluded.tenant_column, tenant_type = excluded.tenant_type,
                    to_roles = excluded.to_roles, parent = excluded.parent,
                    protected_via = excluded.protected_via,
                    previous_default = excluded.previous_default,
                    protected_by = excluded.protected_by, protected_at = pg_catalog.now(),
                    user_column = excluded.user_column, user_all_rows = excluded.user_all_rows,
                    previous_user_default = excluded.previous_user_default,
                    write_action = excluded.write_action",
            &[
                table.oid.into(),
                column.name.as_str().into(),
                column.type_oid.into(),
                protection.to_roles.clone().into(),
                parent.into(),
                protection.via.as_str().into(),
                previous_default.into(),
                protected_by.as_str().into(),
                protection.private.as_ref().map(|p| p.column.clone()).into(),
                protection
                    .private
                    .as_ref()
                    .map(|p| p.all_rows.clone())
                    .into(),
                previous_user_default.into(),
                protection.write_action.clone().into(),
            ],
        )?;
        Spi::run_with_args(
            "DELETE FROM tenant_guard.excluded_tables
              WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass",
            &[table.oid.into()],
        )
    })
    .map_err(error::internal)?;
    if parent.is_some() {
        // A partition or child follows the permissions of the table it belongs to.
        permissions::forget(&[table.oid])?;
    }

    let name = table.qualified();
    let col = column.quoted();
    let kind = TenantType::from_oid(column.type_oid).unwrap_or(TenantType::Text);
    let shape = expected::Shape::of(table);
    let context = expected::context_sql(table, kind, shape);
    // Citus refuses any change to a distributed table's distribution column: its default was
    // set before it was distributed (citus::distribute_table), and shards carry it.
    let distributed = citus::in_catalog(table.oid);
    let set_default = if distributed {
        String::new()
    } else {
        format!(", ALTER COLUMN {col} SET DEFAULT {context}")
    };
    let mut ddl =
        format!(
        "ALTER TABLE ONLY {name} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY{set_default};
         {drop_policies}",
        // A distributed table keeps the generated policies it has: a shard's protection is
        // never taken down, not even for a moment (the workers' guard refuses it).
        drop_policies = if distributed { String::new() } else { drop_generated_policies(table) },
    );
    // A user column that is no longer one gets its default back.
    if let Some(was) = before.as_ref().and_then(|b| b.private.as_ref()) {
        if protection.private.as_ref().map(|p| &p.column) != Some(&was.column) {
            let previous = before
                .as_ref()
                .and_then(|b| b.previous_user_default.clone());
            ddl.push_str(&restore_default(
                table,
                &was.column,
                USER_DEFAULT_MARKER,
                &previous,
            ));
        }
    }
    let permissions = permissions::roles_by_command(top_of(table, parent));
    if shape == expected::Shape::Flat
        && (permissions.is_some()
            || protection.private.is_some()
            || protection.write_action.is_some())
    {
        return Err(error::not_supported(
            format!(
                "tenant_guard: {name} is distributed by Citus; per-role permissions, user-private \
                 rows and write actions are not supported on distributed tables yet"
            ),
            "Keep the table local, or remove them (remove_table_permissions, \
             disable_user_private_rows, require_action_for_writes with NULL) first.",
        ));
    }
    let generated = expected::Generated {
        table,
        tenant_column: &column.name,
        kind,
        to_roles: role_list(&protection.to_roles),
        permissions: permissions.as_deref(),
        private: protection
            .private
            .as_ref()
            .zip(user_column.as_ref())
            .map(|(p, c)| {
                (
                    p,
                    TenantType::from_oid(c.type_oid).unwrap_or(TenantType::Text),
                )
            }),
        write_action: protection.write_action.as_deref(),
        shape,
    };
    ddl.push_str(&generated.ddl());
    if protection.create_index && !has_tenant_index(table, column) {
        ddl.push_str(&format!("CREATE INDEX ON {name} ({col});"));
    }
    run_ddl(&ddl, distributed.then_some(table))?;
    // The trigger function is not executable by PUBLIC (see privilege.rs). A distributed table
    // got it from citus::distribute_table, on every shard.
    privilege::as_extension_owner(|| {
        if distributed {
            return Ok(());
        }
        Spi::run(&format!(
            "CREATE OR REPLACE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {name}
                 FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.truncate_guard();"
        ))
    })
    .map_err(error::internal)?;
    // Its protection, that is: the audit triggers are enable_tenant_audit's.
    let expected = expected::of(table);
    let actual = expected::Actual::of(table, &expected);
    if let Some(difference) = expected.compare(table, &actual).iter().find(|d| !d.audit) {
        return Err(error::internal(format!(
            "protecting {name} left a state tenant_guard does not expect: {}",
            difference.text
        )));
    }
    Ok(())
}

/// A protected top-level table named by an argument, with its registry entry: 55000 for one
/// that is not protected, and for a partition or child (its settings are its parent's).
pub fn protected_top(tbl: Option<RegClass>) -> Result<(Table, Registered)> {
    let table = Table::from_argument(tbl)?;
    check_protectable(&table)?;
    let Some(entry) = registered(table.oid) else {
        return Err(error::invalid_state(
            format!("tenant_guard: {} is not protected", table.qualified()),
            "Protect it first: SELECT tenant_guard.enable_tenant_rls('<table>');",
        ));
    };
    if let Some(parent) = entry.parent {
        return Err(Registry::Protection.partition_error(&table, parent));
    }
    Ok((table, entry))
}

/// Apply a protected table's registered protection again, after `change` (permissions,
/// user-private rows or the write action changed), to it and its partitions and children.
pub fn reprotect(table: &Table, change: impl FnOnce(&mut Protection)) -> Result<()> {
    let entry = registered(table.oid).ok_or_else(|| {
        error::invalid_state(
            format!("tenant_guard: {} is not protected", table.qualified()),
            "Protect it first: SELECT tenant_guard.enable_tenant_rls('<table>');",
        )
    })?;
    let mut protection = entry.protection();
    change(&mut protection);
    protect(table, &protection)
}

/// Remove protection from a table and the partitions protected through it.
pub fn unprotect(table: &Table) -> Result<bool> {
    let Some(entry) = registered(table.oid) else {
        return Ok(false);
    };
    if let Some(parent) = entry.parent {
        return Err(Registry::Protection.partition_error(table, parent));
    }
    let children = Registry::Protection.children(table.oid);
    remove(table, &entry)?;
    for oid in &children {
        if let (Some(child), Some(child_entry)) = (Table::lookup(*oid), registered(*oid)) {
            check_protectable(&child)?;
            remove(&child, &child_entry)?;
        }
    }
    let mut tree = children;
    tree.push(table.oid);
    permissions::forget(&tree)?;
    Ok(true)
}

fn remove(table: &Table, entry: &Registered) -> Result<()> {
    with_standard_strings(|| remove_as_standard(table, entry))
}

fn remove_as_standard(table: &Table, entry: &Registered) -> Result<()> {
    check_protectable(table)?;
    if citus::in_catalog(table.oid) {
        return Err(error::not_supported(
            format!(
                "tenant_guard: {} is distributed by Citus; its protection is not removed while it is",
                table.qualified()
            ),
            "Turn it back into a local table first (Citus's undistribute_table, as a role that \
             bypasses row level security).",
        ));
    }
    unsafe { pg_sys::LockRelationOid(table.oid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE) };
    let name = table.qualified();
    let mut ddl = drop_generated_policies(table);
    let has_guard = select_exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                         WHERE tgrelid OPERATOR(pg_catalog.=) $1
                           AND tgname OPERATOR(pg_catalog.=) $2::pg_catalog.name)",
        &[table.oid.into(), TRUNCATE_TRIGGER.into()],
    );
    if has_guard {
        ddl.push_str(&format!("DROP TRIGGER {TRUNCATE_TRIGGER} ON {name};"));
    }
    ddl.push_str(&restore_default(
        table,
        &entry.column,
        DEFAULT_MARKER,
        &entry.previous_default,
    ));
    if let Some(private) = &entry.private {
        ddl.push_str(&restore_default(
            table,
            &private.column,
            USER_DEFAULT_MARKER,
            &entry.previous_user_default,
        ));
    }
    // Other policies on the table keep it under row level security.
    let other_policies = select_exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_policy
                         WHERE polrelid OPERATOR(pg_catalog.=) $1
                           AND polname OPERATOR(pg_catalog.<>) ALL ($2::pg_catalog.name[]))",
        &[table.oid.into(), GENERATED_POLICIES.to_vec().into()],
    );
    if other_policies {
        error::notice(format!(
            "tenant_guard: {name} keeps row level security enabled: it has other policies"
        ));
    } else {
        ddl.push_str(&format!(
            "ALTER TABLE ONLY {name} NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;"
        ));
    }
    Spi::run(&ddl).map_err(error::internal)?;
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "DELETE FROM tenant_guard.protected_tables
              WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass",
            &[table.oid.into()],
        )
    })
    .map_err(error::internal)
}

fn resolve_roles(to_roles: Option<Vec<Option<RegRole>>>) -> Result<Option<Vec<pg_sys::Oid>>> {
    let Some(roles) = to_roles else {
        return Ok(None);
    };
    if roles.is_empty() {
        return Err(error::malformed(
            "tenant_guard: to_roles must not be empty",
            "Pass NULL for PUBLIC, or the roles the permissive policy applies to.",
        ));
    }
    roles
        .into_iter()
        .map(|role| {
            let role = role.ok_or_else(|| {
                error::malformed(
                    "tenant_guard: to_roles must not contain NULL",
                    "Remove the NULL element.",
                )
            })?;
            if unsafe { pg_sys::GetUserNameFromId(role.0, true) }.is_null() {
                return Err(error::malformed(
                    format!(
                        "tenant_guard: role with OID {} does not exist",
                        role.0.to_u32()
                    ),
                    "Pass existing roles, e.g. ARRAY['app']::regrole[].",
                ));
            }
            Ok(role.0)
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Protect a table: ENABLE + FORCE row level security, generated policies, a default from the
/// context, a tenant index, a TRUNCATE guard; partitions (present and future) get the same.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn enable_tenant_rls(
    tbl: Option<RegClass>,
    tenant_column: default!(Option<Name>, "'tenant_id'"),
    create_index: default!(Option<bool>, true),
    to_roles: default!(Option<Vec<Option<RegRole>>>, "NULL"),
) -> Result<()> {
    let table = Table::from_argument(tbl)?;
    let Some(Name(column)) = tenant_column else {
        return Err(error::malformed(
            "tenant_guard: tenant_column must not be NULL",
            "Pass the name of the table's tenant column.",
        ));
    };
    let Some(create_index) = create_index else {
        return Err(error::malformed(
            "tenant_guard: create_index must not be NULL",
            "Pass true or false.",
        ));
    };
    let to_roles = resolve_roles(to_roles)?;
    if let Some(parent) = registered(table.oid).and_then(|entry| entry.parent) {
        return Err(Registry::Protection.partition_error(&table, parent));
    }
    let _ours = OwnDdl::start();
    protect(
        &table,
        &Protection {
            column,
            create_index,
            to_roles,
            via: Via::EnableTenantRls,
            // Re-running keeps the table's user-private rows.
            private: registered(table.oid).and_then(|entry| entry.private),
            write_action: registered(table.oid).and_then(|entry| entry.write_action),
        },
    )
}

/// Remove tenant_guard's policies, default, TRUNCATE guard and registry entry from a table and
/// its partitions. The tenant index stays. Idempotent.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn disable_tenant_rls(tbl: Option<RegClass>) -> Result<()> {
    let table = Table::from_argument(tbl)?;
    check_protectable(&table)?;
    let _ours = OwnDdl::start();
    if !unprotect(&table)? {
        error::notice(format!(
            "tenant_guard: {} is not protected; nothing to do",
            table.qualified()
        ));
    }
    Ok(())
}

/// Opt a table out of automatic protection (and of protect_tenant_tables). If it is protected,
/// its protection is removed. enable_tenant_rls on it later opts it back in.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn exclude_table(tbl: Option<RegClass>) -> Result<()> {
    let table = Table::from_argument(tbl)?;
    check_protectable(&table)?;
    let _ours = OwnDdl::start();
    if unprotect(&table)? {
        error::notice(format!(
            "tenant_guard: {} was protected; protection removed",
            table.qualified()
        ));
    }
    let excluded_by = catalog::current_role_name();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.excluded_tables (relid, excluded_by)
             VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2::pg_catalog.name)
             ON CONFLICT (relid) DO NOTHING",
            &[table.oid.into(), excluded_by.as_str().into()],
        )
    })
    .map_err(error::internal)
}

/// Protect every table (in `schema`, or in all user schemas) that has the tenant column
/// `tenant_guard.tenant_column` and is neither protected nor excluded. Returns the tables it
/// protected. Partitions are protected through their parents.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn protect_tenant_tables(
    schema: default!(Option<Name>, "NULL"),
) -> Result<SetOfIterator<'static, RegClass>> {
    let schema = schema.map(|Name(s)| s);
    if let Some(schema) = &schema {
        let exists = select_exists(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace
                             WHERE nspname OPERATOR(pg_catalog.=) $1::pg_catalog.name)",
            &[schema.as_str().into()],
        );
        if !exists {
            return Err(error::undefined_schema(format!(
                "tenant_guard: schema {} does not exist",
                quote_identifier(schema)
            )));
        }
    }
    let column = configured_tenant_column()?;
    let _ours = OwnDdl::start();
    let candidates = select_column::<pg_sys::Oid>(
        "SELECT c.oid FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
           JOIN pg_catalog.pg_attribute a
             ON a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attname OPERATOR(pg_catalog.=) $1::pg_catalog.name
            AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
          WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog.\"char\"[])
            AND c.relpersistence OPERATOR(pg_catalog.<>) 't'
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                             WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid)
            AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema,tenant_guard}'::pg_catalog.name[])
            AND n.nspname::pg_catalog.text OPERATOR(pg_catalog.!~) '^pg_(toast|temp)'
            AND ($2::pg_catalog.name IS NULL OR n.nspname OPERATOR(pg_catalog.=) $2::pg_catalog.name)
            AND NOT EXISTS (SELECT 1 FROM tenant_guard.protected_tables p
                             WHERE p.relid::pg_catalog.oid OPERATOR(pg_catalog.=) c.oid)
            AND NOT EXISTS (SELECT 1 FROM tenant_guard.excluded_tables e
                             WHERE e.relid::pg_catalog.oid OPERATOR(pg_catalog.=) c.oid)
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                             WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                               AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) 'e')
          ORDER BY n.nspname, c.relname",
                &[column.as_str().into(), schema.clone().into()],
    );
    let mut protected = Vec::with_capacity(candidates.len());
    for oid in candidates {
        let table = Table::require(oid)?;
        protect(
            &table,
            &Protection {
                column: column.clone(),
                create_index: true,
                to_roles: None,
                via: Via::ProtectTenantTables,
                private: None,
                write_action: None,
            },
        )?;
        protected.push(RegClass(oid));
    }
    Ok(SetOfIterator::new(protected))
}

/// `tenant_guard.tenant_column`, which must not be empty.
pub fn configured_tenant_column() -> Result<String> {
    gucs::text_value(&gucs::TENANT_COLUMN).ok_or_else(|| {
        error::malformed(
            "tenant_guard: tenant_guard.tenant_column is empty",
            "SET tenant_guard.tenant_column = 'tenant_id' (or your tenant column's name).",
        )
    })
}
