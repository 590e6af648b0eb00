#!/usr/bin/env bash
# Vendors Swagger UI (Apache-2.0) for `GET /docs`, so the page needs no CDN (OPS-2).
# The files are compiled into the binary (crates/http-api/src/handlers/docs.rs). To upgrade:
# change VERSION and SHA256 (of the npm tarball), run this script, run the tests, commit.
set -euo pipefail
VERSION=5.35.0
SHA256=1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6
DEST="$(cd "$(dirname "$0")/.." && pwd)/crates/http-api/assets/swagger-ui"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack --silent "swagger-ui-dist@${VERSION}" >/dev/null
echo "${SHA256}  swagger-ui-dist-${VERSION}.tgz" | sha256sum -c -
tar xzf "swagger-ui-dist-${VERSION}.tgz"
mkdir -p "$DEST"
for f in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE; do
  cp "package/$f" "$DEST/$f"
done
echo "$VERSION" > "$DEST/VERSION"
echo "vendored swagger-ui-dist $VERSION into $DEST"
