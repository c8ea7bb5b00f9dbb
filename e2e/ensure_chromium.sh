#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser tests (`make e2e`).
# Playwright drives this system browser; it never downloads one of its own.
# As root (CI containers), install it with apt-get; otherwise say what to run.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"  # overridable only to test this script

if [ -x "$CHROMIUM" ]; then
    echo "ensure_chromium: found $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $CHROMIUM is missing and this system has no apt-get." >&2
    echo "Install Chromium with your package manager so that $CHROMIUM exists, then rerun." >&2
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_chromium: $CHROMIUM is missing. Install Debian's chromium as root, then rerun:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y chromium" >&2
    exit 1
fi

echo "ensure_chromium: installing Debian's chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
if [ ! -x "$CHROMIUM" ]; then
    echo "ensure_chromium: apt-get finished but $CHROMIUM is still missing." >&2
    exit 1
fi
echo "ensure_chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
