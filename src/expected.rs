//! The state tenant_guard expects of a registered table, derived from the registry alone, in
//! one place: what `enable_tenant_rls` and `enable_tenant_audit` generate, what the tamper guard
//! accepts when DDL re-creates it (a restore re-creates exactly this), and what the self-check
//! compares tables against.
//!
//! A protected table has row level security enabled and forced; the policies
//! `tenant_guard_isolation` (PERMISSIVE, to the registry's roles or PUBLIC) and
//! `tenant_guard_fence` (RESTRICTIVE, PUBLIC), both `FOR ALL` with `USING` and `WITH CHECK`
//! `<tenant column> = (SELECT tenant_guard.required_tenant_id('<table>'::regclass,
//! NULL::<type>))`; that call as the tenant column's default; and the trigger
//! `tenant_guard_truncate_guard`. An audited table has the four `tenant_guard_audit_*`
//! triggers. Trigger names starting with `tenant_guard_` belong to tenant_guard.
//!
//! Expressions are compared as PostgreSQL prints them (`pg_get_expr`) with
//! `search_path = pg_catalog, pg_temp`, which every caller runs under.

use crate::audit;
use crate::authz::{array_text, permissions};
use crate::catalog::{select_column, Column, Table};
use crate::error;
use crate::policy::{self, PrivateRows, Registered};
use crate::tenant_type::TenantType;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal, quote_qualified_identifier, SpiResult};
use std::collections::HashMap;

pub const ISOLATION_POLICY: &str = "tenant_guard_isolation";
pub const FENCE_POLICY: &str = "tenant_guard_fence";
/// Per-role permissions (`authz::permissions`), one per command.
pub const PERMIT_POLICIES: [(&str, &str); 4] = [
    ("SELECT", "tenant_guard_permit_select"),
    ("INSERT", "tenant_guard_permit_insert"),
    ("UPDATE", "tenant_guard_permit_update"),
    ("DELETE", "tenant_guard_permit_delete"),
];
/// User-private rows (`authz::private_rows`).
pub const PRIVATE_POLICY: &str = "tenant_guard_private";
/// The action writes need (`authz::actions::require_action_for_writes`), one per command.
pub const ACTION_POLICIES: [(&str, &str); 3] = [
    ("INSERT", "tenant_guard_action_insert"),
    ("UPDATE", "tenant_guard_action_update"),
    ("DELETE", "tenant_guard_action_delete"),
];
/// Every policy name tenant_guard generates.
pub const GENERATED_POLICIES: [&str; 10] = [
    ISOLATION_POLICY,
    FENCE_POLICY,
    PERMIT_POLICIES[0].1,
    PERMIT_POLICIES[1].1,
    PERMIT_POLICIES[2].1,
    PERMIT_POLICIES[3].1,
    PRIVATE_POLICY,
    ACTION_POLICIES[0].1,
    ACTION_POLICIES[1].1,
    ACTION_POLICIES[2].1,
];
/// Marks a user column's default as ours.
pub const USER_DEFAULT_MARKER: &str = "tenant_guard.required_user_id(";
pub const TRUNCATE_TRIGGER: &str = "tenant_guard_truncate_guard";
/// The prefix of every trigger and policy name tenant_guard generates.
pub const PREFIX: &str = "tenant_guard_";

// pg_trigger.tgtype bits (catalog/pg_trigger.h).
const TRIGGER_TYPE_BEFORE: i16 = 1 << 1;
const TRIGGER_TYPE_INSERT: i16 = 1 << 2;
const TRIGGER_TYPE_DELETE: i16 = 1 << 3;
const TRIGGER_TYPE_UPDATE: i16 = 1 << 4;
const TRIGGER_TYPE_TRUNCATE: i16 = 1 << 5;

/// How a generated policy calls tenant_guard: through a sub-select (an InitPlan, evaluated once
/// per query), or, on a table Citus distributes, as a plain call of the STABLE function (Citus
/// refuses sub-selects in the policies of distributed tables; an index scan evaluates the call
/// once per scan). One generator makes both shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    InitPlan,
    Flat,
}

