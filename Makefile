# tenant_guard — thin wrappers over scripts/. Every target installs what it needs first.
.PHONY: help setup demo test test-proof test-citus lint install bench bench-citus soak clean

help:
	@echo "make demo     build, install and run the narrated walkthrough on a throwaway cluster"
	@echo "make test     run every test suite (lint, pgrx, pg_regress, client); non-zero on failure"
	@echo "make test-proof  the slow proof: upgrade from every released version on a running server"
	@echo "make test-citus  tenant_guard on a Citus cluster (coordinator + 2 workers), built from CITUS_SRC"
	@echo "make lint     cargo fmt --check and cargo clippy -D warnings"
	@echo "make bench    the cost of isolation as ratios, side by side (about 20 minutes)"
	@echo "make bench-citus  task counts and latency of tenant queries on Citus, routed and not"
	@echo "make soak     the pooled workload for SOAK_MINUTES (10) minutes: leaks, errors, latency"
	@echo "make install  build (release) and install into the system PostgreSQL 15"
	@echo "make setup    install Debian packages, cargo-pgrx 0.18.1 and pgrx init (idempotent)"

setup:
	scripts/setup

demo:
	scripts/demo

test:
	scripts/test

test-proof:
	scripts/test upgrade

test-citus:
	scripts/test citus

lint:
	scripts/setup
	scripts/test lint

install:
	scripts/setup
	cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config

bench:
	scripts/bench

bench-citus:
	scripts/build-citus
	cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config
	python3 bench/citus.py

soak:
	scripts/soak

clean:
	cargo clean
