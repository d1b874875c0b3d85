//! The action gate's decision, as a pure function of the rules and the verified context.
//!
//! ```text
//! allowed(action, resource) =
//!       the action is in the catalogue
//!   AND no deny rule of the action matches the context
//!   AND some grant rule g of the action matches the context,
//!       with (the context's credential carries no scopes
//!             OR g names a scope                       -- so the credential carries it
//!             OR one of the credential's scopes covers the action)
//! ```
//!
//! A rule matches when every condition it sets holds (an unset condition matches anything):
//! `tenant_role` is the context's role, `plan` the tenant's plan, `scope` one of the credential's
//! scopes (an API key's, or a token's `scope` claim), `tenant_id` the context's tenant, and `resource` (a pattern) matches the resource
//! asked about. A question without a resource is one about every resource: a grant limited to
//! some resources does not answer it, and a deny limited to some resources does (the caller
//! chooses whether to name a resource, so leaving it out must not escape a deny).
//! A scope covers an action when it matches it as a pattern (`tool:*`, `*`, or the action
//! itself). Patterns have one wildcard, `*`, for any run of characters.

/// One row of `tenant_guard.action_rules`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub id: i64,
    pub deny: bool,
    pub tenant_role: Option<String>,
    pub plan: Option<String>,
    pub scope: Option<String>,
    pub tenant_id: Option<String>,
    pub resource: Option<String>,
}

/// Who asks: only what the verified context says.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub tenant_id: &'a str,
    pub role: Option<&'a str>,
    pub plan: Option<&'a str>,
    /// The scopes of the context's credential: an API key's, or a token's `scope` claim; None
    /// for a credential without scopes (a trusted caller, a token without the claim).
    pub scopes: Option<&'a [String]>,
}

/// Why an action was denied (the first term of the formula that failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The action is not in the catalogue.
    UnknownAction,
    /// A deny rule matched (its id).
    DenyRule(i64),
    /// No grant rule matched.
    NoGrant,
    /// Grants matched, but the credential's scopes do not cover the action.
    Scope,
}

impl Denial {
    /// The rule that denied, for messages and the audit row.
    pub fn describe(&self) -> String {
        match self {
            Denial::UnknownAction => "the action is not in the catalogue".to_string(),
            Denial::DenyRule(id) => format!("deny rule {id}"),
            Denial::NoGrant => "no grant matches (deny by default)".to_string(),
            Denial::Scope => "the credential's scopes do not cover it".to_string(),
        }
    }
}

/// Whether `pattern` (with `*` for any run of characters) matches all of `text`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn matches(rule: &Rule, subject: &Subject<'_>, resource: Option<&str>) -> bool {
    let resource_matches = match (&rule.resource, resource) {
        (None, _) => true,
        (Some(pattern), Some(resource)) => glob_match(pattern, resource),
        // No resource named: about every resource.
        (Some(_), None) => rule.deny,
    };
    let same = |condition: &Option<String>, value: Option<&str>| match condition {
        None => true,
        Some(wanted) => value == Some(wanted.as_str()),
    };
    same(&rule.tenant_role, subject.role)
        && same(&rule.plan, subject.plan)
        && same(&rule.tenant_id, Some(subject.tenant_id))
        && match &rule.scope {
            None => true,
            Some(scope) => subject.scopes.is_some_and(|scopes| scopes.contains(scope)),
        }
        && resource_matches
}

