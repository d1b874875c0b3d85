//! The action gate: a catalogue of actions (`tool:send_email`, `tool:refund`, `export:csv`),
//! rules that grant or deny them (by tenant role, tenant plan, API-key scope, tenant, resource
//! pattern; see `decision`), and the questions a session asks about itself:
//! `authorize(action, resource)`, `require_action(action, resource)` and `allowed_actions()`.
//!
//! The rules and the tenants' plans are cached per backend and read again when the auth epoch
//! moves (`auth::epoch`: every change to `actions` and `action_rules` sends a relcache
//! invalidation, which every backend processes no later than its next statement; the gate
//! itself processes pending invalidations before it decides, so a change committed elsewhere
//! holds from the next decision on, also inside a running transaction).

use super::decision::{self, Denial, Rule, Subject};
use super::denial;
use crate::auth::{self, cache::cached, cache::EpochCache, read};
use crate::catalog::Table;
use crate::context;
use crate::error::{self, Result};
use crate::guard::OwnDdl;
use crate::policy;
use crate::privilege;
use crate::sqltypes::RegClass;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Longest accepted action name and resource, in bytes.
const MAX_ACTION_BYTES: usize = 128;
const MAX_RESOURCE_BYTES: usize = 1024;

type Rules = HashMap<String, Vec<Rule>>;

thread_local! {
    /// Every catalogued action with its rules, as of an epoch.
    static RULES: RefCell<Option<(u64, Rc<Rules>)>> = const { RefCell::new(None) };
    /// Tenants' plans.
    static PLANS: RefCell<EpochCache<String, Option<String>>> = RefCell::new(EpochCache::default());
}

fn rules() -> Rc<Rules> {
    let epoch = auth::epoch();
    if let Some(rules) = RULES.with(|r| match r.borrow().as_ref() {
        Some((at, rules)) if *at == epoch => Some(rules.clone()),
        _ => None,
    }) {
        return rules;
    }
    let mut rules = Rules::new();
    read::select(
        "SELECT a.action, r.id, r.effect OPERATOR(pg_catalog.=) 'deny', r.tenant_role, r.plan,
                r.scope, r.tenant_id, r.resource
           FROM tenant_guard.actions a
           LEFT JOIN tenant_guard.action_rules r ON r.action OPERATOR(pg_catalog.=) a.action
          ORDER BY a.action, r.id",
        &[],
        |row| {
            let list = rules
                .entry(row.get::<String>(1).unwrap_or_default())
                .or_default();
            if let Some(id) = row.get::<i64>(2) {
                list.push(Rule {
                    id,
                    deny: row.get::<bool>(3).unwrap_or(true),
                    tenant_role: row.get(4),
                    plan: row.get(5),
                    scope: row.get(6),
                    tenant_id: row.get(7),
                    resource: row.get(8),
                });
            }
        },
    );
    let rules = Rc::new(rules);
    RULES.with(|r| *r.borrow_mut() = Some((epoch, rules.clone())));
    rules
}

fn plan_of(tenant_id: &str) -> Option<String> {
    cached(&PLANS, tenant_id.to_string(), || {
        read::select(
            "SELECT plan FROM tenant_guard.tenants WHERE tenant_id OPERATOR(pg_catalog.=) $1",
            &[read::arg(Some(tenant_id))],
            |row| row.get::<String>(1),
        )
        .into_iter()
        .next()
        .flatten()
    })
}

/// An action name (22023): 1 to 128 bytes of letters, digits and `_ . : / -`.
fn validate_action(action: Option<&str>) -> Result<&str> {
    let hint = "An action is 1 to 128 bytes of letters, digits and _ . : / - (e.g. 'tool:refund').";
    let Some(action) = action else {
        return Err(error::malformed(
            "tenant_guard: action must not be NULL",
            hint,
        ));
    };
    let valid = !action.is_empty()
        && action.len() <= MAX_ACTION_BYTES
        && action
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b));
    if !valid {
        return Err(error::malformed(
            "tenant_guard: malformed action name",
            hint,
        ));
    }
    Ok(action)
}

