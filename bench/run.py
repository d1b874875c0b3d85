#!/usr/bin/env python3
"""make bench: the cost of tenant isolation, as ratios measured side by side in one run.

Starts a throwaway cluster (library preloaded, autovacuum off, a CHECKPOINT before every run),
loads the data set (bench/schema.sql), then, for ROUNDS rounds, runs each pair of pgbench
workloads back to back: both scripts briefly to warm the caches for this pair (discarded), then
both measured, the order alternating between rounds so drift and cache state favour neither side.
It prints one markdown table: the median tps of each side, and the ratio, the median over the
rounds of (baseline tps / guarded tps) in that round: the cost of the guard (1.00 = free,
below 1.00 = cheaper). Writes the same to target/bench/results.{md,json}.

Settings (environment): BENCH_ROWS (1000000), BENCH_TENANTS (1000), BENCH_SECONDS (6),
BENCH_ROUNDS (4), BENCH_WARMUP (2 seconds per script, pair and round), BENCH_CLIENTS (2),
BENCH_MEMORY_ROWS (1000000, the audited UPDATE whose memory is measured), BENCH_OUT (target/bench), BENCH_ONLY (row numbers to run, e.g. "6,9"), BENCH_STRICT (exit 1 when
a row misses its target).
Uses the standard library, psql, pgbench and `cryptography` (to sign the Ed25519 bench tokens;
scripts/setup --client-tests installs it into target/venv, which scripts/bench runs this with).
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")
DBNAME = "tenant_guard_bench"

AUDIT_RESET = ("TRUNCATE bench.invoices_plain, bench.invoices_audited, bench.invoices_chained, "
               "bench.invoices_rowtrigger, bench.rowtrigger_log; TRUNCATE tenant_guard.audit_log, "
               "tenant_guard.audit_chain_heads")

# name, baseline script and role, guarded script and role, target ratio (None: information only),
# what it shows, SQL run before every run of the pair (as the superuser)
PAIRS = [
    ("1. point lookup by primary key", "point_baseline", "bench_ops", "point_guarded", "bench_app", 1.05,
     "BYPASSRLS + explicit tenant filter vs app role under the policies", None),
    ("2. tenant scan (count/sum of one tenant)", "scan_baseline", "bench_ops", "scan_guarded", "bench_app", 1.10,
     "BYPASSRLS + explicit tenant filter vs app role under the policies", None),
    ("3. policy on a query the index cannot serve", "handwritten_policy", "bench_app", "guarded_policy", "bench_app", 1.00,
     "hand-written current_setting() policy vs tenant_guard's (per-row vs once per query)", None),
    ("4. context per transaction + point lookup", "context_baseline", "bench_ops", "context_guarded", "bench_tx", 1.10,
     "set_config('app.tenant_id') + explicit filter vs set_tenant_context() + policies", None),
    ("5. single-row insert", "insert_baseline", "bench_app", "insert_guarded", "bench_app", 1.10,
     "plain table vs protected table (default from context + WITH CHECK)", None),
    ("6. bulk insert of 10,000 invoices, audited", "bulk_plain", "bench_app", "bulk_audited", "bench_app", 1.80,
     "unaudited vs tenant_guard audit (exclude + redact), both protected", AUDIT_RESET),
    ("7. the same, audit rows written by SQL (SQL floor)", "bulk_plain", "bench_app", "bulk_floor", "bench_app", None,
     "unaudited vs the same insert plus its 10,000 precomputed audit rows written by INSERT ... SELECT: "
     "the floor of any audit that writes through SQL", AUDIT_RESET),
    ("8. bulk insert: PL/pgSQL row trigger vs tenant_guard", "bulk_rowtrigger", "bench_app", "bulk_audited",
     "bench_app", 0.50, "a to_jsonb(NEW)-per-row PL/pgSQL audit trigger vs tenant_guard (below 0.50: 2x faster)",
     AUDIT_RESET),
    ("9. single-row insert, audited", "single_plain", "bench_app", "single_audited", "bench_app", 1.20,
     "unaudited vs tenant_guard audit, one row per statement (1.20: throughput 0.83x)", AUDIT_RESET),
    ("10. bulk insert of 10,000 invoices, audited with hash chain", "bulk_plain", "bench_app", "bulk_chained",
     "bench_app", None, "unaudited vs tenant_guard audit with the hash chain (the default)", AUDIT_RESET),
    ("11. single-row insert, audited with hash chain", "single_plain", "bench_app", "single_chained", "bench_app",
     None, "unaudited vs tenant_guard audit with the hash chain, both clients in one tenant", AUDIT_RESET),
    ("12. context per transaction: HS256 token", "context_trusted", "bench_tx", "context_hs256", "bench_tx", 1.30,
     "set_tenant_context() vs set_tenant_context_token() with an HS256 token, + point lookup", None),
    ("13. context per transaction: API key", "context_trusted", "bench_tx", "context_api_key", "bench_tx", 1.30,
     "set_tenant_context() vs set_tenant_context_api_key(), + point lookup", None),
    ("14. context per transaction: EdDSA token, cache warm", "context_trusted", "bench_tx", "context_eddsa",
     "bench_tx", 1.30, "set_tenant_context() vs set_tenant_context_token() with an EdDSA token, + point lookup",
     None),
    ("15. context per transaction: membership required", "context_trusted", "bench_tx", "context_trusted",
     "bench_member", 1.10, "set_tenant_context() without vs with tenant_guard.require_membership, + point lookup",
     None),
    ("16. point lookup: per-role table permissions", "point_clerk", "bench_clerk", "point_permitted",
     "bench_clerk", 1.05, "the same lookup as a clerk on a table without vs with set_table_permissions()", None),
    ("17. context per transaction + tool gate", "context_trusted", "bench_tx", "context_gate", "bench_tx", None,
     "set_tenant_context() + point lookup vs the same with require_action() in between (50 actions)", None),
    ("18. single-row insert + its audit row by SQL (single-row floor)", "single_plain", "bench_app", "single_floor",
     "bench_app", None, "unaudited vs the same insert plus its audit row (a constant image) written by the same "
     "statement: no trigger, nothing rendered", AUDIT_RESET),
]

# The per-call cost of each entry point, in microseconds: CALLS calls in one statement, in a
# fresh backend (nothing cached) and again in the same backend (cached).
CALLS = 2000
HS256_SECRET = b"bench-hs256-secret-0123456789abcdef"
ED25519_SEED = bytes(range(100, 132))


def setting(name, default):
    return int(os.environ.get(name, default))


def run(args, **kwargs):
    return subprocess.run(args, check=True, text=True, **kwargs)


class Cluster:
    def __init__(self):
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="tenant_guard-bench-"))
        self.base.chmod(0o755)
        self.directory = self.base / "pg"
        # Background work is not what is measured: no autovacuum, no timed checkpoints (a
        # CHECKPOINT precedes every measured run instead).
        conf = ["autovacuum = off", "checkpoint_timeout = 1h", "max_wal_size = 8GB"]
        args = [str(REPO / "scripts" / "cluster"), "start", str(self.directory), "--preload"]
        for line in conf:
            args += ["--conf", line]
        run(args, stdout=subprocess.DEVNULL)
        pairs = (self.directory / "env").read_text().split()[1:]
        self.env = dict(os.environ, **dict(item.split("=", 1) for item in pairs))

    def psql(self, *args, dbname=DBNAME, **kwargs):
        return run([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbname, *args],
                   env=self.env, **kwargs)

    def stop(self):
        subprocess.run([str(REPO / "scripts" / "cluster"), "stop", str(self.directory), "--remove"])
        shutil.rmtree(self.base, ignore_errors=True)


def pgbench(cluster, script, role, seconds, clients, variables, reset=None):
    if reset:
        cluster.psql("-c", reset)
    cluster.psql("-c", "CHECKPOINT")
    args = [str(PG_BIN / "pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients),
            "-T", str(seconds), "-U", role, "-f", str(BENCH / f"{script}.sql"), DBNAME]
    for name, value in variables.items():
        args[1:1] = ["-D", f"{name}={value}"]
    done = subprocess.run(args, env=cluster.env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script} as {role} failed:\n{done.stdout}\n{done.stderr}")
    out = done.stdout
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if failed and int(failed.group(1)) > 0:
        raise RuntimeError(f"{script}: {failed.group(1)} failed transactions\n{out}")
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if not match:
        raise RuntimeError(f"{script}: no tps in pgbench output\n{out}")
    return float(match.group(1))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_token(tenant, alg, jti, lifetime=7200):
    """A JWT for `tenant` signed with the bench key of `alg` (Ed25519 through `cryptography`,
    which scripts/setup installs into target/venv)."""
    header = {"alg": alg, "kid": "bench-" + alg.lower(), "typ": "JWT"}
    claims = {"tid": str(tenant), "sub": "bench-user", "role": "clerk", "jti": jti,
              "exp": int(time.time()) + lifetime}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if alg == "HS256":
        signature = hmac.new(HS256_SECRET, signing_input.encode(), hashlib.sha256).digest()
    else:
        signature = ed25519_key().sign(signing_input.encode())
    return f"{signing_input}.{b64url(signature)}"


def ed25519_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.from_private_bytes(ED25519_SEED)


def auth_setup(cluster, tenant):
    """Register the bench keys, issue an API key, and sign the tokens: the pgbench variables of
    rows 12-14, and a table of CALLS distinct credentials of each kind for the per-call costs."""
    from cryptography.hazmat.primitives import serialization
    public = ed25519_key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    api_keys = cluster.psql("-At", "-c", f"""
        SELECT tenant_guard.add_token_key('bench-hs256', 'HS256', '\\x{HS256_SECRET.hex()}');
        SELECT tenant_guard.add_token_key('bench-eddsa', 'EdDSA', '\\x{public.hex()}');
        SELECT tenant_guard.issue_api_key('{tenant}', 'clerk', '1 day', 'bench')
          FROM generate_series(1, {CALLS + 1});""", capture_output=True).stdout.split()
    rows = [("hs256", sign_token(tenant, "HS256", f"hs-{n}")) for n in range(CALLS)]
    rows += [("eddsa", sign_token(tenant, "EdDSA", f"ed-{n}")) for n in range(CALLS)]
    rows += [("api_key", key) for key in api_keys[1:]]
    data = "".join(f"{kind}\t{credential}\n" for kind, credential in rows)
    cluster.psql("-c", "CREATE TABLE bench.credentials (kind text, credential text);"
                 "GRANT SELECT ON bench.credentials TO bench_tx")
    cluster.psql("-c", "COPY bench.credentials FROM STDIN", input=data)
    return {"hs256_token": sign_token(tenant, "HS256", "hs-pgbench"),
            "eddsa_token": sign_token(tenant, "EdDSA", "ed-pgbench"), "api_key": api_keys[0]}


def per_call_costs(cluster, tenant):
    """Microseconds per call of each entry point and gate question: uncached (a fresh backend)
    and cached (the same calls again in that backend)."""
    context = f"SELECT tenant_guard.set_tenant_context('{tenant}', 'bench-user', 'clerk')"
    calls = {
        "set_tenant_context": (None, f"SELECT count(tenant_guard.set_tenant_context('{tenant}', 'bench-user')) "
                                     f"FROM generate_series(1, {CALLS})"),
        "HS256 token": (None, "SELECT count(tenant_guard.set_tenant_context_token(credential)) "
                              "FROM bench.credentials WHERE kind = 'hs256'"),
        "EdDSA token": (None, "SELECT count(tenant_guard.set_tenant_context_token(credential)) "
                              "FROM bench.credentials WHERE kind = 'eddsa'"),
        "API key": (None, "SELECT count(tenant_guard.set_tenant_context_api_key(credential)) "
                          "FROM bench.credentials WHERE kind = 'api_key'"),
        "require_action (allowed)": (context, "SELECT count(tenant_guard.require_action('bench.tool_' || (n % 50 + 1))) "
                                              f"FROM generate_series(1, {CALLS}) n"),
        "authorize (denied)": (context, "SELECT count(*) FILTER (WHERE tenant_guard.authorize('tool:nope')) "
                                        f"FROM generate_series(1, {CALLS}) n"),
        "allowed_actions, per action listed (of 50)": (context, "SELECT count(a) FROM generate_series(1, "
                                                  f"{CALLS // 50}) n, tenant_guard.allowed_actions() a"),
        "generate_series alone (overhead)": (context, f"SELECT count(n) FROM generate_series(1, {CALLS}) n"),
    }
    costs = {}
    for name, (prelude, sql) in calls.items():
        statements = ["-c", "BEGIN"] + (["-c", prelude] if prelude else []) + ["-c", sql, "-c", sql]
        out = cluster.psql("-U", "bench_tx", "-c", "\\timing on", *statements,
                           "-c", "COMMIT", capture_output=True).stdout
        times = re.findall(r"Time: ([0-9.]+) ms", out)
        first, second = (float(t) * 1000 / CALLS for t in times[-3:-1])
        costs[name] = {"uncached_us": first, "cached_us": second}
    return costs


def self_check_cost(cluster):
    """check() on a schema of BENCH_CHECK_TABLES (1000) protected tables, in a database of its
    own: milliseconds of each of 5 runs (the first in a fresh backend), and what it found (the
    bench's roles carry tenant_guard.tenant_id as a role default on purpose, which TG013 reports)."""
    tables = setting("BENCH_CHECK_TABLES", 1000)
    dbname = "tenant_guard_check_bench"
    cluster.psql("-c", f"CREATE DATABASE {dbname}", dbname="postgres")
    cluster.psql("-v", f"tables={tables}", "-f", str(BENCH / "check_schema.sql"), dbname=dbname,
                 stdout=subprocess.DEVNULL)
    sql = "SELECT count(*) FROM tenant_guard.check()"
    out = cluster.psql("-At", "-c", "\\timing on", *(["-c", sql] * 5), dbname=dbname,
                       capture_output=True).stdout
    times = [float(t) for t in re.findall(r"Time: ([0-9.]+) ms", out)]
    protected = cluster.psql("-At", "-c", "SELECT count(*) FROM tenant_guard.protected_tables",
                             dbname=dbname, capture_output=True).stdout.strip()
    codes = cluster.psql("-At", "-c", "SELECT code FROM tenant_guard.check()", dbname=dbname,
                         capture_output=True).stdout.split()
    return {"protected_tables": int(protected), "findings": codes, "ms": times}


def audit_memory(cluster):
    """Peak private memory (RssAnon of /proc/<pid>/status, sampled every 20 ms) of the backend
    running one UPDATE of BENCH_MEMORY_ROWS (1,000,000) rows: unaudited, then audited with the
    hash chain (the default). The transition tables spill past work_mem and the audit renders
    and writes one row at a time, so the audited peak stays near the unaudited one."""
    rows = setting("BENCH_MEMORY_ROWS", 1_000_000)
    for sql in (
        "CREATE TABLE bench.memory_audit (id bigint PRIMARY KEY, account text, amount numeric(12, 2), note text)",
        f"INSERT INTO bench.memory_audit SELECT g, 'acct-' || g % 1000, g / 100.0, 'note ' || g "
        f"FROM generate_series(1, {rows}) g",
        "VACUUM ANALYZE bench.memory_audit",
    ):
        cluster.psql("-c", sql)

    def peak(label):
        env = dict(cluster.env, PGAPPNAME="tenant_guard_memory")
        started = time.monotonic()
        update = subprocess.Popen(
            [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DBNAME,
             "-c", "UPDATE bench.memory_audit SET amount = amount + 1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        pid, high = None, 0
        while update.poll() is None:
            if pid is None:
                found = cluster.psql("-At", "-c", "SELECT pid FROM pg_stat_activity WHERE application_name "
                                     "= 'tenant_guard_memory'", capture_output=True).stdout.strip()
                pid = int(found) if found else None
            else:
                try:
                    status = pathlib.Path(f"/proc/{pid}/status").read_text()
                except FileNotFoundError:
                    break
                high = max(high, int(re.search(r"RssAnon:\s+(\d+) kB", status).group(1)))
            time.sleep(0.02)
        if update.wait() != 0:
            raise RuntimeError(f"{label} UPDATE failed: {update.stderr.read()}")
        return {"peak_rss_anon_kb": high, "seconds": time.monotonic() - started}

    unaudited = peak("unaudited")
    cluster.psql("-c", "SELECT tenant_guard.enable_tenant_audit('bench.memory_audit')")
    audited = peak("audited")
    audit_rows = cluster.psql("-At", "-c", "SELECT count(*) FROM tenant_guard.audit_log "
                              "WHERE table_name = 'memory_audit'", capture_output=True).stdout.strip()
    work_mem = cluster.psql("-At", "-c", "SHOW work_mem", capture_output=True).stdout.strip()
    cluster.psql("-c", "DROP TABLE bench.memory_audit")
    cluster.psql("-c", "TRUNCATE tenant_guard.audit_log, tenant_guard.audit_chain_heads")
    return {"rows": rows, "audit_rows": int(audit_rows), "work_mem": work_mem,
            "unaudited": unaudited, "audited": audited}


def selected_pairs():
    only = {item.strip() for item in os.environ.get("BENCH_ONLY", "").split(",") if item.strip()}
    return [pair for pair in PAIRS if not only or pair[0].split(".")[0] in only]


def main():
    pairs = selected_pairs()
    rows, tenants = setting("BENCH_ROWS", 1_000_000), setting("BENCH_TENANTS", 1000)
    seconds, rounds = setting("BENCH_SECONDS", 6), setting("BENCH_ROUNDS", 4)
    warmup = setting("BENCH_WARMUP", 2)
    clients = setting("BENCH_CLIENTS", 2)
    tenant = tenants // 2
    variables = {"tenant": tenant, "tenants": tenants, "per_tenant": rows // tenants}
    started = datetime.datetime.now(datetime.timezone.utc)

    cluster = Cluster()
    try:
        cluster.psql("-c", f"CREATE DATABASE {DBNAME}", dbname="postgres")
        print(f"loading {rows:,} rows over {tenants:,} tenants ...", file=sys.stderr, flush=True)
        cluster.psql("-v", f"rows={rows}", "-v", f"tenants={tenants}", "-v", f"tenant={tenant}",
                     "-f", str(BENCH / "schema.sql"), stdout=subprocess.DEVNULL)
        variables.update(auth_setup(cluster, tenant))
        costs = per_call_costs(cluster, tenant)
        check_cost = self_check_cost(cluster)
        memory = audit_memory(cluster)
        samples = {name: {"baseline": [], "guarded": []} for name, *_ in pairs}
        for round_ in range(1, rounds + 1):
            for name, base_script, base_role, guard_script, guard_role, _, _, reset in pairs:
                sides = [("baseline", base_script, base_role), ("guarded", guard_script, guard_role)]
                if round_ % 2 == 0:
                    sides.reverse()
                if warmup > 0:
                    for _, script, role in sides:
                        pgbench(cluster, script, role, warmup, clients, variables, reset)
                for side, script, role in sides:
                    tps = pgbench(cluster, script, role, seconds, clients, variables, reset)
                    samples[name][side].append(tps)
                    print(f"round {round_}/{rounds} {name} {side}: {tps:,.1f} tps", file=sys.stderr, flush=True)
    finally:
        cluster.stop()

    results = []
    for name, base_script, base_role, guard_script, guard_role, target, what, _ in pairs:
        baseline = statistics.median(samples[name]["baseline"])
        guarded = statistics.median(samples[name]["guarded"])
        per_round = [b / g for b, g in zip(samples[name]["baseline"], samples[name]["guarded"])]
        ratio = statistics.median(per_round)
        results.append({
            "workload": name, "what": what, "baseline_tps": baseline, "guarded_tps": guarded,
            "ratio": ratio, "ratio_per_round": per_round, "target": target,
            "pass": None if target is None else ratio <= target,
            "baseline_samples": samples[name]["baseline"], "guarded_samples": samples[name]["guarded"],
            "baseline": f"{base_script}.sql as {base_role}", "guarded": f"{guard_script}.sql as {guard_role}",
        })

    report = {
        "started": started.isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "postgres": run([str(PG_BIN / "postgres"), "--version"], capture_output=True).stdout.strip(),
        "rows": rows, "tenants": tenants, "seconds": seconds, "rounds": rounds, "clients": clients,
        "pgbench": f"-n -M prepared -c {clients} -j {clients} -T {seconds}", "results": results,
        "per_call": costs, "check": check_cost, "memory": memory,
    }
    table = markdown(report)
    print(table)
    out = pathlib.Path(os.environ.get("BENCH_OUT") or REPO / "target" / "bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(table + "\n")
    print(f"written to {out}/results.md and results.json", file=sys.stderr)
    if os.environ.get("BENCH_STRICT") and any(r["pass"] is False for r in results):
        sys.exit(1)


def markdown(report):
    lines = [
        f"{report['rows']:,} rows, {report['tenants']:,} tenants, {report['cores']} cores, {report['postgres']}; "
        f"pgbench {report['pgbench']}, {report['rounds']} rounds, each pair warmed then measured back to "
        "back (order alternating). tps: median of the rounds. ratio: median over the rounds of baseline "
        "tps / guarded tps (the cost of the guard; below 1.00 it saves time); range: lowest and highest "
        "round.",
        "",
        "| workload | baseline tps | guarded tps | ratio | range | target | result |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        low, high = min(r["ratio_per_round"]), max(r["ratio_per_round"])
        target = "-" if r["target"] is None else f"<= {r['target']:.2f}"
        result = {None: "info", True: "pass", False: "FAIL"}[r["pass"]]
        lines.append(f"| {r['workload']} | {r['baseline_tps']:,.1f} | {r['guarded_tps']:,.1f} | "
                     f"{r['ratio']:.3f} | {low:.2f}-{high:.2f} | {target} | {result} |")
    lines.append("")
    for r in report["results"]:
        lines.append(f"- {r['workload']}: {r['what']}.")
    lines += [
        "",
        f"Per call, microseconds ({CALLS:,} calls in one statement; uncached: a fresh backend, "
        "every credential distinct; cached: the same calls again in that backend; the gate's "
        "questions with a context set first):",
        "",
        "| entry point | uncached us | cached us |",
        "|---|---:|---:|",
    ]
    for name, cost in report["per_call"].items():
        lines.append(f"| {name} | {cost['uncached_us']:.1f} | {cost['cached_us']:.1f} |")
    check = report["check"]
    lines += [
        "",
        f"check() on {check['protected_tables']:,} protected tables (with partitions, views and "
        f"functions; bench/check_schema.sql): median {statistics.median(check['ms']):,.0f} ms "
        f"over {len(check['ms'])} runs (first, in a fresh backend: {check['ms'][0]:,.0f} ms; "
        f"target < 2,000 ms); findings: {', '.join(sorted(set(check['findings']))) or 'none'} "
        "(TG013: the bench roles' tenant_guard.tenant_id defaults, on purpose).",
    ]
    memory = report["memory"]
    mib = lambda side: memory[side]["peak_rss_anon_kb"] / 1024  # noqa: E731
    lines += [
        "",
        f"Memory: one UPDATE of {memory['rows']:,} rows (work_mem {memory['work_mem']}), peak private "
        f"memory of its backend (RssAnon): unaudited {mib('unaudited'):,.1f} MiB in "
        f"{memory['unaudited']['seconds']:,.1f} s; audited with the hash chain {mib('audited'):,.1f} MiB in "
        f"{memory['audited']['seconds']:,.1f} s ({memory['audit_rows']:,} audit rows).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if shutil.which("pgbench") is None and not (PG_BIN / "pgbench").exists():
        sys.exit("pgbench is missing: run scripts/setup")
    main()
