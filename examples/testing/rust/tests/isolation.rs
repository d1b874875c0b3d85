//! Tenant A writes, tenant B reads through the normal path and gets nothing: a Rust test with
//! tokio-postgres. The connection comes from the libpq environment variables:
//!
//!     PGHOST=... PGPORT=... PGDATABASE=... PGUSER=agent_app cargo test
//!
//! Each request runs in a transaction that first sets its tenant's context.

use tokio_postgres::{Client, NoTls};

async fn connect() -> Client {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let config = format!(
        "host={} port={} dbname={} user={}",
        var("PGHOST", "localhost"),
        var("PGPORT", "5432"),
        var("PGDATABASE", "postgres"),
        var("PGUSER", "agent_app"),
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn tenant_b_never_sees_tenant_a() {
    let mut client = connect().await;

    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT tenant_guard.set_tenant_context($1)", &[&"tenant-a"])
        .await
        .unwrap();
    tx.execute(
        "INSERT INTO memory.facts (subject, fact) VALUES ('case-123', 'prefers email')",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT tenant_guard.set_tenant_context($1)", &[&"tenant-b"])
        .await
        .unwrap();
    tx.execute(
        "INSERT INTO memory.facts (subject, fact) VALUES ('case-456', 'prefers phone')",
        &[],
    )
    .await
    .unwrap();
    let leaked: i64 = tx
        .query_one(
            "SELECT count(*) FROM memory.facts WHERE subject = 'case-123'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    assert_eq!(leaked, 0, "tenant-b sees {leaked} of tenant-a's facts");
}

#[tokio::test]
async fn no_read_or_write_crosses_tenants() {
    let client = connect().await;
    let result: String = client
        .query_one(
            "SELECT tenant_guard.assert_tenant_isolation('memory.facts', current_user)",
            &[],
        )
        .await
        .expect("assert_tenant_isolation raised")
        .get(0);
    assert!(result.starts_with("isolated"), "{result}");
}