/// A resource (or resource pattern), when given (22023): printable, at most 1024 bytes.
fn validate_resource(resource: Option<&str>) -> Result<Option<&str>> {
    let Some(resource) = resource else {
        return Ok(None);
    };
    if resource.is_empty()
        || resource.len() > MAX_RESOURCE_BYTES
        || resource.chars().any(char::is_control)
    {
        return Err(error::malformed(
            "tenant_guard: malformed resource",
            "A resource is 1 to 1024 bytes without control characters; in rules, * matches any run of characters.",
        ));
    }
    Ok(Some(resource))
}

/// A resource asked about (22023): as `validate_resource`, and without `*`, which only rules
/// give a meaning (asked about, `project:*` would match a grant on `project:*` literally).
fn validate_question_resource(resource: Option<&str>) -> Result<Option<&str>> {
    let resource = validate_resource(resource)?;
    if resource.is_some_and(|r| r.contains('*')) {
        return Err(error::malformed(
            "tenant_guard: a resource asked about cannot contain *",
            "Ask about one resource (e.g. 'project:42/readme'); * is a wildcard in rules only.",
        ));
    }
    Ok(resource)
}

/// What a gate question found: the subject (from the verified context) and the verdict.
struct Question {
    tenant: Option<String>,
    role: Option<String>,
    plan: Option<String>,
    /// The credential's scopes (None: a credential without scopes).
    scopes: Option<Vec<String>>,
}

impl Question {
    /// The verified context, after pending invalidations (a grant changed elsewhere counts
    /// from now on) and the credential check every use of a context makes.
    fn ask() -> Result<Question> {
        // A parallel worker has no credential (its scopes, its expiry): it cannot ask. The
        // questions are PARALLEL RESTRICTED; a wrapper declared otherwise fails closed here.
        if unsafe { pg_sys::ParallelWorkerNumber } >= 0 {
            return Err(error::forbidden(
                "tenant_guard: the action gate cannot be asked from a parallel worker",
                "Do not wrap authorize/require_action/allowed_actions in a function declared \
                 PARALLEL SAFE.",
            ));
        }
        unsafe { pg_sys::AcceptInvalidationMessages() };
        let Some(tenant) = context::tenant_in_use()? else {
            return Ok(Question {
                tenant: None,
                role: None,
                plan: None,
                scopes: None,
            });
        };
        Ok(Question {
            role: context::current_tenant_role(),
            plan: plan_of(&tenant),
            scopes: auth::current_scopes(&tenant),
            tenant: Some(tenant),
        })
    }

    fn subject(&self) -> Option<Subject<'_>> {
        Some(Subject {
            tenant_id: self.tenant.as_deref()?,
            role: self.role.as_deref(),
            plan: self.plan.as_deref(),
            scopes: self.scopes.as_deref(),
        })
    }

    fn decide(
        &self,
        rules: &Rules,
        action: &str,
        resource: Option<&str>,
    ) -> Option<std::result::Result<i64, Denial>> {
        let subject = self.subject()?;
        Some(decision::decide(
            rules.get(action).map(Vec::as_slice),
            &subject,
            action,
            resource,
        ))
    }
}

/// Whether the context may perform `action` (on `resource`): see `decision` for the formula.
/// False without a context. Asks only; nothing is recorded.
#[pg_extern(stable, parallel_restricted)]
pub fn authorize(action: Option<&str>, resource: default!(Option<&str>, "NULL")) -> Result<bool> {
    let action = validate_action(action)?;
    let resource = validate_question_resource(resource)?;
    let question = Question::ask()?;
    Ok(matches!(
        question.decide(&rules(), action, resource),
        Some(Ok(_))
    ))
}

