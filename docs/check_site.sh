#!/usr/bin/env bash
# Opens the built documentation site's index in headless Chromium, saves a screenshot beside it
# (SITE/screenshot.png) and checks that the page rendered: the DOM has the page's title and navigation,
# and the screenshot is not a blank image.
#
#   bash docs/check_site.sh [SITE]        # SITE defaults to site/ (mkdocs build --strict writes it)
#
# Chromium is looked up as chromium / chromium-browser / google-chrome. When none is found and
# EXPRFLOW_INSTALL_CHROMIUM=1 (set by .ci/run), it is installed with apt-get (Debian's `chromium`
# package, needs root); otherwise the check is skipped with a message (exit 0), unless
# EXPRFLOW_REQUIRE_BROWSER=1, which makes a missing browser an error.
set -euo pipefail

site="$(cd "${1:-site}" && pwd)"
index="$site/index.html"
[ -f "$index" ] || { echo "check_site: $index not found; build the site first (mkdocs build --strict)" >&2; exit 1; }

find_browser() {
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}

browser="$(find_browser || true)"
if [ -z "$browser" ] && [ "${EXPRFLOW_INSTALL_CHROMIUM:-0}" = "1" ]; then
  echo "check_site: installing chromium with apt-get"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "check_site: apt-get could not install chromium" >&2
  browser="$(find_browser || true)"
fi
if [ -z "$browser" ]; then
  if [ "${EXPRFLOW_REQUIRE_BROWSER:-0}" = "1" ]; then
    echo "check_site: no Chromium found (apt-get install chromium)" >&2; exit 1
  fi
  echo "check_site: SKIPPED, no Chromium found (apt-get install chromium, or set EXPRFLOW_INSTALL_CHROMIUM=1)"
  exit 0
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# The flags keep Chromium off the network (no background services, updates or sync) and headless.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars "--user-data-dir=$profile")

dom="$(timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$index" 2>/dev/null)"
for needle in "<title>" "exprflow" "Getting started" "API reference"; do
  if ! grep -q "$needle" <<<"$dom"; then
    echo "check_site: the rendered index has no '$needle'" >&2; exit 1
  fi
done

shot="$site/screenshot.png"
rm -f "$shot"
timeout 120 "$browser" "${flags[@]}" --window-size=1280,900 "--screenshot=$shot" "file://$index" >/dev/null 2>&1 || true
[ -s "$shot" ] || { echo "check_site: Chromium wrote no screenshot" >&2; exit 1; }

python - "$shot" <<'EOF'
import sys

import matplotlib.image as mpimg

img = mpimg.imread(sys.argv[1])[..., :3]
spread = float(img.std())
height, width = img.shape[:2]
if spread < 0.05:
    sys.exit(f"check_site: the screenshot looks blank (pixel standard deviation {spread:.3f})")
print(f"check_site: {sys.argv[1]} ({width}x{height}, pixel standard deviation {spread:.3f})")
EOF