/// The decision for `action` (whose rules are `rules`, None when it is not in the catalogue).
/// Ok(id of the grant that allowed it), or why not.
pub fn decide(
    rules: Option<&[Rule]>,
    subject: &Subject<'_>,
    action: &str,
    resource: Option<&str>,
) -> Result<i64, Denial> {
    let Some(rules) = rules else {
        return Err(Denial::UnknownAction);
    };
    let matching = || rules.iter().filter(|r| matches(r, subject, resource));
    if let Some(deny) = matching().find(|r| r.deny) {
        return Err(Denial::DenyRule(deny.id));
    }
    let scopes_cover = subject
        .scopes
        .is_none_or(|scopes| scopes.iter().any(|scope| glob_match(scope, action)));
    let mut granted = false;
    for grant in matching().filter(|r| !r.deny) {
        if scopes_cover || grant.scope.is_some() {
            return Ok(grant.id);
        }
        granted = true;
    }
    Err(if granted {
        Denial::Scope
    } else {
        Denial::NoGrant
    })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn grant(id: i64) -> Rule {
        Rule {
            id,
            ..Rule::default()
        }
    }

    fn subject<'a>(
        role: Option<&'a str>,
        plan: Option<&'a str>,
        scopes: Option<&'a [String]>,
    ) -> Subject<'a> {
        Subject {
            tenant_id: "acme",
            role,
            plan,
            scopes,
        }
    }

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn globs() {
        for (pattern, text, wanted) in [
            ("tool:*", "tool:refund", true),
            ("tool:*", "tool:", true),
            ("tool:*", "tools:x", false),
            ("*", "", true),
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a*b*c", "axbyc", true),
            ("a*b*c", "axbyd", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("", "x", false),
            ("project:42/*", "project:42/doc:7", true),
            ("project:42/*", "project:421/doc:7", false),
        ] {
            assert_eq!(glob_match(pattern, text), wanted, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn unknown_actions_are_denied() {
        let s = subject(Some("admin"), None, None);
        assert_eq!(decide(None, &s, "tool:x", None), Err(Denial::UnknownAction));
    }

    #[test]
    fn deny_by_default() {
        let s = subject(Some("admin"), None, None);
        assert_eq!(decide(Some(&[]), &s, "tool:x", None), Err(Denial::NoGrant));
    }

    #[test]
    fn each_condition_is_a_term() {
        let by_role = Rule {
            tenant_role: Some("member".into()),
            ..grant(1)
        };
        let by_plan = Rule {
            plan: Some("pro".into()),
            ..grant(2)
        };
        let by_tenant = Rule {
            tenant_id: Some("other".into()),
            ..grant(3)
        };
        let role_and_plan = Rule {
            tenant_role: Some("admin".into()),
            plan: Some("enterprise".into()),
            ..grant(4)
        };
        let rules = [by_role, by_plan, by_tenant, role_and_plan];
        let d = |role, plan| decide(Some(&rules), &subject(role, plan, None), "a", None);
        assert_eq!(d(Some("member"), None), Ok(1));
        assert_eq!(d(Some("viewer"), Some("pro")), Ok(2));
        assert_eq!(d(Some("viewer"), Some("free")), Err(Denial::NoGrant));
        assert_eq!(d(None, None), Err(Denial::NoGrant));
        assert_eq!(d(Some("admin"), Some("enterprise")), Ok(4));
        assert_eq!(d(Some("admin"), Some("free")), Err(Denial::NoGrant));
    }

    #[test]
    fn deny_beats_grant() {
        let rules = [
            grant(1),
            Rule {
                deny: true,
                plan: Some("free".into()),
                ..grant(2)
            },
        ];
        assert_eq!(
            decide(
                Some(&rules),
                &subject(Some("admin"), Some("free"), None),
                "a",
                None
            ),
            Err(Denial::DenyRule(2))
        );
        assert_eq!(
            decide(
                Some(&rules),
                &subject(Some("admin"), Some("pro"), None),
                "a",
                None
            ),
            Ok(1)
        );
    }

    #[test]
    fn a_scoped_credential_needs_a_scope_covering_the_action() {
        let rules = [Rule {
            tenant_role: Some("admin".into()),
            ..grant(1)
        }];
        let d = |list: &[&str]| {
            let scopes = scopes(list);
            decide(
                Some(&rules),
                &subject(Some("admin"), None, Some(&scopes)),
                "tool:refund",
                None,
            )
        };
        assert_eq!(d(&[]), Err(Denial::Scope));
        assert_eq!(d(&["export:*"]), Err(Denial::Scope));
        assert_eq!(d(&["tool:*"]), Ok(1));
        assert_eq!(d(&["tool:refund"]), Ok(1));
        assert_eq!(d(&["*"]), Ok(1));
        // A credential without scopes (a trusted caller, a token without the claim).
        assert_eq!(
            decide(
                Some(&rules),
                &subject(Some("admin"), None, None),
                "tool:refund",
                None
            ),
            Ok(1)
        );
    }

    #[test]
    fn a_grant_by_scope_needs_the_credential_to_carry_it() {
        let rules = [Rule {
            scope: Some("billing".into()),
            ..grant(7)
        }];
        let (billing, other) = (scopes(&["billing"]), scopes(&["support"]));
        let d = |scopes: Option<&[String]>| {
            decide(
                Some(&rules),
                &subject(None, None, scopes),
                "tool:refund",
                None,
            )
        };
        assert_eq!(d(Some(&billing)), Ok(7));
        assert_eq!(d(Some(&other)), Err(Denial::NoGrant));
        assert_eq!(d(None), Err(Denial::NoGrant));
    }

    #[test]
    fn resource_patterns() {
        let rules = [
            Rule {
                resource: Some("project:42/*".into()),
                ..grant(1)
            },
            Rule {
                deny: true,
                resource: Some("project:42/secret".into()),
                ..grant(2)
            },
        ];
        let s = subject(Some("member"), None, None);
        let d = |resource| decide(Some(&rules), &s, "doc:read", resource);
        assert_eq!(d(Some("project:42/readme")), Ok(1));
        assert_eq!(d(Some("project:42/secret")), Err(Denial::DenyRule(2)));
        assert_eq!(d(Some("project:43/readme")), Err(Denial::NoGrant));
        // Leaving the resource out answers for every resource: the resource-limited grant does
        // not allow it, and the resource-limited deny denies it.
        assert_eq!(d(None), Err(Denial::DenyRule(2)));
        let only_grant = [rules[0].clone()];
        assert_eq!(
            decide(Some(&only_grant), &s, "doc:read", None),
            Err(Denial::NoGrant)
        );
        let broad = [grant(3), rules[1].clone()];
        assert_eq!(
            decide(Some(&broad), &s, "doc:read", None),
            Err(Denial::DenyRule(2))
        );
        assert_eq!(
            decide(Some(&broad), &s, "doc:read", Some("project:7/x")),
            Ok(3)
        );
    }
}