/// `authorize`, or 42501 naming the action, the role, the tenant and the rule that denied; a
/// denial is recorded in the audit log (by a background worker: the error rolls back the
/// transaction). Returns true, so that it can stand in a policy or a CHECK-style trigger.
#[pg_extern(volatile, parallel_restricted)]
pub fn require_action(
    action: Option<&str>,
    resource: default!(Option<&str>, "NULL"),
) -> Result<bool> {
    let action = validate_action(action)?;
    let resource = validate_question_resource(resource)?;
    let question = Question::ask()?;
    let denial = match question.decide(&rules(), action, resource) {
        Some(Ok(_)) => return Ok(true),
        Some(Err(denial)) => Some(denial),
        None => None,
    };
    let reason = match &denial {
        Some(denial) => denial.describe(),
        None => "no tenant context is set".to_string(),
    };
    let rule = match denial {
        Some(Denial::DenyRule(id)) => Some(id),
        _ => None,
    };
    denial::record(&denial::Denied {
        tenant: question.tenant.as_deref(),
        role: question.role.as_deref(),
        action,
        resource,
        reason: &reason,
        rule,
    });
    let quoted = |v: &Option<String>| {
        v.as_deref()
            .map(|v| format!("\"{v}\""))
            .unwrap_or_else(|| "(none)".to_string())
    };
    Err(error::forbidden(
        format!(
            "tenant_guard: action \"{action}\"{} denied to role {} of tenant {}: {}",
            resource
                .map(|r| format!(" on \"{r}\""))
                .unwrap_or_default(),
            quoted(&question.role),
            quoted(&question.tenant),
            reason,
        ),
        match denial {
            None => "Set the tenant context first (tenant_guard.set_tenant_context_api_key, \
                     _token or set_tenant_context)."
                .to_string(),
            Some(Denial::DenyRule(id)) => format!(
                "Deny rule {id} beats every grant; an administrator lifts it with \
                 tenant_guard.remove_action_rule({id})."
            ),
            Some(Denial::Scope) => format!(
                "Use a credential whose scopes cover '{action}' (an API key issued with scopes \
                 => ARRAY['{action}'], or a token whose scope claim names it)."
            ),
            Some(Denial::UnknownAction) => format!(
                "An administrator adds it to the catalogue: SELECT tenant_guard.add_action('{action}');"
            ),
            Some(Denial::NoGrant) => format!(
                "An administrator grants it, e.g. SELECT tenant_guard.grant_action('{action}', \
                 tenant_role => '<role>'); tenant_guard.allowed_actions() lists what this context \
                 may do."
            ),
        },
    ))
}

/// The catalogued actions the context may perform (on `resource`), to filter a tool list
/// before a model sees it. Empty without a context.
#[pg_extern(stable, parallel_restricted)]
pub fn allowed_actions(
    resource: default!(Option<&str>, "NULL"),
) -> Result<SetOfIterator<'static, String>> {
    let resource = validate_question_resource(resource)?;
    let question = Question::ask()?;
    let rules = rules();
    let mut allowed: Vec<String> = rules
        .keys()
        .filter(|action| matches!(question.decide(&rules, action, resource), Some(Ok(_))))
        .cloned()
        .collect();
    allowed.sort();
    Ok(SetOfIterator::new(allowed))
}

/// `BEFORE ... FOR EACH STATEMENT EXECUTE FUNCTION tenant_guard.require_action_trigger('tool:refund')`:
/// a table whose writes need an action. (A module of its own: `#[pg_trigger]` expands to code
/// that names `Result`, which this module imports as tenant_guard's.)
mod trigger {
    use crate::error;
    use pgrx::prelude::*;

    #[pg_trigger]
    fn require_action_trigger<'a>(
        trigger: &'a pgrx::PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
        let args = trigger.extra_args().unwrap_or_default();
        let [action] = args.as_slice() else {
            error::raise(error::malformed(
                "tenant_guard: require_action_trigger takes one argument, the action",
                "CREATE TRIGGER ... EXECUTE FUNCTION tenant_guard.require_action_trigger('tool:refund')",
            ));
        };
        if let Err(report) = super::require_action(Some(action), None) {
            error::raise(report);
        }
        Ok(trigger.new().or_else(|| trigger.old()))
    }
}

