#!/usr/bin/env bash
# The hexagon's hard rule: core crates never depend (normally, transitively) on an adapter library.
# Usage: scripts/check-hexagon.sh   (exit 1 and a list when a core crate leaks)
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(sea-orm|sea-query|sqlx|sqlx-core|actix-web|actix-http|aes|ctr|argon2|rsa|x509-parser|lettre|pkcs8|hmac|sha2|rand_core|getrandom|sha1) '
cores=(kernel rbac accounts sessions audit vault mfa notify incidents)
status=0
for core in "${cores[@]}"; do
  [ -d "crates/$core" ] || continue
  hits=$(cargo tree -p "$core" -e normal --prefix none 2>/dev/null | grep -oE "$forbidden" | sort -u | tr '\n' ' ' || true)
  if [ -n "$hits" ]; then
    echo "core crate '$core' depends on adapter libraries: $hits"
    status=1
  else
    echo "core crate '$core': ok"
  fi
done
exit $status
