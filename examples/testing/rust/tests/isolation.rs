//! Tenant A writes, tenant B reads through the normal path and gets nothing: a Rust test with
//! tokio-postgres. The connection comes from the libpq environment variables:
//!
//!     PGHOST=... PGPORT=... PGDATABASE=... PGUSER=agent_ci cargo test
//!
//! Each request runs in a transaction that first sets its tenant's context. One test, in
//! order: assert_tenant_isolation needs the rows of both tenants written first.

use tokio_postgres::{Client, NoTls};

async fn connect() -> Client {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let config = format!(
        "host={} port={} dbname={} user={}",
        var("PGHOST", "localhost"),
        var("PGPORT", "5432"),
        var("PGDATABASE", "postgres"),
        var("PGUSER", "agent_ci"),
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Save a fact as `tenant`, in a transaction of its own; return how many facts about `subject`
/// the tenant sees afterwards.
async fn save_and_count(
    client: &mut Client,
    tenant: &str,
    subject: &str,
    fact: &str,
    look_for: &str,
) -> i64 {
    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT tenant_guard.set_tenant_context($1)", &[&tenant])
        .await
        .unwrap();
    tx.execute(
        "INSERT INTO memory.facts (subject, fact) VALUES ($1, $2)",
        &[&subject, &fact],
    )
    .await
    .unwrap();
    let seen: i64 = tx
        .query_one(
            "SELECT count(*) FROM memory.facts WHERE subject = $1",
            &[&look_for],
        )
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    seen
}

#[tokio::test]
async fn tenant_b_never_sees_tenant_a() {
    let mut client = connect().await;
    let own = save_and_count(
        &mut client,
        "tenant-a",
        "case-123",
        "prefers email",
        "case-123",
    )
    .await;
    assert!(own >= 1, "tenant-a sees its own fact");
    let leaked = save_and_count(
        &mut client,
        "tenant-b",
        "case-456",
        "prefers phone",
        "case-123",
    )
    .await;
    assert_eq!(leaked, 0, "tenant-b sees {leaked} of tenant-a's facts");

    // No read or write crosses tenants, by every way the helper tries.
    let result: String = client
        .query_one(
            "SELECT tenant_guard.assert_tenant_isolation('memory.facts', 'agent_app')",
            &[],
        )
        .await
        .map_err(|e| {
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or(e.to_string())
        })
        .expect("assert_tenant_isolation raised")
        .get(0);
    assert!(result.starts_with("isolated"), "{result}");
}