/// Make every INSERT, UPDATE and DELETE on a protected table (and its partitions) need
/// `action` (NULL: none): RESTRICTIVE policies `tenant_guard_action_{insert,update,delete}`
/// calling `require_action` once per statement, generated and guarded like the table's other
/// policies, so the table's owner cannot drop them. For the table's owner.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn require_action_for_writes(tbl: Option<RegClass>, action: Option<&str>) -> Result<()> {
    let (table, _) = policy::protected_top(tbl)?;
    let action = match action {
        None => None,
        Some(action) => {
            let action = validate_action(Some(action))?;
            require_catalogued(action)?;
            Some(action.to_string())
        }
    };
    let gated = action.is_some();
    let _ours = OwnDdl::start();
    policy::reprotect(&table, |protection| protection.write_action = action)?;
    if gated {
        warn_referential_actions(&table);
    }
    Ok(())
}

/// Foreign keys of `table` whose ON DELETE / ON UPDATE action writes to it: PostgreSQL runs
/// those writes as the table's owner without row level security, so they skip the write
/// action (and every policy of the table).
fn warn_referential_actions(table: &Table) {
    let cascading = crate::catalog::select_column::<String>(
        "SELECT pg_catalog.quote_ident(conname::pg_catalog.text) FROM pg_catalog.pg_constraint
          WHERE conrelid OPERATOR(pg_catalog.=) $1 AND contype OPERATOR(pg_catalog.=) 'f'
            AND (confdeltype OPERATOR(pg_catalog.<>) ALL ('{a,r}'::pg_catalog.\"char\"[])
                 OR confupdtype OPERATOR(pg_catalog.<>) ALL ('{a,r}'::pg_catalog.\"char\"[]))
          ORDER BY 1",
        &[table.oid.into()],
    );
    if !cascading.is_empty() {
        error::warn(
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "tenant_guard: foreign keys of {} cascade or set values ({}): those writes skip its write action",
                table.qualified(),
                cascading.join(", ")
            ),
            "PostgreSQL performs referential actions as the table's owner without row level \
             security. Use ON DELETE/UPDATE NO ACTION or RESTRICT on tables whose writes need an \
             action.",
        );
    }
}

// --- administration ------------------------------------------------------------------------

fn run(sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Result<()> {
    privilege::as_extension_owner(|| Spi::run_with_args(sql, args)).map_err(error::internal)
}

fn require_catalogued(action: &str) -> Result<()> {
    let catalogued = privilege::as_extension_owner(|| {
        crate::catalog::select_exists(
            "SELECT EXISTS (SELECT 1 FROM tenant_guard.actions WHERE action OPERATOR(pg_catalog.=) $1)",
            &[action.into()],
        )
    });
    if catalogued {
        return Ok(());
    }
    Err(error::undefined_object(
        format!("tenant_guard: action \"{action}\" is not in the catalogue"),
        format!("Add it first: SELECT tenant_guard.add_action('{action}', 'what it does');"),
    ))
}

/// Add an action to the catalogue (or change its description). For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn add_action(action: Option<&str>, description: default!(Option<&str>, "NULL")) -> Result<()> {
    auth::require_admin("add_action")?;
    let action = validate_action(action)?;
    if description.is_some_and(|d| d.len() > 1024) {
        return Err(error::malformed(
            "tenant_guard: description is longer than 1024 bytes",
            "Shorten it.",
        ));
    }
    let added_by = crate::catalog::current_role_name();
    run(
        "INSERT INTO tenant_guard.actions (action, description, added_by)
         VALUES ($1, $2, $3::pg_catalog.name)
         ON CONFLICT (action) DO UPDATE SET description = excluded.description",
        &[action.into(), description.into(), added_by.as_str().into()],
    )?;
    Ok(())
}

/// Remove an action and its rules. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn remove_action(action: Option<&str>) -> Result<()> {
    auth::require_admin("remove_action")?;
    let action = validate_action(action)?;
    require_catalogued(action)?;
    run(
        "DELETE FROM tenant_guard.actions WHERE action OPERATOR(pg_catalog.=) $1",
        &[action.into()],
    )?;
    Ok(())
}

/// A rule's conditions, validated (NULL: any).
struct Conditions<'a> {
    tenant_role: Option<&'a str>,
    plan: Option<&'a str>,
    scope: Option<&'a str>,
    tenant_id: Option<&'a str>,
    resource: Option<&'a str>,
}

