#!/usr/bin/env bash
# Vendor the browser libraries of FieldTrack's pages from the npm registry into
# dispatcher_feed/static/vendor/ (git-ignored). Idempotent: `npm ci` installs
# exactly package-lock.json, and the copy overwrites. Nothing is ever loaded
# from a CDN at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v npm >/dev/null || { echo "build_assets: npm is required (apt-get install npm)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error

src=node_modules/leaflet/dist
dest=dispatcher_feed/static/vendor
mkdir -p "$dest/images"
cp "$src/leaflet.js" "$src/leaflet.css" "$dest/"
cp "$src"/images/*.png "$dest/images/"
cp node_modules/leaflet/LICENSE "$dest/LEAFLET-LICENSE.txt"
# The minified file names its source map; the map is not shipped, so drop the
# reference rather than have developer tools ask for a file that is not there.
sed -i '/^\/\/# sourceMappingURL=/d' "$dest/leaflet.js"
echo "build_assets: leaflet $(node -p 'require("./node_modules/leaflet/package.json").version') -> $dest"
