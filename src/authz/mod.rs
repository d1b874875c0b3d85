//! Authorization inside a tenant: what the context's user, role, plan and API key may do.
//!
//! - `permissions`: per-role table permissions (RESTRICTIVE per-command policies on the
//!   context's role, generated with the tenant policies by `policy.rs`);
//! - `private_rows`: user-private rows inside a tenant (a user column, filled and checked from
//!   the context's user);
//! - `actions`: the action gate (the agent platform's tool gate): a catalogue of actions, grant
//!   and deny rules, and `authorize` / `require_action` / `allowed_actions`;
//! - `decision`: the gate's formula, a pure function;
//! - `denial`: the audit row of a denied action, written by a background worker so that it
//!   outlives the transaction the denial aborts.
//!
//! Every input comes from the verified context (see `context` and `auth`), never from the
//! caller's arguments: the action and the resource are what is asked, not who asks.

pub mod actions;
pub mod decision;
pub mod denial;
pub mod permissions;
pub mod private_rows;

use crate::error::{self, Result};

/// A list of tenant roles as an argument: no NULLs, each a valid context value, sorted and
/// without duplicates (so the generated policies read the same whatever the order given).
pub fn role_list(argument: &str, roles: Option<Vec<Option<String>>>) -> Result<Vec<String>> {
    let Some(roles) = roles else {
        return Err(error::malformed(
            format!("tenant_guard: {argument} must not be NULL"),
            "Pass an array of tenant roles, e.g. ARRAY['admin'] (or '{}' for none).",
        ));
    };
    let mut list = roles
        .into_iter()
        .map(|role| {
            let role = role.ok_or_else(|| {
                error::malformed(
                    format!("tenant_guard: {argument} must not contain NULL"),
                    "Remove the NULL element.",
                )
            })?;
            crate::context::validate_value("tenant role", &role)?;
            Ok(role)
        })
        .collect::<Result<Vec<_>>>()?;
    list.sort();
    list.dedup();
    Ok(list)
}

/// A text array as PostgreSQL's `array_out` writes it (the form the generated policies carry).
pub fn array_text(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| {
            let plain = !item.is_empty()
                && !item.eq_ignore_ascii_case("NULL")
                && !item
                    .chars()
                    .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
            if plain {
                item.clone()
            } else {
                let escaped = item.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{escaped}\"")
            }
        })
        .collect();
    format!("{{{}}}", quoted.join(","))
}

#[cfg(test)]
mod unit_tests {
    use super::array_text;

    #[test]
    fn arrays_print_as_array_out_does() {
        let s = |v: &[&str]| array_text(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&[]), "{}");
        assert_eq!(s(&["admin", "member"]), "{admin,member}");
        assert_eq!(
            s(&["a b", "c,d", "NULL", "x\"y", "back\\slash", "{"]),
            r#"{"a b","c,d","NULL","x\"y","back\\slash","{"}"#
        );
    }
}