impl<'a> Conditions<'a> {
    fn validated(
        tenant_role: Option<&'a str>,
        plan: Option<&'a str>,
        scope: Option<&'a str>,
        tenant_id: Option<&'a str>,
        resource: Option<&'a str>,
    ) -> Result<Conditions<'a>> {
        for (argument, value) in [
            ("tenant_role", tenant_role),
            ("plan", plan),
            ("scope", scope),
        ] {
            if let Some(value) = value {
                context::validate_value(argument, value)?;
            }
        }
        if let Some(tenant_id) = tenant_id {
            context::validate_tenant_id(tenant_id)?;
        }
        Ok(Conditions {
            tenant_role,
            plan,
            scope,
            tenant_id,
            resource: validate_resource(resource)?,
        })
    }

    fn args(&self) -> [pgrx::datum::DatumWithOid<'a>; 5] {
        [
            self.tenant_role.into(),
            self.plan.into(),
            self.scope.into(),
            self.tenant_id.into(),
            self.resource.into(),
        ]
    }
}

const SAME_CONDITIONS: &str = "tenant_role IS NOT DISTINCT FROM $3 AND plan IS NOT DISTINCT FROM $4
     AND scope IS NOT DISTINCT FROM $5 AND tenant_id IS NOT DISTINCT FROM $6
     AND resource IS NOT DISTINCT FROM $7";

/// Add a grant or deny rule (idempotent); its id.
fn add_rule(
    function: &str,
    effect: &str,
    action: Option<&str>,
    conditions: Conditions<'_>,
) -> Result<i64> {
    auth::require_admin(function)?;
    let action = validate_action(action)?;
    require_catalogued(action)?;
    let added_by = crate::catalog::current_role_name();
    let [role, plan, scope, tenant, resource] = conditions.args();
    let id = privilege::as_extension_owner(|| {
        Spi::get_one_with_args::<i64>(
            &format!(
                "WITH added AS (
                   INSERT INTO tenant_guard.action_rules
                          (action, effect, tenant_role, plan, scope, tenant_id, resource, added_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8::pg_catalog.name)
                   ON CONFLICT DO NOTHING RETURNING id)
                 SELECT id FROM added
                 UNION ALL
                 SELECT id FROM tenant_guard.action_rules
                  WHERE action OPERATOR(pg_catalog.=) $1 AND effect OPERATOR(pg_catalog.=) $2
                    AND {SAME_CONDITIONS}
                 LIMIT 1"
            ),
            &[
                action.into(),
                effect.into(),
                role,
                plan,
                scope,
                tenant,
                resource,
                added_by.as_str().into(),
            ],
        )
    })
    .map_err(error::internal)?
    .ok_or_else(|| error::internal("the rule was neither added nor found"))?;
    Ok(id)
}

/// Grant an action to contexts matching every condition given (NULL: any). Returns the rule's
/// id. Idempotent. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn grant_action(
    action: Option<&str>,
    tenant_role: default!(Option<&str>, "NULL"),
    plan: default!(Option<&str>, "NULL"),
    scope: default!(Option<&str>, "NULL"),
    tenant_id: default!(Option<&str>, "NULL"),
    resource: default!(Option<&str>, "NULL"),
) -> Result<i64> {
    let conditions = Conditions::validated(tenant_role, plan, scope, tenant_id, resource)?;
    add_rule("grant_action", "grant", action, conditions)
}

