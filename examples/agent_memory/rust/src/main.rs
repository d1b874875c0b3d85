//! The agent's memory from Rust: tokio-postgres with a deadpool-postgres pool. A pool has no
//! per-transaction hook, so `with_tenant` takes a connection, opens a transaction, sets the
//! tenant's context from the API key (a bind parameter), runs the request and commits. The
//! context is transaction-local: nothing survives on the pooled connection.
//!
//!     TG_API_KEY_A=tgk_... TG_API_KEY_B=tgk_... PGHOST=... PGDATABASE=... PGUSER=memory_app cargo run

use deadpool_postgres::{Config, Pool, Runtime};
use tokio_postgres::{NoTls, Transaction};

type Error = Box<dyn std::error::Error>;

/// One request, acting for the tenant the API key belongs to.
async fn with_tenant<T>(
    pool: &Pool,
    api_key: &str,
    request: impl for<'t> AsyncFnOnce(&'t Transaction<'t>) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT tenant_guard.set_tenant_context_api_key($1)",
        &[&api_key],
    )
    .await?;
    let result = request(&tx).await?;
    tx.commit().await?;
    Ok(result)
}

async fn save_fact(pool: &Pool, api_key: &str, subject: &str, fact: &str) -> Result<(), Error> {
    with_tenant(pool, api_key, async |tx| {
        tx.execute(
            "INSERT INTO memory.facts (subject, fact) VALUES ($1, $2)",
            &[&subject, &fact],
        )
        .await?;
        Ok(())
    })
    .await
}

async fn list_facts(pool: &Pool, api_key: &str, subject: &str) -> Result<Vec<String>, Error> {
    with_tenant(pool, api_key, async |tx| {
        let rows = tx
            .query(
                "SELECT fact FROM memory.facts WHERE subject = $1 ORDER BY id",
                &[&subject],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    })
    .await
}

fn pool() -> Result<Pool, Error> {
    let var = |name: &str| std::env::var(name).ok();
    let mut config = Config::new();
    config.host = var("PGHOST");
    config.port = var("PGPORT").and_then(|p| p.parse().ok());
    config.dbname = var("PGDATABASE");
    config.user = var("PGUSER");
    Ok(config.create_pool(Some(Runtime::Tokio1), NoTls)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let key_a = std::env::var("TG_API_KEY_A")?;
    let key_b = std::env::var("TG_API_KEY_B")?;
    let pool = pool()?;
    save_fact(&pool, &key_a, "case-123", "the customer prefers email").await?;
    let seen_by_b = list_facts(&pool, &key_b, "case-123").await?;
    let seen_by_a = list_facts(&pool, &key_a, "case-123").await?;
    if !seen_by_b.is_empty() || seen_by_a.is_empty() {
        eprintln!(
            "FAIL: tenant-b sees {seen_by_b:?}; tenant-a sees {}",
            seen_by_a.len()
        );
        std::process::exit(1);
    }
    println!(
        "ok: tenant-b lists nothing for case-123; tenant-a lists {}",
        seen_by_a.len()
    );
    Ok(())
}