impl Shape {
    /// The shape `table`'s policies take.
    pub fn of(table: &Table) -> Shape {
        if crate::citus::is_distributed(table.oid) {
            Shape::Flat
        } else {
            Shape::InitPlan
        }
    }

    /// The table argument of the context calls. A distributed table's has none: Citus creates
    /// a shard (with its default) on a worker before the worker has the table's name, so the
    /// messages of a distributed table say "the table".
    fn table_sql(self, table: &Table) -> String {
        match self {
            Shape::InitPlan => table.regclass_literal(),
            Shape::Flat => "NULL::pg_catalog.regclass".to_string(),
        }
    }

    fn table_printed(self, table: &Table) -> String {
        match self {
            Shape::InitPlan => printed_regclass(table),
            Shape::Flat => "NULL::regclass".to_string(),
        }
    }

    /// `call` as written into generated SQL.
    fn sql(self, call: String) -> String {
        match self {
            Shape::InitPlan => format!("(SELECT {call})"),
            Shape::Flat => call,
        }
    }

    /// `call` as `pg_get_expr` prints it (a sub-select's column gets the function's name).
    fn printed(self, call: String, function: &str) -> String {
        match self {
            Shape::InitPlan => format!("( SELECT {call} AS {function})"),
            Shape::Flat => call,
        }
    }
}

/// What the tenant column is compared with: the context tenant as the column's type.
pub fn context_sql(table: &Table, kind: TenantType, shape: Shape) -> String {
    format!(
        "tenant_guard.required_tenant_id({}, NULL::{})",
        shape.table_sql(table),
        kind.sql_name()
    )
}

/// The generated policies' USING and WITH CHECK expression.
pub fn predicate_sql(table: &Table, column: &str, kind: TenantType, shape: Shape) -> String {
    format!(
        "{} OPERATOR(pg_catalog.=) {}",
        quote_identifier(column),
        shape.sql(context_sql(table, kind, shape))
    )
}

/// A string constant as `pg_get_expr` prints it.
fn printed_literal(text: &str) -> String {
    let mut printed = String::with_capacity(text.len() + 2);
    printed.push('\'');
    for ch in text.chars() {
        if ch == '\'' || (ch == '\\' && !unsafe { pg_sys::standard_conforming_strings }) {
            printed.push(ch);
        }
        printed.push(ch);
    }
    printed.push('\'');
    printed
}

/// `context_sql` as `pg_get_expr` prints it.
fn printed_context(table: &Table, kind: TenantType, shape: Shape) -> String {
    format!(
        "tenant_guard.required_tenant_id({}, NULL::{})",
        shape.table_printed(table),
        kind.sql_name()
    )
}

/// `predicate_sql` as `pg_get_expr` prints it (implicit casts, as for a varchar column, are not
/// printed).
fn printed_predicate(table: &Table, column: &str, kind: TenantType, shape: Shape) -> String {
    format!(
        "({} = {})",
        quote_identifier(column),
        shape.printed(printed_context(table, kind, shape), "required_tenant_id")
    )
}

/// A text array constant as written into generated SQL, and as `pg_get_expr` prints it.
fn array_sql(items: &[String]) -> String {
    format!("{}::pg_catalog.text[]", quote_literal(array_text(items)))
}

fn printed_array(items: &[String]) -> String {
    format!("{}::text[]", printed_literal(&array_text(items)))
}

fn printed_regclass(table: &Table) -> String {
    format!(
        "{}::regclass",
        printed_literal(&quote_qualified_identifier(&table.schema, &table.name))
    )
}

/// A permission policy's expression (`authz::permissions`).
fn permission_sql(table: &Table, command: &str, roles: &[String], shape: Shape) -> String {
    shape.sql(format!(
        "tenant_guard.permitted({}, {}, {})",
        table.regclass_literal(),
        quote_literal(command),
        array_sql(roles)
    ))
}

fn printed_permission(table: &Table, command: &str, roles: &[String], shape: Shape) -> String {
    shape.printed(
        format!(
            "tenant_guard.permitted({}, {}::text, {})",
            printed_regclass(table),
            printed_literal(command),
            printed_array(roles)
        ),
        "permitted",
    )
}

