#!/usr/bin/env bash
# Debian's chromium for the dashboard's browser tests (tests/pool/integration/test_dashboard.py), which drive it
# with playwright (a test extra) at /usr/bin/chromium: `playwright install` would download a browser build of its
# own, which this machine cannot fetch.
#
# Idempotent on a fresh Debian machine: installs Debian's chromium when /usr/bin/chromium is missing.
set -euo pipefail

say() { echo "chromium.sh: $*" >&2; }

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "chromium is not installed and installing it needs root (apt-get install chromium)"
    exit 1
fi
say "installing chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq chromium >&2