/// Deny an action to contexts matching every condition given; a matching deny beats every
/// grant. Returns the rule's id. Idempotent. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn deny_action(
    action: Option<&str>,
    tenant_role: default!(Option<&str>, "NULL"),
    plan: default!(Option<&str>, "NULL"),
    scope: default!(Option<&str>, "NULL"),
    tenant_id: default!(Option<&str>, "NULL"),
    resource: default!(Option<&str>, "NULL"),
) -> Result<i64> {
    let conditions = Conditions::validated(tenant_role, plan, scope, tenant_id, resource)?;
    add_rule("deny_action", "deny", action, conditions)
}

/// Remove the grant with exactly these conditions; whether there was one. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn revoke_action(
    action: Option<&str>,
    tenant_role: default!(Option<&str>, "NULL"),
    plan: default!(Option<&str>, "NULL"),
    scope: default!(Option<&str>, "NULL"),
    tenant_id: default!(Option<&str>, "NULL"),
    resource: default!(Option<&str>, "NULL"),
) -> Result<bool> {
    auth::require_admin("revoke_action")?;
    let conditions = Conditions::validated(tenant_role, plan, scope, tenant_id, resource)?;
    let action = validate_action(action)?;
    let [role, plan, scope, tenant, resource] = conditions.args();
    let removed = privilege::as_extension_owner(|| {
        Spi::get_one_with_args::<i64>(
            &format!(
                "WITH removed AS (
                   DELETE FROM tenant_guard.action_rules
                    WHERE action OPERATOR(pg_catalog.=) $1 AND effect OPERATOR(pg_catalog.=) $2
                      AND {SAME_CONDITIONS}
                   RETURNING 1)
                 SELECT pg_catalog.count(*) FROM removed"
            ),
            &[
                action.into(),
                "grant".into(),
                role,
                plan,
                scope,
                tenant,
                resource,
            ],
        )
    })
    .map_err(error::internal)?
    .unwrap_or(0);
    Ok(removed > 0)
}

/// Remove a rule (a grant or a deny) by its id. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn remove_action_rule(id: Option<i64>) -> Result<()> {
    auth::require_admin("remove_action_rule")?;
    let Some(id) = id else {
        return Err(error::malformed(
            "tenant_guard: id must not be NULL",
            "Pass a rule id from tenant_guard.list_action_rules().",
        ));
    };
    let removed = privilege::as_extension_owner(|| {
        Spi::get_one_with_args::<bool>(
            "WITH removed AS (DELETE FROM tenant_guard.action_rules
                               WHERE id OPERATOR(pg_catalog.=) $1 RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM removed)",
            &[id.into()],
        )
    })
    .map_err(error::internal)?
    .unwrap_or(false);
    if !removed {
        return Err(error::undefined_object(
            format!("tenant_guard: action rule {id} does not exist"),
            "tenant_guard.list_action_rules() lists the rules.",
        ));
    }
    Ok(())
}

/// The rules (of one action, or all). For administrators.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn list_action_rules(
    action: default!(Option<&str>, "NULL"),
) -> Result<
    TableIterator<
        'static,
        (
            name!(id, i64),
            name!(action, String),
            name!(effect, String),
            name!(tenant_role, Option<String>),
            name!(plan, Option<String>),
            name!(scope, Option<String>),
            name!(tenant_id, Option<String>),
            name!(resource, Option<String>),
        ),
    >,
> {
    auth::require_admin("list_action_rules")?;
    let rows = privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT id, action, effect, tenant_role, plan, scope, tenant_id, resource
                       FROM tenant_guard.action_rules
                      WHERE $1::pg_catalog.text IS NULL OR action OPERATOR(pg_catalog.=) $1
                      ORDER BY action, id",
                    None,
                    &[action.into()],
                )?
                .map(|row| {
                    Ok((
                        row.get::<i64>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<String>(3)?.unwrap_or_default(),
                        row.get::<String>(4)?,
                        row.get::<String>(5)?,
                        row.get::<String>(6)?,
                        row.get::<String>(7)?,
                        row.get::<String>(8)?,
                    ))
                })
                .collect::<std::result::Result<Vec<_>, pgrx::spi::SpiError>>()
        })
    })
    .map_err(error::internal)?;
    Ok(TableIterator::new(rows))
}