/// Whether `policy` on `table` has the shape of a generated permission policy, for any roles:
/// RESTRICTIVE, TO PUBLIC, the command its name says, and `permitted(<this table>, <command>,
/// <roles>)`. A restrictive policy can only narrow access, so the guard lets a restore create
/// one before the permissions' registry rows arrive (`pg_restore -j` may order them so).
pub fn is_permission_shaped(table: &Table, policy: &Policy) -> bool {
    let Some((command, _)) = PERMIT_POLICIES
        .iter()
        .find(|(_, name)| *name == policy.name)
    else {
        return false;
    };
    let text = match *command {
        "INSERT" => policy.check.as_deref(),
        _ => policy.using.as_deref(),
    };
    let Some(text) = text else {
        return false;
    };
    let shape = Shape::of(table);
    let call = format!(
        "tenant_guard.permitted({}, {}::text, ",
        printed_regclass(table),
        printed_literal(command)
    );
    let (prefix, suffix) = match shape {
        Shape::InitPlan => (format!("( SELECT {call}"), "::text[]) AS permitted)"),
        Shape::Flat => (call, "::text[])"),
    };
    let Some(literal) = text
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .and_then(|rest| rest.strip_prefix('\''))
        .and_then(|rest| rest.strip_suffix('\''))
    else {
        return false;
    };
    if literal.replace("''", "").contains('\'') {
        return false;
    }
    let mut unquoted = literal.replace("''", "'");
    if !unsafe { pg_sys::standard_conforming_strings } {
        unquoted = unquoted.replace("\\\\", "\\");
    }
    let roles = crate::catalog::select_value::<Vec<String>>(
        "SELECT $1::pg_catalog.text[]",
        &[unquoted.as_str().into()],
    )
    .unwrap_or_default();
    *policy
        == command_policy(
            &policy.name,
            command,
            printed_permission(table, command, &roles, shape),
        )
}

/// The permission policy of a command (one of `permissions::COMMANDS`).
fn permit_policy(command: &str) -> &'static str {
    PERMIT_POLICIES
        .iter()
        .find(|(c, _)| *c == command)
        .map(|(_, policy)| *policy)
        .expect("every command has a permission policy")
}

/// `pg_policy.polcmd` of a command.
fn permission_command(command: &str) -> &'static str {
    match command {
        "SELECT" => "r",
        "INSERT" => "a",
        "UPDATE" => "w",
        _ => "d",
    }
}

/// A write-action policy's expression: the action gate, once per statement (and the denial
/// audited).
fn write_action_sql(action: &str, shape: Shape) -> String {
    shape.sql(format!(
        "tenant_guard.require_action({})",
        quote_literal(action)
    ))
}

fn printed_write_action(action: &str, shape: Shape) -> String {
    shape.printed(
        format!(
            "tenant_guard.require_action({}::text)",
            printed_literal(action)
        ),
        "require_action",
    )
}

/// A generated per-command policy: USING for SELECT, UPDATE and DELETE, WITH CHECK for INSERT
/// and UPDATE, as PostgreSQL applies them.
fn command_policy(name: &str, command: &str, printed: String) -> Policy {
    Policy {
        name: name.to_string(),
        permissive: false,
        roles: vec![pg_sys::InvalidOid],
        command: permission_command(command).to_string(),
        using: (command != "INSERT").then(|| printed.clone()),
        check: matches!(command, "INSERT" | "UPDATE").then_some(printed),
    }
}

/// `CREATE POLICY` of a generated per-command policy.
fn command_policy_sql(name: &str, table: &str, command: &str, check: &str) -> String {
    let clauses = match command {
        "INSERT" => format!("WITH CHECK ({check})"),
        "UPDATE" => format!("USING ({check}) WITH CHECK ({check})"),
        _ => format!("USING ({check})"),
    };
    format!("CREATE POLICY {name} ON {table} AS RESTRICTIVE FOR {command} TO PUBLIC {clauses};")
}

