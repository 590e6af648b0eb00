# The same steps as .ci/run, one recipe each. `just` is optional: every recipe is plain cargo.
set shell := ["bash", "-euo", "pipefail", "-c"]

pg_url := env_var_or_default("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
sat_dir := env_var_or_default("SAT_FIXTURES_DIR", "../shared/sat")

# Everything CI runs.
ci:
    bash .ci/run

fmt:
    cargo fmt --all -- --check

lint:
    cargo clippy --workspace --all-targets -- -D warnings

hexagon:
    scripts/check-hexagon.sh

# The README's test command (SQLite only).
test:
    cargo test --workspace

# Database tests against PostgreSQL (each test makes its own database).
test-pg:
    TEST_DATABASE_URL={{pg_url}} cargo test --workspace --lib --bins --test contract --test api

# Backup tests with the S3 destination against a local S3-compatible server (moto from PyPI).
test-s3:
    eval "$(scripts/s3-test-server.sh)"; trap 'kill "$S3_SERVER_PID"' EXIT; TEST_DATABASE_URL={{pg_url}} cargo test --workspace --test api backup

# SAT conformance tests against the real SAT files.
sat:
    SAT_FIXTURES_DIR={{sat_dir}} cargo test --workspace -- sat_conformance

# schemathesis against the live server's /openapi.json (installs the pinned version from PyPI).
schemathesis:
    cargo test --workspace --no-run
    scripts/schemathesis.sh "${CARGO_TARGET_DIR:-target}/debug/incrementa"

# Supply-chain checks (needs `cargo install cargo-deny`).
deny:
    cargo deny check

# Run the server on the embedded default.
run:
    cargo run --release

# Full load run on both databases (issue 10): release build, 100,000 sessions each.
load:
    cargo build --release -p incrementa -p loadtest
    "${CARGO_TARGET_DIR:-target}/release/loadtest" --spawn --sessions 100000 --flood 256 --json load-sqlite.json
    psql {{pg_url}} -qc "DROP DATABASE IF EXISTS incrementa_load" -c "CREATE DATABASE incrementa_load"
    "${CARGO_TARGET_DIR:-target}/release/loadtest" --spawn --sessions 100000 --flood 256 --database-url postgres://postgres@127.0.0.1:5432/incrementa_load --json load-postgres.json

# Reliability tests (session cap at scale, kill -9, database outage) on both databases.
reliability:
    cargo test -p incrementa --test api reliability
    TEST_DATABASE_URL={{pg_url}} cargo test -p incrementa --test api reliability
