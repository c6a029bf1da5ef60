#!/usr/bin/env bash
# Vendors hls.js from npm into vendor/ (committed, so that building the recorder never needs
# npm or the network). Run after changing the version in package.json:
#   cd crates/access/web && bash build.sh
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund
v=$(node -p 'require("./node_modules/hls.js/package.json").version')
mkdir -p vendor
{
  printf '/*! hls.js %s | Apache-2.0 | https://github.com/video-dev/hls.js | license: LICENSE.hls.js */\n' "$v"
  # The source map is not vendored; drop its reference so browsers do not request it.
  sed -e 's|//# sourceMappingURL=.*$||' node_modules/hls.js/dist/hls.min.js
} > vendor/hls.min.js
cp node_modules/hls.js/LICENSE vendor/LICENSE.hls.js
echo "vendored hls.js $v: $(wc -c < vendor/hls.min.js) bytes"
