#!/usr/bin/env bash
# A local S3-compatible server for the backup destination tests (BAK-1): moto's server mode,
# installed from PyPI into its own virtual environment, listening on a free loopback port.
# It keeps everything in memory and accepts any credentials; nothing leaves the machine.
#
# Usage: eval "$(scripts/s3-test-server.sh)"
# Prints `export TEST_S3_ENDPOINT=http://127.0.0.1:PORT; S3_SERVER_PID=PID` once the server
# answers; stop it with `kill "$S3_SERVER_PID"`.
set -euo pipefail
version=5.2.5
venv=${S3_TEST_VENV:-$HOME/.cache/incrementa-s3-venv}
if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$version')" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "moto[server]==$version" >&2
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1)" 2>/dev/null; then
    echo "export TEST_S3_ENDPOINT=http://127.0.0.1:$port; S3_SERVER_PID=$pid"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.2
done
echo "the S3 test server did not start:" >&2
cat "$log" >&2
kill "$pid" 2>/dev/null || true
exit 1
