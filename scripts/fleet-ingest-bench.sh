#!/usr/bin/env bash
# Records per second the fleet server ingests from 20 agents into PostgreSQL (issue #9 goal:
# 100,000/s on this 2-core machine). Runs the ignored benchmark test
# `fleet::tests::bench_fleet_ingest_from_20_agents_into_postgres` in release mode: a real
# PostgreSQL started by the test (initdb/pg_ctl as the postgres user, unix socket only), the
# fleet server on 127.0.0.1, 20 agents as threads speaking the real protocol (TLS 1.3, their
# own enrolled Ed25519 keys, batches of 1,000 flow records each waiting for its ack).
#
# Usage: scripts/fleet-ingest-bench.sh      env: NV_BENCH_FLOWS=1000000 NV_BENCH_RUNS=3
# Needs root (PostgreSQL runs as the postgres user) and postgresql-15. Prints each run (rate,
# CPU seconds per million records of the server process and of PostgreSQL, load) and the median.
set -euo pipefail
cd "$(dirname "$0")/.."
export NV_BENCH_FLOWS=${NV_BENCH_FLOWS:-1000000} NV_BENCH_RUNS=${NV_BENCH_RUNS:-3}
exec cargo test --release -p netvigil --bin netvigil \
    fleet::tests::bench_fleet_ingest_from_20_agents_into_postgres -- --ignored --nocapture --test-threads 1
