#!/usr/bin/env bash
# Render a report.html (run-operation --report DIR) in a real headless browser and save a PNG,
# to see that the page and its charts render offline.
#
#   scripts/screenshot_report.sh DIR/report.html OUT.png [WIDTH,HEIGHT]
#
# Needs Chromium (Debian: apt-get install -y chromium; or set CHROMIUM=/path/to/chrome). Every
# host name resolves to nothing (--host-resolver-rules), so the screenshot shows what the page
# gives without a network: an external script or stylesheet would be missing from it. Runs as
# root too (--no-sandbox). Exit status: Chromium's, or 2 for bad arguments or no Chromium.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
    exit 2
fi
report=$(realpath "$1")
output=$(realpath -m "$2")
size=${3:-1400,1500}
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [[ -z "$browser" ]]; then
    echo "$0: no chromium found (apt-get install -y chromium, or set CHROMIUM)" >&2
    exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

timeout 60 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --host-resolver-rules="MAP * ~NOTFOUND" --hide-scrollbars \
    --user-data-dir="$profile" --window-size="$size" --screenshot="$output" "file://$report" \
    >/dev/null 2>&1
test -s "$output"
echo "$output"