/// The user column's default (`authz::private_rows`): the context's user, always required.
pub fn user_default_sql(table: &Table, kind: TenantType) -> String {
    format!(
        "tenant_guard.required_user_id({}, NULL::{}, {})",
        table.regclass_literal(),
        kind.sql_name(),
        array_sql(&[])
    )
}

fn printed_user_default(table: &Table, kind: TenantType) -> String {
    format!(
        "tenant_guard.required_user_id({}, NULL::{}, {})",
        printed_regclass(table),
        kind.sql_name(),
        printed_array(&[])
    )
}

/// The user-private policy's expression.
fn private_sql(table: &Table, private: &PrivateRows, kind: TenantType, shape: Shape) -> String {
    let roles = array_sql(&private.all_rows);
    let mine = format!(
        "{} OPERATOR(pg_catalog.=) {}",
        quote_identifier(&private.column),
        shape.sql(format!(
            "tenant_guard.required_user_id({}, NULL::{}, {roles})",
            table.regclass_literal(),
            kind.sql_name(),
        )),
    );
    if private.all_rows.is_empty() {
        mine
    } else {
        let all = shape.sql(format!("tenant_guard.tenant_role_in({roles})"));
        format!("{mine} OR {all}")
    }
}

fn printed_private(table: &Table, private: &PrivateRows, kind: TenantType, shape: Shape) -> String {
    let roles = printed_array(&private.all_rows);
    let mine = format!(
        "({} = {})",
        quote_identifier(&private.column),
        shape.printed(
            format!(
                "tenant_guard.required_user_id({}, NULL::{}, {roles})",
                printed_regclass(table),
                kind.sql_name(),
            ),
            "required_user_id"
        ),
    );
    if private.all_rows.is_empty() {
        mine
    } else {
        let all = shape.printed(
            format!("tenant_guard.tenant_role_in({roles})"),
            "tenant_role_in",
        );
        format!("({mine} OR {all})")
    }
}

/// The policies and defaults to generate for one table, as SQL (`policy::apply`).
pub struct Generated<'a> {
    pub table: &'a Table,
    pub tenant_column: &'a str,
    pub kind: TenantType,
    /// `TO` of the permissive policy.
    pub to_roles: String,
    pub permissions: Option<&'a [(&'static str, Vec<String>)]>,
    /// The private rows and the user column's type.
    pub private: Option<(&'a PrivateRows, TenantType)>,
    pub write_action: Option<&'a str>,
    pub shape: Shape,
}

impl Generated<'_> {
    pub fn ddl(&self) -> String {
        let name = self.table.qualified();
        let predicate = predicate_sql(self.table, self.tenant_column, self.kind, self.shape);
        let mut ddl = format!(
            "CREATE POLICY {ISOLATION_POLICY} ON {name} AS PERMISSIVE FOR ALL TO {roles}
                 USING ({predicate}) WITH CHECK ({predicate});
             CREATE POLICY {FENCE_POLICY} ON {name} AS RESTRICTIVE FOR ALL TO PUBLIC
                 USING ({predicate}) WITH CHECK ({predicate});",
            roles = self.to_roles
        );
        for (command, roles) in self.permissions.unwrap_or_default() {
            let policy = permit_policy(command);
            let check = permission_sql(self.table, command, roles, self.shape);
            ddl.push_str(&command_policy_sql(policy, &name, command, &check));
        }
        if let Some(action) = self.write_action {
            for (command, policy) in ACTION_POLICIES {
                ddl.push_str(&command_policy_sql(
                    policy,
                    &name,
                    command,
                    &write_action_sql(action, self.shape),
                ));
            }
        }
        if let Some((private, kind)) = self.private {
            let predicate = private_sql(self.table, private, kind, self.shape);
            ddl.push_str(&format!(
                "CREATE POLICY {PRIVATE_POLICY} ON {name} AS RESTRICTIVE FOR ALL TO PUBLIC
                     USING ({predicate}) WITH CHECK ({predicate});
                 ALTER TABLE ONLY {name} ALTER COLUMN {} SET DEFAULT {};",
                quote_identifier(&private.column),
                user_default_sql(self.table, kind)
            ));
        }
        ddl
    }
}

