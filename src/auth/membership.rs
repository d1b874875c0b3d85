//! Memberships: `tenant_guard.memberships(tenant_id, user_id, role)` records who may act for which
//! tenant, and as what. With `tenant_guard.require_membership = on`, every entry point gives a
//! context only to a member (the trusted `set_tenant_context` and tokens name the user; an API
//! key acts as itself, for the tenant and role it was issued for, and is not a member), and the
//! role recorded for the member replaces the role asked for. Removing a member ends that user's
//! contexts at their next query.

use crate::auth::cache::{cached, EpochCache};
use crate::auth::{self, read, Credential};
use crate::context::{validate_value, Requested};
use crate::error::{self, Result};
use crate::gucs;
use crate::privilege;
use pgrx::prelude::*;
use std::cell::RefCell;

/// The role recorded for a member (None: a member without a role).
type RecordedRole = Option<String>;

thread_local! {
    /// Looked-up memberships by (tenant, user): the recorded role, or None for no member.
    static MEMBERS: RefCell<EpochCache<(String, String), Option<RecordedRole>>> =
        RefCell::new(EpochCache::default());
}

/// The member's recorded role (`Some(None)`: a member without a role), or None for no member.
fn lookup(tenant_id: &str, user_id: &str) -> Option<RecordedRole> {
    let key = (tenant_id.to_string(), user_id.to_string());
    cached(&MEMBERS, key, || {
        read::select(
            "SELECT role FROM tenant_guard.memberships
              WHERE tenant_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2",
            &[read::arg(Some(tenant_id)), read::arg(Some(user_id))],
            |row| row.get::<String>(1),
        )
        .into_iter()
        .next()
    })
}

fn not_a_member(tenant_id: &str, user_id: Option<&str>) -> pgrx::pg_sys::panic::ErrorReport {
    auth::failure(
        "membership",
        if user_id.is_some() { "not a member" } else { "no user" },
        None,
        Some(tenant_id),
        error::forbidden(
            match user_id {
                Some(user) => format!(
                    "tenant_guard: user '{user}' is not a member of tenant '{tenant_id}'"
                ),
                None => "tenant_guard: tenant_guard.require_membership is on, and the context names no user"
                    .to_string(),
            },
            "With require_membership on, a context needs a user that an administrator added to \
             the tenant: tenant_guard.add_member(tenant_id, user_id, role).",
        ),
    )
}

/// The role a context gets: None to keep the one asked for (no membership required, or an API
/// key), `Some(role)` for the member's recorded role. 42501 for a user who is not a member.
pub fn required_role(
    requested: &Requested<'_>,
    credential: &Credential,
) -> Result<Option<RecordedRole>> {
    if !gucs::REQUIRE_MEMBERSHIP.get() || matches!(credential, Credential::ApiKey { .. }) {
        return Ok(None);
    }
    let Some(user_id) = requested.user_id else {
        return Err(not_a_member(requested.tenant_id, None));
    };
    match lookup(requested.tenant_id, user_id) {
        Some(role) => Ok(Some(role)),
        None => Err(not_a_member(requested.tenant_id, Some(user_id))),
    }
}

/// At a use of the context after the auth tables changed (or `require_membership` was turned
/// on): the user is still a member, with the role the context was given.
pub fn still_member(tenant_id: &str, user_id: Option<&str>, role: Option<&str>) -> Result<()> {
    let Some(user) = user_id else {
        return Err(not_a_member(tenant_id, None));
    };
    match lookup(tenant_id, user) {
        None => Err(not_a_member(tenant_id, Some(user))),
        Some(recorded) if recorded.as_deref() != role => Err(auth::failure(
            "membership",
            "role changed",
            None,
            Some(tenant_id),
            error::forbidden(
                format!("tenant_guard: the role of user '{user}' in tenant '{tenant_id}' changed"),
                "Set the context again: it takes the role the membership records now.",
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn user_argument(user_id: Option<&str>) -> Result<&str> {
    let Some(user_id) = user_id else {
        return Err(error::malformed(
            "tenant_guard: user_id must not be NULL",
            "Pass the user's id, as contexts name it.",
        ));
    };
    validate_value("user_id", user_id)?;
    Ok(user_id)
}

/// Make a user a member of a registered tenant, with a role (or change the role). Idempotent.
/// For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn add_member(
    tenant_id: Option<&str>,
    user_id: Option<&str>,
    role: default!(Option<&str>, "NULL"),
) -> Result<()> {
    auth::require_admin("add_member")?;
    let tenant_id = auth::tenants::tenant_argument(tenant_id)?;
    let user_id = user_argument(user_id)?;
    if let Some(role) = role {
        validate_value("role", role)?;
    }
    auth::tenants::require_registered(tenant_id)?;
    let added_by = crate::catalog::current_role_name();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO tenant_guard.memberships (tenant_id, user_id, role, added_by)
             VALUES ($1, $2, $3, $4::pg_catalog.name)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
            &[
                tenant_id.into(),
                user_id.into(),
                role.into(),
                added_by.as_str().into(),
            ],
        )
    })
    .map_err(error::internal)?;
    Ok(())
}

/// End a membership; the user's contexts in that tenant end at their next query. Returns whether
/// there was one. For administrators.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn remove_member(tenant_id: Option<&str>, user_id: Option<&str>) -> Result<bool> {
    auth::require_admin("remove_member")?;
    let tenant_id = auth::tenants::tenant_argument(tenant_id)?;
    let user_id = user_argument(user_id)?;
    let removed = privilege::as_extension_owner(|| {
        crate::catalog::select_exists(
            "WITH gone AS (DELETE FROM tenant_guard.memberships
                            WHERE tenant_id OPERATOR(pg_catalog.=) $1
                              AND user_id OPERATOR(pg_catalog.=) $2 RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM gone)",
            &[tenant_id.into(), user_id.into()],
        )
    });
    Ok(removed)
}
