// The agent's memory from Node.js: pg with pg.Pool. A pool has no per-transaction hook, so
// withTenant(pool, apiKey, fn) takes a client, opens a transaction, sets the tenant's context
// from the API key (a bind parameter, never spliced into SQL), runs fn, and commits. The context
// is transaction-local: nothing survives on the pooled connection.
//
//   TG_API_KEY_A=tgk_... TG_API_KEY_B=tgk_... PGHOST=... PGDATABASE=... PGUSER=memory_app node memory.js
'use strict';
const { Pool } = require('pg');

async function withTenant(pool, apiKey, fn) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT tenant_guard.set_tenant_context_api_key($1)', [apiKey]);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

const saveFact = (pool, apiKey, subject, fact) =>
  withTenant(pool, apiKey, (c) =>
    c.query('INSERT INTO memory.facts (subject, fact) VALUES ($1, $2)', [subject, fact]));

const listFacts = (pool, apiKey, subject) =>
  withTenant(pool, apiKey, async (c) =>
    (await c.query('SELECT fact FROM memory.facts WHERE subject = $1 ORDER BY id', [subject])).rows
      .map((row) => row.fact));

async function main() {
  const pool = new Pool({ max: 2 });
  try {
    const [keyA, keyB] = [process.env.TG_API_KEY_A, process.env.TG_API_KEY_B];
    await saveFact(pool, keyA, 'case-123', 'the customer prefers email');
    const seenByB = await listFacts(pool, keyB, 'case-123');
    const seenByA = await listFacts(pool, keyA, 'case-123');
    if (seenByB.length !== 0 || seenByA.length === 0) {
      throw new Error(`tenant-b sees ${JSON.stringify(seenByB)}; tenant-a sees ${seenByA.length}`);
    }
    console.log(`ok: tenant-b lists nothing for case-123; tenant-a lists ${seenByA.length}`);
  } finally {
    await pool.end();
  }
}

main().catch((error) => {
  console.error(`FAIL: ${error.message}`);
  process.exit(1);
});