/// A generated policy.
#[derive(Debug, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub permissive: bool,
    /// `polroles`: role OIDs, `{0}` for PUBLIC.
    pub roles: Vec<pg_sys::Oid>,
    pub command: String,
    pub using: Option<String>,
    pub check: Option<String>,
}

/// A generated trigger.
#[derive(Debug, PartialEq, Eq)]
pub struct Trigger {
    pub name: String,
    pub function: String,
    pub tgtype: i16,
    pub enabled: String,
    pub old_table: Option<String>,
    pub new_table: Option<String>,
    /// No arguments, no WHEN clause, no column list, not a constraint trigger.
    pub plain: bool,
}

/// Everything tenant_guard expects of one table.
pub struct Expected {
    pub protection: Option<(Registered, TenantType)>,
    pub policies: Vec<Policy>,
    pub triggers: Vec<Trigger>,
    /// (column, its default as printed): the tenant column's, and a user column's.
    pub defaults: Vec<(String, String)>,
}

fn trigger(
    name: &str,
    function: &str,
    tgtype: i16,
    old: Option<&str>,
    new: Option<&str>,
) -> Trigger {
    Trigger {
        name: name.to_string(),
        function: function.to_string(),
        tgtype,
        enabled: "O".to_string(),
        old_table: old.map(str::to_string),
        new_table: new.map(str::to_string),
        plain: true,
    }
}

/// What the registry says `table` must look like (nothing, for a table it does not know).
pub fn of(table: &Table) -> Expected {
    let mut expected = Expected {
        protection: None,
        policies: Vec::new(),
        triggers: Vec::new(),
        defaults: Vec::new(),
    };
    if let Some(entry) = policy::registered(table.oid) {
        let kind = TenantType::from_oid(entry.type_oid).unwrap_or(TenantType::Text);
        let shape = Shape::of(table);
        let predicate = printed_predicate(table, &entry.column, kind, shape);
        let roles = entry
            .to_roles
            .clone()
            .unwrap_or_else(|| vec![pg_sys::InvalidOid]);
        for (name, permissive, roles) in [
            (ISOLATION_POLICY, true, roles),
            (FENCE_POLICY, false, vec![pg_sys::InvalidOid]),
        ] {
            expected.policies.push(Policy {
                name: name.to_string(),
                permissive,
                roles,
                command: "*".to_string(),
                using: Some(predicate.clone()),
                check: Some(predicate.clone()),
            });
        }
        expected.triggers.push(trigger(
            TRUNCATE_TRIGGER,
            "tenant_guard.truncate_guard()",
            TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_TRUNCATE,
            None,
            None,
        ));
        expected
            .defaults
            .push((entry.column.clone(), printed_context(table, kind, shape)));
        let top = entry.parent.unwrap_or(table.oid);
        for (command, roles) in permissions::roles_by_command(top).unwrap_or_default() {
            let printed = printed_permission(table, command, &roles, shape);
            let name = permit_policy(command);
            expected
                .policies
                .push(command_policy(name, command, printed));
        }
        if let Some(action) = &entry.write_action {
            for (command, name) in ACTION_POLICIES {
                expected.policies.push(command_policy(
                    name,
                    command,
                    printed_write_action(action, shape),
                ));
            }
        }
        if let Some(private) = &entry.private {
            let user_kind = Column::lookup(table.oid, &private.column)
                .and_then(|c| TenantType::from_oid(c.type_oid))
                .unwrap_or(TenantType::Text);
            let printed = printed_private(table, private, user_kind, shape);
            expected.policies.push(Policy {
                name: PRIVATE_POLICY.to_string(),
                permissive: false,
                roles: vec![pg_sys::InvalidOid],
                command: "*".to_string(),
                using: Some(printed.clone()),
                check: Some(printed),
            });
            expected.defaults.push((
                private.column.clone(),
                printed_user_default(table, user_kind),
            ));
        }
        expected.protection = Some((entry, kind));
    }
    if audit::config::options(table.oid).is_some() {
        for (name, op, old, new) in audit::config::TRIGGERS {
            let event = match op {
                audit::Op::Insert => TRIGGER_TYPE_INSERT,
                audit::Op::Update => TRIGGER_TYPE_UPDATE,
                audit::Op::Delete => TRIGGER_TYPE_DELETE,
                audit::Op::Truncate => TRIGGER_TYPE_TRUNCATE,
                audit::Op::Denied => 0, // not a trigger: the action gate's rows
            };
            expected.triggers.push(trigger(
                name,
                "tenant_guard.audit_trigger()",
                event,
                old,
                new,
            ));
        }
    }
    expected
}

