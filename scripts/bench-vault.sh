#!/usr/bin/env bash
# Vault benchmarks and the machine's limit for the same work, in one run (issue 4):
# criterion for the envelope, then `openssl speed` for AES-256-CTR and SHA-256 on 1 MiB blocks.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(date -u +%F)"
cargo bench -p crypto --bench vault -- --warm-up-time 1 --measurement-time 4 2>&1 | grep -E "^(envelope|sat)/|time:|thrpt:"
echo "== openssl speed (1 MiB blocks)"
openssl speed -evp aes-256-ctr -bytes 1048576 -seconds 3 2>/dev/null | tail -1
openssl speed -evp sha256 -bytes 1048576 -seconds 3 2>/dev/null | tail -1
