#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver (chromedriver), which the dashboard's browser test
# (crates/herald-axum/tests/browser.rs) drives headless. Idempotent: does nothing when both are
# already there. Fails loudly when they cannot be installed.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
  exit 0
fi

# Browser tests run in parallel and each may call this script: one installs while the others wait
# for it (apt-get refuses a second concurrent run), then find both binaries there.
exec 9>"${TMPDIR:-/tmp}/herald-install-browser.lock"
flock 9
if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "error: installing chromium needs root (or sudo); run: apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
fi

echo "installing chromium and chromium-driver (for the dashboard's browser test)"
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update; then
  echo "error: apt-get update failed; chromium cannot be installed" >&2
  exit 1
fi
if ! "${SUDO[@]}" apt-get install -y chromium chromium-driver; then
  echo "error: apt-get install chromium chromium-driver failed" >&2
  exit 1
fi

for binary in "$CHROMIUM" "$CHROMEDRIVER"; do
  if [[ ! -x "$binary" ]]; then
    echo "error: $binary is still missing after installing chromium and chromium-driver" >&2
    exit 1
  fi
done
echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo unknown); chromedriver: $("$CHROMEDRIVER" --version 2>/dev/null || echo unknown)"