const POLICY_COLUMNS: &str = "polrelid, polname::pg_catalog.text, polpermissive,
     polroles::pg_catalog.oid[], polcmd::pg_catalog.text, pg_catalog.pg_get_expr(polqual, polrelid),
     pg_catalog.pg_get_expr(polwithcheck, polrelid)";

/// Policies as the catalog describes them, with the table each is on, for a `WHERE` clause.
fn read_policies(condition: &str, args: &[DatumWithOid<'_>]) -> Vec<(pg_sys::Oid, Policy)> {
    Spi::connect(|client| {
        client
            .select(
                &format!(
                    "SELECT {POLICY_COLUMNS} FROM pg_catalog.pg_policy WHERE {condition}
                      ORDER BY polrelid, polname"
                ),
                None,
                args,
            )?
            .map(|row| {
                Ok((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    Policy {
                        name: row.get::<String>(2)?.unwrap_or_default(),
                        permissive: row.get::<bool>(3)?.unwrap_or_default(),
                        roles: row.get::<Vec<pg_sys::Oid>>(4)?.unwrap_or_default(),
                        command: row.get::<String>(5)?.unwrap_or_default(),
                        using: row.get::<String>(6)?,
                        check: row.get::<String>(7)?,
                    },
                ))
            })
            .collect::<SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

/// A policy as the catalog describes it, with the table it is on.
pub fn policy(oid: pg_sys::Oid) -> Option<(pg_sys::Oid, Policy)> {
    read_policies("oid OPERATOR(pg_catalog.=) $1", &[oid.into()])
        .into_iter()
        .next()
}

/// The policies on a table, by name.
pub fn policies(relid: pg_sys::Oid) -> Vec<Policy> {
    read_policies("polrelid OPERATOR(pg_catalog.=) $1", &[relid.into()])
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

const TRIGGER_COLUMNS: &str = "t.tgrelid, t.tgname::pg_catalog.text,
     t.tgfoid::pg_catalog.regprocedure::pg_catalog.text, t.tgtype, t.tgenabled::pg_catalog.text,
     t.tgoldtable::pg_catalog.text, t.tgnewtable::pg_catalog.text,
     t.tgnargs OPERATOR(pg_catalog.=) 0 AND t.tgqual IS NULL
       AND pg_catalog.cardinality(t.tgattr::pg_catalog.int2[]) OPERATOR(pg_catalog.=) 0
       AND t.tgconstraint OPERATOR(pg_catalog.=) 0";

/// Triggers as the catalog describes them, with the table each is on, for a `WHERE` clause.
fn read_triggers(condition: &str, args: &[DatumWithOid<'_>]) -> Vec<(pg_sys::Oid, Trigger)> {
    Spi::connect(|client| {
        client
            .select(
                &format!(
                    "SELECT {TRIGGER_COLUMNS} FROM pg_catalog.pg_trigger t WHERE {condition}
                      ORDER BY t.tgrelid, t.tgname"
                ),
                None,
                args,
            )?
            .map(|row| {
                Ok((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    Trigger {
                        name: row.get::<String>(2)?.unwrap_or_default(),
                        function: row.get::<String>(3)?.unwrap_or_default(),
                        tgtype: row.get::<i16>(4)?.unwrap_or_default(),
                        enabled: row.get::<String>(5)?.unwrap_or_default(),
                        old_table: row.get::<String>(6)?,
                        new_table: row.get::<String>(7)?,
                        plain: row.get::<bool>(8)?.unwrap_or_default(),
                    },
                ))
            })
            .collect::<SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| error::raise(error::internal(e)))
}

/// A trigger as the catalog describes it, with its table.
pub fn trigger_by_oid(oid: pg_sys::Oid) -> Option<(pg_sys::Oid, Trigger)> {
    read_triggers("t.oid OPERATOR(pg_catalog.=) $1", &[oid.into()])
        .into_iter()
        .next()
}

const OUR_TRIGGERS: &str = "NOT t.tgisinternal
    AND pg_catalog.starts_with(t.tgname::pg_catalog.text, 'tenant_guard_')";

/// tenant_guard's triggers on a table (by name prefix).
pub fn our_triggers(relid: pg_sys::Oid) -> Vec<Trigger> {
    read_triggers(
        &format!("t.tgrelid OPERATOR(pg_catalog.=) $1 AND {OUR_TRIGGERS}"),
        &[relid.into()],
    )
    .into_iter()
    .map(|(_, t)| t)
    .collect()
}

/// The default of a table's column, as printed.
pub fn column_default(relid: pg_sys::Oid, column: &str) -> Option<String> {
    crate::catalog::select_value(
        "SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid)
           FROM pg_catalog.pg_attrdef d
           JOIN pg_catalog.pg_attribute a
             ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid AND a.attnum OPERATOR(pg_catalog.=) d.adnum
          WHERE d.adrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name",
        &[relid.into(), column.into()],
    )
}

/// Whether row level security is enabled and forced on a table.
pub fn rls_forced(relid: pg_sys::Oid) -> bool {
    crate::catalog::select_exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1
                           AND relrowsecurity AND relforcerowsecurity)",
        &[relid.into()],
    )
}

/// What a table has of what tenant_guard expects: read for one table, or (`Actual::of_tables`,
/// for the self-check) for many at once.
#[derive(Default)]
pub struct Actual {
    pub forced: bool,
    pub policies: Vec<Policy>,
    /// Triggers with tenant_guard's prefix.
    pub triggers: Vec<Trigger>,
    /// Column defaults as printed, by column.
    pub defaults: HashMap<String, String>,
    /// Rewrite rules (a protected table has none).
    pub rules: Vec<String>,
}

impl Actual {
    pub fn of(table: &Table, expected: &Expected) -> Actual {
        let mut actual = Actual {
            forced: rls_forced(table.oid),
            policies: policies(table.oid),
            triggers: our_triggers(table.oid),
            ..Actual::default()
        };
        for (column, _) in &expected.defaults {
            if let Some(default) = column_default(table.oid, column) {
                actual.defaults.insert(column.clone(), default);
            }
        }
        actual
    }

    /// The state of many tables, in five catalog queries.
    pub fn of_tables(relids: &[pg_sys::Oid]) -> HashMap<pg_sys::Oid, Actual> {
        let mut all: HashMap<pg_sys::Oid, Actual> =
            relids.iter().map(|oid| (*oid, Actual::default())).collect();
        let args = [relids.to_vec().into()];
        for relid in select_column::<pg_sys::Oid>(
            "SELECT oid FROM pg_catalog.pg_class
              WHERE oid OPERATOR(pg_catalog.=) ANY ($1) AND relrowsecurity AND relforcerowsecurity",
            &args,
        ) {
            all.entry(relid).or_default().forced = true;
        }
        for (relid, policy) in read_policies("polrelid OPERATOR(pg_catalog.=) ANY ($1)", &args) {
            all.entry(relid).or_default().policies.push(policy);
        }
        for (relid, trigger) in read_triggers(
            &format!("t.tgrelid OPERATOR(pg_catalog.=) ANY ($1) AND {OUR_TRIGGERS}"),
            &args,
        ) {
            all.entry(relid).or_default().triggers.push(trigger);
        }
        Spi::connect(|client| {
            let defaults = client.select(
                "SELECT d.adrelid, a.attname::pg_catalog.text, pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                   FROM pg_catalog.pg_attrdef d
                   JOIN pg_catalog.pg_attribute a
                     ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid AND a.attnum OPERATOR(pg_catalog.=) d.adnum
                  WHERE d.adrelid OPERATOR(pg_catalog.=) ANY ($1)",
                None,
                &args,
            )?;
            for row in defaults {
                if let (Some(relid), Some(column), Some(default)) = (
                    row.get::<pg_sys::Oid>(1)?,
                    row.get::<String>(2)?,
                    row.get::<String>(3)?,
                ) {
                    all.entry(relid).or_default().defaults.insert(column, default);
                }
            }
            let rules = client.select(
                "SELECT ev_class, rulename::pg_catalog.text FROM pg_catalog.pg_rewrite
                  WHERE ev_class OPERATOR(pg_catalog.=) ANY ($1) AND rulename OPERATOR(pg_catalog.<>) '_RETURN'",
                None,
                &args,
            )?;
            for row in rules {
                if let (Some(relid), Some(rule)) = (row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?) {
                    all.entry(relid).or_default().rules.push(rule);
                }
            }
            Ok::<_, pgrx::spi::SpiError>(())
        })
        .unwrap_or_else(|e| error::raise(error::internal(e)));
        all
    }
}

/// One way a table differs from what tenant_guard expects of it.
pub struct Difference {
    /// About the audit triggers (else about the protection).
    pub audit: bool,
    pub text: String,
}

impl Expected {
    /// Every way `actual` differs from what is expected. Policies that do not carry a generated
    /// policy's name are not compared: a protected table cannot get one through DDL (the guard
    /// refuses it), and the self-check judges what one does (TG011).
    pub fn compare(&self, table: &Table, actual: &Actual) -> Vec<Difference> {
        let mut differences = Vec::new();
        let name = table.qualified();
        let mut differ = |audit: bool, text: String| differences.push(Difference { audit, text });
        if self.protection.is_some() && !actual.forced {
            differ(
                false,
                format!("row level security is not enabled and forced on {name}"),
            );
        }
        for wanted in &self.policies {
            match actual.policies.iter().find(|p| p.name == wanted.name) {
                None => differ(
                    false,
                    format!("policy {} on {name} is missing", wanted.name),
                ),
                Some(actual) if actual != wanted => differ(
                    false,
                    format!(
                        "policy {} on {name} is not the one tenant_guard generates",
                        wanted.name
                    ),
                ),
                _ => {}
            }
        }
        if self.protection.is_some() {
            for other in actual.policies.iter().filter(|p| {
                GENERATED_POLICIES.contains(&p.name.as_str())
                    && !self.policies.iter().any(|w| w.name == p.name)
            }) {
                differ(
                    false,
                    format!(
                        "policy {} on {name} has a generated policy's name but its registry entry does not call for it",
                        quote_identifier(&other.name)
                    ),
                );
            }
            for rule in &actual.rules {
                differ(
                    false,
                    format!(
                        "rule {} on {name} rewrites statements on it past its policies",
                        quote_identifier(rule)
                    ),
                );
            }
        }
        let is_audit = |trigger: &str| audit::config::TRIGGERS.iter().any(|t| t.0 == trigger);
        for wanted in &self.triggers {
            match actual.triggers.iter().find(|t| t.name == wanted.name) {
                None => differ(
                    is_audit(&wanted.name),
                    format!("trigger {} on {name} is missing", wanted.name),
                ),
                Some(actual) if actual != wanted => differ(
                    is_audit(&wanted.name),
                    format!(
                        "trigger {} on {name} is not the one tenant_guard generates (or is disabled)",
                        wanted.name
                    ),
                ),
                _ => {}
            }
        }
        for stray in actual
            .triggers
            .iter()
            .filter(|t| !self.triggers.iter().any(|w| w.name == t.name))
        {
            differ(
                is_audit(&stray.name),
                format!(
                    "trigger {} on {name} has tenant_guard's prefix but tenant_guard did not create it",
                    quote_identifier(&stray.name)
                ),
            );
        }
        for (column, wanted) in &self.defaults {
            if actual.defaults.get(column) != Some(wanted) {
                differ(
                    false,
                    format!(
                        "the default of {}.{} is not the one tenant_guard generates",
                        name,
                        quote_identifier(column)
                    ),
                );
            }
        }
        differences
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    pub fn trigger(&self, name: &str) -> Option<&Trigger> {
        self.triggers.iter().find(|t| t.name == name)
    }
}
