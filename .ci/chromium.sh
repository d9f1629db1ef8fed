#!/bin/sh
# Debian's Chromium for the workbench's browser tests (tests/test_workbench_browser.py), installed
# only when it is not there yet. Playwright drives this system browser; nothing is downloaded by
# `playwright install`. Usage (from .ci/run, before pytest): sh .ci/chromium.sh
set -eu

CHROMIUM="${NBATLAS_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "chromium is missing and this user cannot install it (no root, no sudo): apt-get install chromium" >&2
        exit 1
    fi
fi

echo "installing Debian's chromium (for the browser tests)..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
"$CHROMIUM" --version
