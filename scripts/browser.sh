#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium for tests/test_browser.py, installing the
# `chromium` package when it is missing. The tests drive this browser with Playwright; they never
# download one (no `playwright install`). Needs root, or sudo.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  echo "== installing chromium from Debian's packages"
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
# The wrapper script prints a harmless shell warning on some machines: keep only the version line.
/usr/bin/chromium --version 2>/dev/null
